"""The `files` client's trash and versions against one real gunicorn server (the embedded
configuration; the API's own tests cover both): `files rm` says where the files went and the command
that undoes it, which works as printed; `files trash ls|restore|empty` (by key: the newest deleted
file of it; by deletion; by id; a taken name skipped, kept both or replaced; empty asks first);
`files versions ls|get|restore`. And, against a stand-in service that keeps no trash, `files rm`
saying the files are gone for good."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import shlex
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.test_cli import FILES, run
from tests.e2e.test_openai_sdk import create_token
from tests.live_server import GunicornServer

pytestmark = pytest.mark.e2e
UNDO = re.compile(r": moved to the trash of bucket (\S+) \(kept 30 days\); undo: (files trash restore \S+ "
                  r"--deletion del_\w+)\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the file: each test has buckets of its own."""
    server = GunicornServer(tmp_path_factory.mktemp("cli-trash") / "data").start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def token(server):
    return create_token(server, "admin")


@pytest.fixture(scope="module")
def env(server, token, tmp_path_factory):
    home = tmp_path_factory.mktemp("cli-trash-user")
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
                   "XDG_STATE_HOME": str(home / "state")}
    run(environment, "login", server.url, "--token", token)
    return environment


@pytest.fixture(scope="module")
def api(server, token):
    """The API, with the same token, to arrange and check what the commands did (a client process
    per check would cost a second each on a busy machine)."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        yield client


def put(api: httpx.Client, remote: str, data: bytes) -> None:
    assert api.put(f"/v1/files/{quote(remote)}", content=data).status_code in (200, 201)


def cat(api: httpx.Client, remote: str) -> bytes:
    answer = api.get(f"/v1/content/{quote(remote)}")
    assert answer.status_code == 200, answer.text
    return answer.content


def keys(api: httpx.Client, bucket: str) -> list[str]:
    return sorted(entry["key"] for entry in api.get(f"/v1/files/{bucket}").json()["data"])


def trash(api: httpx.Client, bucket: str, prefix: str = "") -> list[dict]:
    return api.get(f"/v1/trash/{bucket}", params={"prefix": prefix}).json()["data"]


def versions(api: httpx.Client, remote: str) -> list[dict]:
    return api.get(f"/v1/versions/{quote(remote)}").json()["data"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def undo(stdout: str) -> list[str]:
    """The command `files rm` printed to undo itself, as arguments."""
    match = UNDO.search(stdout)
    assert match, stdout
    return shlex.split(match.group(2))[1:]


def test_rm_says_where_the_files_went_and_its_undo_works(env, api):
    tree = {"docs/a.txt": b"alpha", "docs/b.txt": b"beta", "docs/sub/c.txt": b"gamma", "top.txt": b"top"}
    for key, data in tree.items():
        put(api, f"rmt/{key}", data)

    one = run(env, "rm", "rmt/top.txt").stdout
    assert one.startswith("deleted rmt/top.txt: moved to the trash of bucket rmt (kept 30 days); undo: "), one
    [entry] = trash(api, "rmt")
    assert entry["key"] == "top.txt" and entry["bytes"] == 3 and entry["deleted_by"] == "token sdk-admin"
    assert f"--deletion {entry['deletion']}" in one
    assert run(env, *undo(one)).stdout == "restored rmt/top.txt\n"
    assert cat(api, "rmt/top.txt") == b"top" and trash(api, "rmt") == []

    refused = run(env, "rm", "-r", "rmt/docs", check=False)  # no terminal: it needs --yes
    assert refused.returncode == 1 and "3 files would be deleted (14 B under rmt/docs/)" in refused.stderr
    assert keys(api, "rmt") == sorted(tree)
    folder = run(env, "rm", "-r", "rmt/docs", "--yes").stdout
    assert folder.startswith("deleted 3 files under rmt/docs/: moved to the trash of bucket rmt"), folder
    assert keys(api, "rmt") == ["top.txt"]
    listed = [json.loads(line) for line in run(env, "trash", "ls", "rmt", "--json").stdout.splitlines()]
    assert listed == trash(api, "rmt") and sorted(e["key"] for e in listed) == ["docs/a.txt", "docs/b.txt",
                                                                                 "docs/sub/c.txt"]
    assert {e["deletion"] for e in listed} == {undo(folder)[-1]}  # one delete: one deletion
    table = run(env, "trash", "ls", "rmt", "--prefix", "docs/sub/").stdout.splitlines()
    [c] = [e for e in listed if e["key"] == "docs/sub/c.txt"]
    assert table[0].split() == ["ID", "KEY", "SIZE", "DELETED", "BY", "DELETION", "PURGED", "ON"]
    assert len(table) == 2 and re.fullmatch(rf"{c['id']} +docs/sub/c\.txt +5 B +\d{{4}}-\d\d-\d\d \d\d:\d\d +"
                                            rf"token sdk-admin +{c['deletion']} +\d{{4}}-\d\d-\d\d", table[1])
    restored = run(env, *undo(folder)).stdout.splitlines()
    assert sorted(restored) == [f"restored rmt/{key}" for key in sorted(tree) if key.startswith("docs/")]
    assert {key: cat(api, f"rmt/{key}") for key in tree} == tree and trash(api, "rmt") == []
    again = run(env, *undo(folder), check=False)  # nothing of it is left in the trash
    assert again.returncode == 1 and "is in the trash of bucket rmt" in again.stderr
    assert run(env, "rm", "-r", "rmt/none/", "--yes").stdout == "nothing under rmt/none/\n"


def test_restore_by_key_takes_the_newest_and_a_taken_name_is_skipped_kept_both_or_replaced(env, api):
    put(api, "rk/notes.txt", b"first")
    run(env, "rm", "rk/notes.txt")
    put(api, "rk/notes.txt", b"second")
    api.delete("/v1/files/rk/notes.txt")
    assert [entry["key"] for entry in trash(api, "rk")] == ["notes.txt", "notes.txt"]
    assert run(env, "trash", "restore", "rk", "notes.txt").stdout == "restored rk/notes.txt\n"
    assert cat(api, "rk/notes.txt") == b"second"  # the newest deleted

    [older] = trash(api, "rk")
    skipped = run(env, "trash", "restore", "rk", "notes.txt", check=False)  # its name is taken now
    assert skipped.returncode == 1 and skipped.stdout == ""
    assert f"rk/notes.txt (trash entry {older['id']}) not restored: a file of that name exists" in skipped.stderr
    assert trash(api, "rk") == [older] and cat(api, "rk/notes.txt") == b"second"
    both = run(env, "trash", "restore", "rk", "notes.txt", "--on-conflict", "keep-both")
    assert both.stdout == "restored rk/notes.txt as rk/notes (1).txt\n"
    assert cat(api, "rk/notes (1).txt") == b"first" and cat(api, "rk/notes.txt") == b"second"

    api.delete(f"/v1/files/rk/{quote('notes (1).txt')}")
    [entry] = trash(api, "rk")
    by_id = run(env, "trash", "restore", "rk", "--id", str(entry["id"]))
    assert by_id.stdout == "restored rk/notes (1).txt\n" and cat(api, "rk/notes (1).txt") == b"first"
    put(api, "rk/notes.txt", b"third")
    api.delete("/v1/files/rk/notes.txt")
    put(api, "rk/notes.txt", b"fourth")
    assert run(env, "trash", "restore", "rk", "--prefix", "", "--on-conflict", "replace").stdout \
        == "restored rk/notes.txt\n"
    assert cat(api, "rk/notes.txt") == b"third"
    assert versions(api, "rk/notes.txt")[0]["sha256"] == sha(b"fourth")  # the file it replaced is a version

    gone = run(env, "trash", "restore", "rk", "gone.txt", check=False)
    assert gone.returncode == 1 and "rk/gone.txt is not in the trash of bucket rk" in gone.stderr
    missing = run(env, "trash", "restore", "rk", "--id", "999999", check=False)
    assert missing.returncode == 1 and "no entry 999999 in the trash of bucket rk" in missing.stderr
    assert run(env, "trash", "restore", "rk", check=False).returncode == 2  # name what to restore
    both_ways = run(env, "trash", "restore", "rk", "notes.txt", "--deletion", "del_x", check=False)
    assert both_ways.returncode == 2 and "one of them" in both_ways.stderr


def confirm_on_a_terminal(env: dict, answer: bytes, *args: str) -> subprocess.CompletedProcess:
    """The client with a terminal on its standard input, answering its question with `answer`."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer)
        return subprocess.run([FILES, *args], env=env, stdin=terminal, capture_output=True, text=True, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)


