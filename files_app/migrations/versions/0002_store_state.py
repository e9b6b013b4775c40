"""Upload sessions keep the blob store's bookkeeping (an S3 multipart upload's parts).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upload_sessions") as table:
        table.add_column(sa.Column("store_state", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("upload_sessions") as table:
        table.drop_column("store_state")
