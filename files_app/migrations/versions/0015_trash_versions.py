"""Nothing lost: a deleted file goes to its bucket's trash, a replaced one becomes a version of its
key. Both are rows of `kept_files` that keep the file's blob (a blob id names one upload's bytes, so
a row moves between `objects` and `kept_files` and its bytes never move). Buckets and owners count
what they keep beside what they hold, in the same transactions (quotas count both). A file whose
stored bytes a scrub found damaged carries `damaged_at`.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "kept_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),  # trash | version
        sa.Column("bucket_id", sa.Integer(), sa.ForeignKey("buckets.id"), nullable=False),
        sa.Column("key", _KEY, nullable=False),
        sa.Column("blob_id", sa.String(64), nullable=False, unique=True),
        sa.Column("mime_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("inline_data", sa.LargeBinary(), nullable=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("kept_at", sa.Float(), nullable=False),
        sa.Column("kept_by", sa.String(64), nullable=True),
        sa.Column("kept_by_name", sa.String(120), nullable=True),
        sa.Column("deletion", sa.String(32), nullable=True),
        sa.Column("damaged_at", sa.BigInteger(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_kept_files_bucket_kind_id", "kept_files", ["bucket_id", "kind", "id"])
    op.create_index("ix_kept_files_bucket_key_kind", "kept_files", ["bucket_id", "key", "kind", "id"])
    op.create_index("ix_kept_files_deletion", "kept_files", ["deletion"])
    op.create_index("ix_kept_files_kind_kept_at", "kept_files", ["kind", "kept_at"])
    for table in ("buckets", "owner_usage"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("kept_files", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
            batch.add_column(sa.Column("kept_bytes", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    # When `flask files verify` found a file's stored bytes not what was uploaded (or gone).
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("damaged_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.drop_column("damaged_at")
    for table in ("buckets", "owner_usage"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("kept_bytes")
            batch.drop_column("kept_files")
    op.drop_table("kept_files")
