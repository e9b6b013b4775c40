"""`flask files verify` finds rot, in both configurations: a flipped byte in a blob, a blob gone, an
inline file changed in the database, a blob no row refers to; a damaged file is never served (409
file_damaged, naming its newest intact version), and is served again once its bytes are whole."""

from __future__ import annotations

import hashlib

from sqlalchemy import select, update

from files_app.models import StoredObject, db, transaction
from files_app.services.scrub import Pacer
from tests.helpers import assert_error, put

BLOB = bytes(range(256)) * 1000  # past FILES_INLINE_MAX: a blob


def blob_of(key: str) -> str:
    with transaction():
        return db.session.scalar(select(StoredObject.blob_id).where(StoredObject.key == key))


def overwrite(store, blob_id: str, data: bytes) -> None:
    """Change a blob's bytes behind the service's back, as a rotting disk or a careless hand would."""
    if hasattr(store, "objects"):  # the data dir
        store._blob_path(blob_id).write_bytes(data)
    else:  # S3
        store.put(store.blob_key(blob_id), data)


def verify(runner, *args: str):
    return runner.invoke(args=["files", "verify", *args])


def test_verify_finds_a_flipped_byte_and_a_damaged_file_is_never_served(client, runner, services):
    put(client, "b", "report.bin", BLOB)
    put(client, "b", "report.bin", BLOB[::-1])  # the first upload is kept as a version
    put(client, "b", "small.txt", b"small and inline")
    put(client, "b", "gone.bin", BLOB + b"gone")
    client.delete("/v1/files/b/gone.bin")  # in the trash, checked too
    clean = verify(runner)
    assert clean.exit_code == 0, clean.output
    assert "checked 4 files" in clean.output and "0 corrupt, 0 missing, 0 orphaned" in clean.output

    flipped = bytearray(BLOB[::-1])
    flipped[1234] ^= 0x01
    overwrite(services.store, blob_of("report.bin"), bytes(flipped))
    with transaction():
        db.session.execute(update(StoredObject).where(StoredObject.key == "small.txt")
                           .values(inline_data=b"small and inlinE"))
    found = verify(runner)
    assert found.exit_code == 1
    assert "corrupt: b/report.bin: sha256 " + hashlib.sha256(flipped).hexdigest() in found.output
    assert "corrupt: b/small.txt" in found.output and "2 corrupt, 0 missing" in found.output
    error = assert_error(client.get("/v1/content/b/report.bin"), 409, "file_damaged")
    [version] = client.get("/v1/versions/b/report.bin").get_json()["data"]
    assert error["good_version"] == version["id"] and f"version {version['id']}" in error["message"]
    assert_error(client.get("/v1/content/b/small.txt"), 409, "file_damaged")
    assert client.get("/v1/files/b/report.bin").status_code == 200  # its metadata still answers
    page = client.get("/b/b/small.txt").get_data(as_text=True)  # the page says so, shows and offers nothing
    assert 'data-testid="damaged"' in page and "small and inlinE" not in page and 'data-testid="download"' not in page
    assert "Restore an earlier version below" in client.get("/b/b/report.bin").get_data(as_text=True)
    assert client.get(f"/v1/versions/b/report.bin?version={version['id']}").data == BLOB
    # The intact version restored: the damaged file becomes a version, marked, and is refused as one.
    assert client.post("/v1/versions/b/report.bin", json={"version": version["id"]}).status_code == 200
    assert client.get("/v1/content/b/report.bin").data == BLOB
    [damaged] = client.get("/v1/versions/b/report.bin").get_json()["data"]
    assert_error(client.get(f"/v1/versions/b/report.bin?version={damaged['id']}"), 409, "file_damaged")
    # A replaced damaged file: the new upload is served.
    put(client, "b", "small.txt", b"fresh")
    assert client.get("/v1/content/b/small.txt").data == b"fresh"


def test_a_missing_blob_is_reported_and_a_blob_put_back_is_served_again(client, runner, services):
    put(client, "b", "f.bin", BLOB)
    blob_id = blob_of("f.bin")
    services.store.delete_blob(blob_id)
    found = verify(runner, "--bucket", "b")
    assert found.exit_code == 1 and f"missing: b/f.bin: its blob {blob_id}" in found.output
    assert_error(client.get("/v1/content/b/f.bin"), 409, "file_damaged")
    overwrite(services.store, blob_id, BLOB)  # put back from a backup
    again = verify(runner, "--bucket", "b")
    assert again.exit_code == 0 and "1 found whole again" in again.output, again.output
    assert client.get("/v1/content/b/f.bin").data == BLOB


def test_orphan_blobs_are_reported_and_quarantined(client, runner, services):
    put(client, "b", "kept.bin", BLOB)
    services.store.put_blob("0123456789abcdef0123456789abcdef", b"nobody's bytes")
    young = verify(runner)  # within the grace period it may be an upload finishing
    assert young.exit_code == 0, young.output
    found = verify(runner, "--grace", "-1")
    assert found.exit_code == 1 and "orphan: blob 0123456789abcdef0123456789abcdef" in found.output
    moved = verify(runner, "--grace", "-1", "--quarantine")
    assert moved.exit_code == 1 and "(1 moved to quarantine)" in moved.output
    assert "0123456789abcdef0123456789abcdef" not in services.store.blob_ids(older_than=float("inf"))
    assert verify(runner, "--grace", "-1").exit_code == 0
    assert client.get("/v1/content/b/kept.bin").data == BLOB


def test_the_pacer_holds_a_rate_without_sleeping_when_behind():
    now, slept = [0.0], []
    pacer = Pacer(1000.0, clock=lambda: now[0], sleep=slept.append)
    pacer.took(500)
    assert slept == [0.5]  # 500 bytes at 1000 B/s: half a second ahead of the clock
    now[0] = 2.0
    pacer.took(500)  # 1000 bytes in 2 s: behind the rate, no sleep
    assert slept == [0.5]


def test_one_background_scrubber_at_a_time(app, services):
    from files_app.services.scrub import exclusive

    with exclusive(app.config["FILES_DATA_DIR"]) as first, exclusive(app.config["FILES_DATA_DIR"]) as second:
        assert (first, second) == (True, False)
    with exclusive(app.config["FILES_DATA_DIR"]) as again:  # let go at the end of the first
        assert again
