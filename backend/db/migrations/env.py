"""Alembic environment: runs on the connection `backend.db.migrate` hands over (never opens its own)."""

from __future__ import annotations

from alembic import context

from backend.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through backend.db.migrate (mcpchat db upgrade), not the alembic command")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
