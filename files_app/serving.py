"""The gunicorn worker the service runs under: gthread, hardened against slow clients.

gunicorn's gthread worker parks idle connections in its event loop, but a connection that has sent
part of its headers holds a thread until they are complete, and a body or a reader that stalls holds
one for ever. Here:
- each worker has many threads (FILES_THREADS, default 1024): an upload in progress holds one, so a
  host serves a thousand slow uploads at once without the next one waiting;
- a request whose headers are not complete FILES_HEADER_TIMEOUT seconds after its first byte is cut
  off (the event loop shuts the socket down, which ends the thread's blocking read);
- once the headers are in, every read and write on the socket times out after FILES_CLIENT_TIMEOUT
  seconds without progress, on every route and method: the body reader raises, the upload keeps
  what was durable and the thread is free again;
- gunicorn's own answers to malformed requests use the API's JSON error shape.
The measurements that chose this over gevent are in the README ("Serving model").
"""

from __future__ import annotations

import json
import socket
import threading
import time

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from .config import load_settings

_REASONS = {400: "Bad Request", 403: "Forbidden", 408: "Request Timeout", 414: "URI Too Long",
            417: "Expectation Failed", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
            501: "Not Implemented"}


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's util.write_error, in the API's error shape instead of an HTML page."""
    code = reason.lower().replace(" ", "_") if reason else "bad_request"
    body = json.dumps({"error": {"status": status_int, "code": code,
                                 "message": mesg or reason or "malformed request"}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason or _REASONS.get(status_int, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "X-Content-Type-Options: nosniff\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class FilesWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = load_settings()
        self.header_timeout = settings["FILES_HEADER_TIMEOUT"] or None
        self.client_timeout = settings["FILES_CLIENT_TIMEOUT"] or None
        # Connections whose headers are being read, by the monotonic time they must be complete.
        self._header_deadlines: dict[object, float] = {}
        self._deadlines_lock = threading.Lock()

    def init_process(self):
        util.write_error = write_json_error  # base.Worker.handle_error writes through it
        super().init_process()

    def handle(self, conn):
        """Runs in a pool thread for each request on a connection: headers under a deadline."""
        if self.header_timeout:
            with self._deadlines_lock:
                self._header_deadlines[conn] = time.monotonic() + self.header_timeout
        try:
            return super().handle(conn)
        finally:
            self._end_header_phase(conn)

    def handle_request(self, req, conn):
        """The headers are complete: from now on no read or write may stall past the client timeout."""
        self._end_header_phase(conn)
        conn.sock.settimeout(self.client_timeout)
        return super().handle_request(req, conn)

    def murder_pending(self):
        """Called by the event loop about once a second: also cut off headers past their deadline."""
        super().murder_pending()
        if not self._header_deadlines:
            return
        now = time.monotonic()
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
