"""tuspy, the Python tus client, against a real gunicorn server."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from tusclient import client as tus
from tusclient.storage.filestorage import FileStorage

from tests.helpers import sha256

pytestmark = pytest.mark.e2e

@pytest.fixture
def server(any_server):
    """Each client runs against both configurations: {SQLite, local disk} and {PostgreSQL, SeaweedFS}."""
    return any_server


MIB = 1024 * 1024


def file_info(server, bucket: str, key: str) -> dict:
    with urllib.request.urlopen(f"{server.url}/v1/files/{bucket}/{key}") as response:
        return json.loads(response.read())


def test_64_mib_in_5_mib_chunks(server, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(data := os.urandom(64 * MIB))
    uploader = tus.TusClient(f"{server.url}/v1/files").uploader(
        str(path), chunk_size=5 * MIB, metadata={"bucket": "tuspy", "filename": "big.bin"})
    uploader.upload()
    info = file_info(server, "tuspy", "big.bin")
    assert (info["bytes"], info["sha256"]) == (len(data), sha256(data))


def test_stop_half_way_and_resume_with_a_new_uploader(server, tmp_path):
    path = tmp_path / "resume.bin"
    path.write_bytes(data := os.urandom(12 * MIB + 123))
    storage = FileStorage(str(tmp_path / "tus-urls.json"))
    options = dict(chunk_size=2 * MIB, metadata={"bucket": "tuspy", "filename": "resume.bin"},
                   store_url=True, url_storage=storage)
    first = tus.TusClient(f"{server.url}/v1/files").uploader(str(path), **options)
    first.upload(stop_at=6 * MIB)
    assert first.offset == 6 * MIB
    with pytest.raises(urllib.error.HTTPError):
        file_info(server, "tuspy", "resume.bin")  # not visible until complete

    second = tus.TusClient(f"{server.url}/v1/files").uploader(str(path), **options)
    assert second.url == first.url  # found through the stored fingerprint
    assert second.offset == 6 * MIB  # asked the server with HEAD
    second.upload()
    info = file_info(server, "tuspy", "resume.bin")
    assert (info["bytes"], info["sha256"]) == (len(data), sha256(data))


def test_upload_checksum(server, tmp_path):
    path = tmp_path / "sums.bin"
    path.write_bytes(data := os.urandom(3 * MIB + 1))
    uploader = tus.TusClient(f"{server.url}/v1/files").uploader(
        str(path), chunk_size=MIB, upload_checksum=True, metadata={"bucket": "tuspy", "filename": "sums.bin"})
    uploader.upload()
    assert file_info(server, "tuspy", "sums.bin")["sha256"] == sha256(data)
