"""Many idle and slow connections against a real server with few threads (issue #22, capacity): the
event loop reads headers and small bodies before a thread takes a request, so connections that
trickle hold no thread, and everything a normal client sends is still read right (a body a byte at a
time, pipelined requests, chunked bodies, `Expect: 100-continue`). The 10,000-connection figure is
the benchmarks' (slow_bodies_10000_healthz_p99); here 4 threads face 300 slow connections, which
held every thread of the gthread worker this replaced."""

from __future__ import annotations

import http.client
import json
import signal
import socket

import pytest

from tests.slow_clients import HeldConnections

pytestmark = pytest.mark.e2e


def call(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def exchange(server, raw: bytes, answers: int, byte_by_byte: bool = False) -> list[bytes]:
    """Send `raw` on one connection (all at once, or a byte at a time as a slow client would) and
    read until `answers` whole responses with Content-Length have come."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        if byte_by_byte:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for index in range(len(raw)):
                sock.sendall(raw[index:index + 1])
        else:
            sock.sendall(raw)
        received, replies = b"", []
        while len(replies) < answers:
            head, sep, rest = received.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None) if sep else None
            if length is not None and len(rest) >= length:
                replies.append(head + sep + rest[:length])
                received = rest[length:]
                continue
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(replies)} answers: {received[:300]!r}"
            received += chunk
        return replies


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length (its head and body may come in separate reads)."""
    received = b""
    while True:
        head, sep, rest = received.partition(b"\r\n\r\n")
        if sep:
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            if len(rest) >= length:
                return received
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk


def test_300_slow_connections_leave_4_threads_free_for_everyone_else(server_factory):
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="4", FILES_HEADER_TIMEOUT="120").start()
    assert call(server, "PUT", "/v1/files/held/small.txt", b"s" * 1024)[0] == 200
    with HeldConnections(server.port, idle=100, slow_headers=100, slow_bodies=100, interval=0.5) as held:
        assert held.opened.wait(timeout=60) and held.failures == []
        # Every kind of normal request is answered while all 300 hold (each would wait for a free
        # thread, for ever, if the slow ones held the four).
        for _ in range(10):
            assert call(server, "GET", "/healthz")[0] == 200
            status, data = call(server, "GET", "/v1/content/held/small.txt")
            assert status == 200 and data == b"s" * 1024
        status, data = call(server, "POST", "/v1/files", json.dumps({"bucket": "held", "key": "big.bin",
                                                                      "size": 3 * 1024 * 1024}).encode())
        assert status == 201, data
        session = json.loads(data)["url"].removeprefix(server.url)
        status, data = call(server, "POST", session, b"b" * (3 * 1024 * 1024))  # streamed by a thread
        assert status == 200 and json.loads(data)["bytes"] == 3 * 1024 * 1024
        # ...and the slow ones were not cut to make room: all 300 are still open after a fresh look.
        held.swept.clear()
        assert held.swept.wait(timeout=30)
        assert held.cut == 0


def test_a_request_sent_a_byte_at_a_time_is_read_whole(server_factory):
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="2").start()
    body = json.dumps({"bucket": "slowly", "key": "typed.txt", "size": 5}).encode()
    raw = (b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
    [reply] = exchange(server, raw, 1, byte_by_byte=True)
    assert reply.startswith(b"HTTP/1.1 201 "), reply
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["size"] == 5


def test_pipelined_and_chunked_requests_are_each_answered(server_factory):
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="2").start()
    body = json.dumps({"bucket": "pipe", "key": "chunked.txt", "size": 11}).encode()
    chunked = (b"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:]))
    probe = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    listing = b"GET /v1/files/pipe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    replies = exchange(server, probe + chunked + listing + probe, 4)
    assert [reply.split(b" ")[1] for reply in replies] == [b"200", b"201", b"200", b"200"], replies
    assert json.loads(replies[1].partition(b"\r\n\r\n")[2])["size"] == 11


def test_a_client_waiting_for_100_continue_is_told_to_go_on(server_factory):
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="2").start()
    body = b"c" * 200_000
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"PUT /v1/files/expect/c.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        # Nothing of the body is sent before the server asks for it (curl waits a second at most;
        # a server that waited for the body first would leave this recv to time out).
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ") and json.loads(reply.partition(b"\r\n\r\n")[2])["bytes"] == len(body)


def test_a_keep_alive_connection_sends_its_next_request_slowly_without_a_thread(server_factory):
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="1", FILES_HEADER_TIMEOUT="120").start()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_answer(slow).startswith(b"HTTP/1.1 200 ")
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the next request, half sent
        # The only thread is free: another client is answered while this one's headers wait.
        assert call(server, "GET", "/healthz")[0] == 200
        slow.sendall(b"\r\n")
        assert read_answer(slow).startswith(b"HTTP/1.1 200 ")


def test_a_stop_does_not_wait_for_slow_clients(server_factory):
    """SIGTERM while 300 slow connections hold: the worker answers what it has begun to read with a
    503 (or closes those that sent nothing) within a couple of seconds, instead of waiting out their
    header and body deadlines (here 120 s) or gunicorn's 30-second graceful timeout."""
    server = server_factory(FILES_WORKERS="1", FILES_HEADER_TIMEOUT="120", FILES_CLIENT_TIMEOUT="120").start()
    with HeldConnections(server.port, idle=100, slow_headers=100, slow_bodies=100, interval=0.5) as held:
        assert held.opened.wait(timeout=60) and held.failures == []
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0  # gone well before any deadline of theirs
        held.swept.clear()
        assert held.swept.wait(timeout=30)
        assert held.cut == 300
    assert "[CRITICAL] WORKER TIMEOUT" not in server.log.read_text()
