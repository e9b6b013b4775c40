"""Attacks on the worker's event loop (files_app/serving.py, files_app/request_head.py), each against
a real server on 127.0.0.1: framing the loop judges differently from gunicorn's parser, requests
whose incomplete heads or bodies reach a thread, the loop's memory budget, the connection cap, a
stop. Every wait is on a condition under a deadline; the only sleeps are a slow client's pace."""

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
LOOP_MEMORY = 128 * 1024 * 1024  # files_app.serving.LOOP_MEMORY


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


def new_session(server, key: str, size: int) -> bytes:
    request = urllib.request.Request(server.url + "/v1/files", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"bucket": "attacks", "key": key, "size": size}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["url"].removeprefix(server.url).encode()


def json_post(path: bytes, body: bytes, framing: bytes) -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n" + framing + body


def chunked(body: bytes, last_chunk: bytes = b"0\r\n\r\n") -> bytes:
    return b"%x\r\n%s\r\n%x\r\n%s\r\n" % (10, body[:10], len(body) - 10, body[10:]) + last_chunk


# -- findings: these fail on the worker of 410126a/5400b61 ------------------------------------------


def test_the_loop_never_waits_for_bytes_gunicorn_does_not_expect(server_factory):
    """request_head.body_plan/body_complete wait for a chunked body to *end with* b"0\\r\\n\\r\\n" and
    take any Content-Length-looking line for the length: a valid chunked request with a trailer or a
    last-chunk extension, or followed by a pipelined request in the same write, and requests gunicorn
    would refuse at once (Transfer-Encoding without chunked, obs-fold, a space before the colon, a
    head ending in LF CRLF) wait in the loop for FILES_CLIENT_TIMEOUT (60 s by default) or
    FILES_HEADER_TIMEOUT, then get a 408. Each must be answered at once."""
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="4", FILES_CLIENT_TIMEOUT="30",
                            FILES_HEADER_TIMEOUT="30").start()
    body = json.dumps({"bucket": "framing", "key": "k.txt", "size": 5}).encode()
    te, close = b"Transfer-Encoding: chunked\r\n", b"Connection: close\r\n\r\n"
    post, get = b"POST /v1/files HTTP/1.1\r\n" + HOST, b"GET /healthz HTTP/1.1\r\n" + HOST
    valid = {  # name: (request, the statuses it must get)
        "trailer": (json_post(b"/v1/files", chunked(body, b"0\r\nX-Checksum: 1\r\n\r\n"), te + close), [201]),
        "last-chunk extension": (json_post(b"/v1/files", chunked(body, b"0;done=1\r\n\r\n"), te + close), [201]),
        "chunked then a pipelined GET": (json_post(b"/v1/files", chunked(body), te + b"\r\n") + get + close,
                                         [201, 200]),
    }
    refused = {  # gunicorn's parser answers each 400 (501) as soon as it sees the head
        "Transfer-Encoding: gzip": post + b"Transfer-Encoding: gzip\r\n" + close,
        "obs-fold Content-Length": get + b"X-A: a\r\n Content-Length: 100\r\n" + close,
        "Content-Length : 100": get + b"Content-Length : 100\r\n" + close,
        "head ends LF CRLF": get + b"Connection: close\n\r\n",
    }
    got = statuses_of(server.port, {name: (raw, len(wanted)) for name, (raw, wanted) in valid.items()}
                      | {name: (raw, 1) for name, raw in refused.items()})
    for name in refused:
        got[name] = "refused" if got[name] and got[name][0] >= 400 else got[name]
    wanted = {name: statuses for name, (_, statuses) in valid.items()} | dict.fromkeys(refused, "refused")
    assert got == wanted  # []: nothing within 3 s


