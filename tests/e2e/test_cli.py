"""The `files` command-line client (client/) against a real gunicorn server in both configurations:
every command, a tree of 300 files up and down, uploads killed and resumed from the server's durable
offset (as its access log shows), a download interrupted and resumed, a server restarted mid-transfer,
a database that answers 503, output without a terminal, and exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.test_openai_sdk import create_token

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
FILES = str(Path(sys.executable).with_name("files"))


@pytest.fixture
def server(any_server):
    return any_server


@pytest.fixture
def env(tmp_path, server):
    """A user's environment: their own config and state dirs, logged in to the server with an admin token."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"),
                   "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_STATE_HOME": str(tmp_path / "state")}
    token = create_token(server, "admin")
    run(environment, "login", server.url, "--token", token)
    return environment


def run(env: dict, *args: str, check: bool = True, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([FILES, *args], env=env, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, **kwargs)
    if check:
        assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def make_tree(root: Path, count: int = 300) -> dict[str, bytes]:
    """`count` files in nested folders, some empty, some above the chunk size."""
    made = {}
    for index in range(count):
        relative = f"d{index % 7}/e{index % 3}/f{index:03}.bin" if index % 5 else f"top{index:03}.txt"
        size = 0 if index % 50 == 0 else (3 * MIB + index if index % 97 == 0 else 100 + index)
        made[relative] = os.urandom(size)
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(made[relative])
    return made


def test_every_command_and_a_tree_of_300_files(env, tmp_path):
    config = Path(env["XDG_CONFIG_HOME"]) / "files" / "config.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert run(env, "mb", "tree").stdout == "made tree/\n"
    run(env, "mb", "more")
    assert run(env, "mb", "more", check=False).returncode == 1  # it exists
    made = make_tree(tmp_path / "up")
    result = run(env, "cp", "-r", str(tmp_path / "up"), "tree/backup/", "--parallel", "8", "--chunk-size", "1")
    assert result.stdout == "" and re.fullmatch(r"300 files, [\d.]+ MiB in [\d.]+ s \([\d.]+ \w+/s\)\n", result.stderr)

    listed = [json.loads(line) for line in run(env, "ls", "-r", "tree/backup/", "--json").stdout.splitlines()]
    assert sorted(entry["key"] for entry in listed) == sorted(f"backup/{name}" for name in made)
    by_key = {entry["key"]: entry for entry in listed}
    assert all(by_key[f"backup/{n}"]["sha256"] == hashlib.sha256(data).hexdigest() for n, data in made.items())
    top = run(env, "ls", "tree/backup/").stdout.splitlines()
    assert any(line.endswith("PRE  backup/d0/") for line in top) and any("backup/top000.txt" in line for line in top)
    buckets = run(env, "ls").stdout
    assert "300 files" in buckets and "tree/" in buckets and "more/" in buckets
    assert json.loads(run(env, "info", "tree/backup/top005.txt").stdout)["bytes"] == len(made["top005.txt"])
    catted = subprocess.run([FILES, "cat", "tree/backup/top005.txt"], env=env, capture_output=True, check=True)
    assert catted.stdout == made["top005.txt"]

    run(env, "cp", "-r", "tree/backup/", str(tmp_path / "down"), "--parallel", "8")
    downloaded = {p.relative_to(tmp_path / "down").as_posix(): p.read_bytes()
                  for p in (tmp_path / "down").rglob("*") if p.is_file()}
    assert downloaded == made
    run(env, "cp", str(tmp_path / "up" / "top005.txt"), "more/")
    run(env, "cp", "more/top005.txt", str(tmp_path / "one.txt"))
    assert (tmp_path / "one.txt").read_bytes() == made["top005.txt"]

    # sync: only what changed goes; --delete removes what is gone; a dry run changes nothing.
    (tmp_path / "up" / "top005.txt").write_bytes(b"changed")
    (tmp_path / "up" / "new.txt").write_bytes(b"new")
    (tmp_path / "up" / "top010.txt").unlink()
    planned = run(env, "sync", str(tmp_path / "up"), "tree/backup", "--delete", "--dry-run").stdout.splitlines()
    assert sorted(planned) == sorted([f"would upload {tmp_path / 'up' / 'top005.txt'} -> tree/backup/top005.txt",
                                      f"would upload {tmp_path / 'up' / 'new.txt'} -> tree/backup/new.txt",
                                      "would delete tree/backup/top010.txt"])
    sent = events(run(env, "sync", str(tmp_path / "up"), "tree/backup", "--delete", "--json").stdout)
    assert sorted(e["name"].rsplit("/", 1)[1] for e in sent if e["event"] == "done") == ["new.txt", "top005.txt"]
    assert run(env, "cat", "tree/backup/top005.txt").stdout == "changed"
    assert run(env, "info", "tree/backup/top010.txt", check=False).returncode == 1
    # ... and down: the local copy catches up, and loses what the bucket lost.
    run(env, "sync", "tree/backup", str(tmp_path / "down"), "--delete")
    assert (tmp_path / "down" / "top005.txt").read_bytes() == b"changed"
    assert (tmp_path / "down" / "new.txt").exists() and not (tmp_path / "down" / "top010.txt").exists()

    # rm -r asks first; without a terminal it needs --yes.
    refused = run(env, "rm", "-r", "tree/backup", check=False)
    assert refused.returncode == 1 and "300 files would be deleted" in refused.stderr
    assert "deleted 300 files under tree/backup/" in run(env, "rm", "-r", "tree/backup", "--yes").stdout
    assert run(env, "rb", "more", check=False).returncode == 1  # not empty
    run(env, "rm", "more/top005.txt")
    run(env, "rb", "more")
    run(env, "rb", "tree")
    assert run(env, "ls").stdout == ""


def session_lines(server, session_url: str) -> list[tuple[int, int]]:
    """(offset in, offset out) of every POST to the session that stored its chunk (200), from the
    server's access log. (A chunk cut off by a killed client is logged when the server is done
    with it, which may be after the test looked.)"""
    path = session_url.removeprefix(server.url)
    lines = []
    for line in server.log.read_text().splitlines():
        match = re.search(r'"POST (\S+) HTTP/1\.1" (\d+) .* offset=(\d+)->(\d+|-)$', line)
        if match and match.group(1) == path and match.group(2) == "200" and match.group(4) != "-":
            lines.append((int(match.group(3)), int(match.group(4))))
    return lines


def kept_session(env) -> str:
    [record] = (Path(env["XDG_STATE_HOME"]) / "files" / "uploads").glob("*.json")
    return json.loads(record.read_text())["url"]


def start_and_stop(env, args: list[str], moved_at_least: int, how: int,
                   inherited: signal.Handlers = signal.SIG_DFL) -> tuple[int, list[dict]]:
    """Run the client until its JSON events say `moved_at_least` bytes moved, then send it `how`;
    its exit code and the events it wrote after that. It starts with SIGINT and SIGTERM set to
    `inherited`, not to whatever this test run inherited (a background job of a non-interactive
    shell starts with SIGINT ignored)."""

    def dispositions() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, inherited)

    client = subprocess.Popen([FILES, *args, "--json"], env=env, stdout=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=dispositions)
    try:
        for line in client.stdout:
            event = json.loads(line)
            assert event["event"] != "summary", "the transfer ended before it could be interrupted"
            if event["event"] == "progress" and event["moved"] >= moved_at_least:
                os.killpg(client.pid, how)
                break
        after = events(client.stdout.read())
    finally:
        client.wait(timeout=60)
        client.stdout.close()
    return client.returncode, after


