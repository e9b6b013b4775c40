"""`flask files restore SRC` (#24): a backup (services/backup.py) into an EMPTY service of either
configuration. Blobs first (one already in the store with the right size is kept: a restore killed
midway is run again and goes on), then the schema at the backup's revision in one transaction, then
every row in one transaction with triggers off (rows keep `placed`; SQLite's search index is rebuilt
after), the id and placement counters set past what the source handed out, usage recounted where rows
were left out; then the newest schema. A restore killed before its rows commit leaves the database
empty, so the next run restores; one killed after is complete, and the next run is refused (not empty).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..models import SessionState, db
from ..schema import alembic_config
from ..storage import BlobStore
from ..storage.base import is_id
from . import consistency
from .backup import (
    BATCH,
    WORKERS,
    BackupError,
    SharedPacer,
    dump_lines,
    hash_file,
    load_manifest,
    pg_sequence,
    quiet,
    row_decoder,
    serial_columns,
)

# Where a row names the blob it needs (a file, trash entry or version; a completed partial upload).
_BLOB_COLUMN = {"objects": "blob_id", "kept_files": "blob_id", "upload_sessions": "id"}


@dataclass
class RestoreReport:
    backup: str
    revision: str
    put: int = 0
    found: int = 0
    rows: int = 0
    tables: int = 0
    left_out: list[str] = field(default_factory=list)
    sessions_reset: int = 0
    mended: list = field(default_factory=list)
    seconds: float = 0.0


def holding() -> list[str]:
    """The model tables of the target that hold rows (a fresh schema holds none)."""
    with db.engine.connect() as connection:
        return _holding(connection)


def _holding(connection) -> list[str]:
    present = set(sa.inspect(connection).get_table_names())
    return [table.name for table in db.Model.metadata.sorted_tables if table.name in present
            and connection.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()]


def restore(store: BlobStore, src: Path, *, rate: float | None = None,
            say: Callable[[str], None] = quiet) -> RestoreReport:
    started, src = time.monotonic(), Path(src)
    manifest = load_manifest(src)
    metadata = src / manifest["metadata"]["file"]
    if not metadata.exists() or hash_file(metadata)[1] != manifest["metadata"]["sha256"]:
        raise BackupError(f"{metadata.name} in {src} is missing or damaged (not the manifest's sha256): "
                          "nothing was restored")
    script = _script()
    try:
        script.get_revision(manifest["revision"])
    except Exception:  # noqa: BLE001 - alembic's errors for an unknown revision vary
        raise BackupError(f"the backup's schema {manifest['revision']} is not one this code knows (its newest is "
                          f"{script.get_current_head()}): restore with the code that took it") from None
    if tables := holding():
        raise BackupError(f"the target service is not empty ({', '.join(tables)} hold rows): restore only into "
                          "an empty service (a new database, and an empty data dir or bucket). A restore that "
                          "was stopped after its rows went in (one transaction) has nothing left to do")
    report = RestoreReport(manifest["backup"], manifest["revision"])
    store.ensure_ready()
    _put_blobs(store, src, manifest["blobs"], SharedPacer(rate), report)
    say(f"blobs: {report.put} put into the store, {report.found} already there")
    _migrate(manifest["revision"])
    _load(manifest, metadata, report)
    _migrate("heads")
    report.seconds = time.monotonic() - started
    return report


class _Hashing:
    """A source for put_blob_stream that hashes what is read (read only: a managed transfer then reads
    it in order)."""

    def __init__(self, stream, pacer: SharedPacer):
        self._stream, self._pacer = stream, pacer
        self.digest, self.size = hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        self._pacer.took(len(data))
        return data


def _put_blobs(store: BlobStore, src: Path, blobs: dict[str, list], pacer: SharedPacer,
               report: RestoreReport) -> None:
    def one(item: tuple[str, list]) -> str | None:
        blob_id, (size, sha256) = item
        if not is_id(blob_id):
            return f"{blob_id} (not a blob id)"
        if store.blob_size(blob_id) == size:
            return "found"
        try:
            with open(src / "blobs" / blob_id, "rb") as stream:
                source = _Hashing(stream, pacer)
                store.put_blob_stream(blob_id, source)
        except FileNotFoundError:
            return f"{blob_id} (missing from the backup)"
        if (source.size, source.digest.hexdigest()) != (size, sha256):
            store.delete_blob(blob_id)
            return f"{blob_id} (its bytes are not the manifest's)"
        return None

    damaged = []
    with ThreadPoolExecutor(WORKERS) as pool:
        for outcome in pool.map(one, sorted(blobs.items())):
            if outcome == "found":
                report.found += 1
            elif outcome:
                damaged.append(outcome)
            else:
                report.put += 1
    if damaged:
        raise BackupError(f"{len(damaged)} blob(s) of the backup are damaged: {', '.join(damaged[:5])}; nothing "
                          "was restored to the database (`flask files backup --verify` lists them)")


def _script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def _migrate(revision: str) -> None:
    """Bring the target's schema to `revision` (a new database: from nothing; an empty one made by a
    newer code's init-db: down, which an empty database allows)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config, script = alembic_config(), _script()
    target = script.get_current_head() if revision == "heads" else revision
    with db.engine.begin() as connection:
        if connection.dialect.name == "sqlite":  # DDL too in one transaction: a kill leaves no half schema
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        current = MigrationContext.configure(connection).get_current_revision()
        if current == target:
            return
        config.attributes["connection"] = connection
        if current is not None and target in {step.revision for step in script.iterate_revisions(current, "base")}:
            command.downgrade(config, target)
        else:
            command.upgrade(config, target)


