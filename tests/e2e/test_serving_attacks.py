"""Attacks on the worker's event loop (files_app/serving.py, files_app/request_head.py), each against
a real server on 127.0.0.1: odd framing, clients that leave mid-request, more connections than the
cap, a stop while many are held. Every wait is on a condition under a deadline."""

from __future__ import annotations

import json
import resource
import signal
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.e2e

HOST = b"Host: 127.0.0.1\r\n"


def _allow_descriptors(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def answers(port: int, raw: bytes, count: int = 1, timeout: float = 3.0) -> list[bytes]:
    """Send `raw` at once and read up to `count` whole responses (Content-Length framed); stops at
    the server's close or after `timeout` seconds, and returns what was read: [] when nothing was
    answered in time."""
    replies: list[bytes] = []
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        received = b""
        while len(replies) < count:
            head, sep, rest = received.partition(b"\r\n\r\n")
            if sep and head.startswith(b"HTTP/1.1 1"):  # 100 Continue: not an answer
                received = rest
                continue
            length = next((int(line.partition(b":")[2]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None) if sep else None
            if length is not None and len(rest) >= length:
                replies.append(head + sep + rest[:length])
                received = rest[length:]
                continue
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            received += chunk
    return replies


def statuses_of(port: int, cases: dict[str, tuple[bytes, int]], timeout: float = 3.0) -> dict[str, list[int]]:
    """Each case's request on a connection of its own, all at once: the statuses of the first
    `count` answers each got within `timeout` seconds."""
    with ThreadPoolExecutor(len(cases)) as pool:
        replies = {name: pool.submit(answers, port, raw, count, timeout) for name, (raw, count) in cases.items()}
        return {name: [status(reply) for reply in future.result()] for name, future in replies.items()}


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1])


def healthz(server, timeout: float = 2.0) -> bool:
    """Whether GET /healthz is answered 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(server.url + "/healthz", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(condition, timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)  # polling a condition under a deadline
    return condition()


def _server_sockets(server_port: int, client_port: int | None, state: str) -> list[list[str]]:
    """The server's ends of loopback connections in a TCP `state` (/proc/net/tcp: 01 established,
    08 close-wait), from `client_port` or from any."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return [row for row in rows if int(row[1].split(":")[1], 16) == server_port and row[3] == state
            and client_port in (None, int(row[2].split(":")[1], 16))]


def server_unread(server_port: int, client_port: int | None = None) -> int:
    """Bytes the server has not read yet from its end of the connection from `client_port` (of all
    connections to it, if None): the kernel's receive queue."""
    return sum(int(row[4].split(":")[1], 16) for row in _server_sockets(server_port, client_port, "01"))


def wait_read(server_port: int, sock: socket.socket, timeout: float = 10) -> bool:
    """Wait until the server has read every byte `sock` sent it (its end's receive queue is empty)."""
    port = sock.getsockname()[1]
    return wait_until(lambda: server_unread(server_port, port) == 0, timeout)


def left_unclosed(server_port: int) -> int:
    """Connections their client closed that the server has not closed yet (close-wait)."""
    return len(_server_sockets(server_port, None, "08"))


def json_post(path: bytes, body: bytes, framing: bytes) -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n" + framing + body


