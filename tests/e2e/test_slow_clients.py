"""Slow clients against the real server: slow headers are cut off, stalled bodies are cut off with
their durable bytes kept (seed POST, tus PATCH, UI form), and a normal client is answered meanwhile."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time

import pytest

from tests.slow_clients import SlowHeaders, Trickle, trickle, upload_head

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 30) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def create(server, key: str, size: int) -> str:
    status, data = request(server, "POST", "/v1/files", json.dumps({"bucket": "slow", "key": key, "size": size}))
    assert status == 201, data
    return json.loads(data)["url"].removeprefix(server.url)


def offset_of(server, path: str) -> int:
    return json.loads(request(server, "GET", path)[1])["offset"]


class HealthProbe(threading.Thread):
    """GET /healthz over and over while the attack runs; records each answer's latency, and every
    failure (whatever it raised: the test asserts there is none) for the test to see."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.latencies, self.failures = server, [], []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                status, _ = request(self.server, "GET", "/healthz", timeout=2)
                assert status == 200
                self.latencies.append(time.monotonic() - started)
            except Exception as error:  # any failure, collected: the test fails on it, not the thread alone
                self.failures.append(repr(error))
            self.stop.wait(0.1)


def test_slow_headers_and_stalled_bodies_do_not_stop_a_normal_client(server_factory):
    server = server_factory(FILES_HEADER_TIMEOUT="4", FILES_CLIENT_TIMEOUT="3").start()
    body = {f"u{i}": bytes([i]) * (2 * MIB) for i in range(64)}
    paths = {key: create(server, key, len(data)) for key, data in body.items()}
    probe = HealthProbe(server)
    probe.start()
    stall_at = MIB + 100_000
    uploads = [Trickle(upload_head(paths[key], 2 * MIB), data, rate=400_000, stall_after=stall_at)
               for key, data in body.items()]
    with SlowHeaders(server.port, 256, interval=1.0) as slow_headers:
        trickle(server.port, uploads, deadline=time.monotonic() + 30)
        # Every stalled upload was cut off by the server (not by us) with the error shape.
        assert [u.status for u in uploads] == [400] * 64
        assert all(b'"incomplete_body"' in u.response for u in uploads)
    probe.stop.set()
    probe.join()
    assert probe.failures == [] and len(probe.latencies) > 20
    assert max(probe.latencies) < 2.0, sorted(probe.latencies)[-5:]
    # Every slow-header connection was cut off by the server, close to FILES_HEADER_TIMEOUT.
    assert all(after is not None and after < 4 + 3 for after in slow_headers.closed_after), slow_headers.closed_after
    # What was durable stays: each upload resumes from at least the 1 MiB read it completed.
    for key, data in body.items():
        offset = offset_of(server, paths[key])
        assert MIB <= offset <= stall_at
        status, reply = request(server, "POST", paths[key], data[offset:], {"Upload-Offset": str(offset)})
        assert status == 200 and json.loads(reply)["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_stalled_tus_patch_is_cut_off_and_keeps_its_bytes(server_factory):
    server = server_factory(FILES_CLIENT_TIMEOUT="2").start()
    path = create(server, "tus", 3 * MIB)  # the session's URL is its tus upload URL too
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {3 * MIB}\r\n\r\n").encode()
    patch = Trickle(head, b"t" * 3 * MIB, rate=20 * MIB, stall_after=MIB + 5000)
    started = time.monotonic()
    trickle(server.port, [patch], deadline=started + 20)
    assert patch.status == 400 and b"incomplete_body" in patch.response
    assert patch.finished - started < 2 + 5  # cut off after the client timeout, not after minutes
    assert offset_of(server, path) == MIB


def test_a_stalled_form_post_is_cut_off(server_factory):
    server = server_factory(FILES_CLIENT_TIMEOUT="2").start()
    head = (b"POST /buckets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 1000\r\n\r\n")
    form = Trickle(head, b"name=x" + b"x" * 994, rate=1_000_000, stall_after=10)
    started = time.monotonic()
    trickle(server.port, [form], deadline=started + 20)
    assert form.finished is not None and form.finished - started < 2 + 5
    # A form small enough to be read before a thread takes it stalls in the event loop: 408 in the
    # error shape (a body a thread was reading would be a 400); never left hanging.
    assert form.status == 408 and json.loads(form.response.partition(b"\r\n\r\n")[2])["error"]["status"] == 408
    assert json.loads(request(server, "GET", "/v1/files")[1])["data"] == []  # no bucket was made


def test_slow_headers_are_cut_off_at_the_header_timeout(server_factory):
    server = server_factory(FILES_HEADER_TIMEOUT="2").start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed = None
        for line in range(20):  # one header line every half second: never a complete request
            try:
                sock.sendall(b"X-Line-%d: x\r\n" % line)
            except OSError:
                closed = time.monotonic() - started
                break
            sock.settimeout(0.5)
            try:
                answer = sock.recv(100)
            except TimeoutError:
                continue
            except OSError:
                answer = b""
            # Cut off: closed, or answered 408 (then closed) by the event loop that read the headers.
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer
            closed = time.monotonic() - started
            break
        assert closed is not None and 2 <= closed < 2 + 3


def test_gunicorns_own_errors_use_the_error_shape(server):
    for raw in (b"NOT A REQUEST LINE\r\n\r\n", b"GET /healthz HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Name: x\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(raw)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 4"), reply
        assert b"Content-Type: application/json" in head
        error = json.loads(body)["error"]
        assert error["status"] == int(head.split(b" ")[1]) and error["code"] and error["message"]
