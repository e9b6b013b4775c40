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
    server = server_factory(FILES_DATABASE_URL=f"sqlite:///{tmp_path / 'meta.db'}", FILES_CHECKPOINT_BYTES=str(MIB))
    server.data_dir = small_disk  # blobs on the small disk, metadata beside it
    server.start()
    old = os.urandom(3 * MIB)
    status, session, _ = call(server, "POST", "/v1/files", json.dumps({"bucket": "d", "key": "old", "size": len(old)}))
    assert call(server, "POST", session["url"].removeprefix(server.url), old)[0] == 200

    new = os.urandom(6 * MIB)
    status, session, _ = call(server, "POST", "/v1/files", json.dumps({"bucket": "d", "key": "new", "size": len(new)}))
    path = session["url"].removeprefix(server.url)
    status, error, response = call(server, "POST", path, new)
    assert status == 507 and error["error"]["code"] == "insufficient_storage"
    durable = int(response.getheader("Upload-Offset"))
    assert 0 < durable < len(new) and session_offset(server, session["id"]) == durable
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/v1/content/d/old")
    # Existing files stay readable.
    assert hashlib.sha256(connection.getresponse().read()).hexdigest() == hashlib.sha256(old).hexdigest()

    assert call(server, "DELETE", "/v1/files/d/old")[0] == 200  # space is freed
    status, file, _ = call(server, "POST", path, new[durable:], {"Upload-Offset": str(durable)})
    assert status == 200 and file["sha256"] == hashlib.sha256(new).hexdigest()
