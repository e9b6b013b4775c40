"""A bucket's files found by any fragment of their keys, case-insensitively, in key order and
keyset-paged like listings. Answered from an index: SQLite's FTS5 trigram table, PostgreSQL's
pg_trgm GIN index (migration 0006). A fragment under three characters has no trigram: it is matched
by walking the bucket's keys in order until a page is full."""

from __future__ import annotations

from sqlalchemy import text

from ..models import db, transaction

_COLUMNS = "o.key, o.mime_type, o.size, o.sha256, o.created_at"
# CROSS JOIN makes SQLite read the index first (the matches, then their rows, then sort those few);
# left to itself, without statistics, it walks the bucket's keys and tests each against the index.
_SQLITE_INDEXED = text(
    f"SELECT {_COLUMNS} FROM objects_fts f CROSS JOIN objects o ON o.id = f.rowid WHERE objects_fts MATCH :phrase"
    " AND o.bucket_id = :bucket_id AND o.key >= :start AND o.key < :upper ORDER BY o.key LIMIT :n")
_POSTGRESQL = text(
    f"SELECT {_COLUMNS} FROM objects o WHERE o.bucket_id = :bucket_id AND o.key ILIKE :pattern ESCAPE '\\'"
    " AND o.key >= :start AND o.key < :upper ORDER BY o.key LIMIT :n")
_SCAN = text(  # a fragment too short for trigrams (SQLite): the bucket's keys in order
    f"SELECT {_COLUMNS} FROM objects o WHERE o.bucket_id = :bucket_id AND o.key >= :start AND o.key < :upper"
    " AND instr(lower(o.key), :fragment) > 0 ORDER BY o.key LIMIT :n")
_NO_UPPER = "\U0010ffff" * 2  # above every key


def find(bucket_id: int, fragment: str, *, start: str, upper: str | None, limit: int) -> list:
    """Up to `limit` rows whose key holds `fragment`, from key `start` on (below `upper`)."""
    params = {"bucket_id": bucket_id, "start": start, "upper": upper or _NO_UPPER, "n": limit}
    if db.engine.dialect.name == "postgresql":
        escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement, params["pattern"] = _POSTGRESQL, f"%{escaped}%"
    elif len(fragment) >= 3:
        statement, params["phrase"] = _SQLITE_INDEXED, '"' + fragment.replace('"', '""') + '"'
    else:
        statement, params["fragment"] = _SCAN, fragment.lower()
    with transaction():
        return db.session.execute(statement, params).all()
