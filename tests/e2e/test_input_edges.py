"""An open service (no user, no token) serves loopback only, however it is started: here gunicorn
without our config file (so none of its start-up checks run), bound to every address."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from files_app import create_app
from files_app.schema import upgrade_database
from tests.live_server import ROOT, free_port


def outside_address() -> str | None:
    """An address of this host that is not loopback (where a neighbour would reach the service)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.123", 9))  # no packet is sent: this only picks the outgoing address
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def call(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture
def bare_gunicorn(tmp_path):
    """`gunicorn -c other.conf.py app:app --bind 0.0.0.0:PORT`: not our config file (gunicorn reads
    ./gunicorn.conf.py unless told another), so none of its checks run; the default sync worker."""
    data_dir = tmp_path / "data"
    app = create_app({"FILES_DATA_DIR": str(data_dir), "FILES_DATABASE_URL": ""})
    upgrade_database(app)  # (our config file's on_starting does this; a bare gunicorn does not)
    port = free_port()
    env = {**os.environ, "FILES_DATA_DIR": str(data_dir), "FILES_ALLOWED_HOSTS": "*"}
    env.pop("FILES_DATABASE_URL", None)
    env.pop("GUNICORN_CMD_ARGS", None)
    log, other_conf = tmp_path / "gunicorn.log", tmp_path / "other.conf.py"
    other_conf.write_text("workers = 1\n")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(other_conf), "app:app", "--bind", f"0.0.0.0:{port}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if call(f"http://127.0.0.1:{port}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)  # polling for readiness, bounded by the deadline
        else:
            raise AssertionError(f"gunicorn did not answer:\n{log.read_text()}")
        yield port, data_dir
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        process.wait(timeout=10)


def test_an_open_service_started_without_our_config_refuses_every_peer_but_loopback(bare_gunicorn):
    address = outside_address()
    if address is None:
        pytest.skip("this host has no address but loopback")
    port, data_dir = bare_gunicorn
    local, outside = f"http://127.0.0.1:{port}", f"http://{address}:{port}"
    create = json.dumps({"bucket": "b", "key": "k.txt", "size": 2}).encode()
    assert call(local + "/v1/files", "POST", create)[0] == 201  # loopback: open, as before

    for method, path, body in (("GET", "/v1/files", None), ("GET", "/v1/files/b", None), ("POST", "/v1/files", create),
                               ("DELETE", "/v1/files/b", None),
                               ("GET", "/v1/content/b/k.txt", None)):
        status, headers, data = call(outside + path, method, body)
        assert status == 403, (method, path, status, data)
        assert headers["Content-Type"] == "application/json"
        error = json.loads(data)["error"]
        assert error["code"] == "forbidden" and "loopback" in error["message"], error
    assert call(outside + "/healthz")[0] == 200  # public routes answer anyone, as they would anyway
    status, _, data = call(outside + "/v1/openai/v1/files")  # in OpenAI's error shape
    assert status == 403 and json.loads(data)["error"]["code"] == "forbidden"
    status, _, data = call(outside + "/", headers={"Accept": "text/html"})  # a page: the error page
    assert status == 403 and b"loopback" in data
    # Nothing the outside asked for happened: the bucket and its session are there.
    assert json.loads(call(local + "/v1/files")[2])["data"][0]["name"] == "b"

    # Once a token exists the service is closed: the outside gets the usual 401 (and, with the token, in).
    app = create_app({"FILES_DATA_DIR": str(data_dir), "FILES_DATABASE_URL": ""})
    with app.app_context():
        _, secret = app.extensions["files"].accounts.create_token("ops", "admin")
    deadline = time.monotonic() + 30  # each worker keeps its "any credentials?" answer for a second
    while True:
        anonymous, with_token = call(outside + "/v1/files"), call(outside + "/v1/files", headers={
            "Authorization": f"Bearer {secret}"})
        if 403 not in (anonymous[0], with_token[0]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # polling until no worker answers from its cached "open", bounded by the deadline
    status, _, data = anonymous
    assert status == 401 and json.loads(data)["error"]["code"] == "unauthorized"
    assert with_token[0] == 200
