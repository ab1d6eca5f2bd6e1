"""triggers that bump conversations.version whenever a finished turn is written

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 12:00:00.000000

The version was bumped by the store's own statements, a rule every writer had to remember; the database now
enforces it (backend/db/triggers.py). A turn's start no longer bumps it: only finished turns count.
"""

from __future__ import annotations

from alembic import op

from backend.db.triggers import DROP_TURN_FINISHED_TRIGGERS, TURN_FINISHED_TRIGGERS

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in TURN_FINISHED_TRIGGERS.get(op.get_bind().dialect.name, ()):
        op.execute(statement)


def downgrade() -> None:
    for statement in DROP_TURN_FINISHED_TRIGGERS.get(op.get_bind().dialect.name, ()):
        op.execute(statement)
