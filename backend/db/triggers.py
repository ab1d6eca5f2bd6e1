"""The database's own rule: a conversation's `version` goes up whenever one of its finished turns is written.

A turn is finished once its status is not `running`, and a finished turn never changes; so when a conversation's
version is the one a process saw last, no turn of it has finished (or appeared finished, or gone) since, whoever
wrote it. `ConversationStore` relies on that to keep a conversation's finished turns in memory. Triggers enforce
it for every writer, this app or any other, on SQLite and PostgreSQL alike. Created with the tables
(`backend.db.models`) and by migration 0004; changing them needs a new migration.
"""

from __future__ import annotations

_BUMP = "UPDATE conversations SET version = version + 1 WHERE id = {row}.conversation_id"

TURN_FINISHED_TRIGGERS: dict[str, tuple[str, ...]] = {
    "sqlite": (
        f"CREATE TRIGGER turns_finished_insert AFTER INSERT ON turns WHEN NEW.status != 'running' "
        f"BEGIN {_BUMP.format(row='NEW')}; END",
        f"CREATE TRIGGER turns_finished_update AFTER UPDATE ON turns WHEN NEW.status != 'running' "
        f"BEGIN {_BUMP.format(row='NEW')}; END",
        f"CREATE TRIGGER turns_finished_delete AFTER DELETE ON turns WHEN OLD.status != 'running' "
        f"BEGIN {_BUMP.format(row='OLD')}; END",
    ),
    "postgresql": (
        f"""CREATE OR REPLACE FUNCTION bump_conversation_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        {_BUMP.format(row="OLD")};
    ELSE
        {_BUMP.format(row="NEW")};
    END IF;
    RETURN NULL;
END $$""",
        "CREATE TRIGGER turns_finished_insert_update AFTER INSERT OR UPDATE ON turns FOR EACH ROW "
        "WHEN (NEW.status <> 'running') EXECUTE FUNCTION bump_conversation_version()",
        "CREATE TRIGGER turns_finished_delete AFTER DELETE ON turns FOR EACH ROW "
        "WHEN (OLD.status <> 'running') EXECUTE FUNCTION bump_conversation_version()",
    ),
}

DROP_TURN_FINISHED_TRIGGERS: dict[str, tuple[str, ...]] = {
    "sqlite": tuple(f"DROP TRIGGER IF EXISTS turns_finished_{what}" for what in ("insert", "update", "delete")),
    "postgresql": (
        "DROP TRIGGER IF EXISTS turns_finished_insert_update ON turns",
        "DROP TRIGGER IF EXISTS turns_finished_delete ON turns",
    ),
}
