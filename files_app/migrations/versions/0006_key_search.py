"""Search by any fragment of a key: SQLite's FTS5 trigram index, PostgreSQL's pg_trgm.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The index follows `objects` by triggers (an external-content FTS5 table holds no copy of the keys).
_SQLITE = [
    "CREATE VIRTUAL TABLE objects_fts USING fts5(key, content='objects', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER objects_fts_insert AFTER INSERT ON objects BEGIN "
    "INSERT INTO objects_fts(rowid, key) VALUES (new.id, new.key); END",
    "CREATE TRIGGER objects_fts_delete AFTER DELETE ON objects BEGIN "
    "INSERT INTO objects_fts(objects_fts, rowid, key) VALUES ('delete', old.id, old.key); END",
    "CREATE TRIGGER objects_fts_update AFTER UPDATE OF key ON objects BEGIN "
    "INSERT INTO objects_fts(objects_fts, rowid, key) VALUES ('delete', old.id, old.key); "
    "INSERT INTO objects_fts(rowid, key) VALUES (new.id, new.key); END",
    "INSERT INTO objects_fts(objects_fts) VALUES ('rebuild')",
]
_POSTGRESQL = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_objects_key_trgm ON objects USING gin (key gin_trgm_ops)",
]


def upgrade() -> None:
    for statement in _SQLITE if op.get_bind().dialect.name == "sqlite" else _POSTGRESQL:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("objects_fts_insert", "objects_fts_delete", "objects_fts_update"):
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TABLE objects_fts")
    else:
        op.execute("DROP INDEX ix_objects_key_trgm")
