"""Share links attacked on a real server, in both configurations: parallel downloads racing for a
limited link's last download, parallel file-request uploads racing for its last bytes, another
site's page making a link on an open service, guessing a link, and a password guessed in a loop."""

from __future__ import annotations

import base64
import http.client
import json
from concurrent.futures import ThreadPoolExecutor

from tests.helpers import curl


def _request(server, method: str, path: str, body: bytes | str = b"", headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def _share(server, **fields) -> dict:
    status, made = curl("-X", "POST", f"{server.url}/v1/shares", "-d", json.dumps(fields))
    assert status == 201, made
    return made


def test_parallel_downloads_cannot_pass_a_links_limit(any_server):
    server = any_server
    curl("-X", "PUT", "--data-binary", "x" * 100_000, f"{server.url}/v1/files/b/f.bin")
    made = _share(server, bucket="b", key="f.bin", max_downloads=5)
    link = made["url"].removeprefix(server.url)
    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: _request(server, "GET", f"{link}/f/f.bin")[0], range(20)))
    assert sorted(statuses) == [200] * 5 + [410] * 15
    _, state = curl(f"{server.url}/v1/shares/{made['id']}")
    assert (state["downloads"], state["state"]) == (5, "exhausted")


def test_parallel_file_request_uploads_cannot_pass_its_limit(any_server):
    server = any_server
    curl("-X", "PUT", f"{server.url}/v1/files/inbox")
    made = _share(server, bucket="inbox", prefix="in/", allow_upload=True, upload_max_bytes=10_000)
    link = made["url"].removeprefix(server.url)

    def create(index: int) -> int:
        name = base64.b64encode(f"f{index}.bin".encode()).decode()
        return _request(server, "POST", f"{link}/uploads", headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": "1000", "Upload-Metadata": f"filename {name}"})[0]

    with ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(create, range(32)))
    assert sorted(statuses) == [201] * 10 + [507] * 22
    _, state = curl(f"{server.url}/v1/shares/{made['id']}")
    assert state["uploaded_bytes"] == 10_000


def test_another_sites_page_cannot_make_a_link_and_links_cannot_be_guessed(server):
    curl("-X", "PUT", "--data-binary", "secret", f"{server.url}/v1/files/b/s.txt")
    for origin in ("http://evil.example", "null"):
        status, body, _ = _request(server, "POST", "/v1/shares", json.dumps({"bucket": "b", "key": "s.txt"}),
                                   {"Origin": origin, "Content-Type": "text/plain"})
        assert status == 403 and json.loads(body)["error"]["code"] == "cross_site"
        status, _, _ = _request(server, "POST", "/b/b/share", "key=s.txt&expires_in=3600",
                                {"Origin": origin, "Content-Type": "application/x-www-form-urlencoded"})
        assert status == 403
    _, listing = curl(f"{server.url}/v1/shares")
    assert listing["data"] == []
    for guess in ("AAAAAAAAAAAAAAAAAAAAAAAA", "x", "../v1/files", "%00" * 20):
        assert _request(server, "GET", f"/s/{guess}/f/s.txt")[0] in (404, 400)


def test_a_password_guessed_in_a_loop_is_stopped(server):
    curl("-X", "PUT", "--data-binary", "secret", f"{server.url}/v1/files/b/s.txt")
    link = _share(server, bucket="b", key="s.txt", password="the right one")["url"].removeprefix(server.url)
    statuses = [_request(server, "POST", link, f"password=guess{n}",
                         {"Content-Type": "application/x-www-form-urlencoded"})[0] for n in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    status, _, headers = _request(server, "POST", link, "password=the+right+one",
                                  {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 429 and int(headers["Retry-After"]) > 0  # even the right one, until the window ends
    assert _request(server, "GET", f"{link}/f/s.txt")[0] == 401
