"""The `files` client's tokens against a real server in both configurations: `files whoami`, and
`files token create|list|revoke` by an admin and by a member (their own tokens only); a token made
with the client works at once and is refused (401) from the moment it is revoked."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest

from tests.e2e.test_cli import run
from tests.e2e.test_openai_sdk import create_token
from tests.helpers import flask_files_ok

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"


@pytest.fixture
def server(any_server):
    return any_server


def user_env(tmp_path, server, name: str, token: str) -> dict:
    """A user's environment (their own config and state dirs), logged in with `token`."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / name),
                   "XDG_CONFIG_HOME": str(tmp_path / name / "config"), "XDG_STATE_HOME": str(tmp_path / name / "state")}
    run(environment, "login", server.url, "--token", token)
    return environment


def make_person(server, name: str) -> str:
    """`flask files user create` against the server's database, then a token of theirs, made signed in."""
    flask_files_ok(server, "user", "create", "--name", name, "--password", PASSWORD, "--role", "member")
    with httpx.Client(base_url=server.url) as browser:
        csrf = browser.get("/login").text.split('name="csrf_token" value="')[1].split('"')[0]
        assert browser.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": csrf}
                            ).status_code == 302
        csrf = browser.get("/").text.split('name="csrf-token" content="')[1].split('"')[0]
        made = browser.post("/v1/tokens", headers={"X-CSRF-Token": csrf}, json={"name": "laptop", "scope": "manage"})
        assert made.status_code == 201, made.text
        return made.json()["token"]


def status_with(server, token: str) -> int:
    return httpx.get(server.url + "/v1/files", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_token_made_with_the_client_works_and_stops_when_revoked(server, tmp_path):
    admin = user_env(tmp_path, server, "admin", create_token(server, "admin"))
    assert run(admin, "whoami").stdout == f"token sdk-admin on {server.url}: an operator's token; may admin\n"
    assert json.loads(run(admin, "whoami", "--json").stdout)["scope"] == "admin"

    made = run(admin, "token", "create", "ci job", "--scope", "write", "--bucket", "work", "--expires-in", "7")
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n" and secret.startswith("fsk_")  # the secret alone on stdout
    assert "'ci job' (write, bucket work, until " in made.stderr and "shown only now" in made.stderr
    (listed,) = [token for token in json.loads(run(admin, "token", "list", "--json").stdout)
                 if token["name"] == "ci job"]
    assert (listed["scope"], listed["bucket"], listed["state"], listed["last_used_at"]) == ("write", "work",
                                                                                           "active", None)
    assert abs(listed["expires_at"] - (time.time() + 7 * 86400)) < 120

    # Used: it writes in its bucket, and its last use is shown.
    ci = user_env(tmp_path, server, "ci", secret)
    assert run(ci, "whoami").stdout == f"token ci job on {server.url}: an operator's token; may write in bucket " \
                                       "work only\n"
    (tmp_path / "report.txt").write_text("all green")
    run(ci, "cp", str(tmp_path / "report.txt"), "work/")
    assert run(ci, "cat", "work/report.txt").stdout == "all green"
    assert status_with(server, secret) == 200
    table = run(admin, "token", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "SCOPE", "BUCKET", "OWNER", "CREATED", "LAST", "USED", "FROM",
                                "EXPIRES", "STATE"]
    row = next(line for line in table[1:] if line.split()[0] == str(listed["id"]))
    assert "127.0.0.1" in row and row.endswith("active") and " work " in row

    # Revoked: the next request with it is 401, whatever asks.
    revoked = run(admin, "token", "revoke", str(listed["id"]))
    assert revoked.stderr == f"token {listed['id']} 'ci job' revoked\n"
    assert status_with(server, secret) == 401
    refused = run(ci, "whoami", check=False)
    assert refused.returncode == 1 and "(401 unauthorized)" in refused.stderr and "Traceback" not in refused.stderr
    assert run(ci, "ls", check=False).returncode == 1
    states = {token["name"]: token["state"] for token in json.loads(run(admin, "token", "list", "--json").stdout)}
    assert states == {"ci job": "revoked", "sdk-admin": "active"}
    assert run(admin, "token", "revoke", "9999", check=False).returncode == 1


def test_a_member_makes_lists_and_revokes_only_their_own_tokens(server, tmp_path):
    admin = user_env(tmp_path, server, "admin", create_token(server, "admin"))
    ann = user_env(tmp_path, server, "ann", make_person(server, "ann"))
    assert run(ann, "whoami").stdout == f"ann (token laptop) on {server.url}: a member; may manage\n"

    secret = run(ann, "token", "create", "sync", "--scope", "write").stdout.strip()
    too_much = run(ann, "token", "create", "root", "--scope", "admin", check=False)
    assert too_much.returncode == 1 and "403" in too_much.stderr
    mine = json.loads(run(ann, "token", "list", "--json").stdout)
    assert [(token["name"], token["user"], token["expires_at"]) for token in mine] == [("sync", "ann", None),
                                                                                      ("laptop", "ann", None)]
    assert {token["user"] for token in json.loads(run(admin, "token", "list", "--json").stdout)} == {"ann", None}

    # Someone else's token is none of hers: 404, and it still works.
    (operators,) = [token for token in json.loads(run(admin, "token", "list", "--json").stdout)
                    if token["name"] == "sdk-admin"]
    other = run(ann, "token", "revoke", str(operators["id"]), check=False)
    assert other.returncode == 1 and "404" in other.stderr
    assert run(admin, "whoami").returncode == 0

    assert status_with(server, secret) == 200
    run(ann, "token", "revoke", str(mine[0]["id"]))
    assert status_with(server, secret) == 401
    # Her own login token: revoked too, and the client says so; its next call is refused.
    last = run(ann, "token", "revoke", str(mine[1]["id"]))
    assert "it was the token this client uses" in last.stderr
    assert run(ann, "whoami", check=False).returncode == 1
    assert {token["state"] for token in json.loads(run(admin, "token", "list", "--json").stdout)
            if token["user"] == "ann"} == {"revoked"}
