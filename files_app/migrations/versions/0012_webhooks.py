"""Webhooks: the hooks admins register, and the queue of their deliveries (one row per event and
matching hook, written in the transaction of the change the event records).

A delivery names its hook by id without a foreign key: a hook deleted while a change was being
committed must not fail that change (the deliverer skips, and gc drops, deliveries of a hook that
is gone). Its event is the audit entry, which it does reference: the entry's pruning takes it along.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hooks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("actions", sa.Text, nullable=False),
        sa.Column("buckets", sa.Text, nullable=True),
        sa.Column("secret", sa.String(256), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "hook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hook_id", sa.Integer, nullable=False),
        sa.Column("audit_id", sa.Integer, sa.ForeignKey("audit_log.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("bucket", sa.String(63), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_until", sa.Float, nullable=False),
        sa.Column("lease_token", sa.String(32), nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(200), nullable=True),
        sa.Column("delivered_at", sa.Float, nullable=True),
        sqlite_autoincrement=True,
    )
    # The queue: pending heads per hook and bucket (claims, and "is an earlier one pending?").
    op.create_index("ix_hook_deliveries_queue", "hook_deliveries", ["state", "hook_id", "bucket", "id"])
    # A hook's delivery log, newest first.
    op.create_index("ix_hook_deliveries_hook_id", "hook_deliveries", ["hook_id", "id"])


def downgrade() -> None:
    op.drop_table("hook_deliveries")
    op.drop_table("hooks")
