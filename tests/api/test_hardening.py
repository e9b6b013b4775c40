"""What a hostile web page, a hostile Host header or a careless caller may not do: cross-site
writes, DNS rebinding, open redirects, headers that cannot be sent back, hidden sessions,
confinement gaps, sign-in guessing, and ranges that are not bytes."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select, update

from files_app.models import StoredObject, UploadSession, db
from tests.helpers import app_with, assert_error, bearer, make_token, put

CREATE = json.dumps({"bucket": "b", "key": "victim.txt", "size": 0})
TUS = {"Tus-Resumable": "1.0.0"}



def csrf_of(page) -> str:
    return page.data.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()


def sign_in(client, runner, name="ada", password="correct horse", **form):
    """Sign in (creating the user first when given the CLI runner)."""
    if runner is not None:
        result = runner.invoke(args=["files", "user", "create", "--name", name], input="correct horse\n" * 2)
        assert result.exit_code == 0, result.output
    csrf = csrf_of(client.get("/login"))
    return client.post("/login", data={"username": name, "password": password, "csrf_token": csrf, **form})


# --- where a request comes from -------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},  # sandboxed frames and file:// pages
    {"Origin": "http://localhost:3000"},  # same site, other origin: another local dev server
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},  # Origin wins
])
def test_cross_site_writes_are_refused_on_an_open_service(client, headers):
    put(client, "b", "victim.txt", b"precious")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        assert_error(client.post("/v1/files", data=CREATE, headers={**headers, "Content-Type": content_type}),
                     403, "cross_site")
    assert_error(client.delete("/v1/files/b/victim.txt", headers=headers), 403, "cross_site")
    assert_error(client.delete("/v1/files/b", headers=headers), 403, "cross_site")
    form = client.post("/b/b/delete", data={"key": "victim.txt", "csrf_token": csrf_of(client.get("/"))},
                       headers=headers)
    assert form.status_code == 403
    assert client.post("/buckets", data={"name": "new"}, headers=headers).status_code == 403
    # The routes that move and delete many files at once, as API calls and as the pages' forms.
    for route in ("/v1/move", "/v1/copy"):
        assert_error(client.post(route, data=json.dumps({"bucket": "b", "key": "victim.txt", "to_key": "x"}),
                                 headers=headers), 403, "cross_site")
    # Quotas and share links: set, made or revoked by another site's page.
    assert_error(client.put("/v1/quotas/b", data=json.dumps({"max_bytes": 0}), headers=headers), 403, "cross_site")
    assert_error(client.post("/v1/shares", data=json.dumps({"bucket": "b", "key": "victim.txt"}), headers=headers),
                 403, "cross_site")
    assert_error(client.delete("/v1/shares/shr_0000000000000000", headers=headers), 403, "cross_site")
    assert_error(client.delete("/v1/folders/b/", headers=headers), 403, "cross_site")
    csrf = csrf_of(client.get("/"))
    for path, form in (("/b/b/move", {"key": "victim.txt", "to_key": "stolen.txt"}),
                       ("/b/b/move", {"key": "victim.txt", "to_key": "stolen.txt", "action": "copy"}),
                       ("/b/b/quota", {"max_bytes": "1"}),
                       ("/quotas", {"kind": "bucket", "name": "b", "max_bytes": "1"}),
                       ("/b/b/share", {"key": "victim.txt"}), ("/shares/shr_0000000000000000/revoke", {}),
                       ("/b/b/delete-folder", {"prefix": "", "until": "999999999999"})):
        assert client.post(path, data={**form, "csrf_token": csrf}, headers=headers).status_code == 403
    assert client.get("/v1/content/b/victim.txt").data == b"precious"
    assert [b["name"] for b in client.get("/v1/files").get_json()["data"]] == ["b"]
    assert [f["key"] for f in client.get("/v1/files/b").get_json()["data"]] == ["victim.txt"]
    assert client.get("/v1/quotas/b").get_json()["max_bytes"] is None
    assert client.get("/v1/shares").get_json()["data"] == []


def test_same_origin_curl_and_allowed_origins_may_write(app, client):
    assert client.post("/v1/files", data=CREATE).status_code == 201  # curl: no Origin, no Sec-Fetch-*
    same = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    assert client.post("/v1/files", data=CREATE, headers=same).status_code == 201
    assert client.post("/v1/files", data=CREATE, headers={"Sec-Fetch-Site": "none"}).status_code == 201
    assert client.get("/v1/files", headers={"Origin": "http://evil.example"}).status_code == 200  # reads: CORS decides


def test_cors_origins_and_bearer_tokens_may_write_from_elsewhere(settings, runner):
    app = app_with(settings, FILES_CORS_ORIGINS="http://app.example")
    client = app.test_client()
    assert client.post("/v1/files", data=CREATE, headers={"Origin": "http://app.example"}).status_code == 201
    assert_error(client.post("/v1/files", data=CREATE, headers={"Origin": "http://evil.example"}), 403, "cross_site")
    token = make_token(app.test_cli_runner(), "write")
    # A page cannot set Authorization without a CORS preflight that only allowed origins pass.
    reply = client.post("/v1/files", data=CREATE, headers={"Origin": "http://evil.example", **bearer(token)})
    assert reply.status_code == 201
    basic = {"Origin": "http://evil.example", "Authorization": "Basic YTpi"}  # a browser may attach this itself
    assert_error(client.post("/v1/files", data=CREATE, headers=basic), 403, "cross_site")


@pytest.mark.parametrize("host", ["evil.example", "rebind.attacker.example:8321", "10.0.0.1"])
def test_hosts_outside_the_allow_list_are_refused(client, host):
    assert_error(client.get("/v1/files", headers={"Host": host}), 400, "invalid_host")
    assert_error(client.post("/v1/files", data=CREATE, headers={"Host": host}), 400, "invalid_host")
    assert client.get("/", headers={"Host": host}).status_code == 400


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:8321", "[::1]:8321", "LOCALHOST."])
def test_loopback_hosts_are_served(client, host):
    assert client.get("/v1/files", headers={"Host": host}).status_code == 200


def test_allowed_hosts_setting(settings):
    client = app_with(settings, FILES_ALLOWED_HOSTS="files.example.org").test_client()
    assert client.get("/healthz", headers={"Host": "files.example.org:443"}).status_code == 200
    assert_error(client.get("/healthz", headers={"Host": "localhost"}), 400, "invalid_host")
    anything = app_with(settings, FILES_ALLOWED_HOSTS="*").test_client()
    assert anything.get("/healthz", headers={"Host": "whatever.example"}).status_code == 200


# --- CSRF tokens ------------------------------------------------------------------------------

def test_an_empty_csrf_token_never_matches(client):
    put(client, "b", "victim.txt", b"precious")
    # No session yet (SameSite drops the cookie cross-site): the expected token is empty.
    for sent in ({"csrf_token": ""}, {}):
        reply = client.post("/b/b/delete", data={"key": "victim.txt", **sent})
        assert reply.status_code == 403 and b"did not come from this site" in reply.data
    assert client.get("/v1/files/b/victim.txt").status_code == 200


def test_the_token_exists_from_sign_in_and_rotates(client, runner):
    before = csrf_of(client.get("/login"))
    signed = sign_in(client, runner, next="/v1/files")
    assert signed.status_code == 302 and signed.headers["Location"] == "/v1/files"
    # Straight to the API after sign-in: a cookie-only write without the token is refused...
    assert_error(client.post("/v1/files", data=CREATE), 403, "csrf_failed")
    with client.session_transaction() as session:
        token = session["csrf"]
    assert token and token != before  # ...the session has a token at once, a new one
    assert client.post("/v1/files", data=CREATE, headers={"X-CSRF-Token": token}).status_code == 201
    assert client.post("/b/b/delete", data={"key": "victim.txt"}).status_code == 403  # form without the token


def test_sign_out_ends_the_session_on_the_server(client, runner):
    sign_in(client, runner)
    with client.session_transaction() as session:
        stolen = dict(session)
    csrf = csrf_of(client.get("/"))
    client.post("/logout", data={"csrf_token": csrf})
    with client.session_transaction() as session:
        session.update(stolen)  # a copy of the cookie taken before sign-out
    assert_error(client.get("/v1/files"), 401, "unauthorized")
    assert client.get("/").status_code == 302


def test_sign_in_failures_are_throttled(client, runner):
    sign_in(client, runner)  # makes the user, signs in
    for _ in range(5):
        assert sign_in(client, None, password="wrong password").status_code == 401
    blocked = sign_in(client, None)  # even the right password now waits
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert b"too many failed sign-ins" in blocked.data


@pytest.mark.parametrize("target", ["/%09/evil.example", "/\t/evil.example", "//evil.example", "/\\evil.example",
                                    "https://evil.example/", "javascript:alert(1)", "\\\\evil.example",
                                    " //evil.example", "/\n/evil.example", "evil.example"])
def test_sign_in_redirects_only_to_paths_on_this_site(client, runner, target):
    from urllib.parse import unquote

    signed = sign_in(client, runner, next=unquote(target))
    assert signed.status_code == 302 and signed.headers["Location"] == "/"


def test_sign_in_follows_a_local_path(client, runner):
    assert sign_in(client, runner, next="/b/photos/?limit=5").headers["Location"] == "/b/photos/?limit=5"


# --- confinement ------------------------------------------------------------------------------

def test_a_confined_token_sees_and_makes_only_its_bucket_in_the_ui(client, runner):
    put(client, "mine", "a.txt", b"a")
    put(client, "theirs", "b.txt", b"b")
    token = make_token(runner, "admin", bucket="mine")
    page = client.get("/", headers=bearer(token))
    assert b"mine" in page.data and b"theirs" not in page.data
    reply = client.post("/buckets", data={"name": "other", "csrf_token": csrf_of(page)}, headers=bearer(token))
    assert reply.status_code == 302  # refused with a message, back to the list
    assert "other" not in [b["name"] for b in client.get("/v1/files", headers=bearer(token)).get_json()["data"]]
    assert client.get("/b/theirs/", headers=bearer(token)).status_code == 403


def test_sessions_made_while_open_are_nobodys_once_closed(client, runner):
    made = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 3})).get_json()
    path = made["url"].removeprefix("http://localhost")
    token = make_token(runner, "admin")
    assert_error(client.get(path, headers=bearer(token)), 404, "not_found")
    assert_error(client.post(path, data=b"abc", headers=bearer(token)), 404, "not_found")
    assert_error(client.delete(path, headers=bearer(token)), 404, "not_found")


# --- input that cannot be sent back ---------------------------------------------------------------

def stored_before_the_rule(app, **values) -> None:
    """Give every stored file a value that today's validation refuses, as an older version stored it."""
    with app.app_context():
        db.session.execute(update(StoredObject).values(**values))
        db.session.commit()


