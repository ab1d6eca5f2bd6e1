"""Alembic migrations, applied at start-up and by `mcpchat db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection

from backend.db.database import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the database to `revision` in one write transaction."""
    await database.write(lambda connection: command.upgrade(alembic_config(connection), revision))


async def current_revision(database: Database) -> str | None:
    return await database.read(lambda connection: MigrationContext.configure(connection).get_current_revision())
