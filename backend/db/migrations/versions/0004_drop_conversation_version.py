"""drop conversations.version: the store no longer keeps finished turns by conversation version

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 11:00:00.000000

A turn's start reads its conversation's finished turns from the covering index again (one query in the same
transaction), so the version every turn's start and end bumped has no reader left.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.drop_column("version")


def downgrade() -> None:
    with op.batch_alter_table("conversations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), server_default="0", nullable=False))
