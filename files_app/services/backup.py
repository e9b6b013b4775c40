"""Backups that restore anywhere (#24): `flask files backup DEST` and `--verify` (restore: backup_restore.py).

A backup is logical, so that one taken of SQLite and a local disk restores into PostgreSQL and S3 and
the other way: every table of the models' metadata, in foreign-key order, read in ONE snapshot
(PostgreSQL: a REPEATABLE READ, READ ONLY transaction; SQLite: one read transaction, which in WAL mode
is a snapshot), as JSON lines, with the Alembic revision and the counters the rows do not show
(sequences, SQLite's AUTOINCREMENT high-water marks, migration 0014's placement counter); then every
blob the snapshot's rows refer to. DEST holds one backup, the newest:

    manifest.json                what a complete backup holds: written last (temp, fsync, rename)
    metadata-<backup>.jsonl.gz   per table a header {"table", "columns", "types"}, then a JSON array per
                                 row (bytes base64; ints, floats, bools, strings, nulls exact)
    blobs/<blob id>              the bytes of files, trash entries, versions and completed partial uploads
    tmp/                         what a run writes before it is whole; cleared by the next run
    lock                         one backup into a DEST at a time (flock)

A blob is copied to tmp/, fsync'd, then renamed into blobs/: a run killed midway leaves whole blobs and
the previous manifest (still complete: nothing it names is removed before a new manifest replaces it).
The next run reuses each blob already in blobs/ whose size is right (its sha256 from the manifest, or
hashed again if a killed run left it) and copies only the others; blobs no manifest names are removed.
A blob gone between the snapshot and its copy is recorded as gone when no row refers to it any more
(purged meanwhile: restore leaves its row out), else reported as the service's own damage.
"""

from __future__ import annotations

import base64
import fcntl
import gzip
import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import FilesError, StorageError
from ..models import KeptFile, SessionKind, SessionState, StoredObject, UploadSession, db
from ..storage import BlobStore
from ..storage.local import fsync_dir
from .scrub import Pacer

FORMAT = "files-backup/1"
MANIFEST = "manifest.json"
PIECE = 1024 * 1024
BATCH = 1000
WORKERS = 8  # blobs copied at a time: an object store answers each GET and PUT after a round trip
_KINDS = {int: "int", float: "float", str: "str", bytes: "bytes", bool: "bool"}


class BackupError(FilesError):
    code = "backup_failed"


def quiet(_line: str) -> None:
    pass


# --- the rows: one snapshot as JSON lines ----------------------------------------------------------
@dataclass(frozen=True)
class BlobRef:
    """A blob a row of the snapshot refers to: its size and the sha256 its row says (None: a completed
    partial upload, whose row keeps no sha256), and where it belongs, for messages."""

    id: str
    size: int
    sha256: str | None
    where: str


@dataclass
class Snapshot:
    revision: str
    counters: dict[str, Any]
    tables: dict[str, int] = field(default_factory=dict)
    blobs: dict[str, BlobRef] = field(default_factory=dict)
    active_sessions: int = 0


_JSON = json.JSONEncoder(separators=(",", ":")).encode
# Only these kinds change on their way to JSON and back (ints, strings and nulls are JSON's own).
_ENCODE = {"bytes": lambda value: base64.b64encode(value).decode(), "float": float}
_DECODE = {"bytes": base64.b64decode, "float": float, "bool": bool}


def _line(value: Any) -> bytes:
    return _JSON(value).encode() + b"\n"


def _converter(kinds: list[str], functions: dict[str, Callable]) -> Callable[[Any], list]:
    """A row's values as a list, each value of a kind in `functions` (not None) passed through it."""
    special = [(index, functions[kind]) for index, kind in enumerate(kinds) if kind in functions]

    def convert(row) -> list:
        values = list(row)
        for index, function in special:
            if values[index] is not None:
                values[index] = function(values[index])
        return values
    return convert


def row_decoder(header: dict[str, Any]) -> Callable[[list], dict[str, Any]]:
    """For a table's header in the dump: its encoded rows as {column: value}, values as they were read."""
    convert, columns = _converter(header["types"], _DECODE), header["columns"]
    return lambda values: dict(zip(columns, convert(values), strict=True))


