"""The last leftovers of issue #22, each on a real server in both configurations (SQLite and the data
dir; PostgreSQL and SeaweedFS), one server per configuration for the whole file:

- the session cap (FILES_MAX_SESSIONS) holds against parallel creations by one token: its count and
  the new session's insert are one transaction under a lock taken first;
- an expired OpenAI Upload's parts stop counting against their owner's quota when it expires, not at
  the next gc;
- a file request's received files and unfinished uploads keep counting for its creator after the
  link dies and gc runs (the dead row stays while something counts through it, then goes);
- a file share whose file is gone says so in the API and on the Shares page (`file_gone`).

Each test works with tokens and names of its own. Threads return what they were answered; the main
thread asserts."""

from __future__ import annotations

import base64
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from tests.e2e.test_counters import assert_no_drift, flask_files
from tests.live_server import GunicornServer

pytestmark = pytest.mark.e2e
CAP = 4  # FILES_MAX_SESSIONS of the file's servers
HOUR = 3600  # an OpenAI Upload takes parts for an hour
TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}


class Service:
    """A live server, its operator's admin token, and what the tests ask of it."""

    def __init__(self, server: GunicornServer, name: str):
        self.server, self.name = server, name
        result = flask_files(server, "token", "create", "--name", "leftovers-admin", "--scope", "admin")
        assert result.returncode == 0, result.stderr
        self.admin = {"Authorization": f"Bearer {result.stdout.strip().splitlines()[-1]}"}
        self.http = httpx.Client(base_url=server.url, timeout=60)

    def call(self, method: str, path: str, headers: dict | None = None, **kwargs) -> httpx.Response:
        return self.http.request(method, path, headers=headers if headers is not None else self.admin, **kwargs)

    def token(self, name: str, max_bytes: int | None = None) -> tuple[dict, int]:
        """A write token of its own ((its header, its id)), with a quota if `max_bytes`."""
        made = self.call("POST", "/v1/tokens", json={"name": name, "scope": "write"})
        assert made.status_code == 201, made.text
        if max_bytes is not None:
            quota = self.call("PUT", f"/v1/quotas/tokens/{made.json()['id']}", json={"max_bytes": max_bytes})
            assert quota.status_code == 200, quota.text
        return {"Authorization": f"Bearer {made.json()['token']}"}, made.json()["id"]

    def usage(self, token_id: int) -> tuple[int, int]:
        """(used_bytes, promised_bytes) of a token's quota."""
        quota = self.call("GET", f"/v1/quotas/tokens/{token_id}")
        assert quota.status_code == 200, quota.text
        return quota.json()["used_bytes"], quota.json()["promised_bytes"]

    def sql(self, statement: str, **params) -> list:
        """A statement run on the server's own database (to let time pass for some rows)."""
        url = self.server.env.get("FILES_DATABASE_URL") or f"sqlite:///{self.server.data_dir / 'files.db'}"
        engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as connection:
                result = connection.execute(sqlalchemy.text(statement), params)
                return result.all() if result.returns_rows else []
        finally:
            engine.dispose()

    def close(self) -> None:
        self.http.close()


CONFIGURATIONS = ["local", pytest.param("scaled", marks=pytest.mark.scaled)]


@pytest.fixture(scope="module", params=CONFIGURATIONS)
def service(request, tmp_path_factory):
    env, cleanup = {"FILES_MAX_SESSIONS": str(CAP)}, []
    if request.param == "scaled":
        cluster, weed = request.getfixturevalue("postgres"), request.getfixturevalue("seaweedfs")
        url, bucket = cluster.create_database(request.getfixturevalue("migrated_postgres")), weed.create_bucket()
        env.update({"FILES_DATABASE_URL": url, **weed.settings(bucket)})
        cleanup += [lambda: cluster.drop_database(url), lambda: weed.delete_bucket(bucket)]
    server = service = None
    try:
        server = GunicornServer(tmp_path_factory.mktemp(f"leftovers-{request.param}") / "data", **env).start()
        service = Service(server, request.param)
        yield service
    finally:
        if service is not None:
            service.close()
        if server is not None:
            server.kill()
        for step in cleanup:
            step()


def _error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# --- 1. the session cap, in parallel ----------------------------------------------------------------

