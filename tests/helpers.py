"""Small helpers shared by the test modules."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import subprocess
import time

from files_app.services import ChunkRequest


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChunkedBody:
    """A request body for the services: yields `data` in pieces, then optionally breaks off."""

    def __init__(self, data: bytes, piece: int = 256 * 1024, fail_after: int | None = None):
        self._stream = io.BytesIO(data)
        self._piece = piece
        self._fail_after = fail_after
        self.read_bytes = 0

    def read(self, size: int) -> bytes:
        from files_app.errors import IncompleteBody

        if self._fail_after is not None and self.read_bytes >= self._fail_after:
            raise IncompleteBody("client went away")
        if self._fail_after is not None:
            size = min(size, self._fail_after - self.read_bytes)
        data = self._stream.read(min(size, self._piece))
        self.read_bytes += len(data)
        return data


def upload(uploads, bucket: str, key: str, data: bytes, chunk: int | None = None, **create):
    """Create a session and send `data` through the service, in chunks of `chunk` bytes."""
    info = uploads.create(bucket=bucket, key=key, size=len(data), **create)
    if not data:
        return info, uploads.objects.get(bucket, key)
    step = chunk or len(data)
    result = None
    for start in range(0, len(data), step):
        piece = data[start:start + step]
        result = uploads.write(info.id, ChunkRequest(ChunkedBody(piece), length=len(piece), offset=start))
    return info, result.object


def assert_error(response, status, code):
    """The one error shape: {"error": {"status", "code", "message", ...}} as JSON."""
    assert response.status_code == status, response.data
    assert response.content_type == "application/json"
    error = response.get_json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert isinstance(error["message"], str) and error["message"]
    return error


def blob_ids(store) -> list[str]:
    """Every blob the store holds, whatever its age."""
    return sorted(store.blob_ids(older_than=float("inf")))


def holds_private_bytes(store, session_id: str) -> bool:
    """Whether a session's bytes-in-progress are still in the store (a partial file, or an S3
    multipart upload or held tail)."""
    if hasattr(store, "uploads"):
        return (store.uploads / session_id).exists()
    return session_id in store.partial_ids(older_than=float("inf"))


# --- the API through Flask's test client -------------------------------------------------------

def make_token(runner, scope: str, bucket: str | None = None) -> str:
    args = ["files", "token", "create", "--name", f"{scope}-test", "--scope", scope]
    result = runner.invoke(args=args + (["--bucket", bucket] if bucket else []))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]  # the secret alone on the last line


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def put(client, bucket, key, data, mime_type=None):
    fields = {"bucket": bucket, "key": key, "size": len(data)}
    if mime_type:
        fields["mime_type"] = mime_type
    session = client.post("/v1/files", data=json.dumps(fields)).get_json()
    if not data:
        return client.get(f"/v1/files/{bucket}/{key}").get_json()
    return client.post(f"/v1/files/session:{session['id']}", data=data).get_json()


def app_with(settings, **changes):
    """An app on the test's data dir and database, with some settings changed."""
    from files_app import create_app
    from files_app.schema import upgrade_database

    app = create_app({**settings, **changes})
    upgrade_database(app)
    return app


# --- a live server (tests/live_server.py) -----------------------------------------------------

def flask_files(server, *args: str) -> subprocess.CompletedProcess:
    """`flask files ARGS` against a live server's own data dir and database (its FILES_* settings),
    as an operator runs it beside the server: the same command, run in this process by Flask's CLI
    runner, because a second Python that imports the whole app took 1.3 s of CPU per command, and
    the suite ran over a hundred. Returns what subprocess.run would (status, stdout, stderr)."""
    from files_app import create_app
    from files_app.models import db

    app = create_app({"FILES_DATA_DIR": str(server.data_dir), "FILES_DATABASE_URL": "", **server.env})
    try:
        result = app.test_cli_runner().invoke(args=["files", *args])
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a crash, not an answer: its traceback, as the subprocess printed it
    return subprocess.CompletedProcess(["flask", "files", *args], result.exit_code, result.stdout, result.stderr)


def flask_files_ok(server, *args: str) -> str:
    """`flask files ARGS`, which must succeed: the last line it printed (a new token's secret)."""
    result = flask_files(server, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout.strip().splitlines()[-1]


def curl(*args: str) -> tuple[int, dict]:
    """Run real curl; return (status, JSON body or {})."""
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, check=True,
                            timeout=120)
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status), (json.loads(body) if body.strip() else {})


def session_offset(server, session_id: str) -> int:
    status, body = curl(f"{server.url}/v1/files/session:{session_id}")
    assert status == 200, body
    return body["offset"]


def send_partially(server, session_url: str, data: bytes, send: int, method: str = "POST",
                   **headers: str) -> http.client.HTTPConnection:
    """Start a request declaring all of `data`, send only `send` bytes, and keep the socket open."""
    path = session_url.removeprefix(server.url)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest(method, path)
    connection.putheader("Content-Length", str(len(data)))
    kind = "application/offset+octet-stream" if method == "PATCH" else "application/octet-stream"
    connection.putheader("Content-Type", kind)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    for start in range(0, send, 256 * 1024):
        connection.send(data[start:min(start + 256 * 1024, send)])
    return connection


def wait_for_offset(server, session_id: str, at_least: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while (offset := session_offset(server, session_id)) < at_least:
        assert time.monotonic() < deadline, f"offset stayed at {offset}, wanted {at_least}"
        time.sleep(0.05)
    return offset