def _dump(path: Path) -> Snapshot:
    """Write every table's rows to `path` (gzip), read with the revision and the counters in one snapshot."""
    with db.engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:  # the driver opens no transaction for reads: without BEGIN each SELECT would see another moment
            connection.exec_driver_sql("BEGIN")
        revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar_one()
        snapshot = Snapshot(revision, _read_counters(connection))
        buckets: dict[int, str] = {}
        with open(path, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
                for table in db.Model.metadata.sorted_tables:
                    kinds = [_KINDS[column.type.python_type] for column in table.columns]
                    out.write(_line({"table": table.name, "columns": [c.name for c in table.columns], "types": kinds}))
                    encode, noting, count = _converter(kinds, _ENCODE), table.name in _NOTED, 0
                    query = sa.select(table).order_by(*table.primary_key.columns).execution_options(yield_per=BATCH)
                    for rows in connection.execute(query).partitions():
                        out.write(b"".join(_line(encode(row)) for row in rows))
                        count += len(rows)
                        for row in rows if noting else ():
                            _note_blob(table.name, row._mapping, snapshot, buckets)
                    snapshot.tables[table.name] = count
            raw.flush()
            os.fsync(raw.fileno())
        connection.rollback()
    return snapshot


_NOTED = ("buckets", "objects", "kept_files", "upload_sessions")


def _note_blob(table: str, row, snapshot: Snapshot, buckets: dict[int, str]) -> None:
    if table == "buckets":
        buckets[row["id"]] = row["name"]
    elif table in ("objects", "kept_files") and row["inline_data"] is None:
        where = f"{buckets.get(row['bucket_id'], '?')}/{row['key']}"
        where += "" if table == "objects" else f" ({row['kind']} entry {row['id']})"
        snapshot.blobs[row["blob_id"]] = BlobRef(row["blob_id"], row["size"], row["sha256"], where)
    elif table == "upload_sessions" and row["state"] == SessionState.ACTIVE:
        snapshot.active_sessions += 1
    elif table == "upload_sessions" and row["kind"] == SessionKind.PARTIAL:  # a complete part, awaiting its final
        size = row["size"] if row["size"] is not None else row["offset"]
        snapshot.blobs[row["id"]] = BlobRef(row["id"], size, None, f"completed partial upload {row['id']}")


def serial_columns(tables: Iterator[str] | None = None) -> Iterator[tuple[str, str]]:
    """(table, column) of each table whose primary key is one integer: a sequence or rowid counts its ids."""
    wanted = None if tables is None else set(tables)
    for table in db.Model.metadata.sorted_tables:
        key = list(table.primary_key.columns)
        if len(key) == 1 and key[0].type.python_type is int and (wanted is None or table.name in wanted):
            yield table.name, key[0].name


def pg_sequence(connection, table: str, column: str) -> str | None:
    return connection.execute(sa.text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table, "c": column}).scalar()


def _pg_last(connection, sequence: str) -> int:
    last, called = connection.exec_driver_sql(f"SELECT last_value, is_called FROM {sequence}").one()
    return int(last) if called else int(last) - 1