def _create_all_at_once(service: Service, headers: dict, keys: list[str]) -> list[tuple[int, str | None, str]]:
    """Session creations sent at once, each on its own connection: (status, error code, session id)."""
    start = threading.Barrier(len(keys))

    def create(key: str):
        with httpx.Client(base_url=service.server.url, timeout=60) as client:
            start.wait(timeout=30)
            answer = client.post("/v1/files", headers=headers, json={"bucket": "cap", "key": key, "size": 10})
            return answer.status_code, _error_code(answer), answer.json().get("id", "")

    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(create, keys))


def test_parallel_creations_cannot_pass_the_session_cap(service):
    """16 creations at once by one token under a cap of 4: exactly 4 sessions, 12 x 429; then, at the
    cap less one, 16 more at once: exactly one. Before, the cap's count and the insert were two
    transactions: parallel creations all saw room and all got a session."""
    writer, _ = service.token("cap-writer")
    first = _create_all_at_once(service, writer, [f"a{index:02}" for index in range(16)])
    made = [session_id for status, _, session_id in first if status == 201]
    assert sorted(status for status, _, _ in first) == [201] * CAP + [429] * (16 - CAP), first
    assert {code for status, code, _ in first if status != 201} == {"too_many_sessions"}
    assert service.call("DELETE", f"/v1/files/session:{made[0]}", writer).status_code == 204
    second = _create_all_at_once(service, writer, [f"b{index:02}" for index in range(16)])
    assert sorted(status for status, _, _ in second) == [201] + [429] * 15, second
    live = made[1:] + [session_id for status, _, session_id in second if status == 201]
    assert all(service.call("GET", f"/v1/files/session:{sid}", writer).status_code == 200 for sid in live)
    refused = service.call("POST", "/v1/files", writer, json={"bucket": "cap", "key": "c", "size": 10})
    assert (refused.status_code, _error_code(refused)) == (429, "too_many_sessions")
    assert_no_drift(service.server)


# --- 2. an expired OpenAI Upload's parts ----------------------------------------------------------------

def test_an_expired_uploads_parts_stop_counting_when_it_expires(service):
    """A token's quota counts the parts of its pending Upload; an hour later (the Upload expired) they
    count no more, before any gc: a new Upload of the same size fits. Before, they counted until the
    hourly gc removed them (their sessions live 24 h)."""
    writer, token_id = service.token("openai-writer", max_bytes=1_000_000)
    base = "/v1/openai/v1/uploads"
    fields = {"purpose": "batch", "bytes": 600_000, "mime_type": "application/octet-stream"}
    old = service.call("POST", base, writer, json={**fields, "filename": "old.bin"})
    assert old.status_code == 200, old.text
    part = service.call("POST", f"{base}/{old.json()['id']}/parts", writer, files={"data": b"o" * 600_000})
    assert part.status_code == 200, part.text
    assert service.usage(token_id) == (0, 600_000)
    refused = service.call("POST", base, writer, json={**fields, "filename": "new.bin"})
    assert (refused.status_code, _error_code(refused)) == (507, "quota_exceeded")

    # An hour passes for the Upload and its part (every time they hold moves back by an hour).
    service.sql("UPDATE upload_sessions SET created_at = created_at - :hour, expires_at = expires_at - :hour "
                "WHERE id IN (SELECT session_id FROM openai_upload_parts WHERE upload_id = :upload)",
                hour=HOUR + 1, upload=old.json()["id"])
    service.sql("UPDATE openai_uploads SET created_at = created_at - :hour, expires_at = expires_at - :hour "
                "WHERE id = :upload", hour=HOUR + 1, upload=old.json()["id"])
    late = service.call("POST", f"{base}/{old.json()['id']}/parts", writer, files={"data": b"late"})
    assert (late.status_code, late.json()["error"]["code"]) == (400, "upload_expired")
    assert service.usage(token_id) == (0, 0)  # before any gc
    new = service.call("POST", base, writer, json={**fields, "filename": "new.bin"})
    assert new.status_code == 200, new.text
    part = service.call("POST", f"{base}/{new.json()['id']}/parts", writer, files={"data": b"n" * 600_000})
    assert part.status_code == 200, part.text
    assert service.usage(token_id) == (0, 600_000)
    gc = flask_files(service.server, "gc")
    assert gc.returncode == 0, gc.stderr
    assert service.usage(token_id) == (0, 600_000)  # gc took the expired Upload: nothing changes
    done = service.call("POST", f"{base}/{new.json()['id']}/complete", writer,
                        json={"part_ids": [part.json()["id"]]})
    assert done.status_code == 200 and done.json()["status"] == "completed", done.text
    assert service.usage(token_id) == (600_000, 0)
    assert_no_drift(service.server)


