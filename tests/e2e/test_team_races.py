"""Races and attacks on people and tokens, against a real server in both configurations: a token
revoked while its upload streams, a person disabled while their link is downloaded, two admins
demoting each other, and who-exists guessed from sign-in timing."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.test_access_matrix import flask_cli, personal_token
from tests.helpers import send_partially

PASSWORD = "race pass phrase"
MIB = 1024 * 1024


def admin_api(server) -> httpx.Client:
    token = flask_cli(server, "token", "create", "--name", "races", "--scope", "admin")
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def make_person(api: httpx.Client, server, name: str, role: str = "member", scope: str = "manage") -> dict:
    assert api.post("/v1/users", json={"name": name, "password": PASSWORD, "role": role}).status_code == 201
    return {"Authorization": f"Bearer {personal_token(server, name, PASSWORD, scope=scope)}"}


def test_a_token_revoked_while_its_upload_streams_sends_no_further_chunk(any_server):
    server = any_server
    api = admin_api(server)
    ann = make_person(api, server, "ann")
    made = httpx.post(f"{server.url}/v1/tokens", json={"name": "uploader", "scope": "write"}, headers=ann).json()
    token = {"Authorization": f"Bearer {made['token']}"}
    data = bytes(range(256)) * (3 * MIB // 256)
    session = httpx.post(f"{server.url}/v1/files", json={"bucket": "ann-b", "key": "big", "size": len(data)},
                         headers=token).json()
    url = session["url"]
    first = httpx.post(url, content=data[:MIB], headers={**token, "Upload-Offset": "0"})
    assert first.status_code == 200 and first.json()["offset"] == MIB
    # The second chunk is on its way (half sent) when the token is revoked...
    chunk = data[MIB:2 * MIB]
    connection = send_partially(server, url, chunk, MIB // 2, **token, **{"Upload-Offset": str(MIB)})
    assert httpx.delete(f"{server.url}/v1/tokens/{made['id']}", headers=ann).json()["state"] == "revoked"
    connection.send(chunk[MIB // 2:])
    answer = connection.getresponse()
    assert answer.status == 200, answer.read()  # a request let in before the revocation finishes
    connection.close()
    # ...and the next chunk is refused: what was durable stays, nothing more is taken.
    third = httpx.post(url, content=data[2 * MIB:], headers={**token, "Upload-Offset": str(2 * MIB)})
    assert third.status_code == 401
    offset = httpx.get(url, headers=token)
    assert offset.status_code == 401
    assert httpx.get(f"{server.url}/v1/files/ann-b/big", headers=ann).status_code == 404  # never completed
    entries = api.get("/v1/audit", params={"action": "token"}).json()["data"]
    assert [e["action"] for e in entries][:2] == ["token.revoke", "token.create"]


def test_a_person_disabled_while_their_link_is_downloaded(any_server):
    server = any_server
    api = admin_api(server)
    ann = make_person(api, server, "ann")
    data = b"z" * (8 * MIB)
    assert httpx.put(f"{server.url}/v1/files/ann-b/film.bin", content=data, headers=ann).status_code == 200
    link = httpx.post(f"{server.url}/v1/shares", json={"bucket": "ann-b", "key": "film.bin"}, headers=ann).json()
    file_url = f"{link['url']}/f/film.bin"
    received = bytearray()
    with httpx.stream("GET", file_url, timeout=60) as download:
        assert download.status_code == 200
        stream = download.iter_bytes(64 * 1024)
        received += next(stream)  # the download is under way...
        assert api.patch("/v1/users/ann", json={"disabled": True}).status_code == 200
        for piece in stream:  # ...it was let in before: it ends whole (never torn)
            received += piece
    assert bytes(received) == data
    assert httpx.get(file_url).status_code == 410  # the next one is refused
    assert httpx.get(file_url, headers={"Range": f"bytes={MIB}-"}).status_code == 410  # and no resume either
    api.patch("/v1/users/ann", json={"disabled": False})
    assert httpx.get(file_url).status_code == 200  # enabled again: the link works again


def test_two_admins_demoting_each_other_leave_one_admin(any_server):
    server = any_server
    api = admin_api(server)
    admins = {name: make_person(api, server, name, role="admin", scope="admin") for name in ("ann", "bob")}
    for _ in range(8):
        barrier = threading.Barrier(2)

        def demote(who: str, whom: str, barrier: threading.Barrier = barrier) -> int:
            barrier.wait(timeout=30)
            return httpx.patch(f"{server.url}/v1/users/{whom}", json={"role": "member"}, headers=admins[who],
                               timeout=60).status_code

        with ThreadPoolExecutor(2) as pool:
            answers = sorted(future.result() for future in [pool.submit(demote, "ann", "bob"),
                                                            pool.submit(demote, "bob", "ann")])
        roles = {user["name"]: user["role"] for user in api.get("/v1/users").json()["data"]}
        assert sorted(roles[name] for name in admins) == ["admin", "member"], (answers, roles)
        assert answers[0] == 200 and answers[1] in (403, 409), answers
        for name in admins:  # both admins again for the next round
            assert api.patch(f"/v1/users/{name}", json={"role": "admin"}).status_code == 200


def test_sign_in_timing_does_not_tell_who_exists(server):
    """A wrong password for a real person and any password for nobody cost the same password check:
    the medians of 8 each are within a factor of 3 (without the decoy check they differ ~100x)."""
    api = admin_api(server)
    names = [f"person{number}" for number in range(8)]
    for name in names:
        assert api.post("/v1/users", json={"name": name, "password": PASSWORD}).status_code == 201

    def attempt(name: str) -> float:
        with httpx.Client(base_url=server.url) as browser:
            csrf = browser.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
            started = time.perf_counter()
            answer = browser.post("/login", data={"username": name, "password": "wrong guess!", "csrf_token": csrf})
            elapsed = time.perf_counter() - started
        assert answer.status_code == 401, answer.text
        return elapsed

    real = [attempt(name) for name in names]
    nobody = [attempt(f"nobody{number}") for number in range(8)]
    ratio = statistics.median(real) / statistics.median(nobody)
    assert ratio > 1 / 3 and ratio < 3, (real, nobody)
    failures = api.get("/v1/audit", params={"action": "signin"}).json()["data"]
    assert sum(entry["outcome"] == "failed" for entry in failures) == 16