def _read_counters(connection) -> dict[str, Any]:
    """The last value each id counter and the placement counter handed out: may be past the rows' largest
    (a deleted user's id is never used again), so restore sets them from here, not from max(id)."""
    sequences: dict[str, int] = {}
    placement = 0
    if connection.dialect.name == "postgresql":
        for table, column in serial_columns():
            if name := pg_sequence(connection, table, column):
                sequences[table] = _pg_last(connection, name)
        if connection.exec_driver_sql("SELECT to_regclass('object_placements')").scalar():
            placement = _pg_last(connection, "object_placements")
    else:
        names = set(connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
        if "sqlite_sequence" in names:
            sequences = {name: int(seq) for name, seq in connection.exec_driver_sql(
                "SELECT name, seq FROM sqlite_sequence")}
        if "placement_clock" in names:
            placement = int(connection.exec_driver_sql("SELECT value FROM placement_clock").scalar() or 0)
    return {"sequences": sequences, "placement": placement}


def dump_lines(path: Path) -> Iterator[dict | list]:
    """The metadata file's lines: a table's header (a dict), then its rows (lists, still encoded)."""
    with gzip.open(path, "rb") as lines:
        for line in lines:
            yield json.loads(line)


def dump_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows, decoded (for tests and for a person looking into a backup)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for item in dump_lines(path):
        if isinstance(item, dict):
            decoded, rows = row_decoder(item), tables.setdefault(item["table"], [])
        else:
            rows.append(decoded(item))
    return tables


# --- files in DEST --------------------------------------------------------------------------------------
class SharedPacer:
    def __init__(self, rate: float | None):
        self._pacer, self._lock = Pacer(rate), threading.Lock()

    def took(self, size: int) -> None:
        if self._pacer.rate:
            with self._lock:
                self._pacer.took(size)


def hash_file(path: Path, pacer: SharedPacer | None = None) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as stream:
        while chunk := stream.read(PIECE):
            digest.update(chunk)
            size += len(chunk)
            if pacer is not None:
                pacer.took(len(chunk))
    return size, digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    draft = path.with_name(f".{path.name}.draft")
    with open(draft, "wb") as out:
        out.write(json.dumps(value, indent=1, sort_keys=True).encode())
        out.flush()
        os.fsync(out.fileno())
    os.replace(draft, path)
    fsync_dir(path.parent)


def load_manifest(where: Path) -> dict[str, Any]:
    path = Path(where) / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        if not Path(where).is_dir():
            raise BackupError(f"there is no backup at {where} (no such directory)") from None
        raise BackupError(f"{where} holds no complete backup (no {MANIFEST}): a backup that never finished "
                          "writes none; run `flask files backup` into it again") from None
    except ValueError as error:
        raise BackupError(f"{path} is not a backup's manifest: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a manifest this code reads (format {FORMAT})")
    return manifest


class _Lock:
    """One backup into a DEST at a time; the kernel lets go of a killed holder's lock."""

    def __init__(self, dest: Path):
        self._fd = os.open(dest / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise BackupError(f"another backup is writing into {dest} right now") from None

    def release(self) -> None:
        os.close(self._fd)


def _prepare(dest: Path) -> _Lock:
    ours = {MANIFEST, "blobs", "tmp", "lock"}
    if dest.is_dir() and any(dest.iterdir()) and not ours & {entry.name for entry in dest.iterdir()}:
        raise BackupError(f"{dest} holds other files: back up into a new or empty directory, or one a "
                          "backup made")
    dest.mkdir(parents=True, exist_ok=True)
    lock = _Lock(dest)
    shutil.rmtree(dest / "tmp", ignore_errors=True)  # a killed run's half-written files: never trusted
    (dest / "tmp").mkdir()
    (dest / "blobs").mkdir(exist_ok=True)
    return lock


# --- backup ------------------------------------------------------------------------------------------------
@dataclass
class BackupReport:
    backup: str
    rows: int
    tables: int
    blobs: int
    copied: int = 0
    copied_bytes: int = 0
    held: int = 0
    removed: int = 0
    gone: dict[str, str] = field(default_factory=dict)  # deleted after the snapshot: fine
    problems: list[str] = field(default_factory=list)  # the service's own damage, found on the way
    active_sessions: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def take(store: BlobStore, dest: Path, *, rate: float | None = None,
         say: Callable[[str], None] = quiet) -> BackupReport:
    started, dest = time.monotonic(), Path(dest)
    lock = _prepare(dest)
    try:
        try:
            previous = load_manifest(dest)["blobs"] if (dest / MANIFEST).exists() else {}
        except BackupError:
            previous = {}
        backup_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        name = f"metadata-{backup_id}.jsonl.gz"
        snapshot = _dump(dest / "tmp" / name)
        report = BackupReport(backup_id, sum(snapshot.tables.values()), len(snapshot.tables), len(snapshot.blobs),
                              active_sessions=snapshot.active_sessions)
        say(f"snapshot: {report.rows} rows in {report.tables} tables, schema {snapshot.revision}, "
            f"{report.blobs} blobs referenced ({time.monotonic() - started:.1f} s)")
        copied = _copy_blobs(store, dest, snapshot.blobs, previous, SharedPacer(rate), report)
        fsync_dir(dest / "blobs")
        os.replace(dest / "tmp" / name, dest / name)
        _write_json(dest / MANIFEST, {
            "format": FORMAT, "backup": backup_id, "taken_at": time.time(),
            "source": {"database": db.engine.dialect.name, "store": type(store).__name__},
            "revision": snapshot.revision, "counters": snapshot.counters,
            "metadata": {"file": name, "sha256": hash_file(dest / name)[1], "tables": snapshot.tables},
            "blobs": copied, "gone": report.gone, "problems": report.problems,
        })
        report.removed = _prune(dest, name, copied)
        report.seconds = time.monotonic() - started
        return report
    finally:
        lock.release()


def _copy_blobs(store: BlobStore, dest: Path, refs: dict[str, BlobRef], previous: dict[str, list],
                pacer: SharedPacer, report: BackupReport) -> dict[str, list]:
    """Each referenced blob into blobs/ (or found there); {id: [size, sha256]} of those the backup holds."""
    def one(ref: BlobRef) -> tuple[BlobRef, str, int, str | None]:
        final = dest / "blobs" / ref.id
        if _size(final) == ref.size:
            known = previous.get(ref.id)
            if known and known[0] == ref.size:
                return ref, "held", ref.size, known[1]
            return ref, "held", *hash_file(final, pacer)  # whole (it was renamed), left by a killed run
        draft, digest, size = dest / "tmp" / ref.id, hashlib.sha256(), 0
        try:
            with store.open_blob(ref.id) as reader, open(draft, "wb") as out:
                while chunk := reader.read(PIECE):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    pacer.took(len(chunk))
                out.flush()
                os.fsync(out.fileno())
        except StorageError:
            draft.unlink(missing_ok=True)
            if store.blob_size(ref.id) is None:
                return ref, "absent", 0, None
            raise
        os.replace(draft, final)
        return ref, "copied", size, digest.hexdigest()

    held: dict[str, list] = {}
    absent: list[BlobRef] = []
    with ThreadPoolExecutor(WORKERS) as pool:
        for ref, outcome, size, sha256 in pool.map(one, sorted(refs.values(), key=lambda ref: ref.id)):
            if outcome == "absent":
                absent.append(ref)
                continue
            held[ref.id] = [size, sha256]
            if outcome == "copied":
                report.copied += 1
                report.copied_bytes += size
            else:
                report.held += 1
            if ref.sha256 is not None and (size, sha256) != (ref.size, ref.sha256):
                report.problems.append(f"damaged: {ref.where}: blob {ref.id} holds {size} bytes with sha256 "
                                       f"{sha256}, its row says {ref.size} bytes with sha256 {ref.sha256}")
    for ref in absent:
        if _still_referenced(ref.id):
            report.problems.append(f"missing: {ref.where}: its blob {ref.id} is not in the store")
        else:
            report.gone[ref.id] = ref.where
    return held


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _still_referenced(blob_id: str) -> bool:
    """Whether a row refers to the blob now: else it went with its row after the snapshot (a purge)."""
    with db.engine.connect() as connection:
        return any(connection.execute(sa.select(sa.literal(1)).where(*conditions).limit(1)).first() for conditions in (
            [StoredObject.blob_id == blob_id], [KeptFile.blob_id == blob_id],
            [UploadSession.id == blob_id, UploadSession.kind == SessionKind.PARTIAL,
             UploadSession.state == SessionState.COMPLETED]))


def _prune(dest: Path, metadata: str, blobs: dict[str, list]) -> int:
    """Remove what the new manifest does not name (after it is in place: the old one is gone)."""
    for old in dest.glob("metadata-*.jsonl.gz"):
        if old.name != metadata:
            old.unlink()
    removed = 0
    for path in (dest / "blobs").iterdir():
        if path.name not in blobs:
            path.unlink()
            removed += 1
    return removed


# --- verify ------------------------------------------------------------------------------------------------
@dataclass
class VerifyReport:
    backup: str
    rows: int = 0
    blobs: int = 0
    bytes: int = 0
    unlisted: int = 0  # files in blobs/ no manifest names (a killed run's): harmless
    findings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def verify(dest: Path, *, rate: float | None = None) -> VerifyReport:
    """Re-read the whole backup against its manifest: the metadata file (sha256, rows per table) and
    every blob (size, sha256)."""
    dest = Path(dest)
    manifest = load_manifest(dest)
    report, pacer = VerifyReport(manifest["backup"]), SharedPacer(rate)
    metadata = dest / manifest["metadata"]["file"]
    if not metadata.exists():
        report.findings.append(f"missing: {metadata.name}, the rows")
    elif hash_file(metadata, pacer)[1] != manifest["metadata"]["sha256"]:
        report.findings.append(f"corrupt: {metadata.name}: its sha256 is not the manifest's")
    else:
        counted: dict[str, int] = {}
        try:
            for item in dump_lines(metadata):
                if isinstance(item, dict):
                    table = item["table"]
                    counted[table] = 0
                else:
                    counted[table] += 1
        except (OSError, EOFError, ValueError, LookupError, NameError) as error:
            report.findings.append(f"corrupt: {metadata.name}: {error}")
        if counted and counted != manifest["metadata"]["tables"]:
            report.findings.append(f"corrupt: {metadata.name}: rows per table {counted}, the manifest says "
                                   f"{manifest['metadata']['tables']}")
        report.rows = sum(counted.values())

    def one(item: tuple[str, list]) -> str | None:
        blob_id, (size, sha256) = item
        path = dest / "blobs" / blob_id
        if not path.exists():
            return f"missing: blobs/{blob_id}"
        found = hash_file(path, pacer)
        if found != (size, sha256):
            return f"corrupt: blobs/{blob_id}: {found[0]} bytes with sha256 {found[1]}, the manifest says {size} " \
                   f"bytes with sha256 {sha256}"
        return None

    with ThreadPoolExecutor(WORKERS) as pool:
        for problem in pool.map(one, sorted(manifest["blobs"].items())):
            if problem:
                report.findings.append(problem)
    report.blobs = len(manifest["blobs"])
    report.bytes = sum(size for size, _ in manifest["blobs"].values())
    held = (dest / "blobs").iterdir() if (dest / "blobs").is_dir() else ()
    report.unlisted = sum(1 for path in held if path.name not in manifest["blobs"])
    return report
