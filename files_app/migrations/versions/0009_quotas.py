"""Quotas per bucket and per owner, and each owner's usage kept in step with their files.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("subject", sa.String(100), primary_key=True),
        sa.Column("max_bytes", sa.BigInteger, nullable=True),
        sa.Column("max_files", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "owner_usage",
        sa.Column("owner", sa.String(64), primary_key=True),
        sa.Column("files", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO owner_usage (owner, files, bytes) SELECT owner, count(*), sum(size) FROM objects"
               " WHERE owner IS NOT NULL GROUP BY owner")
    # A quota check sums an owner's unfinished uploads.
    op.create_index("ix_upload_sessions_owner", "upload_sessions", ["owner"])


def downgrade() -> None:
    op.drop_index("ix_upload_sessions_owner", "upload_sessions")
    op.drop_table("owner_usage")
    op.drop_table("quotas")
