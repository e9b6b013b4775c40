"""A real full disk: the data dir on a small tmpfs (this machine and CI run as root)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess

import pytest

from tests.helpers import session_offset

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def call(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"{}"), response


def test_disk_full_is_507_and_resumes_once_space_is_freed(server_factory, small_disk, tmp_path):
    """An upload accepted while it fit, then the disk filled up by something else: 507 mid-body with
    the durable offset, existing files readable, and the upload resumes once space is freed."""
    server = server_factory(FILES_DATABASE_URL=f"sqlite:///{tmp_path / 'meta.db'}", FILES_CHECKPOINT_BYTES=str(MIB),
                            FILES_RESERVED_SPACE="0")
    server.data_dir = small_disk  # blobs on the small disk, metadata beside it
    server.start()
    old = os.urandom(3 * MIB)
    status, session, _ = call(server, "POST", "/v1/files", json.dumps({"bucket": "d", "key": "old", "size": len(old)}))
    assert call(server, "POST", session["url"].removeprefix(server.url), old)[0] == 200

    new = os.urandom(4 * MIB + 512 * 1024)
    status, session, _ = call(server, "POST", "/v1/files", json.dumps({"bucket": "d", "key": "new", "size": len(new)}))
    assert status == 201  # it fits when it is accepted...
    filler = small_disk / "filler"
    # ...then something else fills the disk: the body runs out of room near its end (the answer
    # then reaches a client that sends it all before reading, as this one does).
    filler.write_bytes(b"\0" * MIB)
    path = session["url"].removeprefix(server.url)
    status, error, response = call(server, "POST", path, new)
    assert status == 507 and error["error"]["code"] == "insufficient_storage"
    durable = int(response.getheader("Upload-Offset"))
    assert 0 < durable < len(new) and session_offset(server, session["id"]) == durable
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/v1/content/d/old")
    # Existing files stay readable.
    assert hashlib.sha256(connection.getresponse().read()).hexdigest() == hashlib.sha256(old).hexdigest()

    assert call(server, "DELETE", "/v1/files/d/old")[0] == 200  # into the trash: its bytes are still there
    assert call(server, "DELETE", "/v1/trash/d")[1] == {"purged": 1}  # space is freed
    status, file, _ = call(server, "POST", path, new[durable:], {"Upload-Offset": str(durable)})
    assert status == 200 and file["sha256"] == hashlib.sha256(new).hexdigest()


def test_an_upload_that_cannot_fit_is_refused_before_a_byte_is_sent(server_factory, small_disk, tmp_path):
    """On a real 8 MiB disk: a 20 MiB upload is refused at creation (507), in both dialects; with
    FILES_RESERVED_SPACE kept free, even a 4 MiB one is."""
    server = server_factory(FILES_DATABASE_URL=f"sqlite:///{tmp_path / 'meta.db'}", FILES_RESERVED_SPACE="0")
    server.data_dir = small_disk
    server.start()
    status, error, _ = call(server, "POST", "/v1/files", json.dumps({"bucket": "d", "key": "big", "size": 20 * MIB}))
    assert status == 507 and error["error"]["code"] == "insufficient_storage"
    status, error, _ = call(server, "POST", "/v1/files", headers={"Tus-Resumable": "1.0.0",
                                                                "Upload-Length": str(20 * MIB)})
    assert status == 507 and error["error"]["code"] == "insufficient_storage"
    assert call(server, "POST", "/v1/files", json.dumps({"bucket": "d", "key": "ok", "size": 4 * MIB}))[0] == 201
    server.stop()
    reserving = server_factory(FILES_DATABASE_URL=f"sqlite:///{tmp_path / 'meta2.db'}",
                               FILES_RESERVED_SPACE=str(6 * MIB))
    reserving.data_dir = small_disk
    reserving.start()
    status, error, _ = call(reserving, "POST", "/v1/files", json.dumps({"bucket": "d", "key": "ok2", "size": 4 * MIB}))
    assert status == 507 and "reserve" in error["error"]["message"]