def test_empty_asks_first_and_deletes_for_good(env, api):
    for name in ("a", "b", "c", "d"):
        put(api, f"et/{name}.txt", name.encode())
        api.delete(f"/v1/files/et/{name}.txt")
    refused = run(env, "trash", "empty", "et", check=False)  # no terminal: it needs --yes
    assert refused.returncode == 1 and "4 files in the trash of bucket et would be deleted for good" in refused.stderr
    declined = confirm_on_a_terminal(env, b"n\n", "trash", "empty", "et")
    assert declined.returncode == 1 and "Delete 4 files in the trash of bucket et for good?" in declined.stdout
    assert len(trash(api, "et")) == 4

    [newest, *_] = trash(api, "et")
    assert run(env, "trash", "empty", "et", "--id", str(newest["id"]), "--yes").stdout \
        == "purged 1 file from the trash of bucket et\n"
    assert sorted(entry["key"] for entry in trash(api, "et")) == ["a.txt", "b.txt", "c.txt"]
    accepted = confirm_on_a_terminal(env, b"y\n", "trash", "empty", "et")
    assert accepted.returncode == 0 and accepted.stdout.endswith("purged 3 files from the trash of bucket et\n")
    assert trash(api, "et") == []
    put(api, "et/e.txt", b"e")
    api.delete("/v1/files/et/e.txt")
    assert run(env, "trash", "empty", "et", "--yes").stdout == "purged 1 file from the trash of bucket et\n"
    assert trash(api, "et") == [] and keys(api, "et") == []
    assert run(env, "trash", "empty", "et").stderr == "the trash of bucket et is empty\n"
    assert run(env, "trash", "ls", "et").stderr == "nothing in the trash of bucket et\n"


