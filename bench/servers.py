"""The servers a benchmark compares: ours, the bare Flask baseline (same gunicorn settings), the peer."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.live_server import free_port, stop_process_group  # the same helpers the tests start servers with

ROOT = Path(__file__).resolve().parent.parent


def gunicorn_flags() -> list[str]:
    """The settings of gunicorn.conf.py (what `make serve` runs), as flags for another app."""
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    # `-c python:bench.baselines`: an empty config, not ./gunicorn.conf.py (whose hooks are the service's).
    return ["-c", "python:bench.baselines", "-k", conf["worker_class"], "-w", str(conf["workers"]),
            "--threads", str(conf["threads"]),
            "--timeout", str(conf["timeout"]), "--keep-alive", str(conf["keepalive"]),
            "--limit-request-line", str(conf["limit_request_line"]), "--access-logfile", "-",
            "--no-control-socket"]


class Server:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path):
        self.name, self.command, self.env, self.log = name, command, env, log
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.port = free_port()
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        env = {**os.environ, **self.env, "FILES_PORT": str(self.port)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process_group(self.process, timeout=20)

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def peak_rss_mib(self) -> float:
        """The largest peak RSS (VmHWM) of any process of the server: one upload lands in one worker."""
        peaks = [_hwm_kib(pid) for pid in _tree(self.process.pid)]
        return round(max(peaks) / 1024, 1)


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return pids


def _hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def ours(work: Path, name: str = "", **settings: str) -> Server:
    name = name or ("ours-s3" if settings else "ours")
    return Server("files service", [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
                  {"FILES_DATA_DIR": str(work / name), "FILES_HOST": "127.0.0.1", **settings}, work / f"{name}.log")


def no_audit(work: Path, name: str = "no-audit") -> Server:
    """Ours with audit.record a no-op (baselines/no_audit_app.py), started exactly like ours."""
    return Server("files service without audit entries",
                  [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bench.baselines.no_audit_app:app"],
                  {"FILES_DATA_DIR": str(work / name), "FILES_HOST": "127.0.0.1"}, work / f"{name}.log")


def admin_token(server: Server) -> str:
    """Make the server's schema and an admin token (`flask files init-db`, `token create`) before it
    starts, so it serves closed, as in production, from its first request."""
    env = {**os.environ, **server.env}
    flask = [sys.executable, "-m", "flask", "--app", "app", "files"]
    subprocess.run([*flask, "init-db"], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    made = subprocess.run([*flask, "token", "create", "--name", "bench-admin", "--scope", "admin"], cwd=ROOT,
                          env=env, check=True, capture_output=True, text=True, timeout=120)
    return made.stdout.strip().splitlines()[-1]


def bare(work: Path) -> Server:
    return Server("bare Flask", [sys.executable, "-m", "gunicorn", *gunicorn_flags(), "-b", "127.0.0.1:{port}",
                                 "bench.baselines.bare_app:app"],
                  {"BARE_DATA_DIR": str(work / "bare")}, work / "bare.log")


def peer(work: Path) -> Server:
    workers = str(runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"])
    return Server("tuspyserver", [sys.executable, "-m", "uvicorn", "bench.baselines.peer_app:app", "--host",
                                  "127.0.0.1", "--port", "{port}", "--workers", workers, "--log-level", "warning"],
                  {"PEER_DATA_DIR": str(work / "peer")}, work / "peer.log")
