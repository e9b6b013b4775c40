"""Every file row carries `placed`: a number from one ever-growing counter, taken whenever the row
comes into being or takes another bucket, key or blob (an upload, a copy, a replace, a move). A
folder's count returns the counter's value, and the delete it confirms takes only rows placed at or
before it: never a file moved or uploaded into the folder after the count, even within the same
second (the old `before` compared whole seconds of `created_at`, which a move keeps).

Triggers keep it, so no write path can forget it. SQLite counts in a one-row table (writes are one
at a time there, so the count's snapshot and the counter agree exactly); PostgreSQL in a sequence.
Rows made before this are 0: placed before any count.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_SQLITE_PLACE = ("BEGIN UPDATE placement_clock SET value = value + 1; "
                 "UPDATE objects SET placed = (SELECT value FROM placement_clock) WHERE id = new.id; END")
_SQLITE = [
    "CREATE TABLE placement_clock (value BIGINT NOT NULL)",
    "INSERT INTO placement_clock (value) VALUES (0)",
    # The UPDATE of `placed` alone fires neither trigger again.
    f"CREATE TRIGGER objects_placed_insert AFTER INSERT ON objects {_SQLITE_PLACE}",
    f"CREATE TRIGGER objects_placed_update AFTER UPDATE OF bucket_id, key, blob_id ON objects {_SQLITE_PLACE}",
]
_POSTGRESQL = [
    "CREATE SEQUENCE object_placements",
    "CREATE FUNCTION objects_placed() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN NEW.placed := nextval('object_placements'); RETURN NEW; END $$",
    "CREATE TRIGGER objects_placed BEFORE INSERT OR UPDATE OF bucket_id, key, blob_id ON objects "
    "FOR EACH ROW EXECUTE FUNCTION objects_placed()",
]


def upgrade() -> None:
    op.add_column("objects", sa.Column("placed", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    for statement in _SQLITE if op.get_bind().dialect.name == "sqlite" else _POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("objects_placed_insert", "objects_placed_update"):
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE placement_clock")
    else:
        op.execute("DROP TRIGGER objects_placed ON objects")
        op.execute("DROP FUNCTION objects_placed()")
        op.execute("DROP SEQUENCE object_placements")
    op.drop_column("objects", "placed")
