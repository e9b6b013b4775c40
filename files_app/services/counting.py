"""How many entries (files, and folders counted once) a listing level holds, for "101-200 of
12,345": one query in the database's own loop, not a walk in Python. Capped, so that a folder of
millions costs at most `cap` index entries; a count that reached the cap says so.
"""

from __future__ import annotations

import functools

from sqlalchemy import bindparam, case, func, literal, select

from ..models import StoredObject, db

COUNT_CAP = 100_000  # keys read at most per count (about 40 ms on SQLite)

_objects = StoredObject.__table__


@functools.cache
def _statement(dialect: str, delimiter: str | None):
    keys = (select(_objects.c.key)
            .where(_objects.c.bucket_id == bindparam("bucket_id"), _objects.c.key >= bindparam("prefix"),
                   _objects.c.key < bindparam("below"))
            .order_by(_objects.c.key).limit(bindparam("cap")).subquery())
    if not delimiter:  # every key is an entry
        return select(func.count(), func.count()).select_from(keys)
    rest = func.substr(keys.c.key, bindparam("after_prefix"))
    # Where the delimiter first is past the prefix (1-based; 0: none, the key is a file of this level).
    at = func.strpos(rest, literal(delimiter)) if dialect == "postgresql" else func.instr(rest, literal(delimiter))
    entry = case((at > 0, func.substr(keys.c.key, 1, bindparam("prefix_length") + at)), else_=keys.c.key)
    return select(func.count(), func.count(entry.distinct())).select_from(keys)


def count_entries(bucket_id: int, prefix: str, delimiter: str | None, below: str,
                  cap: int = COUNT_CAP) -> tuple[int, bool]:
    """(entries at the level of `prefix` whose keys sort below `below`, whether that is exact).
    Not exact when more than `cap` keys lie there: the count is then of the first `cap` keys'."""
    statement = _statement(db.engine.dialect.name, delimiter or None)
    keys, entries = db.session.execute(statement, {
        "bucket_id": bucket_id, "prefix": prefix, "below": below, "cap": cap,
        "after_prefix": len(prefix) + 1, "prefix_length": len(prefix)}).one()
    return int(entries), keys < cap
