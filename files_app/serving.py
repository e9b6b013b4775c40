"""The gunicorn worker the service runs under: gthread, with an event loop that reads requests
before a thread takes them.

gunicorn's gthread worker gives a new connection a thread as soon as its first byte arrives, so a
client that sends its headers or its body slowly holds a thread for as long as it likes: a few
thousand slow connections held every thread and nothing else was answered. Here:
- the event loop reads each request's headers (up to HEAD_IN_LOOP bytes, else 431), and its body
  up to BODY_IN_LOOP bytes (a whole small request: JSON calls, forms, small files; it answers
  `Expect: 100-continue` itself), before a thread takes it; a pipelined request a thread read the
  start of comes back to the loop too. A connection that is idle, or trickles its headers or the
  start of its body, costs a socket and a buffer, not a thread: FILES_MAX_CONNECTIONS of them per
  worker, each within FILES_HEADER_TIMEOUT for its headers (from its first byte, or from its
  connection) and FILES_CLIENT_TIMEOUT of silence mid-body (408);
- a request that has sent that much goes to one of FILES_THREADS threads and streams the rest: an
  upload in progress holds a thread, and every read and write on its socket times out after
  FILES_CLIENT_TIMEOUT seconds without progress (the upload keeps what was durable);
- gunicorn's own answers to malformed requests use the API's JSON error shape.
The measurements that chose this model are in the README ("Serving model").
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import threading
import time
from functools import partial

from gunicorn import util
from gunicorn.http2 import negotiation
from gunicorn.workers.gthread import TConn, ThreadWorker

from .config import load_settings
from .request_head import GO_NOW, BodyPlan, body_complete, body_plan, head_end

BODY_IN_LOOP = 64 * 1024  # body bytes read before a thread takes the request (= FILES_INLINE_MAX's default)
HEAD_IN_LOOP = 64 * 1024  # a longer header section is answered 431
LOOP_MEMORY = 128 * 1024 * 1024  # a worker's bytes held for requests not yet in a thread; past it, no body waits
ACCEPTS_PER_WAKE = 64
SCAN_EVERY = 0.25  # seconds between looks for connections past their deadlines
STOP_LINGER = 2.0  # seconds a stopping worker still reads requests that have begun (gunicorn's own for keep-alives)

_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 414: "URI Too Long",
            417: "Expectation Failed", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented", 503: "Service Unavailable"}


def json_error(status_int: int, reason: str, mesg: str) -> bytes:
    """A whole `Connection: close` answer in the API's error shape."""
    code = reason.lower().replace(" ", "_") if reason else "bad_request"
    body = json.dumps({"error": {"status": status_int, "code": code,
                                 "message": mesg or reason or "malformed request"}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason or _REASONS.get(status_int, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "X-Content-Type-Options: nosniff\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's util.write_error, in the API's error shape instead of an HTML page."""
    util.write_nonblock(sock, json_error(status_int, reason, mesg))


class ReadingConn(TConn):
    """A connection, with what the event loop has read of its next request."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start_request(time.monotonic())

    def start_request(self, now: float) -> None:
        self.buffer = bytearray()
        self.waiting_since = now  # connected, or kept alive after its last answer
        self.first_byte_at: float | None = None
        self.last_byte_at = now
        self.end_of_head: int | None = None
        self.plan: BodyPlan = GO_NOW
        self.continued = False  # the loop has answered `Expect: 100-continue`


class FilesWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = load_settings()
        self.header_timeout = settings["FILES_HEADER_TIMEOUT"] or None
        self.client_timeout = settings["FILES_CLIENT_TIMEOUT"] or None
        # Connections whose headers a thread is reading, by the monotonic time they must be complete.
        self._header_deadlines: dict[object, float] = {}
        self._deadlines_lock = threading.Lock()
        # Connections the event loop is reading (an insertion-ordered set), and their bytes in all.
        self._reading: dict[ReadingConn, None] = {}
        self._held = 0
        self._next_scan = 0.0
        self._stopping_since: float | None = None
        self._accept_paused_until = 0.0

    def init_process(self):
        util.write_error = write_json_error  # base.Worker.handle_error writes through it
        super().init_process()

    # -- the event loop: accepting and reading ------------------------------------------------

    def accept(self, listener):
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                client_sock, client_addr = listener.accept()
            except OSError as error:
                if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment rather than spin on a listener
                    # that stays readable; the waiting connections stay in the kernel's backlog.
                    self.log.warning("cannot accept a connection (%s): pausing for 0.5 s", error)
                    self._accept_paused_until = time.monotonic() + 0.5
                    self.set_accept_enabled(False)
                    return
                if error.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    return
                raise
            self.nr_conns += 1
            conn = ReadingConn(self.cfg, client_sock, client_addr, listener.getsockname())
            if self.cfg.is_ssl or negotiation.prior_knowledge_allowed(self.cfg, client_addr):
                self.enqueue_req(conn)  # TLS and HTTP/2 are read by a thread, as gunicorn does
            else:
                self._read_in_loop(conn)
            if self.nr_conns >= self.worker_connections:
                return

    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self._accept_paused_until:
            return
        super().set_accept_enabled(enabled)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection sends its next request: the loop reads it, as a new one's."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        if not isinstance(conn, ReadingConn) or conn.is_http2:
            self.enqueue_req(conn)
            return
        conn.start_request(time.monotonic())
        self._read_in_loop(conn)
        self._on_readable(conn, client)

    def _read_in_loop(self, conn: ReadingConn) -> None:
        self._reading[conn] = None
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: ReadingConn, client) -> None:
        if conn not in self._reading:
            return
        if conn.end_of_head is None:  # heads are read whatever the memory spent: each is capped
            room = HEAD_IN_LOOP - len(conn.buffer)
            if room <= 0:
                self._drop(conn, json_error(431, "Request Header Fields Too Large",
                                            f"the request's headers are over {HEAD_IN_LOOP} bytes"))
                return
        else:
            room = min(conn.end_of_head + conn.plan.wanted - len(conn.buffer), LOOP_MEMORY - self._held)
            if room <= 0:  # the worker's loop memory is spent: this body goes to a thread as it is
                self._to_thread(conn)
                return
        try:
            data = conn.sock.recv(room)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            self._drop(conn)
            return
        now = time.monotonic()
        conn.last_byte_at = now
        if conn.first_byte_at is None:
            conn.first_byte_at = now
        self._take_in(conn, data)

    def _take_in(self, conn: ReadingConn, data: bytes) -> None:
        """Add what was read to the request; once its head is in, plan its body, and hand it to a
        thread once that is in too."""
        searched = len(conn.buffer)
        conn.buffer += data
        self._held += len(data)
        if conn.end_of_head is None:
            conn.end_of_head = head_end(conn.buffer, searched)
            if conn.end_of_head is None:
                return
            self._plan_body(conn)
        if body_complete(conn.buffer, conn.end_of_head, conn.plan):
            self._to_thread(conn)

    def _plan_body(self, conn: ReadingConn) -> None:
        conn.plan = body_plan(conn.buffer[:conn.end_of_head], BODY_IN_LOOP)
        if conn.plan.expect_continue and len(conn.buffer) == conn.end_of_head:
            # gunicorn would send `100 Continue` before the app runs anyway: the loop says it and
            # reads the body like any other, with no thread waiting for it (handle_request then
            # tells gunicorn it was said).
            try:
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            except OSError:
                pass
            conn.continued = True

    def finish_request(self, conn, fs):
        """A thread is done with a request. Bytes it read ahead of the next one (a pipelined
        request, perhaps half sent) go back to the loop, which reads the rest of that request, under
        its own header deadline, as for any other; gunicorn would give it a thread at once."""
        leftover = b""
        if (self.alive and isinstance(conn, ReadingConn) and not conn.is_http2 and conn.parser is not None
                and not fs.cancelled() and fs.exception() is None and fs.result() is True):
            leftover = conn.parser.unreader.take_buffered()
        if not leftover:
            super().finish_request(conn, fs)
            return
        now = time.monotonic()
        conn.start_request(now)
        conn.first_byte_at = now
        conn.sock.setblocking(False)
        self._read_in_loop(conn)
        self._take_in(conn, leftover)

    def _to_thread(self, conn: ReadingConn) -> None:
        self._leave_loop(conn)
        conn.data_ready = True  # gunicorn's handle() must not wait for data the loop already took
        self.enqueue_req(conn)

    def _leave_loop(self, conn: ReadingConn) -> None:
        del self._reading[conn]
        self._held -= len(conn.buffer)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _drop(self, conn: ReadingConn, answer: bytes = b"") -> None:
        self._leave_loop(conn)
        self.nr_conns -= 1
        if answer:
            try:
                conn.sock.send(answer)  # a few hundred bytes into an idle socket: never blocks
            except OSError:
                pass
        conn.close()

    def murder_pending(self):
        """Called by the event loop after every wake-up: also cut off connections past a deadline."""
        super().murder_pending()
        now = time.monotonic()
        if now < self._next_scan and self.alive:
            return
        self._next_scan = now + SCAN_EVERY
        self._cut_late_readers(now)
        self._cut_late_heads(now)

    def _cut_late_readers(self, now: float) -> None:
        if not self.alive and self._stopping_since is None:
            self._stopping_since = now
        for conn in list(self._reading):
            if self._stopping_since is not None and (not conn.buffer or now > self._stopping_since + STOP_LINGER):
                # Stopping: a connection that has sent nothing is not waited for, nor one whose
                # request is still not in after STOP_LINGER seconds (its client may send it again).
                self._drop(conn, json_error(503, "Service Unavailable", "the server is stopping: send it again")
                           if conn.buffer else b"")
            elif conn.end_of_head is None:
                if self.header_timeout and now > (conn.first_byte_at or conn.waiting_since) + self.header_timeout:
                    if conn.buffer:
                        self.log.info("headers from %s took longer than %ss: connection cut", conn.client,
                                      self.header_timeout)
                    answer = json_error(408, "Request Timeout", f"the request's headers took longer than "
                                        f"{self.header_timeout} s") if conn.buffer else b""
                    self._drop(conn, answer)
            elif self.client_timeout and now > conn.last_byte_at + self.client_timeout:
                self.log.info("body from %s stalled for %ss: connection cut", conn.client, self.client_timeout)
                self._drop(conn, json_error(408, "Request Timeout",
                                            f"the request's body stalled for {self.client_timeout} s"))

    # -- the threads ---------------------------------------------------------------------------

    def handle(self, conn):
        """Runs in a pool thread for each request on a connection: what the loop read goes first
        to gunicorn's parser; headers it did not finish are read under the header deadline."""
        if self.header_timeout:
            started = getattr(conn, "first_byte_at", None) or time.monotonic()
            with self._deadlines_lock:
                self._header_deadlines[conn] = started + self.header_timeout
        try:
            if getattr(conn, "buffer", None):
                read, conn.buffer = conn.buffer, bytearray()
                conn.sock.setblocking(True)
                conn.init()  # the parser, once per connection
                conn.parser.unreader.unread(read)  # copied into the parser's buffer: one copy at a time
                del read
            return super().handle(conn)
        finally:
            self._end_header_phase(conn)

    def handle_request(self, req, conn):
        """The headers are complete: from now on no read or write may stall past the client timeout."""
        self._end_header_phase(conn)
        if getattr(conn, "continued", False):
            req._expected_100_continue = False  # the loop has said it: not twice
            conn.continued = False
        conn.sock.settimeout(self.client_timeout)
        return super().handle_request(req, conn)

    def _cut_late_heads(self, now: float) -> None:
        if not self._header_deadlines:
            return
        with self._deadlines_lock:
            late = [conn for conn, deadline in self._header_deadlines.items() if deadline < now]
            for conn in late:
                del self._header_deadlines[conn]
        for conn in late:
            self.log.info("headers from %s took longer than %ss: connection cut", conn.client, self.header_timeout)
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)  # the thread's recv() returns, and it closes
            except OSError:
                pass

    def _end_header_phase(self, conn) -> None:
        if self._header_deadlines:
            with self._deadlines_lock:
                self._header_deadlines.pop(conn, None)
