"""Access: bearer tokens with scopes and bucket confinement, session ownership, signed-in users
with CSRF-checked cookie writes, the open mode and its limits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from files_app import create_app
from files_app.auth import refuse_open_exposure
from files_app.models import ApiToken, db
from files_app.schema import upgrade_database
from tests.helpers import assert_error, bearer, make_token
from tests.live_server import ROOT, free_port


def new_session(client, token: str, bucket: str = "b", key: str = "k", size: int = 5):
    return client.post("/v1/files", data=json.dumps({"bucket": bucket, "key": key, "size": size}),
                       headers=bearer(token))


def test_open_until_a_token_exists(client, runner, app):
    assert client.get("/v1/files").status_code == 200
    assert b'data-testid="open-banner"' in client.get("/").data
    token = make_token(runner, "read")
    with app.app_context():
        stored = db.session.scalars(db.select(ApiToken.token_sha256)).all()
    assert token.startswith("fsk_") and token not in stored and len(stored) == 1  # only a hash is kept
    response = client.get("/v1/files")
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="files"'
    assert_error(client.get("/v1/files", headers=bearer("fsk_wrong")), 401, "unauthorized")
    assert_error(client.get("/v1/files", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    assert client.get("/v1/files", headers=bearer(token)).status_code == 200
    assert client.get("/healthz").status_code == 200 and client.get("/v1/openapi.json").status_code == 200
    assert client.get("/").status_code == 302  # pages ask to sign in
    assert b"open-banner" not in client.get("/login").data


def test_scopes(client, runner):
    read, write, admin = (make_token(runner, scope) for scope in ("read", "write", "admin"))
    assert_error(new_session(client, read), 403, "forbidden")
    session = new_session(client, write).get_json()
    assert client.post(f"/v1/files/session:{session['id']}", data=b"hello", headers=bearer(write)).status_code == 200
    assert client.get("/v1/content/b/k", headers=bearer(read)).data == b"hello"
    assert_error(client.delete("/v1/files/b/k", headers=bearer(read)), 403, "forbidden")
    assert client.delete("/v1/files/b/k", headers=bearer(write)).status_code == 200
    assert_error(client.delete("/v1/files/b", headers=bearer(write)), 403, "forbidden")
    assert client.delete("/v1/files/b", headers=bearer(admin)).status_code == 204
    assert_error(client.put("/v1/files/made", headers=bearer(read)), 403, "forbidden")
    assert client.put("/v1/files/made", headers=bearer(write)).status_code == 201  # anyone who writes makes buckets
    assert_error(client.delete("/v1/files/made", headers=bearer(write)), 403, "forbidden")  # deleting one: manage


def test_bucket_confinement(client, runner):
    admin = make_token(runner, "admin")
    for bucket in ("mine", "theirs"):
        session = new_session(client, admin, bucket).get_json()
        client.post(f"/v1/files/session:{session['id']}", data=b"12345", headers=bearer(admin))
    mine = make_token(runner, "write", "mine")
    assert [b["name"] for b in client.get("/v1/files", headers=bearer(mine)).get_json()["data"]] == ["mine"]
    assert client.get("/v1/files/mine", headers=bearer(mine)).status_code == 200
    assert_error(client.get("/v1/files/theirs", headers=bearer(mine)), 403, "forbidden")
    assert_error(client.get("/v1/content/theirs/k", headers=bearer(mine)), 403, "forbidden")
    assert_error(new_session(client, mine, "theirs"), 403, "forbidden")
    tus = client.post("/v1/files", headers={**bearer(mine), "Tus-Resumable": "1.0.0", "Upload-Length": "1",
                                            "Upload-Metadata": "bucket dGhlaXJz"})  # "theirs"
    assert_error(tus, 403, "forbidden")
    assert new_session(client, mine, "mine").status_code == 201


def test_a_session_belongs_to_its_creator(client, runner):
    alice, bob = make_token(runner, "write"), make_token(runner, "write")
    session = new_session(client, alice).get_json()
    url = f"/v1/files/session:{session['id']}"
    assert_error(client.get(url, headers=bearer(bob)), 404, "not_found")
    assert_error(client.post(url, data=b"12345", headers=bearer(bob)), 404, "not_found")
    assert_error(client.delete(url, headers=bearer(bob)), 404, "not_found")
    tus = {"Tus-Resumable": "1.0.0"}
    assert client.head(url, headers={**bearer(bob), **tus}).status_code == 404
    assert client.patch(url, data=b"1", headers={**bearer(bob), **tus, "Upload-Offset": "0",
                                                  "Content-Type": "application/offset+octet-stream"}).status_code == 404
    assert client.get(url, headers=bearer(alice)).get_json()["offset"] == 0  # untouched
    assert client.post(url, data=b"12345", headers=bearer(alice)).get_json()["bytes"] == 5


def test_users_sign_in_and_cookie_writes_need_the_csrf_token(client, runner):
    result = runner.invoke(args=["files", "user", "create", "--name", "ada"], input="correct horse\ncorrect horse\n")
    assert result.exit_code == 0, result.output
    short = runner.invoke(args=["files", "user", "create", "--name", "bob"], input="short\nshort\n")
    assert short.exit_code == 1 and "10 characters" in short.output
    login = client.get("/login")
    csrf = login.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    wrong = client.post("/login", data={"username": "ada", "password": "nope", "csrf_token": csrf})
    assert wrong.status_code == 401 and b"do not match" in wrong.data
    assert client.post("/login", data={"username": "ada", "password": "correct horse"}).status_code == 403  # no CSRF
    signed = client.post("/login", data={"username": "ada", "password": "correct horse", "csrf_token": csrf,
                                         "next": "/"})
    assert signed.status_code == 302 and signed.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and b"sign-out" in page.data
    csrf = page.data.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()
    body = json.dumps({"bucket": "b", "key": "k", "size": 1})
    assert_error(client.post("/v1/files", data=body), 403, "csrf_failed")  # a cookie alone cannot write
    assert client.post("/v1/files", data=body, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert client.get("/v1/files").status_code == 200  # reads need no token
    client.post("/logout", data={"csrf_token": csrf})
    assert_error(client.get("/v1/files"), 401, "unauthorized")


def exposure(settings, *addresses, **changes):
    app = create_app({**settings, **changes})
    upgrade_database(app)
    return refuse_open_exposure(app, list(addresses))


def test_open_service_refuses_non_loopback(settings):
    assert exposure(settings, "127.0.0.1:8321", "[::1]:8321", "localhost:80", "unix:/run/files.sock") is None
    assert "refusing to serve 0.0.0.0:8321" in exposure(settings, "127.0.0.1:8321", "0.0.0.0:8321")
    assert "[::]:8321" in exposure(settings, "[::]:8321")
    assert "fd://3" in exposure(settings, "fd://3")  # inherited: where it listens is unknown
    assert exposure(settings, "0.0.0.0:8321", FILES_AUTH="off") is None


def test_open_closed_by_a_token_may_bind_anywhere(app, runner, settings):
    make_token(runner, "read")
    assert exposure(settings, "10.1.2.3:8321") is None


@pytest.mark.e2e
def test_gunicorn_refuses_before_binding(tmp_path):
    """`make serve` on a public address with nothing configured exits non-zero, and binds nothing."""
    env = {"PATH": "/usr/bin:/bin", "FILES_DATA_DIR": str(tmp_path), "FILES_HOST": "0.0.0.0",
           "FILES_PORT": str(free_port())}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "refusing to serve 0.0.0.0" in result.stderr
    assert "Listening at" not in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["GUNICORN_CMD_ARGS", "-b"])
def test_gunicorn_refuses_a_bind_set_outside_files_host(tmp_path, how):
    """FILES_HOST says loopback, but gunicorn is told to bind every interface: the guard reads what
    gunicorn binds, not FILES_HOST."""
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "FILES_DATA_DIR": str(tmp_path), "FILES_HOST": "127.0.0.1",
           "FILES_PORT": str(free_port())}
    args = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"]
    if how == "-b":
        args[3:3] = ["-b", f"0.0.0.0:{port}"]
    else:
        env["GUNICORN_CMD_ARGS"] = f"--bind 0.0.0.0:{port}"
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"refusing to serve 0.0.0.0:{port}" in result.stderr
    assert "Listening at" not in result.stderr
