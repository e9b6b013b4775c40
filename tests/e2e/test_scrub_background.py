"""The background scrub (FILES_SCRUB_INTERVAL) on a real server: a blob that rots while the service
runs is found without anyone running `files verify`, and its file is refused from then on."""

from __future__ import annotations

import http.client
import json
import time

import pytest

pytestmark = pytest.mark.e2e
BLOB = bytes(range(256)) * 1000


def get(server, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def test_a_blob_that_rots_is_found_by_the_background_scrub(server_factory):
    server = server_factory(FILES_SCRUB_INTERVAL="1", FILES_SCRUB_RATE="100").start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("PUT", "/v1/files/b/rots.bin", body=BLOB)
    assert connection.getresponse().status == 200
    assert get(server, "/v1/content/b/rots.bin") == (200, BLOB)
    [blob] = [path for path in (server.data_dir / "objects").glob("??/*")]
    rotten = bytearray(BLOB)
    rotten[100] ^= 0x80
    blob.write_bytes(bytes(rotten))
    deadline = time.monotonic() + 60
    while (answer := get(server, "/v1/content/b/rots.bin"))[0] == 200 and time.monotonic() < deadline:
        pass  # each probe is a request: paced by the server's answers, bounded by the deadline
    status, body = answer
    assert status == 409 and json.loads(body)["error"]["code"] == "file_damaged", (status, body[:200])