def test_odd_but_decidable_framing_is_answered_right_and_at_once(server_factory):
    """Content-Length oddities, a GET with a body, HTTP/1.0 with and without keep-alive, one empty
    line before the request line, a head split exactly at CRLF|CRLF, 100-continue with the body sent
    anyway, and clients that leave mid-head or mid-body: each answered (or let go) at once, the next
    request on the connection framed right, and no traceback in the log."""
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="2", FILES_CLIENT_TIMEOUT="30",
                            FILES_HEADER_TIMEOUT="30").start()
    body = json.dumps({"bucket": "odd", "key": "k.txt", "size": 5}).encode()
    probe, post = b"GET /healthz HTTP/1.1\r\n" + HOST + b"\r\n", b"POST /v1/files HTTP/1.1\r\n" + HOST
    cases = {  # name: (request, statuses of the answers)
        "Content-Length: +5": (post + b"Content-Length: +5\r\n\r\nhello" + probe, [400]),
        "two equal Content-Lengths": (post + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + probe, [400]),
        "Content-Length and chunked": (post + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                                       + probe, [400]),
        "leading zeros": (json_post(b"/v1/files", body, b"Content-Length:  000%d \r\n\r\n" % len(body)) + probe,
                          [201, 200]),
        "GET with a body": (probe[:-2] + b"Content-Length: 5\r\n\r\nGET /" + probe, [200, 200]),
        "HTTP/1.0": (b"GET /healthz HTTP/1.0\r\n" + HOST + b"\r\n" + probe, [200]),
        "HTTP/1.0 keep-alive": (b"GET /healthz HTTP/1.0\r\n" + HOST + b"Connection: keep-alive\r\n\r\n" + probe,
                                [200, 200]),
        "an empty line first": (b"\r\n" + probe + probe, [200, 200]),
        "100-continue, body sent anyway": (b"PUT /v1/files/odd/c.txt HTTP/1.1\r\n" + HOST + b"Expect: 100-continue"
                                           b"\r\nContent-Length: 5\r\n\r\nhello" + probe, [200, 200]),
    }
    got = statuses_of(server.port, {name: (raw, len(wanted)) for name, (raw, wanted) in cases.items()})
    assert got == {name: wanted for name, (_, wanted) in cases.items()}
    # A head split exactly between its last two CRLFs, and then a byte at a time.
    for pieces in ([probe[:-2], probe[-2:]], [probe[:-3], probe[-3:-1], probe[-1:]]):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for piece in pieces:
                sock.sendall(piece)
                assert wait_read(server.port, sock)
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    # Clients that leave mid-head, mid-body (in the loop, and in a thread), after 100-continue,
    # with a FIN or a reset.
    leaving = [b"GET /healthz HTTP/1.1\r\nHo",
               b"PUT /v1/files/odd/a.bin HTTP/1.1\r\n" + HOST + b"Content-Length: 100\r\n\r\nabc",
               b"PUT /v1/files/odd/b.bin HTTP/1.1\r\n" + HOST + b"Content-Length: 1000000\r\n\r\n" + b"x" * 200_000,
               b"PUT /v1/files/odd/e.bin HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 9\r\n\r\n",
               b"POST /v1/files HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab"]
    for reset in (False, True):
        for raw in leaving:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(raw)
            assert wait_read(server.port, sock)
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
    assert wait_until(lambda: left_unclosed(server.port) == 0, 10)  # the server let every one go
    assert healthz(server)
    assert "Traceback" not in server.log.read_text()


def test_past_the_connection_cap_the_server_recovers_and_a_stop_is_prompt(server_factory):
    """More connections than FILES_MAX_CONNECTIONS (idle, slow headers, 63 KiB bodies; the rest wait in
    the kernel's backlog): once they leave /healthz is answered at once; then with 1,900 idle
    connections held a SIGTERM stops the server within seconds, with no traceback."""
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="4", FILES_MAX_CONNECTIONS="2000",
                            FILES_HEADER_TIMEOUT="30", FILES_CLIENT_TIMEOUT="30").start()
    _allow_descriptors(5000)
    kinds = [b"", b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Slow: ",
             b"POST /login HTTP/1.1\r\n" + HOST + b"Content-Length: 65000\r\n\r\n" + b"u" * 64_000]
    held = []
    try:
        for index in range(2100):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            held.append(sock)
            if kinds[index % 3]:
                sock.sendall(kinds[index % 3])
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: healthz(server, timeout=1), 5)
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(1900)]
    try:
        assert wait_until(lambda: healthz(server, timeout=1), 10)  # accepted in order: all 1,900 are in
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        assert time.monotonic() - started < 5
    finally:
        for sock in held:
            sock.close()
    assert "Traceback" not in server.log.read_text()
