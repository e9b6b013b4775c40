"""A second look at issue #22 as an attacker, on real servers: a folder delete's promise (`until`,
and the older clients' `before`) against files moved and uploaded into the folder while it runs;
quotas out of reach of a bucket-confined admin token, a member and a cross-site form; OpenAI Uploads
completed and cancelled at once; a revoked file request's unfinished uploads.

Tests that need no particular database share one closed server (`local`, an operator's admin token
on every request); the folder race runs on both configurations."""

from __future__ import annotations

import base64
import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from tests.e2e.test_counters import assert_no_drift
from tests.live_server import GunicornServer

TUS = {"Tus-Resumable": "1.0.0"}
PASSWORD = "review pass phrase"


class Api:
    """Requests with one credential (or none), each on a connection of its own (safe from threads)."""

    def __init__(self, server, token: str | None = None):
        self.server, self.headers = server, {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, body: bytes | dict | None = None,
                 headers: dict | None = None) -> tuple[int, dict | bytes]:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers={**self.headers, **(headers or {})})
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data


def _closed(server) -> Api:
    """The service closed by its first (operator's admin) token; that token's Api."""
    status, made = Api(server)("POST", "/v1/tokens", {"name": "review", "scope": "admin"})
    assert status == 201, made
    return Api(server, made["token"])


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """One closed server in the `local` configuration for the tests here that need no particular
    database; (server, its admin's Api)."""
    server = GunicornServer(tmp_path_factory.mktemp("exact-review") / "data").start()
    yield server, _closed(server)
    server.kill()


# --- 1. folder delete ----------------------------------------------------------------------------

def test_a_folder_delete_with_until_racing_moves_and_uploads_in_takes_only_what_it_counted(any_server):
    """20 files counted; then, released together: the delete with the count's `until`, 16 moves
    into the folder and 8 uploads into it. The delete takes exactly the 20; every acknowledged move
    and upload is in the folder afterwards."""
    server = any_server
    api = _closed(server)
    counted = [f"dir/c{index:02}" for index in range(20)]
    outside = [f"src/m{index:02}" for index in range(16)]
    for key in counted + outside:
        assert api("PUT", f"/v1/files/b/{key}", b"x" * 700)[0] == 200
    status, count = api("GET", "/v1/folders/b/dir/")
    assert (status, count["files"], count["bytes"]) == (200, 20, 14_000), count
    start = threading.Barrier(8)

    def run(tasks):
        start.wait(timeout=30)
        return [task() for task in tasks]

    def move(key):
        return lambda: ("move", key, api("POST", "/v1/move", {"bucket": "b", "key": key, "to_key": "dir/" + key[4:]}))

    def upload(index):
        return lambda: ("put", f"dir/u{index}", api("PUT", f"/v1/files/b/dir/u{index}", b"new" * 100))

    def delete():
        return ("delete", None, api("DELETE", f"/v1/folders/b/dir/?until={count['until']}"))

    workers = [[move(key) for key in outside[worker::7]] + [upload(worker)] for worker in range(7)]
    workers[0].append(upload(7))
    workers.append([delete])
    with ThreadPoolExecutor(8) as pool:
        results = [result for batch in pool.map(run, workers) for result in batch]
    statuses = sorted({status for _, _, (status, _) in results})
    (deleted,) = [answer for kind, _, (_, answer) in results if kind == "delete"]
    placed_in = sorted("dir/" + key[4:] if kind == "move" else key
                       for kind, key, (status, _) in results if kind != "delete" and status == 200)
    status, listing = api("GET", "/v1/files/b?prefix=dir/")
    kept = sorted(item["key"] for item in listing["data"])
    assert (statuses, deleted["deleted"], len(placed_in), kept) == ([200], 20, 24, placed_in)
    status, trash = api("GET", "/v1/trash/b?prefix=dir/")
    assert sorted(entry["key"] for entry in trash["data"]) == counted  # the 20, and only they, in the trash
    assert_no_drift(server)


