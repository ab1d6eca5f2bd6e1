"""conversations.version: bumped by every turn's start and end

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 02:45:00.000000

The store keeps each conversation's newest finished turns in memory and trusts them while the conversation's
version is the one it saw last (plus its own change), so a turn's start no longer reads up to 256 turns back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("version")