@pytest.mark.parametrize("mime_type", ['image/png; a="\u0100"', "image/png; a=\"\x7f\"", 'text/plain; a="\u2028"',
                                       "text/plain; a=b\u00e9", "text/plain; a", "text/ plain"])
def test_mime_types_that_no_header_can_carry_are_refused(client, mime_type):
    body = json.dumps({"bucket": "b", "key": "k", "size": 1, "mime_type": mime_type})
    assert_error(client.post("/v1/files", data=body), 400, "invalid_mime_type")


def test_a_stored_unsendable_mime_type_is_served_as_bytes(app, client):
    put(client, "b", "k.png", b"png?")
    stored_before_the_rule(app, mime_type='image/png; a="\u0100"')
    reply = client.get("/v1/content/b/k.png")
    assert reply.status_code == 200 and reply.data == b"png?"
    assert reply.headers["Content-Type"] == "application/octet-stream"
    assert client.get("/b/b/k.png").status_code == 200


@pytest.mark.parametrize("key", ["a\u0085b", "a\u009fb", "evil\u202etxt.exe", "a\u2066b", "a\u2069"])
def test_keys_refuse_c1_controls_and_bidi_overrides(client, key):
    body = json.dumps({"bucket": "b", "key": key, "size": 1})
    assert_error(client.post("/v1/files", data=body), 400, "invalid_key")


