"""Small files live in their object's row (FILES_INLINE_MAX): one durable commit stores them.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("objects") as table:
        table.add_column(sa.Column("inline_data", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objects") as table:
        table.drop_column("inline_data")
