"""The schema: built or migrated at start-up and by `mcpchat db upgrade`.

Alembic (its imports are a large part of start-up, and stay resident) is loaded only when migrations run. An
empty database is built from the models and stamped with the newest revision, as Alembic's documentation
suggests for a new database; the tests check that the migrations and the models make the same schema. Both run
as long writes (off the event loop on SQLite).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, MetaData, String, Table, insert, inspect, select

from backend.db.database import Database
from backend.db.models import Base, User, owner_values

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
HEAD_REVISION = "0008"  # the newest file in migrations/versions (a test holds the two together)

# Alembic's own bookkeeping table, as its `stamp` creates it.
_VERSIONS = Table("alembic_version", MetaData(), Column("version_num", String(32), primary_key=True))


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config  # only to run migrations: see the module's docstring

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


async def upgrade(database: Database) -> None:
    """Bring the database to the newest schema in one write transaction: an empty one is built, one already
    there costs a query, and any other runs the migrations."""
    if not await database.write(_build_or_check, is_long=True):
        await migrate(database, "head")


async def migrate(database: Database, revision: str) -> None:
    """Run the migrations up to `revision` in one write transaction."""
    from alembic import command

    await database.write(lambda connection: command.upgrade(alembic_config(connection), revision), is_long=True)


async def current_revision(database: Database) -> str | None:
    return await database.read(_stored_revision)


def _build_or_check(connection: Connection) -> bool:
    """True if the database is now at HEAD_REVISION without migrations: it was empty, or already there."""
    tables = set(inspect(connection).get_table_names())
    if not tables:
        Base.metadata.create_all(connection)
        connection.execute(insert(User).values(owner_values()))
        _VERSIONS.create(connection)
        connection.execute(_VERSIONS.insert().values(version_num=HEAD_REVISION))
        return True
    return _VERSIONS.name in tables and _version(connection) == HEAD_REVISION


def _stored_revision(connection: Connection) -> str | None:
    return _version(connection) if inspect(connection).has_table(_VERSIONS.name) else None


def _version(connection: Connection) -> str | None:
    return connection.execute(select(_VERSIONS.c.version_num)).scalar()
