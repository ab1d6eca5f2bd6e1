"""users, and the conversations each belongs to

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:00:00.000000

Conversations made before accounts existed belong to the built-in owner account, which this creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backend.db.models import OWNER_ID, owner_values

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    users = op.create_table(
        "users",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("is_disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.bulk_insert(users, [owner_values()])
    # Not in batch mode: on SQLite that copies the table and drops the old one, and with foreign keys on the drop
    # would delete every turn and message through their ON DELETE CASCADE. ADD COLUMN keeps the rows in place,
    # said in SQL on SQLite, where Alembic would add the foreign key as a separate (unsupported) ALTER.
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE conversations ADD COLUMN user_id VARCHAR(36) REFERENCES users (id)")
    else:
        op.add_column("conversations", sa.Column("user_id", sa.String(length=36), sa.ForeignKey("users.id")))
    op.execute(sa.text("UPDATE conversations SET user_id = :owner").bindparams(owner=OWNER_ID))
    op.drop_index("ix_conversations_created", table_name="conversations")
    op.drop_index("ix_conversations_kind_created", table_name="conversations")
    op.create_index("ix_conversations_user_created", "conversations", ["user_id", "created_at", "id"])
    op.create_index("ix_conversations_user_kind_created", "conversations", ["user_id", "kind", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_user_kind_created", table_name="conversations")
    op.drop_index("ix_conversations_user_created", table_name="conversations")
    op.create_index("ix_conversations_kind_created", "conversations", ["kind", "created_at"])
    op.create_index("ix_conversations_created", "conversations", ["created_at", "id"])
    # SQLite refuses to drop a foreign-key column in place (and batch mode would cascade, as above): PostgreSQL only.
    op.drop_column("conversations", "user_id")
    op.drop_table("users")