def _load(manifest: dict[str, Any], metadata: Path, report: RestoreReport) -> None:
    """Every row, in one transaction that the counters' recount commits; rolled back whole on any error."""
    db.session.remove()
    connection = db.session.connection()
    sqlite = connection.dialect.name == "sqlite"
    try:
        if sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now: nobody writes beside us
        tables = list(manifest["metadata"]["tables"])
        triggers = _triggers_off(connection, tables)  # (PostgreSQL: each table locked until the commit)
        if holding := _holding(connection):
            raise BackupError(f"the target service is not empty ({', '.join(holding)} hold rows)")
        _insert_rows(connection, metadata, manifest.get("gone", {}), report)
        _set_counters(connection, manifest["counters"], tables)
        _triggers_on(connection, tables, triggers)
        # Left-out rows were counted in their bucket's and owner's usage: recount, and commit it all.
        report.mended = consistency.repair()
    except BaseException:
        db.session.rollback()
        raise
    finally:
        db.session.remove()


def _triggers_off(connection, tables: list[str]) -> list[tuple[str, str]]:
    """Rows go back as they were: migration 0014's trigger would give each a new `placed`, 0006's would
    index keys one by one. SQLite: dropped (and made again below, in the same transaction)."""
    if connection.dialect.name == "sqlite":
        saved = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all()
        for name, _sql in saved:
            connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
        return saved
    for table in tables:
        connection.exec_driver_sql(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
    return []


def _triggers_on(connection, tables: list[str], saved: list[tuple[str, str]]) -> None:
    if connection.dialect.name != "sqlite":
        for table in tables:
            connection.exec_driver_sql(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')
        return
    for _name, sql in saved:
        connection.exec_driver_sql(sql)
    for name in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table' "
                                           "AND sql LIKE 'CREATE VIRTUAL TABLE%USING fts5%'").scalars():
        connection.exec_driver_sql(f"INSERT INTO \"{name}\"(\"{name}\") VALUES ('rebuild')")


def _insert_rows(connection, metadata: Path, gone: dict[str, str], report: RestoreReport) -> None:
    """The dump's rows in its (foreign-key) order and batches. Left out: a file, trash entry or version,
    or a completed partial upload, whose blob was purged after the snapshot began (`gone`), and the rows
    that refer to one left out (a thumbnail)."""
    referenced = {(fk.column.table.name, fk.column.name) for table in db.Model.metadata.sorted_tables
                  for fk in table.foreign_keys}
    parents = {table.name: [(fk.parent.name, (fk.column.table.name, fk.column.name)) for fk in table.foreign_keys]
               for table in db.Model.metadata.sorted_tables}
    skipped: dict[tuple[str, str], set] = {}
    batch: list[dict[str, Any]] = []
    target = header = decoded = None

    def flush() -> None:
        if batch:  # straight to the driver: every value is already of its column's Python type
            connection.exec_driver_sql(target, [tuple(row.values()) for row in batch])
            report.rows += len(batch)
            batch.clear()

    for item in dump_lines(metadata):
        if isinstance(item, dict):
            flush()
            header, decoded, report.tables = item, row_decoder(item), report.tables + 1
            target = _insert_statement(connection, header["table"], header["columns"])
            continue
        name = header["table"]
        row = decoded(item)
        blob = row.get(_BLOB_COLUMN[name]) if name in _BLOB_COLUMN and row.get("inline_data") is None else None
        if blob in gone or any(
                row.get(column) in skipped.get(parent, ()) for column, parent in parents.get(name, ())):
            if blob in gone:
                report.left_out.append(gone[blob])
            for key in referenced:
                if key[0] == name:
                    skipped.setdefault(key, set()).add(row.get(key[1]))
            continue
        if name == "upload_sessions":
            report.sessions_reset += _fresh_session(row)
        batch.append(row)
        if len(batch) >= BATCH:
            flush()
    flush()


def _insert_statement(connection, table: str, columns: list[str]) -> str:
    quote, marker = connection.dialect.identifier_preparer.quote, "?" if connection.dialect.paramstyle == "qmark" \
        else "%s"
    return (f"INSERT INTO {quote(table)} ({', '.join(quote(column) for column in columns)}) "
            f"VALUES ({', '.join([marker] * len(columns))})")


def _fresh_session(row: dict[str, Any]) -> int:
    """An upload in progress loses its bytes (they are not in a backup): it starts again at offset 0,
    as when it was made, and its client resends (the offset is the truth). No lease survives."""
    row["lease_token"], row["lease_expires_at"] = None, 0.0
    if row.get("state") != SessionState.ACTIVE:
        return 0
    row.update(offset=0, hash_state=None, store_state=None)
    return 1


def _set_counters(connection, counters: dict[str, Any], tables: list[str]) -> None:
    """Each id counter at the larger of what the source had handed out and the largest id restored; the
    placement counter likewise (new rows then sort after every restored one)."""
    postgresql = connection.dialect.name == "postgresql"
    sequences = counters.get("sequences", {})
    autoincrement = set() if postgresql else set(connection.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE '%AUTOINCREMENT%'").scalars())
    for table, column in serial_columns(tables):
        value = max(int(sequences.get(table, 0)),
                    connection.exec_driver_sql(f'SELECT max("{column}") FROM "{table}"').scalar() or 0)
        if postgresql:
            if name := pg_sequence(connection, table, column):
                connection.execute(sa.text("SELECT setval(:s, :v, :called)"),
                                   {"s": name, "v": max(value, 1), "called": value > 0})
        elif table in autoincrement and value:
            if not connection.execute(sa.text("UPDATE sqlite_sequence SET seq = :v WHERE name = :t"),
                                      {"v": value, "t": table}).rowcount:
                connection.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :v)"),
                                   {"v": value, "t": table})
    if "objects" not in tables:
        return
    placed = max(int(counters.get("placement", 0)),
                 connection.exec_driver_sql("SELECT max(placed) FROM objects").scalar() or 0)
    if postgresql:
        connection.execute(sa.text("SELECT setval('object_placements', :v, :called)"),
                           {"v": max(placed, 1), "called": placed > 0})
    else:
        connection.execute(sa.text("UPDATE placement_clock SET value = :v"), {"v": placed})