def test_versions_ls_get_and_restore(env, api, tmp_path):
    for data in (b"v1", b"v2 longer", b"v3"):
        put(api, "vs/doc/report.txt", data)
    kept = [json.loads(line) for line in run(env, "versions", "ls", "vs/doc/report.txt", "--json").stdout
            .splitlines()]
    assert kept == versions(api, "vs/doc/report.txt")
    assert [v["sha256"] for v in kept] == [sha(b"v2 longer"), sha(b"v1")]  # newest first
    table = run(env, "versions", "ls", "vs/doc/report.txt").stdout.splitlines()
    assert table[0].split() == ["ID", "SIZE", "UPLOADED", "BY", "REPLACED", "BY", "SHA256"]
    assert [line.split()[:3] for line in table[1:]] == [[str(kept[0]["id"]), "9", "B"], [str(kept[1]["id"]), "2", "B"]]

    oldest = str(kept[1]["id"])
    assert subprocess.run([FILES, "versions", "get", "vs/doc/report.txt", "--id", oldest], env=env,
                          capture_output=True, check=True).stdout == b"v1"  # to standard output
    got = run(env, "versions", "get", "vs/doc/report.txt", "--id", oldest, str(tmp_path / "old.txt"))
    assert (tmp_path / "old.txt").read_bytes() == b"v1" and got.stderr.endswith(f"-> {tmp_path / 'old.txt'}\n")
    (tmp_path / "into").mkdir()
    run(env, "versions", "get", "vs/doc/report.txt", "--id", str(kept[0]["id"]), str(tmp_path / "into"))
    assert (tmp_path / "into" / "report.txt").read_bytes() == b"v2 longer"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["into", "old.txt", "report.txt"]  # no .part left

    restored = run(env, "versions", "restore", "vs/doc/report.txt", "--id", oldest)
    assert restored.stdout == f"restored version {oldest} of vs/doc/report.txt (2 B, sha256 {sha(b'v1')[:12]})\n"
    assert cat(api, "vs/doc/report.txt") == b"v1"
    assert [v["sha256"] for v in versions(api, "vs/doc/report.txt")] == [sha(b"v3"), sha(b"v2 longer")]

    missing = run(env, "versions", "get", "vs/doc/report.txt", "--id", oldest, check=False)  # it is the file now
    assert missing.returncode == 1 and f"no version {oldest} of vs/doc/report.txt" in missing.stderr
    assert run(env, "versions", "restore", "vs/doc/report.txt", "--id", oldest, check=False).returncode == 1
    assert run(env, "versions", "ls", "vs/doc/", check=False).returncode == 2  # a folder is no file
    assert run(env, "versions", "ls", "vs/none.txt").stderr == "no versions of vs/none.txt are kept\n"


class _NoTrash(BaseHTTPRequestHandler):
    """A stand-in service that keeps no trash: a folder delete answers no deletion, and the trash
    stays empty after a file's delete."""

    def do_DELETE(self):  # noqa: N802 - http.server's name
        if self.path.startswith("/v1/folders/"):
            self._answer({"deleted": 2, "deletion": None})
        else:
            self._answer({"id": "file-1", "bucket": "b", "key": "gone.txt", "bytes": 1, "mime_type": "text/plain",
                          "sha256": sha(b"x"), "created_at": 1})

    def do_GET(self):  # noqa: N802
        self._answer({"data": [], "has_more": False, "next_cursor": None})

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_without_a_trash_rm_says_the_files_are_gone_for_good(tmp_path):
    service = ThreadingHTTPServer(("127.0.0.1", 0), _NoTrash)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    try:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "c"),
               "FILES_URL": f"http://127.0.0.1:{service.server_port}", "FILES_TOKEN": "t"}
        assert run(env, "rm", "b/gone.txt").stdout == "deleted b/gone.txt for good (the service keeps no trash)\n"
        assert run(env, "rm", "-r", "b/docs", "--yes").stdout \
            == "deleted 2 files under b/docs/ for good (the service keeps no trash)\n"
    finally:
        service.shutdown()


def test_help():
    """(In process: a client process per page would cost a second each on a busy machine.)"""
    from click.testing import CliRunner
    from files_client.cli import main

    for command in (["trash"], ["trash", "ls"], ["trash", "restore"], ["trash", "empty"], ["versions"],
                    ["versions", "ls"], ["versions", "get"], ["versions", "restore"], ["rm"]):
        helped = CliRunner().invoke(main, [*command, "--help"])
        assert helped.exit_code == 0 and "Usage: " in helped.output and len(helped.output.splitlines()) > 4
