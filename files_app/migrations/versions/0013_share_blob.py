"""A file's share remembers which file it shares: the blob_id its file had when shared, so that a
share dies with its file rather than serve a later one uploaded at the same key.

Shares made before this remember the file at their key now, if there is one (those whose file is
already gone keep none, and serve nothing).

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shares") as batch:
        batch.add_column(sa.Column("blob_id", sa.String(64), nullable=True))
    shares, objects, buckets = (sa.table("shares", sa.column("bucket"), sa.column("key"), sa.column("blob_id")),
                                sa.table("objects", sa.column("bucket_id"), sa.column("key"), sa.column("blob_id")),
                                sa.table("buckets", sa.column("id"), sa.column("name")))
    current = (sa.select(objects.c.blob_id).select_from(objects.join(buckets, buckets.c.id == objects.c.bucket_id))
               .where(buckets.c.name == shares.c.bucket, objects.c.key == shares.c.key).scalar_subquery())
    op.execute(shares.update().where(shares.c.key.is_not(None)).values(blob_id=current))


def downgrade() -> None:
    with op.batch_alter_table("shares") as batch:
        batch.drop_column("blob_id")
