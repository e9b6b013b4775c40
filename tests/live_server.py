"""A real gunicorn server on a free port with its own data dir, as `make serve` runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(process: subprocess.Popen | None, timeout: float) -> None:
    """SIGTERM a server and every process it started; SIGKILL what is left after `timeout`."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class GunicornServer:
    def __init__(self, data_dir: Path, **env: str):
        self.data_dir = data_dir
        self.env = env
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log = data_dir.parent / "gunicorn.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0, health_headers: dict | None = None,
              same_port: bool = False) -> GunicornServer:
        """`same_port`: come back where clients know to find it (a restart). A free port can be
        taken by another test's server between the probe and gunicorn's bind: then gunicorn logs
        "Connection in use" and this tries another port (unless `same_port`), and a /healthz
        answer only counts once this master's log says it listens there, never another server's."""
        for _attempt in range(5):
            if not (same_port and self.port):
                self.port = free_port()
            if self._launch(timeout, health_headers):
                return self
            if same_port:
                break
        raise RuntimeError(f"gunicorn could not bind port {self.port}:\n{self.log.read_text()}")

    def _launch(self, timeout: float, health_headers: dict | None) -> bool:
        """Start gunicorn on self.port: True once it answers, False if the port was taken."""
        env = {**os.environ, "FILES_DATA_DIR": str(self.data_dir), "FILES_HOST": "127.0.0.1",
               "FILES_PORT": str(self.port), "FILES_WORKERS": "2", **self.env}
        if "FILES_DATABASE_URL" not in self.env:
            env.pop("FILES_DATABASE_URL", None)  # the embedded default: SQLite in the data dir
        log_start = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        listening = f":{self.port} ({self.process.pid})"  # "Listening at: http://<its host>:<port> (<pid>)"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log, "rb") as log:
                log.seek(log_start)
                said = log.read().decode(errors="replace")
            if "Connection in use" in said:
                self.kill()
                return False
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if listening in said:
                    # OPTIONS: through every hook of the app to the route, but not its "any
                    # credentials?" check, which a worker keeps for a second (a GET would have the
                    # worker that answered it ignore, for that second, a token made right after).
                    probe = urllib.request.Request(self.url + "/healthz", headers=health_headers or {},
                                                   method="OPTIONS")
                    with urllib.request.urlopen(probe, timeout=2) as response:
                        if response.status == 200:
                            return True
            except OSError:
                pass
            time.sleep(0.02)  # polling for readiness (a few ms of work each), bounded by the deadline
        self.stop()
        raise RuntimeError(f"gunicorn did not answer within {timeout}s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the master and every worker at once, as a crash or OOM kill would."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_process_group(self.process, timeout=15)
