"""Backups that restore anywhere (#24), with the real command line (a subprocess where it is killed or runs
beside a server) and real servers: a backup taken while uploads go on restores into a new service of the
OTHER configuration (SQLite + local disk into PostgreSQL + SeaweedFS, and back) with every file acknowledged
before the backup began, every row of every table as it was, no drift, a person's token working; a second
backup copies only the new blobs; --verify finds a flipped byte. A backup and a restore killed by SIGKILL
midway are finished by the next run, and leave nothing that run trusts wrongly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from files_app import create_app
from files_app.models import StoredObject, User, db
from files_app.services import backup as backups
from files_app.storage.base import is_id
from tests.e2e.test_counters import Client
from tests.helpers import flask_files, flask_files_ok, sha256
from tests.live_server import GunicornServer
from tests.unit.test_backup import expected_rows, table_rows

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
WRITERS, WRITES = 2, 150  # bounded: the writers stop when the backup is done, or after this many each


def start_files(service, *args: str) -> subprocess.Popen:
    """`python -m flask --app app files ARGS` on `service`'s settings, as its own process (SIGKILL-able)."""
    env = {**os.environ, "FILES_DATA_DIR": str(service.data_dir), "PYTHONUNBUFFERED": "1", **service.env}
    if "FILES_DATABASE_URL" not in service.env:
        env.pop("FILES_DATABASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "flask", "--app", "app", "files", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_files(service, *args: str) -> tuple[int, str]:
    process = start_files(service, *args)
    out, err = process.communicate(timeout=180)
    return process.returncode, out + err


def app_of(service):
    return create_app({"FILES_DATA_DIR": str(service.data_dir), "FILES_DATABASE_URL": "", **service.env})


def rows_of(service) -> dict[str, list[dict]]:
    app = app_of(service)
    try:
        return table_rows(app)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def person_token(service, name: str) -> str:
    """A token of the person `name` (made as their own: it may do what they may)."""
    app = app_of(service)
    with app.app_context():
        user = db.session.execute(db.select(User).where(User.username == name)).scalar_one()
        secret = app.extensions["files"].accounts.create_token("laptop", "write", user_id=user.id, role=user.role)[1]
        db.session.remove()
        db.engine.dispose()
    return secret


def listing(client: Client, bucket: str) -> dict[str, str]:
    found, cursor = {}, ""
    while True:
        status, page = client.call("GET", f"/v1/files/{bucket}?limit=1000&cursor={cursor}")
        assert status == 200, page
        found.update({entry["key"]: entry["sha256"] for entry in page["data"]})
        if not page["has_more"]:
            return found
        cursor = page["next_cursor"]


def populate(server, admin: Client) -> None:
    """A row in most tables: a hook first (later changes are delivered), files inline and not, a version,
    a trash entry, a person with a grant, a share, a quota."""
    assert admin.call("POST", "/v1/hooks", {"url": "http://127.0.0.1:9/hook", "actions": ["*"]})[0] == 201
    for key, data in (("small.txt", b"kept in its row"), ("big.bin", os.urandom(90_000)),
                      ("big.bin", os.urandom(80_000)), ("old.bin", os.urandom(70_000)), ("dir/deep.bin", b"d" * 99)):
        assert admin.put("b", key, data) == 200
    assert admin.delete("b", "old.bin") in (200, 204)
    assert admin.call("POST", "/v1/users", {"name": "alice", "password": "correct horse battery"})[0] == 201
    assert admin.call("PUT", "/v1/grants/b/alice", {"level": "write"})[0] == 200
    assert admin.call("POST", "/v1/shares", {"bucket": "b", "key": "small.txt"})[0] == 201
    assert admin.call("PUT", "/v1/quotas/b", {"max_bytes": 10**9})[0] == 200


@pytest.fixture
def configuration(request):
    """The FILES_* settings of a new service: "local" (SQLite and a data dir), or "scaled" (a PostgreSQL
    database, at the newest schema or with none at all, and an empty SeaweedFS bucket)."""
    made = []

    def make(kind: str, schema: bool = True) -> dict:
        if kind == "local":
            return {}
        postgres, weed = request.getfixturevalue("postgres"), request.getfixturevalue("seaweedfs")
        url = postgres.create_database(request.getfixturevalue("migrated_postgres") if schema else None)
        bucket = weed.create_bucket()
        made.append((postgres, url, weed, bucket))
        return {"FILES_DATABASE_URL": url, **weed.settings(bucket)}

    yield make
    for postgres, url, weed, bucket in made:
        postgres.drop_database(url)
        weed.delete_bucket(bucket)


@pytest.mark.scaled
@pytest.mark.parametrize("source", ["local", "scaled"])
def test_a_backup_taken_under_uploads_restores_into_the_other_configuration(source, configuration, tmp_path):
    server = GunicornServer(tmp_path / "src", **configuration(source)).start()
    # A new service: SQLite in a data dir not made yet; a PostgreSQL database without a schema and a new bucket.
    # (A database at the newest schema but empty, as init-db leaves it: tests/unit/test_backup.py.)
    target = SimpleNamespace(data_dir=tmp_path / "dst", env=configuration("scaled" if source == "local" else "local",
                                                                          schema=False))
    restored = None
    try:
        admin_token = flask_files_ok(server, "token", "create", "--name", "admin", "--scope", "admin")
        admin = Client(server, admin_token)
        populate(server, admin)
        alice = person_token(server, "alice")

        acked: list[tuple[float, str, str]] = []  # (when acknowledged, key, sha256)
        refused: list[tuple[str, int]] = []  # what a writer was answered other than 200 (asserted below)
        done, under_way = threading.Event(), threading.Event()

        def write(writer: int) -> None:
            client = Client(server, admin_token)
            for index in range(WRITES):
                if done.is_set():
                    return
                data = os.urandom(70_000 if index % 3 else 500)  # blobs, and some kept inline
                key = f"w{writer}/{index:03}"
                if (status := client.put("w", key, data)) != 200:
                    refused.append((key, status))
                    under_way.set()
                    return
                acked.append((time.monotonic(), key, sha256(data)))
                if len(acked) >= 20:
                    under_way.set()
            under_way.set()

        writers = [threading.Thread(target=write, args=(writer,)) for writer in range(WRITERS)]
        for thread in writers:
            thread.start()
        assert under_way.wait(timeout=120), "the uploads never got under way"
        assert refused == []
        dest = tmp_path / "backup"
        began = time.monotonic()
        status, said = run_files(server, "backup", str(dest))
        done.set()
        for thread in writers:
            thread.join(timeout=60)
        assert refused == [] and status == 0 and "complete" in said, (refused, said)
        before = {key: digest for at, key, digest in acked if at < began}
        assert len(acked) > len(before), "no upload went on while the backup ran"

        status = flask_files(target, "restore", str(dest))
        assert status.returncode == 0 and "complete" in status.stdout, status.stdout + status.stderr
        assert "recounted" not in status.stdout  # the snapshot's counters agreed with its rows
        assert rows_of(target) == expected_rows(dest)  # every row of every table, before anything touches it
        assert "no drift" in flask_files(target, "check").stdout

        restored = app_of(target)  # the restored service, answering in this process (no second server to start)
        again = InProcess(restored, admin_token)
        files = listing(again, "w")
        assert {key: files.get(key) for key in before} == before  # every file acknowledged before the backup
        assert set(files) <= {key for _, key, _ in acked}
        assert listing(again, "b") == listing(admin, "b")
        assert listing(InProcess(restored, alice), "b") == listing(Client(server, alice), "b")  # a person's token
        status, found = again.call("GET", "/v1/files/b?q=deep")
        assert status == 200 and [entry["key"] for entry in found["data"]] == ["dir/deep.bin"]
        for key in sorted(before)[:: max(1, len(before) // 5)]:
            assert sha256(again.content("w", key)) == before[key], key
        # Ids and the placement counter go on past what the source handed out (sequences, sqlite_sequence).
        assert again.put("w", "after-restore", os.urandom(70_000)) == 200
        assert again.call("POST", "/v1/users", {"name": "bob", "password": "correct horse battery"})[0] == 201
        counters = backups.load_manifest(dest)["counters"]
        with restored.app_context():
            placed = db.session.execute(db.select(StoredObject.key, StoredObject.placed)).all()
            bob = db.session.execute(db.select(User.id).where(User.username == "bob")).scalar_one()
            db.session.remove()
        assert dict(placed)["after-restore"] > max(counters["placement"], *(at for key, at in placed
                                                                             if key != "after-restore"))
        assert bob > counters["sequences"]["users"] >= 1

        # The next backup into the same DEST copies only the blobs it does not hold yet, and says how many.
        for index in range(3):
            assert admin.put("b", f"later/{index}", os.urandom(70_000)) == 200
        held = backups.load_manifest(dest)["blobs"]
        second = flask_files(server, "backup", str(dest))
        assert second.returncode == 0, second.stdout + second.stderr
        now = backups.load_manifest(dest)["blobs"]
        new = sorted(now.keys() - held.keys())
        assert len(new) >= 3
        assert f"blobs: copied {len(new)} (" in second.stdout, second.stdout
        assert f"{len(now.keys() & held.keys())} already in the backup" in second.stdout, second.stdout

        # A flipped byte in a blob of the backup is found.
        victim = dest / "blobs" / new[0]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x20
        victim.write_bytes(bytes(data))
        check = flask_files(server, "backup", "--verify", str(dest))
        assert check.returncode == 1 and f"corrupt: blobs/{victim.name}" in check.stdout, check.stdout
    finally:
        server.kill()
        if restored is not None:
            with restored.app_context():
                db.session.remove()
                db.engine.dispose()


class InProcess:
    """Client's calls, answered by an app in this process through Flask's test client."""

    def __init__(self, app, token: str):
        self.client, self.headers = app.test_client(), {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: bytes | dict | None = None) -> tuple[int, dict]:
        answer = self.client.open(path, method=method, headers=self.headers,
                                  **({"json": body} if isinstance(body, dict) else {"data": body}))
        return answer.status_code, answer.get_json(silent=True) or {}

    def put(self, bucket: str, key: str, data: bytes) -> int:
        return self.call("PUT", f"/v1/files/{bucket}/{quote(key)}", data)[0]

    def content(self, bucket: str, key: str) -> bytes:
        answer = self.client.get(f"/v1/content/{bucket}/{quote(key)}", headers=self.headers)
        assert answer.status_code == 200, answer.status_code
        return answer.get_data()


def _kill_when(process: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the command never got under way"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_a_killed_backup_and_a_killed_restore_are_finished_by_the_next_run(tmp_path, migrated_sqlite):
    source = SimpleNamespace(data_dir=tmp_path / "src", env={})
    source.data_dir.mkdir()
    shutil.copyfile(migrated_sqlite, source.data_dir / "files.db")
    app = app_of(source)
    with app.app_context():
        uploads = app.extensions["files"].uploads
        from tests.helpers import upload

        for index in range(16):
            upload(uploads, "b", f"f{index:02}", os.urandom(256 * 1024))
        db.session.remove()
        db.engine.dispose()

    # A backup killed while it copies blobs (paced, so that the kill lands midway).
    dest = tmp_path / "backup"
    backup = start_files(source, "backup", "--rate", "1", str(dest))
    _kill_when(backup, lambda: (dest / "blobs").is_dir() and len(list((dest / "blobs").iterdir())) >= 2)
    assert not (dest / backups.MANIFEST).exists()
    left = sorted((dest / "blobs").iterdir())
    assert 2 <= len(left) < 16
    verified = flask_files(source, "backup", "--verify", str(dest))
    assert verified.returncode == 1 and "no complete backup" in verified.stderr, verified  # never taken for whole
    # What a file system that does not keep renames in order could leave: a blob cut short under its name.
    with open(left[0], "r+b") as torn:
        torn.truncate(1000)
    (dest / "tmp" / left[0].name).write_bytes(b"half")
    finished = flask_files(source, "backup", str(dest))
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"blobs: copied {16 - len(left) + 1} (" in finished.stdout, finished.stdout  # the torn one again
    assert flask_files(source, "backup", "--verify", str(dest)).returncode == 0
    assert list((dest / "tmp").iterdir()) == []

    # A restore killed while it puts blobs: the database is untouched, the next run goes on.
    target = SimpleNamespace(data_dir=tmp_path / "dst", env={})
    restore = start_files(target, "restore", "--rate", "1", str(dest))
    _kill_when(restore, lambda: sum(1 for path in (target.data_dir / "objects").glob("??/*") if is_id(path.name)) >= 2)
    resumed = flask_files(target, "restore", str(dest))
    assert resumed.returncode == 0 and "already there" in resumed.stdout, resumed.stdout + resumed.stderr
    assert " 0 already there" not in resumed.stdout, resumed.stdout
    assert rows_of(target) == expected_rows(dest)
    refused = flask_files(target, "restore", str(dest))
    assert refused.returncode == 1 and "not empty" in refused.stdout + refused.stderr

    # A restore killed once its blobs are in, while the schema and rows go in (one transaction each): the
    # next run either finds the rows all there (refused: not empty) or none (it restores them).
    late = SimpleNamespace(data_dir=tmp_path / "late", env={})
    restore = start_files(late, "restore", str(dest))
    for line in restore.stdout:
        if line.startswith("blobs:"):
            break
    restore.send_signal(signal.SIGKILL)
    restore.wait(timeout=30)
    rerun = flask_files(late, "restore", str(dest))
    assert rerun.returncode == 0 or "not empty" in rerun.stdout + rerun.stderr, rerun.stdout + rerun.stderr
    assert rows_of(late) == expected_rows(dest)
    assert "no drift" in flask_files(late, "check").stdout
