"""Who uploaded each file: the owner ("user:<id>", "token:<id>") of the session or request that
made it, None for files made while the service was open (or before this revision). Token and user
ids are never used again (SQLite AUTOINCREMENT; PostgreSQL's sequences never were), so a deleted
token's files and sessions never pass to a new one.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("objects") as table:
        table.add_column(sa.Column("owner", sa.String(64), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # The tables are made again; dropping the old `users` would cascade to the signed-in
        # browsers (foreign keys are on, and cannot be turned off inside the migration's
        # transaction), so those are kept aside and put back.
        op.execute("CREATE TEMP TABLE kept_web_sessions AS SELECT * FROM web_sessions")
        for name in ("api_tokens", "users"):
            with op.batch_alter_table(name, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass
        op.execute("INSERT INTO web_sessions SELECT * FROM kept_web_sessions WHERE user_id IN (SELECT id FROM users)")
        op.execute("DROP TABLE kept_web_sessions")


def downgrade() -> None:
    with op.batch_alter_table("objects") as table:
        table.drop_column("owner")