def offset_of(session_url: str, env: dict) -> int:
    """The session's durable offset, as the server says (with the client's token)."""
    token = json.loads((Path(env["XDG_CONFIG_HOME"]) / "files" / "config.json").read_text())["token"]
    answer = subprocess.run(["curl", "-sS", "-H", f"Authorization: Bearer {token}", session_url],
                            capture_output=True, text=True, check=True)
    return json.loads(answer.stdout)["offset"]


def test_an_upload_killed_twice_resumes_from_the_durable_offset(env, server, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(content := os.urandom(256 * MIB))
    args = ["cp", str(big), "resume/big.bin", "--chunk-size", "4"]
    assert start_and_stop(env, args, 32 * MIB, signal.SIGINT)[0] == 130  # Ctrl-C
    session = kept_session(env)
    durable = offset_of(session, env)
    assert durable >= 28 * MIB
    assert start_and_stop(env, args, durable + 64 * MIB, signal.SIGKILL)[0] == -signal.SIGKILL  # then killed outright
    assert kept_session(env) == session
    posts_before = len(session_lines(server, session))
    durable = offset_of(session, env)
    assert durable >= 96 * MIB

    result = run(env, *args, "--json")
    # The server may still have been keeping what arrived of the chunk cut off by the kill: the
    # client resumes from the server's offset when it asks, at least the one read above.
    [resumed] = [e["offset"] for e in events(result.stdout) if e["event"] == "resume"]
    assert resumed >= durable
    after = session_lines(server, session)[posts_before:]
    # The killed run's last chunk may be logged only now (its request ended after the count above):
    # it stops at or before the resume point. Every request that carries bytes past that point is
    # the resumed run's, and the first starts exactly there: nothing durable was sent again.
    assert all(end <= resumed for start, end in after if start < resumed)
    resent = [(start, end) for start, end in after if end > resumed]
    assert resent[0][0] == resumed
    assert all(start >= resumed for start, _ in resent) and resent[-1][1] == 256 * MIB
    stored = json.loads(run(env, "info", "resume/big.bin").stdout)
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    assert not list((Path(env["XDG_STATE_HOME"]) / "files" / "uploads").glob("*.json"))


@pytest.mark.parametrize("how, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_an_upload_even_when_the_client_started_with_it_ignored(env, tmp_path, how, code):
    """Started as a background job of a non-interactive shell would start it (the signal ignored),
    the client still stops at its next chunk on Ctrl-C or SIGTERM, says so, keeps its resume record
    and exits with the shell's code for the signal; the same command then sends only the rest."""
    big = tmp_path / "big.bin"
    big.write_bytes(content := os.urandom(64 * MIB))
    args = ["cp", str(big), "ignored/big.bin", "--chunk-size", "1"]
    returncode, after = start_and_stop(env, args, 8 * MIB, how, inherited=signal.SIG_IGN)
    assert returncode == code, after
    assert [e["reason"] for e in after if e["event"] == "error"] == ["stopped; run the same command again to resume"]
    assert after[-1]["event"] == "summary" and after[-1]["files"] == 0
    durable = offset_of(kept_session(env), env)
    assert 8 * MIB <= durable < 64 * MIB  # it stopped, long before the end

    result = run(env, *args, "--json")
    assert [e["offset"] for e in events(result.stdout) if e["event"] == "resume"] == [durable]
    assert json.loads(run(env, "info", "ignored/big.bin").stdout)["sha256"] == hashlib.sha256(content).hexdigest()
    assert not list((Path(env["XDG_STATE_HOME"]) / "files" / "uploads").glob("*.json"))


def test_an_interrupted_download_resumes_from_the_bytes_on_disk(env, server, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(content := os.urandom(128 * MIB))
    run(env, "cp", str(big), "down/big.bin")
    target = tmp_path / "copy.bin"
    partial = tmp_path / "copy.bin.part"
    client = subprocess.Popen([FILES, "cp", "down/big.bin", str(target)], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while not (partial.exists() and partial.stat().st_size > 0):
        assert client.poll() is None, "the download ended before any of it reached the disk"
        time.sleep(0.01)  # polling the file the client writes
    os.killpg(server.process.pid, signal.SIGSTOP)  # the server stops sending: the client is mid-file
    try:
        os.killpg(client.pid, signal.SIGKILL)
        client.wait(timeout=30)
    finally:
        os.killpg(server.process.pid, signal.SIGCONT)
    have = partial.stat().st_size
    assert 0 < have < len(content)
    result = run(env, "cp", "down/big.bin", str(target), "--json")
    assert [e["offset"] for e in events(result.stdout) if e["event"] == "resume"] == [have]
    assert target.read_bytes() == content and not partial.exists()


def test_a_server_restarted_mid_upload_is_ridden_out(env, server, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(content := os.urandom(160 * MIB))
    client = subprocess.Popen([FILES, "cp", str(big), "restart/big.bin", "--chunk-size", "4", "--json"], env=env,
                              stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    restarted = False
    for line in client.stdout:
        event = json.loads(line)
        if not restarted and event["event"] == "progress" and event["moved"] >= 32 * MIB:
            server.kill()  # every worker at once, mid-chunk
            server.start(same_port=True)
            restarted = True
    assert client.wait(timeout=120) == 0 and restarted
    client.stdout.close()
    stored = json.loads(run(env, "info", "restart/big.bin").stdout)
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_busy_database_answers_503_and_the_client_waits(tmp_path, server_factory):
    server = server_factory(FILES_SQLITE_BUSY_MS="200").start()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "c"),
           "XDG_STATE_HOME": str(tmp_path / "s")}
    run(env, "login", server.url, "--token", "")
    source = tmp_path / "f.txt"
    source.write_bytes(b"waited for")
    blocker = sqlite3.connect(server.data_dir / "files.db", timeout=30)
    blocker.execute("BEGIN EXCLUSIVE")  # every write of the server's waits, then answers 503
    client = subprocess.Popen([FILES, "cp", str(source), "busy/f.txt"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while " 503 " not in server.log.read_text():
            assert client.poll() is None, client.communicate()
            time.sleep(0.05)  # polling the access log for the refusal
    finally:
        blocker.rollback()
        blocker.close()
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    assert run(env, "cat", "busy/f.txt").stdout == "waited for"


class _Busy(BaseHTTPRequestHandler):
    """A stand-in service that says 429 (Retry-After: 1) twice, then answers (the real one's 429s
    ask for a minute)."""

    calls = 0

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).calls += 1
        if type(self).calls <= 2:
            self.send_response(429)
            self.send_header("Retry-After", "1")
            body = b'{"error": {"status": 429, "code": "too_many", "message": "slow down"}}'
        else:
            self.send_response(200)
            body = b'{"data": [{"name": "patient", "created_at": 0, "files": 1, "bytes": 5}]}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_429_is_retried_after_retry_after(tmp_path):
    busy = ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=busy.serve_forever, daemon=True).start()
    try:
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "c"),
               "FILES_URL": f"http://127.0.0.1:{busy.server_port}", "FILES_TOKEN": "t"}
        started = time.monotonic()
        result = run(env, "ls")
        assert "patient/" in result.stdout and _Busy.calls == 3
        assert time.monotonic() - started >= 2  # it waited as told, twice
    finally:
        busy.shutdown()


def test_output_without_a_terminal_and_exit_codes(env, tmp_path):
    source = tmp_path / "a.txt"
    source.write_bytes(b"a")
    quiet = run(env, "cp", str(source), "codes/a.txt")
    assert quiet.stdout == "" and "\x1b[" not in quiet.stderr and quiet.stderr.startswith("1 files, 1 B in ")
    exists = run(env, "cp", str(source), "codes/a.txt", "--if-not-exists", check=False)
    assert exists.returncode == 1 and "codes/a.txt" in exists.stderr and "412" in exists.stderr
    assert "1 failed" in exists.stderr
    as_json = run(env, "cp", str(source), "codes/a.txt", "--if-not-exists", "--json", check=False)
    summary = events(as_json.stdout)[-1]
    assert as_json.returncode == 1 and summary["event"] == "summary" and summary["failures"][0]["reason"]
    assert run(env, "cp", str(tmp_path / "missing"), "codes/", check=False).returncode == 1
    assert run(env, "cp", "--parallel", check=False).returncode == 2  # usage
    assert run(env, "cat", "codes/none", check=False).returncode == 1
    logged_out = {**env, "XDG_CONFIG_HOME": str(tmp_path / "nobody")}
    result = run(logged_out, "ls", check=False)
    assert result.returncode == 1 and "files login" in result.stderr
    for command in ("", "login", "ls", "mb", "rb", "rm", "cat", "info", "cp", "sync", "share", "shares", "unshare"):
        helped = run(env, *([command] if command else []), "--help")
        assert "Usage: files" in helped.stdout and len(helped.stdout.splitlines()) > 4


def test_the_client_installs_without_the_servers_packages(tmp_path):
    """A fresh venv, `pip install ./client`: the command works and none of the server's packages came.
    (This pip installs into it: making a venv with a pip of its own took 5 to 9 s.)"""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    source = tmp_path / "client"  # a copy: building writes next to the sources
    shutil.copytree(Path(__file__).resolve().parents[2] / "client", source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    str(source)], check=True, timeout=600)
    assert subprocess.run([str(venv / "bin" / "files"), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip() == "files, version 0.1.0"
    for server_package in ("flask", "sqlalchemy", "werkzeug", "gunicorn", "boto3"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {server_package}"], capture_output=True)
        assert probe.returncode != 0, f"{server_package} came with the client"


def test_progress_bars_on_a_terminal(env, tmp_path):
    """With a terminal on stderr: a bar per file in flight and a total, then the summary."""
    import pty

    big = tmp_path / "bars.bin"
    big.write_bytes(os.urandom(24 * MIB))
    controller, terminal = pty.openpty()
    client = subprocess.Popen([FILES, "cp", str(big), "bars/", "--chunk-size", "1"], env={**env, "COLUMNS": "120"},
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal closed: the client is done
            break
        if not data:
            break
        shown += data
    os.close(controller)
    assert client.wait(timeout=60) == 0
    text = shown.decode("utf-8", "replace")
    assert "total" in text and "bars.bin" in text and "━" in text  # the bars, drawn
    assert "24.0/24.0 MB" in text or "25.2/25.2 MB" in text  # rich counts in SI units: the whole file
    assert "1 files, 24.0 MiB in " in text


def test_share_a_file_and_a_folder_list_and_revoke(env, server, tmp_path):
    """`files share` prints the link alone on stdout; it opens without a token, counts its
    downloads, and `files unshare` kills it."""
    import urllib.error
    import urllib.request

    source = tmp_path / "report.txt"
    source.write_bytes(b"the report")
    run(env, "cp", str(source), "docs/2024/report.txt")
    made = run(env, "share", "docs/2024/report.txt", "--expires", "2h", "--max-downloads", "2")
    link = made.stdout.strip()
    assert link.startswith(server.url + "/s/") and "\n" not in link and "2 downloads" in made.stderr
    with urllib.request.urlopen(link + "/f/report.txt") as response:  # no token: the link is enough
        assert response.read() == b"the report"
    request = json.loads(run(env, "share", "docs/inbox/", "--upload", "--upload-limit", "5M", "--json").stdout)
    assert request["allow_upload"] and request["upload_max_bytes"] == 5 * 1024 * 1024 and request["url"]
    listed = run(env, "shares").stdout.splitlines()
    assert len(listed) == 2 and any("request" in line and "docs/inbox/" in line for line in listed)
    file_share = next(line.split()[0] for line in listed if "report.txt" in line)
    assert "1/2" in next(line for line in listed if line.startswith(file_share))
    run(env, "unshare", file_share)
    try:
        urllib.request.urlopen(link + "/f/report.txt")
        raise AssertionError("a revoked link still opened")
    except urllib.error.HTTPError as error:
        assert error.code == 410
    assert run(env, "share", "docs/x", "--expires", "soon", check=False).returncode == 2
    assert run(env, "share", "docs/missing.txt", check=False).returncode == 1
