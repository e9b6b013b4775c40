"""Many slow clients from one thread: connections that send their headers a line at a time, and
uploads that trickle their body at a fixed rate (or stall). Used by the slow-client tests and by
bench/ (slow_clients_healthz_p99, concurrent_slow_uploads_1000). Traffic goes to 127.0.0.1 only,
and every loop is bounded in time."""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Trickle:
    """One request: `head` (request line and headers) sent at once, then `body` at `rate` bytes a
    second, stopping after `stall_after` bytes if set (the connection then stays open, silent).
    Like a slow link, a request held up by the server (a full window) never catches up in a burst:
    what it may send accrues at `rate`, at most a tenth of a second's worth at a time."""

    head: bytes
    body: bytes
    rate: float
    stall_after: int | None = None
    sent: int = 0
    started: float = 0.0
    allowance: float = 0.0
    last: float = 0.0
    response: bytes = b""
    finished: float | None = None  # when the server answered in full or closed
    sock: socket.socket | None = field(default=None, repr=False)

    @property
    def status(self) -> int | None:
        line = self.response.split(b"\r\n", 1)[0].split(b" ")
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None


def _complete(response: bytes) -> bool:
    head, sep, rest = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value)
    return False


def trickle(port: int, requests: list[Trickle], deadline: float, tick: float = 0.05) -> list[Trickle]:
    """Drive every request until each is answered or closed, or until `deadline` (monotonic)."""
    selector = selectors.DefaultSelector()
    for request in requests:
        # A small send buffer: bytes the server does not take wait here, not in an autotuned kernel
        # buffer of megabytes that would hide a server that stopped reading.
        request.sock = socket.socket()
        request.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
        request.sock.connect(("127.0.0.1", port))
        request.sock.setblocking(False)
        _send_all(request.sock, request.head)
        request.started = request.last = time.monotonic()
        selector.register(request.sock, selectors.EVENT_READ, request)
    open_requests = set(range(len(requests)))
    try:
        while open_requests and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=tick):
                _receive(key.data, selector)
            now = time.monotonic()
            for index in list(open_requests):
                request = requests[index]
                if request.finished is not None:
                    open_requests.discard(index)
                    continue
                request.allowance = min(request.allowance + (now - request.last) * request.rate, request.rate / 10)
                request.last = now
                limit = len(request.body) if request.stall_after is None else request.stall_after
                due = min(limit, request.sent + int(request.allowance))
                if due > request.sent:
                    try:
                        sent = request.sock.send(request.body[request.sent:due])
                        request.sent += sent
                        request.allowance -= sent
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        _finish(request, selector)
    finally:
        for request in requests:
            if request.finished is None:
                _finish(request, selector, answered=False)
        selector.close()
    return requests


def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            select.select([], [sock], [], 1.0)


def _receive(request: Trickle, selector) -> None:
    try:
        data = request.sock.recv(65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    request.response += data
    if not data or _complete(request.response):
        _finish(request, selector)


def _finish(request: Trickle, selector, answered: bool = True) -> None:
    try:
        selector.unregister(request.sock)
    except (KeyError, ValueError):
        pass
    request.sock.close()
    if answered:
        request.finished = time.monotonic()


class SlowHeaders:
    """`count` connections that each send one more header line every `interval` seconds and never
    finish their headers. `closed_after` tells, per connection, how long the server let it live."""

    def __init__(self, port: int, count: int, interval: float = 1.0, path: str = "/healthz"):
        self.port, self.count, self.interval, self.path = port, count, interval, path
        self.closed_after: list[float | None] = [None] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SlowHeaders:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        sockets, started = [], time.monotonic()
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port))
            sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            sock.setblocking(False)
            sockets.append(sock)
        line = 0
        while not self._stop.wait(self.interval) and any(s is not None for s in sockets):
            line += 1
            for index, sock in enumerate(sockets):
                if sock is None:
                    continue
                try:
                    sock.recv(4096)  # an answer (a 408) or the end: headers never finished are cut off
                    raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_after[index] = time.monotonic() - started
                    sock.close()
                    sockets[index] = None
                    continue
                try:
                    sock.send(f"X-Slow-{line}: still typing\r\n".encode())
                except OSError:
                    self.closed_after[index] = time.monotonic() - started
                    sock.close()
                    sockets[index] = None
        for sock in sockets:
            if sock is not None:
                sock.close()


def upload_head(path: str, size: int, offset: int = 0) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\nUpload-Offset: {offset}\r\nConnection: close\r\n\r\n").encode()


class HeldConnections:
    """`idle` connections that send nothing, `slow_headers` that send a request line and then one
    header byte every `interval` seconds, and `slow_bodies` that send whole headers announcing a
    1 MB body (`POST /login`, no credentials needed) and then one body byte every `interval`: all
    from one thread, opened in batches. `opened` is set once all are connected and have sent their
    first bytes; `cut` counts those the server answered or closed meanwhile."""

    def __init__(self, port: int, idle: int = 0, slow_headers: int = 0, slow_bodies: int = 0,
                 interval: float = 1.0):
        self.port, self.interval = port, interval
        self.kinds = ["idle"] * idle + ["headers"] * slow_headers + ["body"] * slow_bodies
        self.cut = 0
        self.failures: list[str] = []  # connections that could not be opened
        self.opened = threading.Event()
        self.swept = threading.Event()  # set after each look at every connection (clear it, then wait)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HeldConnections:
        _allow_descriptors(len(self.kinds) + 1024)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        sockets: list[socket.socket | None] = []
        try:
            for start in range(0, len(self.kinds), 500):
                if self._stop.is_set():
                    return
                sockets += self._open(self.kinds[start:start + 500])
            self.opened.set()
            while not self._stop.wait(self.interval):
                for index, sock in enumerate(sockets):
                    if sock is not None and not self._still_open(sock, self.kinds[index]):
                        self.cut += 1
                        sock.close()
                        sockets[index] = None
                self.swept.set()
        finally:
            self.opened.set()
            for sock in sockets:
                if sock is not None:
                    sock.close()

    def _open(self, kinds: list[str]) -> list[socket.socket]:
        made, selector = [], selectors.DefaultSelector()
        for kind in kinds:
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", self.port))
            selector.register(sock, selectors.EVENT_WRITE, kind)
            made.append(sock)
        waiting, deadline = len(made), time.monotonic() + 30
        while waiting and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1.0):
                selector.unregister(key.fileobj)
                waiting -= 1
                error = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    self.failures.append(f"connect: errno {error}")
                elif key.data == "headers":
                    key.fileobj.send(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                elif key.data == "body":
                    key.fileobj.send(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                     b"application/x-www-form-urlencoded\r\nContent-Length: 1000000\r\n\r\nu")
        self.failures += ["connect: timed out"] * waiting
        selector.close()
        return made

    @staticmethod
    def _still_open(sock: socket.socket, kind: str) -> bool:
        try:
            if sock.recv(4096, socket.MSG_PEEK) is not None:
                return False  # an answer (408) or the end (b""): either way the server let go
        except BlockingIOError:
            pass
        except OSError:
            return False
        try:
            if kind != "idle":
                sock.send(b"x")
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True


def _allow_descriptors(count: int) -> None:
    """This process will hold `count` sockets: raise its soft limit on descriptors (up to the hard one)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