def test_the_older_before_cannot_delete_a_file_moved_in_after_the_count(local):
    """`before` (Unix seconds) compared each file's creation time, which a move keeps: a file moved
    into the folder after the count was deleted by a delete that never counted it (issue #22: "never
    a file moved in later"). It is refused now (400 until_required), and nothing goes."""
    _, api = local
    assert api("PUT", "/v1/files/old/before/counted.txt", b"counted")[0] == 200
    assert api("PUT", "/v1/files/old/elsewhere/later.txt", b"moved in after the count")[0] == 200
    status, count = api("GET", "/v1/folders/old/before/")
    assert (status, count["files"]) == (200, 1)
    status, moved = api("POST", "/v1/move", {"bucket": "old", "key": "elsewhere/later.txt",
                                             "to_key": "before/later.txt"})
    assert status == 200, moved
    status, refused = api("DELETE", f"/v1/folders/old/before/?before={2**31}")
    assert (status, refused["error"]["code"]) == (400, "until_required")
    status, deleted = api("DELETE", f"/v1/folders/old/before/?until={count['until']}")
    _, listing = api("GET", "/v1/files/old?prefix=before/")
    assert (status, deleted["deleted"], [item["key"] for item in listing["data"]]) == (
        200, 1, ["before/later.txt"])


def test_malformed_until_and_before_are_a_clean_400(local):
    _, api = local
    assert api("PUT", "/v1/files/bad/dir/f.txt", b"kept")[0] == 200
    values = ["abc", "-1", "", "1e3", "+1", "0x1", "%D9%A3", "%00", "99999999999999999999",
              "9223372036854775807", "1.5", "%201"]
    answers = {}
    for name in ("until", "before"):
        for value in values:
            status, body = api("DELETE", f"/v1/folders/bad/dir/?{name}={value}")
            answers[f"{name}={value}"] = (status, body["error"]["code"] if isinstance(body, dict) else body)
    expected = {"until": "invalid_until", "before": "until_required"}  # `before` is refused whatever its value
    assert answers == {f"{name}={value}": (400, expected[name]) for name in ("until", "before") for value in values}
    _, listing = api("GET", "/v1/files/bad?prefix=dir/")
    assert [item["key"] for item in listing["data"]] == ["dir/f.txt"]


# --- 2. quotas out of a confined token's, a member's and another site's reach -----------------

def _browser(server, name: str) -> httpx.Client:
    browser = httpx.Client(base_url=server.url, timeout=60)
    csrf = browser.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    signed = browser.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": csrf})
    assert signed.status_code == 302, signed.text
    browser.csrf = browser.get("/").text.split('name="csrf-token" content="')[1].split('"')[0]
    return browser


