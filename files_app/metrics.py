"""Metrics for the operator: `GET /metrics` in Prometheus's text format (prometheus_client).

Counted as it happens, in each process:
- every request, by endpoint (the view's name, never the raw path: keys would make the label
  unbounded), method and status; its duration until the last byte of the body went out; the body
  bytes the app read and the bytes it sent (a sendfile response counts its Content-Length). A WSGI
  middleware does it, so a streamed body is counted to its end and nothing matches on paths;
- uploads completed (a file published by the one finish, whatever the dialect) and upload
  requests that failed (a chunk, a PUT, a tus final), by the error's code;
- sign-in failures (a wrong name or password, or an attempt refused by the throttle);
- gc runs, the ones that failed, and what each freed;
- SQLite statements that waited out FILES_SQLITE_BUSY_MS and gave up ("database is locked").
Read when scraped, in the worker that answers: upload sessions open, and the data dir's disk.

The counters are bumped from the outside: the services' methods are wrapped here (`init_app`), so
no service knows about metrics. The functions `upload_completed`, `upload_failed`,
`sign_in_failed`, `gc_ran` and `sqlite_busy` are the hooks a service may call itself instead.

Under gunicorn each worker writes its values to files in PROMETHEUS_MULTIPROC_DIR, a fresh private
directory per server start (gunicorn.conf.py), and a scrape adds them up, whichever worker answers.
In a single process (the test client, `flask files gc`) they live in this module's registry.

Who may read: FILES_METRICS=local (default) answers loopback addresses and admins anywhere;
admin answers admins only (behind a reverse proxy every request comes from loopback); off is 404.
"""

from __future__ import annotations

import contextvars
import functools
import os
import shutil
import sqlite3
import time
from typing import Any

from flask import Flask, Response, current_app, has_request_context, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException

from . import auth
from .access import access
from .errors import FilesError, Forbidden, NotFound, TooManyAttempts
from .guard import is_loopback
from .models import SessionState, UploadSession, db, transaction

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # the endpoint of a request that reached no route (404, 405)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_FLUSH_BYTES = 1024 * 1024  # byte counts are added up per request and written every MiB or so
# Seconds: from a health probe to an upload of many GB over a slow line.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, float("inf"))

disable_created_metrics()  # the same series in one process as across workers (which have no _created)
_LOCAL = CollectorRegistry(auto_describe=True)  # this process's metrics, when not multiprocess

REQUESTS = Counter("files_http_requests", "Requests answered, by endpoint (the view's name), method and status.",
                   ["endpoint", "method", "status"], registry=_LOCAL)
DURATION = Histogram("files_http_request_duration_seconds",
                     "Time from a request's arrival to the last byte of its answer, by endpoint.",
                     ["endpoint"], buckets=_DURATION_BUCKETS, registry=_LOCAL)
IN_PROGRESS = Gauge("files_http_requests_in_progress", "Requests being served (their answers not yet sent).",
                    registry=_LOCAL, multiprocess_mode="livesum")
RECEIVED = Counter("files_http_received_bytes", "Request body bytes the service read.", registry=_LOCAL)
SENT = Counter("files_http_sent_bytes", "Response body bytes sent (a sendfile answer: its Content-Length).",
               registry=_LOCAL)
UPLOADS_COMPLETED = Counter("files_uploads_completed",
                            "Files published by an upload, whatever the dialect (seed, tus, PUT, pages, "
                            "file requests, OpenAI; a copy into another bucket too).", registry=_LOCAL)
UPLOADS_FAILED = Counter("files_upload_failures",
                         "Upload requests (a chunk, a PUT, a tus final) that ended in an error, by the error's "
                         "code; many uploads resume after one (incomplete_body, offset_mismatch).",
                         ["code"], registry=_LOCAL)
SIGN_IN_FAILURES = Counter("files_sign_in_failures",
                           "Refused sign-ins: credentials (a wrong name or password), throttled (too many).",
                           ["reason"], registry=_LOCAL)
GC_RUNS = Counter("files_gc_runs", "Garbage collection passes that completed.", registry=_LOCAL)
GC_FAILURES = Counter("files_gc_failures", "Garbage collection passes that failed.", registry=_LOCAL)
GC_FREED = Counter("files_gc_freed", "What garbage collection removed, by kind (expired_sessions, orphan_blobs, ...).",
                   ["what"], registry=_LOCAL)
SQLITE_BUSY = Counter("files_sqlite_busy",
                      "SQLite statements that waited FILES_SQLITE_BUSY_MS for a lock and gave up "
                      "('database is locked'; the request got a 503).", registry=_LOCAL)


# --- the hooks --------------------------------------------------------------------------------

def upload_completed() -> None:
    UPLOADS_COMPLETED.inc()


def upload_failed(code: str) -> None:
    UPLOADS_FAILED.labels(code).inc()


def sign_in_failed(reason: str) -> None:
    SIGN_IN_FAILURES.labels(reason).inc()