def test_a_complete_tus_partial_counts_until_it_expires(service):
    """A complete tus partial counts for its owner until a final takes it or it expires, as every other
    session (and as the session cap already counted it): before, an expired one counted until gc."""
    writer, token_id = service.token("partial-writer", max_bytes=1_000_000)
    made = service.call("POST", "/v1/files", {**writer, **TUS, "Upload-Concat": "partial", "Upload-Length": "600000"})
    assert made.status_code == 201, made.text
    url = made.headers["Location"].removeprefix(service.server.url)
    sent = service.call("PATCH", url, {**writer, **PATCH, "Upload-Offset": "0"}, content=b"p" * 600_000)
    assert sent.status_code == 204, sent.text
    assert service.usage(token_id) == (0, 600_000)
    service.sql("UPDATE upload_sessions SET expires_at = expires_at - 86401 WHERE id = :sid",
                sid=url.rsplit("/", 1)[1].removeprefix("session:"))  # a day passes for it
    assert service.usage(token_id) == (0, 0)


# --- 3. a file request's uploads after the link dies ----------------------------------------------------

def _tus_create(service: Service, link: str, name: str, size: int) -> str:
    made = service.call("POST", f"{link}/uploads", {**TUS, "Upload-Length": str(size),
                                                    "Upload-Metadata": "filename " + base64.b64encode(
                                                        name.encode()).decode()})
    assert made.status_code == 201, made.text
    return made.headers["Location"].removeprefix(service.server.url)


def test_a_dead_file_requests_uploads_keep_counting_for_its_creator(service):
    """A file request received a 600,000-byte file and holds an unfinished 300,000-byte upload; the
    link is revoked and gc runs: the unfinished upload went with the revocation (it could neither go
    on nor be aborted through a dead link), the received file still counts for its creator (the
    link's row stays while it does), so the creator cannot store past the quota by letting file
    requests die. Once the file is deleted, gc forgets the link and nothing counts. Before, gc
    deleted the revoked row at once and the creator's usage fell to 0 while the bytes stayed."""
    creator, token_id = service.token("request-creator", max_bytes=1_000_000)
    assert service.call("PUT", "/v1/files/inbox", creator).status_code in (200, 201)
    made = service.call("POST", "/v1/shares", creator, json={"bucket": "inbox", "prefix": "", "allow_upload": True})
    assert made.status_code == 201, made.text
    share_id, link = made.json()["id"], made.json()["url"].removeprefix(service.server.url)
    done = _tus_create(service, link, "received.bin", 600_000)
    sent = service.call("PATCH", done, {**PATCH, "Upload-Offset": "0"}, content=b"r" * 600_000)
    assert sent.status_code == 204, sent.text
    unfinished = _tus_create(service, link, "unfinished.bin", 300_000)
    sent = service.call("PATCH", unfinished, {**PATCH, "Upload-Offset": "0"}, content=b"u" * 1000)
    assert sent.status_code == 204, sent.text
    assert service.usage(token_id) == (600_000, 300_000)

    assert service.call("DELETE", f"/v1/shares/{share_id}", creator).json()["state"] == "revoked"
    gc = flask_files(service.server, "gc")
    assert gc.returncode == 0, gc.stderr
    assert service.usage(token_id) == (600_000, 0)  # the file is still there: still counted
    again = service.call("POST", "/v1/files", creator, json={"bucket": "inbox", "key": "more.bin", "size": 500_000})
    assert (again.status_code, _error_code(again)) == (507, "quota_exceeded")
    assert service.call("GET", f"/v1/shares/{share_id}", creator).json()["state"] == "revoked"

    # The file deleted, its finished upload's session a day older (expired): in the trash it still
    # counts for the creator through the link, which stays; once the trash is emptied, nothing counts.
    assert service.call("DELETE", "/v1/files/inbox/received.bin", creator).status_code in (200, 204)
    service.sql("UPDATE upload_sessions SET expires_at = expires_at - 86401 WHERE owner = :owner",
                owner=f"share:{share_id}")
    gc = flask_files(service.server, "gc")
    assert gc.returncode == 0, gc.stderr
    assert service.usage(token_id) == (0, 0)
    assert service.call("GET", f"/v1/quotas/tokens/{token_id}").json()["kept_bytes"] == 600_000
    assert service.call("GET", f"/v1/shares/{share_id}", creator).json()["state"] == "revoked"
    assert service.call("DELETE", "/v1/trash/inbox").json() == {"purged": 1}
    gc = flask_files(service.server, "gc")
    assert gc.returncode == 0, gc.stderr
    assert service.call("GET", f"/v1/quotas/tokens/{token_id}").json()["kept_bytes"] == 0
    assert service.call("GET", f"/v1/shares/{share_id}", creator).status_code == 404  # forgotten now
    assert_no_drift(service.server)