def test_an_incomplete_request_never_holds_a_thread(server_factory):
    """With one thread, each of these holds it until its deadline (here 30 s) and /healthz waits:
    - a pipelined next request whose head is incomplete (finish_request hands a connection with
      bytes left in the parser straight to a thread, which reads the rest of the head blocking);
    - `Expect: 100-continue` and no body (body_plan sends it to a thread at once, which sends
      100 Continue and blocks for the body: the slow-body attack with one header added);
    - a head over 64 KiB, then silence (the loop hands it to a thread half read).
    A connection that is only typing must cost a socket, not a thread."""
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="1", FILES_HEADER_TIMEOUT="30",
                            FILES_CLIENT_TIMEOUT="30").start()
    pad = b"".join(b"X-Pad-%d: %s\r\n" % (index, b"p" * 4000) for index in range(17))  # 68 KiB, no end
    attacks = {  # name: (bytes sent, what the client sees once a thread holds it)
        "pipelined, next head incomplete": (b"GET /healthz HTTP/1.1\r\n" + HOST + b"\r\nGET /healthz HTTP/1.1\r\nHo",
                                            b'{"status":"ok"}'),
        "Expect: 100-continue, no body": (b"PUT /v1/files/attacks/e.txt HTTP/1.1\r\n" + HOST +
                                          b"Expect: 100-continue\r\nContent-Length: 10\r\n\r\n", b"100 Continue"),
        "head over 64 KiB, then silence": (b"GET /healthz HTTP/1.1\r\n" + HOST + pad, None),
    }
    answered = {}
    for name, (raw, sign) in attacks.items():
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as attacker:
            attacker.sendall(raw)
            if sign is not None:  # the server has taken it: it answered the first part
                seen = b""
                while sign not in seen:
                    chunk = attacker.recv(4096)
                    assert chunk, seen
                    seen += chunk
            else:  # the server has read every byte of it (the loop alone reads only 64 KiB)
                assert wait_read(server.port, attacker)
            answered[name] = healthz(server, timeout=2)
        assert wait_until(lambda: healthz(server, timeout=1), 10)  # the attacker gone, the thread is free
    assert answered == dict.fromkeys(attacks, True)


def test_a_pipelined_request_has_its_own_header_deadline(server_factory):
    """A chunked upload that takes 2.5 s, its connection's next request started in the same write
    as the last chunk and finished 1.5 s later, under FILES_HEADER_TIMEOUT=2: the next request is
    cut off unanswered ("headers from ... took longer than 2s: connection cut"), because handle()
    dates its header deadline from conn.first_byte_at, the first byte of the upload before it."""
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="2", FILES_HEADER_TIMEOUT="2",
                            FILES_CLIENT_TIMEOUT="20").start()
    part, parts = b"u" * 100_000, 3
    path = new_session(server, "pipelined.bin", len(part) * parts)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"POST " + path + b" HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(parts):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            time.sleep(0.8)  # the client's pace: the upload takes longer than the header timeout
        sock.sendall(b"0\r\n\r\nGET /healthz HTTP/1.1\r\n")
        time.sleep(1.5)  # the client's pace: the next head takes 1.5 s, within the 2 s allowed
        sock.sendall(HOST + b"\r\n")
        received = b""
        while received.count(b"HTTP/1.1 200 ") < 2 or not received.endswith(b'{"status":"ok"}\n'):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
    assert received.count(b"HTTP/1.1 200 ") == 2, (received[-300:], server.log.read_text()[-600:])


def test_with_the_loop_memory_spent_heads_are_still_read_in_the_loop(server_factory):
    """README: past the loop's 128 MiB, "requests go to a thread as soon as their headers are in".
    But _on_readable caps every read, headers included, by what is left of LOOP_MEMORY and hands a
    connection to a thread when nothing is: ~2,100 connections each holding 63 KiB of an unfinished
    body (within FILES_MAX_CONNECTIONS) and then every slow-header client holds a thread again, here
    the only one, and /healthz waits for its header deadline."""
    server = server_factory(FILES_WORKERS="1", FILES_THREADS="1", FILES_HEADER_TIMEOUT="30",
                            FILES_CLIENT_TIMEOUT="30").start()
    head = (b"POST /login HTTP/1.1\r\n" + HOST + b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 65000\r\n\r\n")
    size = next(size for size in range(64_000, 63_000, -1)  # what is left over: a head's worth
                if 1000 <= LOOP_MEMORY % (len(head) + size) <= 30_000)
    filler = head + b"u" * size  # the loop waits for the rest of its 65,000 bytes
    full, left = divmod(LOOP_MEMORY, len(filler))
    _allow_descriptors(full + 1024)
    held = []
    try:
        for index in range(full + 1):
            # The last one: an unfinished head that leaves 10 bytes of the budget.
            raw = filler if index < full else b"GET /x HTTP/1.1\r\nX-Pad: " + b"p" * (left - 10 - 24)
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            held.append(sock)
            sock.sendall(raw)
        assert wait_until(lambda: server_unread(server.port) == 0, 30)  # the loop read all of it
        assert healthz(server)  # a request with no body still goes through (to the free thread)
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\n" + HOST + b"X-Slow: ")
            assert wait_read(server.port, slow)
            assert healthz(server, timeout=2)  # fails: the slow head holds the only thread
    finally:
        for sock in held:
            sock.close()


# -- attacks that already fail, kept as regression tests ------------------------------------------


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
