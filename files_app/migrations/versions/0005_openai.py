"""The OpenAI-compatible API's files, uploads and parts.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "openai_files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("key", KEY, nullable=False),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_openai_files_created", "openai_files", ["created_at", "id"])
    op.create_index("ix_openai_files_purpose_created", "openai_files", ["purpose", "created_at", "id"])
    op.create_index("ix_openai_files_expires_at", "openai_files", ["expires_at"])
    op.create_table(
        "openai_uploads",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("filename", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("file_expires_after", sa.BigInteger, nullable=True),
        sa.Column("file_id", sa.String(40), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
    )
    op.create_index("ix_openai_uploads_expires_at", "openai_uploads", ["expires_at"])
    op.create_table(
        "openai_upload_parts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("upload_id", sa.String(40), sa.ForeignKey("openai_uploads.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("session_id", sa.String(32), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_openai_upload_parts_upload_id", "openai_upload_parts", ["upload_id"])


def downgrade() -> None:
    op.drop_table("openai_upload_parts")
    op.drop_table("openai_uploads")
    op.drop_table("openai_files")