def test_a_key_stored_under_the_old_rule_stays_reachable(app, client):
    put(client, "b", "old", b"x")
    stored_before_the_rule(app, key="old\u0085name")
    assert client.get("/v1/files/b/old\u0085name").status_code == 200
    assert client.delete("/v1/files/b/old\u0085name").status_code == 200


def test_ranges_of_another_unit_are_ignored_and_if_range_needs_a_strong_match(client):
    stored = put(client, "b", "r.bin", b"0123456789")
    assert client.get("/v1/content/b/r.bin", headers={"Range": "items=0-1"}).status_code == 200
    etag = f'"{stored["sha256"]}"'
    ranged = {"Range": "bytes=0-1"}
    assert client.get("/v1/content/b/r.bin", headers={**ranged, "If-Range": etag}).status_code == 206
    weak = client.get("/v1/content/b/r.bin", headers={**ranged, "If-Range": "W/" + etag})
    assert weak.status_code == 200 and weak.data == b"0123456789"
    modified = client.get("/v1/content/b/r.bin").headers["Last-Modified"]
    assert client.get("/v1/content/b/r.bin", headers={**ranged, "If-Range": modified}).status_code == 206
    future = client.get("/v1/content/b/r.bin", headers={**ranged, "If-Range": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert future.status_code == 200


# --- hidden sessions --------------------------------------------------------------------------------

def _session_ids(app) -> list[str]:
    with app.app_context():
        ids = db.session.scalars(select(UploadSession.id)).all()
        db.session.commit()
        return ids


@pytest.mark.parametrize("failure", ["checksum", "too_large"])
def test_a_failed_tus_creation_with_upload_leaves_no_session(app, client, failure):
    headers = {**TUS, "Upload-Length": "4", "Content-Type": "application/offset+octet-stream",
               "Upload-Metadata": "bucket " + base64.b64encode(b"b").decode()}
    if failure == "checksum":
        headers["Upload-Checksum"] = "sha1 " + base64.b64encode(b"\0" * 20).decode()
        reply = client.post("/v1/files", data=b"abcd", headers=headers)
        assert reply.status_code == 460
    else:
        reply = client.post("/v1/files", data=b"abcdefgh", headers=headers)
        assert reply.status_code == 413
    assert "Location" not in reply.headers
    assert _session_ids(app) == []
    if hasattr(app.extensions["files"].store, "uploads"):
        assert list(Path(app.extensions["files"].store.uploads).iterdir()) == []


def test_complete_partials_count_toward_the_session_cap(settings, runner):
    app = app_with(settings, FILES_MAX_SESSIONS="2")
    client = app.test_client()
    token = make_token(app.test_cli_runner(), "write")
    partial = {**TUS, **bearer(token), "Upload-Concat": "partial", "Upload-Length": "2",
               "Content-Type": "application/offset+octet-stream"}
    for _ in range(2):
        assert client.post("/v1/files", data=b"ab", headers=partial).status_code == 201  # complete at once
    assert_error(client.post("/v1/files", data=b"ab", headers=partial), 429, "too_many_sessions")


# --- files the service makes ---------------------------------------------------------------------

def test_the_database_and_data_dir_are_private(app, client, settings):
    put(client, "b", "k", b"secret")
    data_dir = Path(settings["FILES_DATA_DIR"])
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    if not settings.get("FILES_DATABASE_URL"):
        assert stat.S_IMODE(os.stat(data_dir / "files.db").st_mode) == 0o600


def test_no_room_is_507_at_creation_in_both_dialects_and_put(app, client, monkeypatch):
    """An upload that cannot fit in the free space (less FILES_RESERVED_SPACE) is refused before a
    byte is sent, in the one error shape: the seed's creation, tus's (and a deferred length
    declared late), and a whole-file PUT."""
    store = app.extensions["files"].store
    monkeypatch.setattr(store, "free_bytes", lambda: app.config["FILES_RESERVED_SPACE"] + 1024 * 1024)
    big = 2 * 1024 * 1024
    seed = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": big}))
    assert_error(seed, 507, "insufficient_storage")
    tus = {"Tus-Resumable": "1.0.0"}
    assert_error(client.post("/v1/files", headers={**tus, "Upload-Length": str(big)}), 507, "insufficient_storage")
    assert_error(client.put("/v1/files/b/k", data=b"x" * big), 507, "insufficient_storage")
    deferred = client.post("/v1/files", headers={**tus, "Upload-Defer-Length": "1"})
    assert deferred.status_code == 201
    url = deferred.headers["Location"].removeprefix("http://localhost")
    late = client.patch(url, data=b"abc", headers={**tus, "Content-Type": "application/offset+octet-stream",
                                                   "Upload-Offset": "0", "Upload-Length": str(big)})
    assert_error(late, 507, "insufficient_storage")
    assert client.get("/v1/files/b").status_code == 404  # no bucket was made for any of them
    fits = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 512 * 1024}))
    assert fits.status_code == 201


def test_the_pages_move_and_folder_forms_need_their_csrf_token(client):
    put(client, "b", "keep/victim.txt", b"precious")
    client.get("/")  # a session, with its token
    for path, form in (("/b/b/move", {"key": "keep/victim.txt", "to_key": "stolen.txt"}),
                       ("/b/b/move", {"prefix": "keep/", "to_prefix": "gone/"}),
                       ("/b/b/delete-folder", {"prefix": "keep/", "until": "999999999999"})):
        assert client.post(path, data=form).status_code == 403  # no token
        assert client.post(path, data={**form, "csrf_token": "forged"}).status_code == 403
    assert client.get("/v1/content/b/keep/victim.txt").data == b"precious"

