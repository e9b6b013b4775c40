"""Backups (files_app/services/backup.py) in one process, on SQLite and the local disk: rows come back
exactly (types, ids, `placed`, id counters past the largest id, the search index) with no drift; a file
purged between the snapshot and its copy is left out and counted out; the service's own damage is
reported; --verify finds a flipped byte; restore refuses a target with rows and is all or nothing.
The cross-database restores, a backup under load and the SIGKILLs are in tests/e2e/test_backup.py."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from files_app import create_app
from files_app.models import db
from files_app.schema import upgrade_database
from files_app.services import backup as backups
from files_app.services import backup_restore as restoring
from files_app.services import consistency
from tests.helpers import bearer, make_token, sha256


def _app(data_dir: Path, migrated: Path | None = None, **settings):
    data_dir.mkdir(parents=True, exist_ok=True)
    if migrated is not None:
        shutil.copyfile(migrated, data_dir / "files.db")
    app = create_app({"TESTING": True, "FILES_DATA_DIR": str(data_dir), "FILES_DATABASE_URL": "", **settings})
    if migrated is not None:
        upgrade_database(app)
    return app


def _dispose(app) -> None:
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def make_source(tmp_path, migrated_sqlite):
    made = []

    def make(**settings):
        made.append(_app(tmp_path / "src", migrated_sqlite, **settings))
        return made[-1]

    yield make
    for app in made:
        _dispose(app)


@pytest.fixture
def target(tmp_path):
    app = _app(tmp_path / "dst")  # no database yet: a new service
    yield app
    _dispose(app)


def picture() -> bytes:
    """A PNG of noise, past FILES_INLINE_MAX: a blob with thumbnails."""
    out = io.BytesIO()
    Image.frombytes("RGB", (160, 160), os.urandom(160 * 160 * 3)).save(out, "PNG")
    return out.getvalue()


def fill(app, everything: bool = False) -> tuple[dict, dict[str, bytes]]:
    """Inline and blob files, a version, a trash entry, a thumbnail; with `everything` a row in every table:
    people (one deleted), tokens, a grant, a share, a quota, a hook, an upload in progress, OpenAI files,
    uploads and parts, sign-ins. (the admin's headers, {key: bytes} of bucket b)"""
    admin = bearer(make_token(app.test_cli_runner(), "admin"))
    client = app.test_client()
    assert client.post("/v1/hooks", json={"url": "http://127.0.0.1:9/hook", "actions": ["*"]},
                       headers=admin).status_code == 201
    files = {"small.txt": b"inline bytes", "big.bin": os.urandom(100_000), "pic.png": picture(),
             "dir/deep.bin": os.urandom(70_000)}
    for key, data in files.items():
        assert client.put(f"/v1/files/b/{key}", data=data, headers=admin).status_code == 200
    assert client.put("/v1/files/b/big.bin", data=b"v2" * 40_000, headers=admin).status_code == 200  # a version
    files["big.bin"] = b"v2" * 40_000
    assert client.put("/v1/files/b/gone.bin", data=os.urandom(80_000), headers=admin).status_code == 200
    assert client.delete("/v1/files/b/gone.bin", headers=admin).status_code in (200, 204)  # the trash
    assert client.get("/v1/thumbnails/b/pic.png?size=128", headers=admin).status_code == 200
    if not everything:
        return admin, files
    for name in ("alice", "bob"):
        assert client.post("/v1/users", json={"name": name, "password": "correct horse battery"},
                           headers=admin).status_code == 201
    assert client.delete("/v1/users/bob", headers=admin).status_code in (200, 204)  # bob's id is never reused
    assert client.put("/v1/grants/b/alice", json={"level": "write"}, headers=admin).status_code == 200
    assert client.post("/v1/shares", json={"bucket": "b", "key": "small.txt", "password": "pw"},
                       headers=admin).status_code == 201
    assert client.put("/v1/quotas/b", json={"max_bytes": 10**9, "max_files": 1000}, headers=admin).status_code == 200
    session = client.post("/v1/files", json={"bucket": "b", "key": "partly.bin", "size": 200_000},
                          headers=admin).get_json()
    answer = client.post(f"/v1/files/session:{session['id']}", data=os.urandom(100_000), headers=admin).get_json()
    assert answer["offset"] == 100_000
    # The OpenAI API: a file (inline), and an upload with one part (a completed partial upload's blob).
    assert client.post("/v1/openai/v1/files", data={"purpose": "assistants", "file": (io.BytesIO(b"{}"), "a.json")},
                       headers=admin).status_code == 200
    upload = client.post("/v1/openai/v1/uploads", json={"filename": "u.bin", "purpose": "batch", "bytes": 140_000,
                                                         "mime_type": "application/octet-stream"}, headers=admin)
    part = client.post(f"/v1/openai/v1/uploads/{upload.get_json()['id']}/parts",
                       data={"data": (io.BytesIO(os.urandom(70_000)), "part")}, headers=admin)
    assert part.status_code == 200, part.get_json()
    with app.app_context():  # a signed-in browser and a failed sign-in
        accounts = app.extensions["files"].accounts
        assert accounts.sign_in("alice", "wrong", "127.0.0.1") is None
        assert accounts.sign_in("alice", "correct horse battery", "127.0.0.1", "test") is not None
    return admin, files


def referenced_blobs(rows: dict[str, list[dict]]) -> set[str]:
    """Files', trash entries' and versions' blobs (not inline), and completed partial uploads' (an OpenAI part)."""
    return ({row["blob_id"] for name in ("objects", "kept_files") for row in rows[name] if row["inline_data"] is None}
            | {row["id"] for row in rows["upload_sessions"] if (row["kind"], row["state"]) == ("partial", "completed")})


def _referrers(rows: dict[str, list[dict]], blobs: set[str]) -> set[str]:
    return {name for name in ("objects", "kept_files") for row in rows[name] if row["blob_id"] in blobs} | {
        "upload_sessions" for row in rows["upload_sessions"] if row["id"] in blobs}


def table_rows(app) -> dict[str, list[dict]]:
    with app.app_context():
        return {table.name: [dict(row._mapping) for row in db.session.execute(
            db.select(table).order_by(*table.primary_key.columns))] for table in db.Model.metadata.sorted_tables}


def expected_rows(dest: Path, left_out: set[str] = frozenset()) -> dict[str, list[dict]]:
    """The backup's rows as a restore makes them: uploads in progress start again at offset 0, without a
    lease; rows whose blob is `left_out` (and their thumbnails) are not there."""
    rows = backups.dump_rows(dest / backups.load_manifest(dest)["metadata"]["file"])
    gone_ids = {row["id"] for row in rows["objects"] if row["blob_id"] in left_out}
    rows["objects"] = [row for row in rows["objects"] if row["id"] not in gone_ids]
    rows["thumbnails"] = [row for row in rows["thumbnails"] if row["object_id"] not in gone_ids]
    rows["kept_files"] = [row for row in rows["kept_files"] if row["blob_id"] not in left_out]
    for row in rows["upload_sessions"]:
        row.update(lease_token=None, lease_expires_at=0.0)
        if row["state"] == "active":
            row.update(offset=0, hash_state=None, store_state=None)
    return rows


def without_counters(rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Usage counters are recounted after rows are left out: compare the rest."""
    counted = {"buckets": ("object_count", "total_bytes", "updated_at", "kept_files", "kept_bytes"),
               "owner_usage": ("files", "bytes", "kept_files", "kept_bytes")}
    return {name: [{column: value for column, value in row.items() if column not in counted.get(name, ())}
                   for row in table] for name, table in rows.items()}


def test_a_restore_gives_back_every_row_exactly_and_the_counters_go_on(make_source, target, tmp_path):
    source = make_source()
    admin, files = fill(source, everything=True)
    dest = tmp_path / "backup"
    with source.app_context():
        report = backups.take(source.extensions["files"].store, dest)
    rows = table_rows(source)
    assert all(rows.values()), [name for name in rows if not rows[name]]  # every table has rows to restore
    blobs = referenced_blobs(rows)
    assert report.ok and report.copied == report.blobs == len(blobs) and report.active_sessions == 1, report
    assert {"objects", "kept_files", "upload_sessions"} == {referrer for referrer in _referrers(rows, blobs)}
    assert set(backups.load_manifest(dest)["blobs"]) == set(blobs) == {path.name for path in (dest / "blobs").iterdir()}

    with target.app_context():
        restored = restoring.restore(target.extensions["files"].store, dest)
        assert restored.put == len(blobs) and restored.left_out == [] and restored.sessions_reset == 1
        assert restored.mended == [] and consistency.check() == []
    assert table_rows(target) == expected_rows(dest)

    client = target.test_client()
    for key, data in files.items():
        answer = client.get(f"/v1/content/b/{key}", headers=admin)
        assert answer.status_code == 200 and sha256(answer.data) == sha256(data), key
    found = client.get("/v1/files/b?q=deep", headers=admin).get_json()["data"]
    assert [entry["key"] for entry in found] == ["dir/deep.bin"]  # the search index was rebuilt
    # Counters go on past what the source handed out: bob's id is not given again, new rows place later.
    assert client.post("/v1/users", json={"name": "carol", "password": "correct horse battery"},
                       headers=admin).status_code == 201
    assert client.put("/v1/files/b/new.bin", data=os.urandom(70_000), headers=admin).status_code == 200
    after = table_rows(target)
    users = {row["username"]: row["id"] for row in after["users"]}
    assert users["carol"] == max(row["id"] for row in rows["users"]) + 2  # alice, bob (deleted), carol
    placed = {row["key"]: row["placed"] for row in after["objects"]}
    assert placed["new.bin"] > max(row["placed"] for row in rows["objects"])
    # The upload in progress starts again at 0 and completes.
    session = next(row for row in after["upload_sessions"] if row["key"] == "partly.bin")
    state = client.get(f"/v1/files/session:{session['id']}", headers=admin).get_json()
    assert state["offset"] == 0
    data = os.urandom(200_000)
    done = client.post(f"/v1/files/session:{session['id']}", data=data, headers=admin).get_json()
    assert done["sha256"] == sha256(data)
    with target.app_context():
        assert consistency.check() == []


def test_a_file_purged_between_the_snapshot_and_its_copy_is_left_out_and_counted_out(make_source, target,
                                                                                    tmp_path):
    source = make_source(FILES_TRASH_DAYS=0)  # a delete frees the blob at once
    admin, files = fill(source)
    pic = next(row for row in table_rows(source)["objects"] if row["key"] == "pic.png")
    client = source.test_client()

    def say(line: str) -> None:
        if line.startswith("snapshot:"):  # after the snapshot, before the blobs are copied
            assert client.delete("/v1/files/b/pic.png", headers=admin).status_code in (200, 204)

    dest = tmp_path / "backup"
    with source.app_context():
        report = backups.take(source.extensions["files"].store, dest, say=say)
    assert report.ok and report.gone == {pic["blob_id"]: "b/pic.png"}, report
    assert backups.load_manifest(dest)["gone"] == {pic["blob_id"]: "b/pic.png"}
    assert backups.verify(dest).ok

    with target.app_context():
        restored = restoring.restore(target.extensions["files"].store, dest)
        assert restored.left_out == ["b/pic.png"]
        assert {(drift.kind, drift.counter) for drift in restored.mended} >= {("bucket", "files"), ("bucket", "bytes")}
        assert consistency.check() == []
    assert without_counters(table_rows(target)) == without_counters(expected_rows(dest, {pic["blob_id"]}))
    listed = target.test_client().get("/v1/files/b", headers=admin).get_json()["data"]
    assert "pic.png" not in {entry["key"] for entry in listed} and "small.txt" in {entry["key"] for entry in listed}


def test_the_services_own_damage_is_reported_and_the_backup_still_completes(make_source, tmp_path):
    source = make_source()
    fill(source)
    rows = {row["key"]: row for row in table_rows(source)["objects"]}
    store = source.extensions["files"].store
    flipped = store._blob_path(rows["dir/deep.bin"]["blob_id"])
    data = bytearray(flipped.read_bytes())
    data[10] ^= 1
    flipped.write_bytes(bytes(data))
    store._blob_path(rows["pic.png"]["blob_id"]).unlink()
    dest = tmp_path / "backup"
    with source.app_context():
        report = backups.take(store, dest)
    assert not report.ok and len(report.problems) == 2, report.problems
    assert any(problem.startswith("damaged: b/dir/deep.bin") for problem in report.problems)
    assert any(problem.startswith("missing: b/pic.png") for problem in report.problems)
    assert report.gone == {}
    # The backup holds what the service held, and says so: it verifies against its own manifest.
    assert backups.verify(dest).ok and backups.load_manifest(dest)["problems"] == report.problems


def test_verify_finds_a_flipped_byte_a_missing_blob_and_damaged_rows(make_source, tmp_path):
    source = make_source()
    fill(source)
    dest = tmp_path / "backup"
    with source.app_context():
        backups.take(source.extensions["files"].store, dest)
    assert backups.verify(dest).ok
    first, second = sorted((dest / "blobs").iterdir())[:2]
    with open(first, "r+b") as blob:
        blob.seek(1234)
        byte = blob.read(1)
        blob.seek(1234)
        blob.write(bytes([byte[0] ^ 0x01]))
    second.unlink()
    report = backups.verify(dest)
    assert not report.ok and len(report.findings) == 2, report.findings
    assert f"corrupt: blobs/{first.name}" in report.findings[0] + report.findings[1]
    assert f"missing: blobs/{second.name}" in report.findings
    metadata = dest / backups.load_manifest(dest)["metadata"]["file"]
    metadata.write_bytes(metadata.read_bytes()[:-9])
    assert any("metadata" in finding for finding in backups.verify(dest).findings)


def _tampered(dest: Path, copy: Path) -> Path:
    """A copy of the backup whose rows end with a bucket already there (a primary key taken at the very end)."""
    shutil.copytree(dest, copy)
    manifest = backups.load_manifest(copy)
    metadata = copy / manifest["metadata"]["file"]
    lines = gzip.decompress(metadata.read_bytes()).splitlines(keepends=True)
    header = next(line for line in lines if line.startswith(b'{"table":"buckets"'))
    row = lines[lines.index(header) + 1]
    metadata.write_bytes(gzip.compress(b"".join(lines) + header + row))
    manifest["metadata"]["sha256"] = sha256(metadata.read_bytes())
    (copy / backups.MANIFEST).write_text(json.dumps(manifest))
    return copy


def test_a_restore_is_all_or_nothing_and_refuses_a_target_with_rows(make_source, target, tmp_path):
    source = make_source()
    admin, files = fill(source)
    dest = tmp_path / "backup"
    with source.app_context():
        backups.take(source.extensions["files"].store, dest)
    with target.app_context():
        store = target.extensions["files"].store
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            restoring.restore(store, _tampered(dest, tmp_path / "tampered"))
        assert restoring.holding() == []  # every row of the failed restore was rolled back
        again = restoring.restore(store, dest)  # the blobs it put are found, the rows go in
        assert again.found == len(backups.load_manifest(dest)["blobs"]) and again.put == 0
        with pytest.raises(backups.BackupError, match="not empty"):
            restoring.restore(store, dest)
    assert table_rows(target) == expected_rows(dest)


def test_dest_is_guarded(make_source, tmp_path):
    source = make_source()
    fill(source)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    with source.app_context():
        store = source.extensions["files"].store
        with pytest.raises(backups.BackupError, match="holds other files"):
            backups.take(store, elsewhere)
        dest = tmp_path / "backup"
        dest.mkdir()
        holder = backups._Lock(dest)
        try:
            with pytest.raises(backups.BackupError, match="another backup"):
                backups.take(store, dest)
        finally:
            holder.release()
        for call in (backups.verify, lambda where: restoring.restore(store, where)):
            with pytest.raises(backups.BackupError, match="no complete backup"):
                call(dest)
