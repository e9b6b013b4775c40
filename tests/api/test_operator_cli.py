"""The operator's commands (`flask --app app files ...`) in both configurations: tokens (list, revoke,
expiry), people (list, disable, enable, roles, delete, passwords), the audit log (filters, JSON, the
operator as who acted), the line on stderr saying where each command acts, and failing in words,
without leaving anything behind, where no service lives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask.cli import FlaskGroup

from files_app import create_app
from files_app.models import db
from tests.api.test_team import PASSWORD, person, upload
from tests.helpers import bearer, make_token, put
from tests.live_server import ROOT


def files(runner, *args: str, input: str | None = None, ok: bool = True):
    result = runner.invoke(args=["files", *args], input=input)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def refused(runner, *args: str, input: str | None = None) -> str:
    """A command that must fail in words: exit status 1, a message, no traceback. Returns its stderr."""
    result = files(runner, *args, input=input, ok=False)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit), result.exception
    return result.stderr


def json_lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def minute(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def personal_token(app, client, admin: str, name: str, role: str = "member", scope: str = "write") -> str:
    """A person made through the API, and a token of theirs made by them, signed in."""
    return person(app, client, admin, name, role, scope)["Authorization"].removeprefix("Bearer ")


def test_tokens_listed_with_their_expiry_last_use_and_state_and_revoked(app, client, runner):
    made = files(runner, "token", "create", "--name", "ci", "--scope", "write", "--expires-in", "30")
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n" and secret.startswith("fsk_")  # the secret alone on stdout
    assert "'ci' (write, until " in made.stderr and "shown only now" in made.stderr
    admin = make_token(runner, "admin")
    ada = personal_token(app, client, admin, "ada")
    assert client.get("/v1/account", headers=bearer(secret)).status_code == 200  # its last use

    listed = {token["name"]: token for token in json_lines(files(runner, "token", "list", "--json"))}
    ci = listed["ci"]
    assert (ci["scope"], ci["bucket"], ci["user"], ci["state"]) == ("write", None, None, "active")
    assert abs(ci["expires_at"] - (time.time() + 30 * 86400)) < 120
    assert ci["last_used_from"] == "127.0.0.1" and time.time() - ci["last_used_at"] < 120
    assert listed["admin-test"]["expires_at"] is None and listed["admin-test"]["last_used_at"] is not None
    assert listed["laptop"]["user"] == "ada" and listed["laptop"]["scope"] == "write"
    assert [token["id"] for token in listed.values()] == sorted((t["id"] for t in listed.values()), reverse=True)

    table = files(runner, "token", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "SCOPE", "BUCKET", "OWNER", "CREATED", "LAST", "USED", "FROM",
                                "EXPIRES", "STATE"]
    row = next(line.split() for line in table[1:] if line.split()[1] == "ci")
    assert row[:5] == [str(ci["id"]), "ci", "write", "-", "-"] and row[-1] == "active"
    assert " ".join(row[5:7]) == minute(ci["created_at"]) and row[9] == "127.0.0.1"
    assert " ".join(row[10:12]) == minute(ci["expires_at"])
    assert next(line for line in table if " laptop " in line).split()[4] == "ada"

    revoked = files(runner, "token", "revoke", str(ci["id"]))
    assert revoked.stdout.startswith(f"token {ci['id']} 'ci' revoked")
    assert client.get("/v1/account", headers=bearer(secret)).status_code == 401
    assert client.get("/v1/account", headers=bearer(ada)).status_code == 200
    states = {token["name"]: token["state"] for token in json_lines(files(runner, "token", "list", "--json"))}
    assert states == {"ci": "revoked", "admin-test": "active", "laptop": "active"}
    files(runner, "user", "disable", "ada")
    assert next(line for line in files(runner, "token", "list").stdout.splitlines()
                if " laptop " in line).endswith("owner disabled")
    assert "token 9999 does not exist" in refused(runner, "token", "revoke", "9999")
    assert files(runner, "token", "revoke", "x", ok=False).exit_code == 2  # not an id: a usage error
    for days in ("0", "3651"):
        assert files(runner, "token", "create", "--name", "x", "--expires-in", days, ok=False).exit_code == 2


def test_an_expired_token_shows_as_expired(app, runner):
    with app.app_context():
        app.extensions["files"].accounts.create_token("old", "read", expires_at=int(time.time()) - 10)
    (old,) = json_lines(files(runner, "token", "list", "--json"))
    assert old["state"] == "expired"


def test_people_listed_disabled_enabled_given_roles_new_passwords_and_deleted(app, client, runner):
    files(runner, "user", "create", "--name", "ada", "--password", PASSWORD)  # the first: an admin
    admin = make_token(runner, "admin")
    bob = bearer(personal_token(app, client, admin, "bob"))
    users = json_lines(files(runner, "user", "list", "--json"))
    assert [(user["name"], user["role"], user["disabled_at"]) for user in users] == [("ada", "admin", None),
                                                                                     ("bob", "member", None)]
    table = files(runner, "user", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "ROLE", "CREATED", "DISABLED"]
    assert table[2].split() == ["bob", "member", *minute(users[1]["created_at"]).split(), "-"]

    # Disabled: his token stops at once; enabled: it works again.
    assert files(runner, "user", "disable", "bob").stdout == "user 'bob' disabled\n"
    assert client.get("/v1/account", headers=bob).status_code == 401
    disabled = json_lines(files(runner, "user", "list", "--json"))[1]["disabled_at"]
    assert minute(disabled) in files(runner, "user", "list").stdout.splitlines()[2]
    files(runner, "user", "enable", "bob")
    assert client.get("/v1/account", headers=bob).get_json()["role"] == "member"

    # Roles; the last admin stays one.
    assert "'ada' is the last admin" in refused(runner, "user", "set-role", "ada", "member")
    assert "'ada' is the last admin" in refused(runner, "user", "disable", "ada")
    assert files(runner, "user", "set-role", "bob", "admin").stdout == "user 'bob' is now an admin\n"
    assert client.get("/v1/account", headers=bob).get_json()["role"] == "admin"
    files(runner, "user", "set-role", "ada", "member")
    assert files(runner, "user", "set-role", "bob", "owner", ok=False).exit_code == 2
    assert "user 'nobody' does not exist" in refused(runner, "user", "disable", "nobody")

    # A new password, typed twice; too short or mismatched ones are refused.
    files(runner, "user", "set-password", "ada", input="a new long password\n" * 2)
    with app.app_context():
        accounts = app.extensions["files"].accounts
        assert accounts.sign_in("ada", PASSWORD, "127.0.0.1") is None
        assert accounts.sign_in("ada", "a new long password", "127.0.0.1") is not None
    assert "at least 10 characters" in refused(runner, "user", "set-password", "ada", "--password", "short")
    assert files(runner, "user", "set-password", "ada", input="one long password\nanother one\n", ok=False
                 ).exit_code == 1  # asked again, then the input ended: nothing changed

    # Deleted: refused while they own buckets, unless someone takes them over.
    assert upload(client, bob, "bobs", "plan.txt").status_code == 200
    assert "'bob' is the last admin" in refused(runner, "user", "delete", "bob")
    files(runner, "user", "set-role", "ada", "admin")
    assert "owns 1 bucket(s)" in refused(runner, "user", "delete", "bob")
    deleted = files(runner, "user", "delete", "bob", "--transfer-to", "ada")
    assert deleted.stdout == "user 'bob' deleted; their buckets now belong to 'ada'\n"
    assert [user["name"] for user in json_lines(files(runner, "user", "list", "--json"))] == ["ada"]
    assert client.get("/v1/account", headers=bob).status_code == 401
    with app.app_context():
        assert app.extensions["files"].people.grants("bobs")[0] == "ada"
    assert "user 'bob' does not exist" in refused(runner, "user", "delete", "bob")


def test_the_audit_log_newest_first_filtered_and_the_operators_changes_are_the_operators(app, client, runner):
    put(client, "photos", "a.txt", b"hello")  # an open service: nobody in particular
    put(client, "notes", "b.txt", b"world")
    time.sleep(0.05)
    mark = time.time()
    files(runner, "user", "create", "--name", "ada", "--password", PASSWORD)
    files(runner, "token", "create", "--name", "ci", "--scope", "admin")
    files(runner, "quota", "set", "bucket", "notes", "--max-bytes", "1M")
    bob = bearer(personal_token(app, client, make_token(runner, "admin"), "bob"))
    assert client.delete("/v1/files/photos/a.txt", headers=bob).status_code == 404  # not bob's to see
    files(runner, "user", "set-role", "bob", "admin")
    assert client.delete("/v1/files/photos/a.txt", headers=bob).status_code == 200

    entries = json_lines(files(runner, "audit", "--json"))
    assert [entry["id"] for entry in entries] == sorted((entry["id"] for entry in entries), reverse=True)
    assert (entries[0]["action"], entries[0]["actor_name"], entries[0]["bucket"], entries[0]["key"]) == \
        ("delete", "bob (token laptop)", "photos", "a.txt")
    by_operator = json_lines(files(runner, "audit", "--user", "operator", "--json"))
    assert [entry["action"] for entry in by_operator] == ["user.update", "token.create", "quota", "token.create",
                                                          "user.create"]
    assert {(entry["actor"], entry["actor_name"]) for entry in by_operator} == {("operator", "operator (flask files)")}
    assert by_operator[0]["detail"] == {"user": "bob", "role": "admin"}

    def actions(*filters: str) -> list[str]:
        return [entry["action"] for entry in json_lines(files(runner, "audit", "--json", *filters))]

    assert actions("--user", "bob") == ["delete", "token.create", "signin"]
    assert actions("--bucket", "photos") == ["delete", "upload", "bucket.create"]
    assert actions("--action", "user") == ["user.update", "user.create", "user.create"]
    assert actions("--action", "user.create", "--limit", "1") == ["user.create"]
    assert "upload" not in actions("--since", str(mark)) and "user.create" in actions("--since", str(mark))
    assert len(actions("--since", date.today().isoformat())) == len(entries)
    assert actions("--since", (date.today() + timedelta(days=2)).isoformat()) == []
    assert actions("--until", str(mark)) == ["upload", "bucket.create", "upload", "bucket.create"]
    limited = files(runner, "audit", "--limit", "2")
    assert len(limited.stdout.splitlines()) == 3 and "more entries" in limited.stderr
    table = files(runner, "audit").stdout.splitlines()
    assert table[0].split() == ["WHEN", "WHO", "FROM", "ACTION", "WHAT", "BYTES", "OUTCOME", "DETAIL"]
    assert "bob (token laptop)" in table[1] and "photos/a.txt" in table[1] and "127.0.0.1" in table[1]
    assert any("operator (flask files)" in line and "quota" in line and "notes" in line for line in table)
    assert "action is one of" in refused(runner, "audit", "--action", "nonsense")
    assert files(runner, "audit", "--since", "yesterday", ok=False).exit_code == 2


def test_every_command_says_on_stderr_where_it_acts(app, runner):
    database = app.config["SQLALCHEMY_DATABASE_URI"]
    where = f"files: data dir {app.config['FILES_DATA_DIR']}, database {database}, "
    commands = [["token", "list"], ["user", "list"], ["audit"], ["quota", "list"], ["gc"], ["init-db"],
                ["token", "create", "--name", "x"], ["user", "create", "--name", "x", "--password", PASSWORD]]
    for command in commands:
        result = files(runner, *command)
        assert result.stderr.splitlines()[0].startswith(where), (command, result.stderr)
    assert "blobs in the data dir" in result.stderr or "blobs in S3 bucket" in result.stderr
    failed = files(runner, "user", "disable", "nobody", ok=False)
    assert failed.stderr.splitlines()[0].startswith(where)


@pytest.fixture
def flask_command_line(settings):
    """`flask --app ... files ...` in this process: the command line makes the app (with these
    settings but for the data dir) as it does for an operator, each time."""
    made = []

    def run(data_dir: Path, *args: str):
        def factory():
            made.append(create_app({**settings, "FILES_DATA_DIR": str(data_dir)}))
            return made[-1]
        return CliRunner().invoke(FlaskGroup(create_app=factory, load_dotenv=False), ["files", *args])

    yield run
    for app in made:
        with app.app_context():
            db.engine.dispose()


def test_no_service_there_fails_in_words_and_leaves_nothing_behind(flask_command_line, settings, tmp_path, request):
    scaled = bool(settings["FILES_DATABASE_URL"])
    if scaled:  # an empty database (the fixtures' own come migrated already)
        settings["FILES_DATABASE_URL"] = request.getfixturevalue("postgres").create_database()
    missing = tmp_path / "nowhere" / "data"
    result = flask_command_line(missing, "token", "list")
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and "no such table" not in result.output
    assert result.stderr.startswith(f"files: data dir {missing}, database ")
    if scaled:
        assert f"(data dir {missing}) has no schema" in result.stderr
    else:
        assert f"there is no data dir at {missing} (FILES_DATA_DIR; default ./data)" in result.stderr
    assert "run `flask --app app files init-db`" in result.stderr
    assert not (tmp_path / "nowhere").exists()  # neither the data dir nor the parent made for it
    assert flask_command_line(missing, "user", "list", "--help").exit_code == 0
    assert not (tmp_path / "nowhere").exists()

    # A data dir without a service: it stays as it was, and init-db makes one there.
    empty = tmp_path / "empty"
    empty.mkdir()
    result = flask_command_line(empty, "user", "list")
    assert result.exit_code == 1
    assert ("has no schema" if scaled else f"data dir {empty} holds no database") in result.stderr
    assert list(empty.iterdir()) == []
    assert flask_command_line(empty, "init-db").exit_code == 0
    listed = flask_command_line(empty, "user", "list")
    assert listed.exit_code == 0 and listed.stdout.split() == ["NAME", "ROLE", "CREATED", "DISABLED"]
    assert (empty / "secret_key").exists() and (empty / "files.db").exists() != scaled


def test_in_an_empty_directory_without_files_data_dir_it_says_where_it_looked(tmp_path):
    """As an operator would run it in the wrong place: nothing is made there, nothing but words."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FILES_", "FLASK_"))}

    def flask(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flask", "--app", str(ROOT / "app.py"), *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    result = flask("files", "token", "list")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.splitlines()[0] == (f"files: data dir {tmp_path / 'data'}, database "
                                             f"sqlite:///{tmp_path / 'data' / 'files.db'}, blobs in the data dir")
    assert f"Error: there is no data dir at {tmp_path / 'data'}" in result.stderr
    assert "Set FILES_DATA_DIR to the server's data dir, or run `flask --app app files init-db`" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    for help_asked in (["--help"], ["files", "--help"]):  # Flask makes the app to list its commands
        assert flask(*help_asked).returncode == 0
        assert list(tmp_path.iterdir()) == []

    assert flask("files", "init-db").returncode == 0
    assert (tmp_path / "data" / "files.db").exists()
    listed = flask("files", "token", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["ID", "NAME", "SCOPE", "BUCKET", "OWNER", "CREATED", "LAST", "USED", "FROM",
                                     "EXPIRES", "STATE"]
    assert listed.stderr.startswith(f"files: data dir {tmp_path / 'data'}, ")
