"""Share links and file requests.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "shares",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KEY, nullable=True),
        sa.Column("prefix", KEY, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True, index=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False, index=True),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("max_downloads", sa.BigInteger, nullable=True),
        sa.Column("downloads", sa.BigInteger, nullable=False),
        sa.Column("allow_upload", sa.Boolean, nullable=False),
        sa.Column("upload_max_bytes", sa.BigInteger, nullable=True),
        sa.Column("uploaded_bytes", sa.BigInteger, nullable=False),
        sa.Column("listing", sa.Boolean, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("shares")
