"""People and access: roles, bucket owners and grants, tokens that belong to a person (expiry, last
use, revocation), web sessions that say where they are, and the audit log.

Users who exist become admins (nothing they could do is taken away); buckets made before keep no
owner (admins see them); tokens made before belong to nobody and keep their scope (operator tokens).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

KEY = sa.String(1024).with_variant(sa.String(1024, collation="C"), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("users") as table:
        table.add_column(sa.Column("role", sa.String(8), nullable=False, server_default="admin"))
        table.add_column(sa.Column("disabled_at", sa.BigInteger, nullable=True))
    if op.get_bind().dialect.name == "postgresql":  # (SQLite would make the table again to drop it)
        op.alter_column("users", "role", server_default=None)
    with op.batch_alter_table("buckets") as table:
        table.add_column(sa.Column("owner_id", sa.Integer, nullable=True))
    with op.batch_alter_table("api_tokens") as table:
        table.add_column(sa.Column("user_id", sa.Integer, nullable=True))
        table.add_column(sa.Column("expires_at", sa.BigInteger, nullable=True))
        table.add_column(sa.Column("last_used_at", sa.BigInteger, nullable=True))
        table.add_column(sa.Column("last_used_from", sa.String(64), nullable=True))
        table.add_column(sa.Column("revoked_at", sa.BigInteger, nullable=True))
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    with op.batch_alter_table("web_sessions") as table:
        table.add_column(sa.Column("address", sa.String(64), nullable=True))
        table.add_column(sa.Column("user_agent", sa.String(200), nullable=True))
        table.add_column(sa.Column("last_seen_at", sa.BigInteger, nullable=True))
    with op.batch_alter_table("openai_files") as table:
        table.add_column(sa.Column("owner", sa.String(64), nullable=True))
    op.create_index("ix_openai_files_owner_id", "openai_files", ["owner", "id"])
    op.create_table(
        "grants",
        sa.Column("bucket_id", sa.Integer, sa.ForeignKey("buckets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                  index=True),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),  # (no index: entries are in id order, which is time order)
        sa.Column("actor", sa.String(64), nullable=True, index=True),
        sa.Column("actor_name", sa.String(120), nullable=True),
        sa.Column("address", sa.String(64), nullable=True),
        sa.Column("user_agent", sa.String(200), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("bucket", sa.String(63), nullable=True),
        sa.Column("key", KEY, nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=True),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_bucket_id", "audit_log", ["bucket", "id"])
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("grants")
    op.drop_index("ix_openai_files_owner_id", "openai_files")
    with op.batch_alter_table("openai_files") as table:
        table.drop_column("owner")
    with op.batch_alter_table("web_sessions") as table:
        for name in ("last_seen_at", "user_agent", "address"):
            table.drop_column(name)
    op.drop_index("ix_api_tokens_user_id", "api_tokens")
    with op.batch_alter_table("api_tokens") as table:
        for name in ("revoked_at", "last_used_from", "last_used_at", "expires_at", "user_id"):
            table.drop_column(name)
    with op.batch_alter_table("buckets") as table:
        table.drop_column("owner_id")
    with op.batch_alter_table("users") as table:
        table.drop_column("disabled_at")
        table.drop_column("role")