# --- 4. a file share whose file is gone --------------------------------------------------------------

def test_a_file_share_whose_file_is_gone_says_so(service):
    """The API and the Shares page said `active` for a file share whose file was moved away or deleted
    (the link itself answered 410 share_file_gone); now both say `file_gone`, as long as the file is
    not at its key (moved back, the link works again and says `active`), and a folder share beside it
    stays active."""
    writer, _ = service.token("file-sharer")
    assert service.call("PUT", "/v1/files/gone/doc.txt", writer, content=b"soon gone").status_code in (200, 201)
    made = service.call("POST", "/v1/shares", writer, json={"bucket": "gone", "key": "doc.txt"})
    folder = service.call("POST", "/v1/shares", writer, json={"bucket": "gone", "prefix": ""})
    assert made.status_code == folder.status_code == 201
    share_id, link = made.json()["id"], made.json()["url"].removeprefix(service.server.url)
    folder_id = folder.json()["id"]
    assert made.json()["state"] == "active"

    def states() -> tuple[str, dict, str]:
        """The share's state: by GET, in the list (with the folder's), and on the Shares page."""
        one = service.call("GET", f"/v1/shares/{share_id}", writer).json()["state"]
        listed = {share["id"]: share["state"] for share in service.call("GET", "/v1/shares", writer).json()["data"]}
        page = service.call("GET", "/shares", service.admin)
        assert page.status_code == 200, page.text
        assert f'data-id="{folder_id}" data-state="active"' in page.text
        shown = re.search(rf'data-id="{share_id}" data-state="([a-z_]+)"', page.text)
        return one, listed, shown.group(1) if shown else ""

    assert states() == ("active", {share_id: "active", folder_id: "active"}, "active")
    moved = service.call("POST", "/v1/move", writer, json={"bucket": "gone", "key": "doc.txt", "to_key": "away.txt"})
    assert moved.status_code == 200, moved.text
    assert service.call("GET", link, {}).status_code == 410
    assert states() == ("file_gone", {share_id: "file_gone", folder_id: "active"}, "file_gone")
    back = service.call("POST", "/v1/move", writer, json={"bucket": "gone", "key": "away.txt", "to_key": "doc.txt"})
    assert back.status_code == 200, back.text
    assert service.call("GET", link, {}).status_code == 200  # the same file: its link works again
    assert states() == ("active", {share_id: "active", folder_id: "active"}, "active")

    assert service.call("DELETE", "/v1/files/gone/doc.txt", writer).status_code in (200, 204)
    opened = service.call("GET", f"{link}/f/doc.txt", {})  # the download route answers JSON
    assert (opened.status_code, _error_code(opened)) == (410, "share_file_gone")
    assert states() == ("file_gone", {share_id: "file_gone", folder_id: "active"}, "file_gone")
    assert "file gone" in service.call("GET", "/shares", service.admin).text  # said in words too
    revoked = service.call("DELETE", f"/v1/shares/{share_id}", writer)  # still revocable
    assert (revoked.status_code, revoked.json()["state"]) == (200, "revoked")