def test_quotas_beyond_a_confined_admin_token_or_a_member_stay_out_of_reach(local):
    server, api = local
    for bucket in ("qa", "qb"):
        assert api("PUT", f"/v1/files/{bucket}/f.txt", b"f")[0] == 200
    status, confined = api("POST", "/v1/tokens", {"name": "qa-admin", "scope": "admin", "bucket": "qa"})
    assert status == 201, confined
    for name, role in (("qmember", "member"), ("qadmin", "admin")):
        assert api("POST", "/v1/users", {"name": name, "password": PASSWORD, "role": role})[0] == 201
    token = httpx.Client(base_url=server.url, timeout=60, headers={"Authorization": f"Bearer {confined['token']}"})
    member, admin = _browser(server, "qmember"), _browser(server, "qadmin")
    refused = {
        "token: /quotas": token.get("/quotas"),
        "token: form, another bucket": token.post("/quotas", data={"kind": "bucket", "name": "qb", "max_bytes": "1"}),
        "token: form, its own quota": token.post("/quotas", data={"kind": "token", "name": str(confined["id"]),
                                                                  "max_bytes": ""}),
        "token: bucket form, another bucket": token.post("/b/qb/quota", data={"max_bytes": "1"}),
        "token: API, another bucket": token.put("/v1/quotas/qb", json={"max_bytes": 1}),
        "token: API, read another bucket": token.get("/v1/quotas/qb"),
        "token: API, its own quota": token.put(f"/v1/quotas/tokens/{confined['id']}", json={"max_bytes": None}),
        "token: API, a user's": token.put("/v1/quotas/users/qmember", json={"max_bytes": 1}),
        "member: form with its token": member.post("/quotas", data={"kind": "bucket", "name": "qb", "max_bytes": "1",
                                                                    "csrf_token": member.csrf}),
        "member: API, its own quota": member.put("/v1/quotas/users/qmember", json={"max_bytes": None},
                                                 headers={"X-CSRF-Token": member.csrf}),
        "admin: form without the page's token": admin.post("/quotas", data={"kind": "bucket", "name": "qb",
                                                                            "max_bytes": "1"}),
        "admin: form from another site": admin.post("/quotas", headers={"Origin": "http://evil.example"},
                                                    data={"kind": "bucket", "name": "qb", "max_bytes": "1",
                                                          "csrf_token": admin.csrf}),
        "admin: API without the page's token": admin.put("/v1/quotas/qb", json={"max_bytes": 1}),
    }
    assert {name: answer.status_code for name, answer in refused.items()} == {name: 403 for name in refused}
    for name in ("qa", "qb"):
        status, quota = api("GET", f"/v1/quotas/{name}")
        assert (status, quota["max_bytes"], quota["max_files"]) == (200, None, None), quota
    status, own = api("GET", f"/v1/quotas/tokens/{confined['id']}")
    assert (status, own["max_bytes"]) == (200, None)
    # What each may do: the confined token its own bucket's quota, the admin every one with the page's token.
    assert token.put("/v1/quotas/qa", json={"max_bytes": 5}).status_code == 200
    assert admin.post("/quotas", data={"kind": "bucket", "name": "qb", "max_bytes": "7",
                                       "csrf_token": admin.csrf}).status_code == 302
    assert (api("GET", "/v1/quotas/qa")[1]["max_bytes"], api("GET", "/v1/quotas/qb")[1]["max_bytes"]) == (5, 7)
    for client in (token, member, admin):
        client.close()


def test_a_file_requests_dead_uploads_give_back_what_they_held(local):
    """- Revoked: a write token with a 5,000-byte quota makes a file request; four 1,000-byte
      uploads are created through it (4,000 promised for the token), then it is revoked. Those
      uploads can never finish nor be aborted (410 through the dead link), yet they hold the
      creator's quota until they expire (FILES_SESSION_TTL, 24 h): the creator cannot store 2,000 B.
    - Expired: another link's whole budget (1,000 bytes) is one upload, which then expires. A
      creator's quota promise is given back at once, the link's budget only by the next gc pass
      (hourly): until then the link refused every upload (README: "given back when an unfinished
      upload is aborted or expires"). Now the link gives it back when it takes the next upload."""
    server, api = local
    status, made = api("POST", "/v1/tokens", {"name": "requester", "scope": "write"})
    assert status == 201, made
    assert api("PUT", f"/v1/quotas/tokens/{made['id']}", {"max_bytes": 5000})[0] == 200
    creator, visitor = Api(server, made["token"]), Api(server)
    assert creator("PUT", "/v1/files/req/seed.txt", b"s")[0] == 200

    def request(maker: Api = creator, **fields) -> tuple[str, str]:
        status, share = maker("POST", "/v1/shares", {"bucket": "req", "allow_upload": True, **fields})
        assert status == 201, share
        return share["url"].removeprefix(server.url), share["id"]

    def create(link: str, name: str) -> int:
        metadata = "filename " + base64.b64encode(name.encode()).decode()
        return visitor("POST", f"{link}/uploads", headers={**TUS, "Upload-Length": "1000",
                                                           "Upload-Metadata": metadata})[0]

    revoked, revoked_id = request(prefix="in/", upload_max_bytes=100_000)
    assert [create(revoked, f"f{index}.bin") for index in range(4)] == [201] * 4
    assert api("GET", f"/v1/quotas/tokens/{made['id']}")[1]["promised_bytes"] == 4000
    assert creator("DELETE", f"/v1/shares/{revoked_id}")[0] == 200
    after_revoke = (api("GET", f"/v1/quotas/tokens/{made['id']}")[1]["promised_bytes"],
                    creator("PUT", "/v1/files/req/mine.bin", b"m" * 2000)[0])

    expiring, expiring_id = request(api, prefix="exp/", upload_max_bytes=1000)  # (the operator's: no quota)
    assert (create(expiring, "first.bin"), create(expiring, "second.bin")) == (201, 507)
    _sql(server, "UPDATE upload_sessions SET expires_at = expires_at - 86401 WHERE owner = :owner",
         owner=f"share:{expiring_id}")
    third = create(expiring, "third.bin")  # the expired upload's budget comes back as the link takes it
    after_expiry = (third, api("GET", f"/v1/shares/{expiring_id}")[1]["uploaded_bytes"])
    assert (after_revoke, after_expiry) == ((0, 200), (201, 1000))
    assert_no_drift(server)


