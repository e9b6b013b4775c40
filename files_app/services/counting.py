"""Where a page stands in its listing level ("101-200 of 12,345"): the level's entries (files, and
folders counted once), counted by the database in one or two bounded statements.

A walk seeks from entry to entry as `list` does (a folder skipped whole past its upper bound): its
cost is per entry (about 1 µs on SQLite, 6 on PostgreSQL), so a level of a few folders over a
million files costs a few seeks. A scan reads the level's keys in order (well under 1 µs each on
either): a flat folder is exact up to its cap of keys. Past the caps, the counts are lower bounds
and say so.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from sqlalchemy import text

from ..models import db

SHORT_WALK = 500  # entries: the walk that most levels end within, under a few ms
WALK_CAP = {"sqlite": 20_000, "postgresql": 3_000}  # entries: ~20 ms either way
SCAN_CAP = 50_000  # keys: ~20 ms either way

# The entry a key belongs to: the folder (prefix up to the delimiter) or the key itself.
_ENTRY_END = "{find}(substr({key}, :prefix_length + 1), :delimiter)"
_ENTRY = (f"CASE WHEN {_ENTRY_END} > 0 THEN substr({{key}}, 1, :prefix_length + {_ENTRY_END} + :delimiter_length - 1)"
          " ELSE {key} END")
# Each step seeks the first key at or after where the entry before it ends: a file's successor
# (key || \x01: keys hold no control characters), or a folder's upper bound (its delimiter's last
# character + 1).
_WALK = f"""
WITH RECURSIVE walk(key, steps) AS (
  SELECT (SELECT key FROM objects WHERE bucket_id = :bucket_id AND key >= :prefix AND key < :end
          ORDER BY key LIMIT 1), 0
  UNION ALL
  SELECT (SELECT next.key FROM objects next WHERE next.bucket_id = :bucket_id AND next.key < :end AND next.key >=
            CASE WHEN {_ENTRY_END.format(find="{find}", key="walk.key")} > 0
                 THEN substr(walk.key, 1, :prefix_length + {_ENTRY_END.format(find="{find}", key="walk.key")}
                             + :delimiter_length - 2) || :after_delimiter
                 ELSE walk.key || {{one}} END
          ORDER BY next.key LIMIT 1), steps + 1
  FROM walk WHERE walk.key IS NOT NULL AND steps < :cap
)
SELECT count(key), coalesce(sum(CASE WHEN key < :start THEN 1 ELSE 0 END), 0) FROM walk
"""
_LEVEL_KEYS = """(SELECT key FROM objects WHERE bucket_id = :bucket_id AND key >= :prefix AND key < :end
                 ORDER BY key LIMIT :cap) level"""
# Keys read in order: how many, how many are files of this level (no delimiter past the prefix), and
# of each how many sort before the page. Plain sums: no sort, no hash.
_SCAN = f"""
SELECT count(*), coalesce(sum(CASE WHEN {_ENTRY_END.format(find="{find}", key="key")} = 0 THEN 1 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN key < :start THEN 1 ELSE 0 END), 0)
FROM {_LEVEL_KEYS}
"""
# Where the scan saw folders and read every key: the distinct entries, exactly.
_DISTINCT = f"""
SELECT count(DISTINCT CASE WHEN key < :start THEN {_ENTRY.format(find="{find}", key="key")} END),
       count(DISTINCT {_ENTRY.format(find="{find}", key="key")})
FROM {_LEVEL_KEYS}
"""


class Counts(NamedTuple):
    """Entries before the page and in all; each exact, or a lower bound."""

    before: int
    before_exact: bool
    total: int
    total_exact: bool


@functools.cache
def _statements(dialect: str):
    find, one = ("strpos", "chr(1)") if dialect == "postgresql" else ("instr", "char(1)")
    return text(_WALK.format(find=find, one=one)), text(_SCAN.format(find=find)), text(_DISTINCT.format(find=find))


def count_entries(bucket_id: int, prefix: str, delimiter: str | None, start: str, end: str) -> Counts:
    """The entries at the level of `prefix` (keys from `prefix` to `end`) before `start`, and in
    all. Without a delimiter every key is an entry.

    A short walk first (most levels end within it); then a scan of up to SCAN_CAP keys, which is
    the count where it sees no folder; where it does, the distinct entries of the keys it read if
    it read them all, else a long walk (which skips folders' keys). Past that, lower bounds."""
    dialect = db.engine.dialect.name
    walk, scan, distinct = _statements(dialect)
    delimiter = delimiter or "\x02"  # no key holds a control character: every key is a file of this level
    params = {"bucket_id": bucket_id, "prefix": prefix, "end": end, "start": start,
              "prefix_length": len(prefix), "delimiter": delimiter, "delimiter_length": len(delimiter),
              "after_delimiter": chr(ord(delimiter[-1]) + 1)}

    def walked(cap: int) -> Counts:
        entries, before = db.session.execute(walk, {**params, "cap": cap}).one()
        return Counts(before, before < entries or entries <= cap, entries, entries <= cap)

    counted = walked(SHORT_WALK)
    if counted.total_exact:
        return counted
    keys, files, keys_before = db.session.execute(scan, {**params, "cap": SCAN_CAP}).one()
    read_all = keys < SCAN_CAP
    if files == keys:  # a flat level (as far as read): each key an entry
        return max(counted, Counts(keys_before, read_all or keys_before < keys, keys, read_all))
    if read_all:
        before, entries = db.session.execute(distinct, {**params, "cap": SCAN_CAP}).one()
        return Counts(before, True, entries, True)
    return max(counted, walked(WALK_CAP.get(dialect, WALK_CAP["postgresql"])), key=lambda counts: counts.total)
