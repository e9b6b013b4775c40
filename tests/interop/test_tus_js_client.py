"""tus-js-client, the browser's transfer engine, run under Node against a real gunicorn server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import sha256

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).with_name("tus_js_client.mjs")
ROOT = Path(__file__).resolve().parents[2]

@pytest.fixture
def server(any_server):
    """Each client runs against both configurations: {SQLite, local disk} and {PostgreSQL, SeaweedFS}."""
    return any_server


MIB = 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def installed():
    assert shutil.which("node"), "Node.js is needed for the tus-js-client tests"
    assert (ROOT / "node_modules" / "tus-js-client").is_dir(), "run `make test` (npm ci) first"


def run_client(server, tmp_path, mode: str, data: bytes) -> dict:
    path = tmp_path / f"{mode}.bin"
    path.write_bytes(data)
    result = subprocess.run(["node", str(SCRIPT), f"{server.url}/v1/files", str(path), mode, str(tmp_path)],
                            capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def stored(server, key: str) -> dict:
    with urllib.request.urlopen(f"{server.url}/v1/files/tusjs/{key}") as response:
        return json.loads(response.read())


@pytest.mark.parametrize("mode", ["plain", "with-creation", "parallel"])
def test_upload_modes(server, tmp_path, mode):
    data = os.urandom(9 * MIB + 7)
    result = run_client(server, tmp_path, mode, data)
    assert result["url"].startswith(f"{server.url}/v1/files/session:")
    info = stored(server, f"{mode}.bin")
    assert (info["bytes"], info["sha256"]) == (len(data), sha256(data))


def test_resume_after_abort(server, tmp_path):
    data = os.urandom(8 * MIB)
    result = run_client(server, tmp_path, "resume", data)
    assert result["url"] == result["firstUrl"]  # the same upload, found by its fingerprint
    assert result["resumedFrom"] >= 4 * MIB  # continued from the server's offset, not from zero
    info = stored(server, "resume.bin")
    assert (info["bytes"], info["sha256"]) == (len(data), sha256(data))