def gc_ran(counts: dict[str, int]) -> None:
    GC_RUNS.inc()
    for what, count in counts.items():
        GC_FREED.labels(what).inc(count)  # a zero too: every kind is a series from the first pass


def sqlite_busy() -> None:
    SQLITE_BUSY.inc()


# --- the view ---------------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    if "metrics" in app.extensions:
        return
    app.extensions["metrics"] = True
    _instrument_services(app.extensions["files"])
    app.wsgi_app = _Measured(app.wsgi_app)

    @app.get("/metrics")
    @access("public")  # who may read is FILES_METRICS's business: checked here, where it is read
    def metrics():
        try:
            _check_access(current_app.config["FILES_METRICS"])
        except FilesError as error:
            # Answered here, in the API's JSON shape: the app's handler would answer a page for a
            # path outside /v1/ (web.wants_html), and whoever scrapes is no browser.
            return error.to_dict(), error.status, {"WWW-Authenticate": error.challenge} if error.challenge else {}
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # text, or OpenMetrics if asked
        body = encode(_registry(current_app.config["FILES_DATA_DIR"]))
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def _check_access(mode: str) -> None:
    if mode == "off":
        raise NotFound("metrics are off here (FILES_METRICS=off)")
    if mode == "local" and is_loopback(request.remote_addr or ""):
        return
    if not _asked_by_an_admin():
        where = "an admin's credential" if mode == "admin" else "a loopback address or an admin's credential"
        raise Forbidden(f"metrics need {where} (FILES_METRICS={mode})")


def _asked_by_an_admin() -> bool:
    """A bearer token or a web session of an admin, confined to no bucket. The service being open
    does not make anyone an admin here: metrics are never public."""
    principal, _ = auth._identify(current_app.extensions["files"].accounts)
    return principal is not None and principal.is_admin and not principal.bucket


def _registry(data_dir: str) -> CollectorRegistry:
    """What a scrape shows: every worker's values (or this process's), and what is read now."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROCESS_DIR):
        MultiProcessCollector(registry)
    else:
        registry.register(_LOCAL)
    registry.register(_AtScrape(data_dir))
    return registry


class _AtScrape:
    """Values read when scraped, by the worker that answers: nothing to add up across processes."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir

    def collect(self):
        usage = shutil.disk_usage(self.data_dir)
        yield GaugeMetricFamily("files_data_dir_free_bytes", "Free space on the data dir's file system "
                                "(uploads keep FILES_RESERVED_SPACE of it free).", value=usage.free)
        yield GaugeMetricFamily("files_data_dir_size_bytes", "Size of the data dir's file system.", value=usage.total)
        try:
            with transaction():
                sessions = db.session.scalar(select(func.count()).select_from(UploadSession).where(
                    UploadSession.state == SessionState.ACTIVE, UploadSession.expires_at >= time.time()))
        except (OperationalError, InterfaceError):
            return  # the database is down or locked: the other metrics matter all the more now
        yield GaugeMetricFamily("files_upload_sessions_open", "Upload sessions in progress (not completed, "
                                "not expired).", value=sessions)


# --- counting from the outside ----------------------------------------------------------------

_IN_UPLOAD = contextvars.ContextVar("files_metrics_in_upload", default=False)


def _instrument_services(files: Any) -> None:
    """Wrap, on this app's service objects, the methods whose outcome is counted."""
    uploads = files.uploads
    uploads._finish = _counting_completions(uploads._finish)  # the one finish every upload ends in
    for name in ("write", "put", "concatenate"):  # what the views (and other services) call
        setattr(uploads, name, _counting_failures(getattr(uploads, name)))
    files.accounts.sign_in = _counting_sign_in_failures(files.accounts.sign_in)
    # FilesExtension is frozen (its services are fixed once made); this one attribute is ours.
    object.__setattr__(files, "collect_garbage", _counting_gc(files.collect_garbage))


def _counting_completions(finish):
    @functools.wraps(finish)
    def counted(*args, **kwargs):
        obj = finish(*args, **kwargs)
        upload_completed()
        return obj
    return counted


def _counting_failures(method):
    """An upload request that raised, counted once however its calls nest (a PUT writes)."""
    @functools.wraps(method)
    def counted(*args, **kwargs):
        if _IN_UPLOAD.get():
            return method(*args, **kwargs)
        outermost = _IN_UPLOAD.set(True)
        try:
            return method(*args, **kwargs)
        except Exception as error:
            upload_failed(_code_of(error))
            raise
        finally:
            _IN_UPLOAD.reset(outermost)
    return counted


def _code_of(error: Exception) -> str:
    if isinstance(error, FilesError):
        return error.code
    if isinstance(error, HTTPException):
        return f"http_{error.code}"
    if isinstance(error, (OperationalError, InterfaceError)):
        return "unavailable"  # what the error handler answers
    return type(error).__name__


