"""A share link's limits attacked on one real server (the `local` configuration; the counting is one
conditional UPDATE on either database, see test_share_attacks.py for the races on both): a
download is counted whenever its answer carries the whole file or its first byte, whatever Range
and If-Range say, and never for HEAD, 304 or an error; a suffix Range longer than the file is the
whole file; password guesses sent at once are each counted before any is checked; a file's link
dies with its file rather than serve a later one at the same key; an aborted file-request upload
gives its bytes back to the link."""

from __future__ import annotations

import base64
import http.client
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import curl
from tests.live_server import GunicornServer

SIZE = 100_000  # past FILES_INLINE_MAX: served from the blob store (sendfile)
DATA = bytes(range(256)) * (SIZE // 256) + b"z" * (SIZE % 256)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the whole file: every check here makes links of its own."""
    server = GunicornServer(tmp_path_factory.mktemp("share-limits") / "data").start()
    yield server
    server.kill()


def _request(server, method: str, path: str, body: bytes | str = b"", headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()


def _share(server, **fields) -> tuple[str, str]:
    """(the link's path, the share's id)."""
    status, made = curl("-X", "POST", f"{server.url}/v1/shares", "-d", json.dumps(fields))
    assert status == 201, made
    return made["url"].removeprefix(server.url), made["id"]


def _state(server, share_id: str) -> dict:
    status, state = curl(f"{server.url}/v1/shares/{share_id}")
    assert status == 200, state
    return state


def _put(server, bucket: str, key: str, data: bytes) -> None:
    status, body = _request(server, "PUT", f"/v1/files/{bucket}/{key}", data)[:2]
    assert status in (200, 201), body


def _carries_first_byte(status: int, body: bytes, headers: dict) -> bool:
    return (status == 200 and body == DATA) or (
        status == 206 and headers.get("content-range", "").startswith("bytes 0-"))


def _etag(server, path: str) -> str:
    status, _, headers = _request(server, "HEAD", path)
    assert status == 200
    return headers["etag"]


def test_every_answer_that_carries_the_file_or_its_first_byte_is_counted(server):
    _put(server, "b", "f.bin", DATA)
    etag = _etag(server, "/v1/content/b/f.bin")
    whole_file_forms = {  # each sends the whole file (or byte 0) to a client that asks this way
        "no range": {},
        "suffix as long as the file": {"Range": f"bytes=-{SIZE}"},
        "suffix longer than the file": {"Range": f"bytes=-{SIZE * 3}"},
        "two ranges": {"Range": "bytes=0-0,5-9"},
        "two ranges past 0": {"Range": "bytes=1-2,5-"},
        "If-Range another etag": {"Range": "bytes=1-", "If-Range": '"0000"'},
        "If-Range a weak etag": {"Range": "bytes=1-", "If-Range": f"W/{etag}"},
        "If-Range another date": {"Range": "bytes=1-", "If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"},
        "If-Range garbage": {"Range": "bytes=1-", "If-Range": "garbage"},
        "other units": {"Range": "items=1-"},
        "unparsable range": {"Range": "bytes=9-2"},
        "first byte": {"Range": "bytes=0-0"},
        "a stale If-None-Match": {"If-None-Match": '"0000"'},
    }
    results = {}
    for name, headers in whole_file_forms.items():  # a 1-download link for each form
        link, share_id = _share(server, bucket="b", key="f.bin", max_downloads=1)
        first = _request(server, "GET", f"{link}/f/f.bin", headers=headers)
        counted = _state(server, share_id)["downloads"]
        results[name] = (_carries_first_byte(*first), counted, _request(server, "GET", f"{link}/f/f.bin")[0])
    assert results == {name: (True, 1, 410) for name in whole_file_forms}

    # All the forms at once against one 1-download link: one answer carries byte 0, the rest are 410.
    link, share_id = _share(server, bucket="b", key="f.bin", max_downloads=1)
    forms = list(whole_file_forms.values()) * 2
    with ThreadPoolExecutor(len(forms)) as pool:
        answers = list(pool.map(lambda headers: _request(server, "GET", f"{link}/f/f.bin", headers=headers), forms))
    carried = sum(_carries_first_byte(*answer) for answer in answers)
    assert (carried, sorted({answer[0] for answer in answers if not _carries_first_byte(*answer)})) == (1, [410])
    assert _state(server, share_id)["downloads"] == 1


def test_head_304_a_resumed_range_and_errors_spend_no_download(server):
    _put(server, "b", "g.bin", DATA)
    _put(server, "b", "dir/h.txt", b"in a folder")
    link, share_id = _share(server, bucket="b", key="g.bin", max_downloads=1)
    etag = _etag(server, f"{link}/f/g.bin")
    uncounted = {
        "HEAD": ("HEAD", {}),
        "HEAD with a suffix range": ("HEAD", {"Range": f"bytes=-{SIZE * 2}"}),
        "304": ("GET", {"If-None-Match": etag}),
        "a resumed download": ("GET", {"Range": "bytes=1-"}),
        "a resumed download, If-Range holding": ("GET", {"Range": "bytes=1-", "If-Range": etag}),
        "a range past the end": ("GET", {"Range": f"bytes={SIZE}-"}),
    }
    statuses = {name: _request(server, method, f"{link}/f/g.bin", headers=headers)[0]
                for name, (method, headers) in uncounted.items()}
    assert statuses == {"HEAD": 200, "HEAD with a suffix range": 206, "304": 304, "a resumed download": 206,
                        "a resumed download, If-Range holding": 206, "a range past the end": 416}
    assert _state(server, share_id)["downloads"] == 0
    status, body, _ = _request(server, "GET", f"{link}/f/g.bin")
    assert (status, body == DATA, _state(server, share_id)["downloads"]) == (200, True, 1)

    folder, folder_id = _share(server, bucket="b", prefix="dir/", max_downloads=1)
    assert [_request(server, "HEAD", f"{folder}/zip")[0] for _ in range(3)] == [200] * 3
    assert _state(server, folder_id)["downloads"] == 0
    status, body, _ = _request(server, "GET", f"{folder}/zip")
    assert (status, body[:2], _state(server, folder_id)["downloads"]) == (200, b"PK", 1)
    assert _request(server, "GET", f"{folder}/zip")[0] == 410


def test_a_suffix_range_longer_than_the_file_is_the_whole_file_on_every_download_route(server):
    _put(server, "b", "s.bin", DATA)
    _put(server, "b", "small.txt", b"0123456789")  # kept inline in its row
    link, _ = _share(server, bucket="b", prefix="")
    for path, data in (("/v1/content/b/s.bin", DATA), ("/v1/content/b/small.txt", b"0123456789"),
                       (f"{link}/f/s.bin", DATA), (f"{link}/f/small.txt", b"0123456789")):
        for suffix in (len(data), len(data) + 1, len(data) * 10):
            status, body, headers = _request(server, "GET", path, headers={"Range": f"bytes=-{suffix}"})
            assert (status, body == data, headers.get("content-range")) == (
                206, True, f"bytes 0-{len(data) - 1}/{len(data)}"), (path, suffix)
        status, body, headers = _request(server, "GET", path, headers={"Range": "bytes=-3"})
        assert (status, body, headers["content-range"]) == (206, data[-3:], f"bytes {len(data) - 3}-"
                                                            f"{len(data) - 1}/{len(data)}")


def test_password_guesses_sent_at_once_each_cost_an_attempt(server):
    _put(server, "b", "p.txt", b"secret")
    link, _ = _share(server, bucket="b", key="p.txt", password="the right one")
    guesses = [f"password=guess{n}" for n in range(40)] + ["password=the+right+one"]
    with ThreadPoolExecutor(len(guesses)) as pool:
        statuses = list(pool.map(lambda body: _request(server, "POST", link, body, FORM)[0], guesses))
    evaluated = [status for status in statuses if status != 429]
    assert len(evaluated) <= 10 and set(evaluated) <= {401, 302}, statuses
    assert statuses.count(429) >= len(guesses) - 10
    assert _request(server, "POST", link, "password=the+right+one", FORM)[0] == 429


def test_a_files_link_dies_with_its_file_and_serves_no_later_one(server):
    _put(server, "b", "doc.txt", b"the shared one")
    _put(server, "b", "other.txt", b"moved in later")
    _put(server, "b", "folder/x.txt", b"first")
    replaced, _ = _share(server, bucket="b", key="doc.txt")
    folder, _ = _share(server, bucket="b", prefix="folder/")
    assert _request(server, "GET", f"{replaced}/f/doc.txt")[1] == b"the shared one"
    _put(server, "b", "doc.txt", b"a new file, never shared")
    _put(server, "b", "folder/x.txt", b"second")

    _put(server, "b", "gone.txt", b"deleted")
    deleted, _ = _share(server, bucket="b", key="gone.txt")
    assert _request(server, "DELETE", "/v1/files/b/gone.txt")[0] in (200, 204)
    _put(server, "b", "gone.txt", b"deleted")  # the same bytes again: still another file

    _put(server, "b", "moved.txt", b"moved away")
    moved, _ = _share(server, bucket="b", key="moved.txt")
    for source, target in (("moved.txt", "away.txt"), ("other.txt", "moved.txt")):  # away, and another in
        status, body = curl("-X", "POST", f"{server.url}/v1/move", "-d",
                            json.dumps({"bucket": "b", "key": source, "to_key": target}))
        assert status == 200, body

    for link, name in ((replaced, "doc.txt"), (deleted, "gone.txt"), (moved, "moved.txt")):
        status, body, headers = _request(server, "GET", f"{link}/f/{name}")
        assert status in (404, 410) and headers["content-type"] == "application/json", (link, status, body)
        assert json.loads(body)["error"]["status"] == status
        assert _request(server, "GET", f"{link}/f/{name}", headers={"Range": "bytes=0-3"})[0] in (404, 410)
        assert _request(server, "GET", link)[0] in (404, 410)  # the page too
    assert _request(server, "GET", f"{folder}/f/x.txt")[1] == b"second"  # a folder's link follows its files


def test_an_aborted_file_request_upload_gives_its_bytes_back(server):
    _request(server, "PUT", "/v1/files/inbox")
    link, share_id = _share(server, bucket="inbox", prefix="in/", allow_upload=True, upload_max_bytes=10_000)
    def create(index: int) -> tuple[int, str]:
        name = base64.b64encode(f"f{index}.bin".encode()).decode()
        status, _, headers = _request(server, "POST", f"{link}/uploads", headers={
            **TUS, "Upload-Length": "1000", "Upload-Metadata": f"filename {name}"})
        return status, headers.get("location", "").removeprefix(server.url)

    made = [create(index) for index in range(10)]
    assert [status for status, _ in made] == [201] * 10 and create(10)[0] == 507
    # Half sent, then aborted; each abort sent three times at once: given back once.
    _request(server, "PATCH", made[0][1], b"x" * 500, PATCH)
    with ThreadPoolExecutor(30) as pool:
        aborts = list(pool.map(lambda location: _request(server, "DELETE", location, headers=TUS)[0],
                               [location for _, location in made] * 3))
    assert aborts.count(204) >= 10 and set(aborts) <= {204, 404}, aborts
    assert _state(server, share_id)["uploaded_bytes"] == 0
    again = [create(index) for index in range(20, 31)]
    assert [status for status, _ in again] == [201] * 10 + [507]
    # A finished upload's session forgotten afterwards gives nothing back: its file is there.
    finished = again[0][1]
    assert _request(server, "PATCH", finished, b"y" * 1000, PATCH)[0] == 204
    _request(server, "DELETE", finished, headers=TUS)
    assert _state(server, share_id)["uploaded_bytes"] == 10_000