# --- 4. a revoked file request ---------------------------------------------------------------

def _sql(server, statement: str, **params) -> None:
    """A statement on the server's own database (to let time pass for some rows)."""
    url = server.env.get("FILES_DATABASE_URL") or f"sqlite:///{server.data_dir / 'files.db'}"
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text(statement), params)
    finally:
        engine.dispose()


def test_an_upload_completed_and_cancelled_at_once_ends_one_way(local):
    """Five rounds: an Upload of 3,000 bytes in three parts, then at once three completes, two
    cancels and one more part (refused: 400, 409 or 413). Each round ends completed (every 200
    names one file holding exactly the parts) or cancelled, never both; nothing stays promised;
    no drift."""
    server, api = local
    base = "/v1/openai/v1/uploads"
    form = "multipart/form-data; boundary=b0undary"

    def part(data: bytes) -> bytes:
        return (b'--b0undary\r\nContent-Disposition: form-data; name="data"; filename="d"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b0undary--\r\n")

    rounds, files = [], 0
    for round_ in range(5):
        status, upload = api("POST", base, {"filename": f"r{round_}.bin", "purpose": "batch", "bytes": 3000,
                                            "mime_type": "application/octet-stream"})
        assert status == 200, upload
        parts = []
        for byte in b"ABC":
            status, made = api("POST", f"{base}/{upload['id']}/parts", part(bytes([byte]) * 1000),
                               {"Content-Type": form})
            assert status == 200, made
            parts.append(made["id"])
        start = threading.Barrier(6)

        def act(what: str, upload_id=upload["id"], parts=parts, start=start):
            start.wait(timeout=30)
            if what == "complete":
                return what, *api("POST", f"{base}/{upload_id}/complete", {"part_ids": parts})
            if what == "cancel":
                return what, *api("POST", f"{base}/{upload_id}/cancel", b"")
            return what, *api("POST", f"{base}/{upload_id}/parts", part(b"Z" * 10), {"Content-Type": form})

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(act, ["complete"] * 3 + ["cancel"] * 2 + ["part"]))
        completed = {answer["file"]["id"] for what, status, answer in answers if what == "complete" and status == 200}
        cancelled = any(what == "cancel" and status == 200 for what, status, _ in answers)
        contents = [api("GET", f"/v1/openai/v1/files/{file_id}/content")[1] for file_id in completed]
        rounds.append((len(completed) + cancelled, contents in ([], [b"A" * 1000 + b"B" * 1000 + b"C" * 1000]),
                       sorted({status for _, status, _ in answers} - {200, 400, 409, 413})))
        files += len(completed)
    assert rounds == [(1, True, [])] * 5
    status, listing = api("GET", "/v1/openai/v1/files?purpose=batch")
    assert (status, len(listing["data"])) == (200, files)
    status, quota = api("GET", "/v1/quotas/openai")
    assert (status, quota["promised_bytes"], quota["promised_files"]) == (200, 0, 0)
    assert_no_drift(server)