def _counting_sign_in_failures(sign_in):
    @functools.wraps(sign_in)
    def counted(*args, **kwargs):
        try:
            web_session = sign_in(*args, **kwargs)
        except TooManyAttempts:
            sign_in_failed("throttled")
            raise
        if web_session is None:
            sign_in_failed("credentials")
        return web_session
    return counted


def _counting_gc(collect):
    @functools.wraps(collect)
    def counted(*args, **kwargs):
        try:
            counts = collect(*args, **kwargs)
        except Exception:
            GC_FAILURES.inc()
            raise
        gc_ran(counts)
        return counts
    return counted


@event.listens_for(Engine, "handle_error")
def _sqlite_locked(context) -> None:
    """Writers queue for SQLite's lock up to FILES_SQLITE_BUSY_MS (the driver's timeout); one that
    waited it out fails here (a statement or a commit), and its request is answered 503."""
    error = context.original_exception
    if isinstance(error, sqlite3.OperationalError) and "is locked" in str(error):
        sqlite_busy()


# --- every request, as it goes out --------------------------------------------------------------

class _Measured:
    """WSGI middleware around the Flask app: counts each request when its status is set (before
    any byte of the answer leaves), and its duration and bytes once the body is sent and closed."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        exchange = _Exchange(environ.get("REQUEST_METHOD", ""))
        if environ.get("wsgi.input") is not None:
            environ["wsgi.input"] = _CountedInput(environ["wsgi.input"], exchange)

        def start(status, headers, exc_info=None):
            exchange.answered(status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start)
        except BaseException:
            exchange.answered("500", [])
            exchange.ended()
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if file_wrapper is not None and isinstance(body, file_wrapper):
            exchange.by_sendfile = True
            return _watching_close(body, exchange)
        return _CountedBody(body, exchange)


class _Exchange:
    """One request's measurements, kept by its own thread."""

    def __init__(self, method: str):
        self.started = time.perf_counter()
        self.method = method if method in _METHODS else "other"
        self.endpoint = UNMATCHED
        self.status: str | None = None
        self.content_length = 0
        self.by_sendfile = False
        self.unread = self.unsent = 0
        IN_PROGRESS.inc()

    def answered(self, status: str, headers) -> None:
        if self.status is not None:
            return  # an error after the first start_response: the request was counted already
        self.status = status.split(" ", 1)[0]
        if has_request_context():  # start_response runs inside Flask's request context
            self.endpoint = request.endpoint or UNMATCHED
        for name, value in headers:
            if name.lower() == "content-length" and value.isdigit():
                self.content_length = int(value)
        REQUESTS.labels(self.endpoint, self.method, self.status).inc()

    def received(self, count: int) -> None:
        self.unread += count
        if self.unread >= _FLUSH_BYTES:
            RECEIVED.inc(self.unread)
            self.unread = 0

    def sent(self, count: int) -> None:
        self.unsent += count
        if self.unsent >= _FLUSH_BYTES:
            SENT.inc(self.unsent)
            self.unsent = 0

    def ended(self) -> None:
        if self.by_sendfile:
            self.unsent += self.content_length
        if self.unread:
            RECEIVED.inc(self.unread)
        if self.unsent:
            SENT.inc(self.unsent)
        self.unread = self.unsent = 0
        DURATION.labels(self.endpoint).observe(time.perf_counter() - self.started)
        IN_PROGRESS.dec()


def _watching_close(body, exchange: _Exchange):
    """The server's own file wrapper, handed back as it is (gunicorn uses sendfile() only when
    `isinstance(body, file_wrapper)`), with its close() watched."""
    close = getattr(body, "close", None)

    def closed() -> None:
        try:
            if close is not None:
                close()
        finally:
            exchange.ended()

    body.close = closed
    return body


class _CountedBody:
    def __init__(self, body, exchange: _Exchange):
        self.body, self.exchange = body, exchange

    def __iter__(self):
        for chunk in self.body:
            self.exchange.sent(len(chunk))
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.exchange.ended()


class _CountedInput:
    """The request body, counted as the app reads it (read, readinto, readline, or lines)."""

    def __init__(self, stream, exchange: _Exchange):
        self._stream, self._exchange = stream, exchange

    def read(self, *args):
        data = self._stream.read(*args)
        self._exchange.received(len(data))
        return data

    def readline(self, *args):
        line = self._stream.readline(*args)
        self._exchange.received(len(line))
        return line

    def readlines(self, *args):
        lines = self._stream.readlines(*args)
        self._exchange.received(sum(map(len, lines)))
        return lines

    def __iter__(self):
        for line in self._stream:
            self._exchange.received(len(line))
            yield line

    def __getattr__(self, name: str):
        found = getattr(self._stream, name)  # readinto only where the stream has one (Werkzeug asks)
        if name != "readinto":
            return found

        def readinto(buffer):
            count = found(buffer)
            self._exchange.received(count or 0)
            return count
        return readinto
