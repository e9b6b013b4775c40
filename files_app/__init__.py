"""The application factory: config, extensions, blueprints, error handlers, CLI."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, request
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from . import api, auth, cors, guard, metrics, openai, shares, web
from .access import access, rule_of
from .config import load_settings
from .errors import FilesError, IncompleteBody, OpenService, Unavailable
from .models import db
from .request_io import close_when_asked
from .services import ObjectService, UploadService, audit, webhooks
from .services.accounts import AccountService
from .services.folders import FolderService
from .services.kept import Retention
from .services.openai_files import OpenAIService
from .services.people import PeopleService
from .services.quotas import QuotaService
from .services.shares import ShareService
from .services.thumbnails import ThumbnailService
from .services.trash import TrashService
from .storage import BlobStore, make_store

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FilesExtension:
    store: BlobStore
    objects: ObjectService
    uploads: UploadService
    accounts: AccountService
    openai: OpenAIService
    folders: FolderService
    thumbnails: ThumbnailService
    quotas: QuotaService
    shares: ShareService
    people: PeopleService
    trash: TrashService
    audit_days: int

    def collect_garbage(self, grace: float = 3600.0) -> dict[str, int]:
        """One gc pass: expired OpenAI files and uploads first (their sessions and bytes go next),
        then files longer in the trash than FILES_TRASH_DAYS, then expired sessions and unreferenced
        bytes, then expired sign-in records, dead shares, and audit entries older than FILES_AUDIT_DAYS."""
        counts = self.openai.collect_garbage(grace)
        counts["refunded_file_request_uploads"] = self.shares.refund_expired_uploads(self.uploads.clock())
        counts["purged_from_trash"] = self.trash.collect_garbage(time.time())
        counts.update(self.uploads.collect_garbage(grace))
        counts["expired_signins"] = self.accounts.forget_expired(time.time())
        counts["dead_shares"] = self.shares.forget_dead(self.shares.clock())
        cutoff = time.time() - self.audit_days * 86400
        # A hook's deliveries first: they point at the entries they deliver.
        counts["old_hook_deliveries"] = webhooks.prune(cutoff) if self.audit_days else 0
        counts["old_audit_entries"] = audit.prune(cutoff) if self.audit_days else 0
        return counts


def create_app(config: dict[str, Any] | None = None) -> Flask:
    settings = load_settings(config)
    _private_data_dir(Path(settings["FILES_DATA_DIR"]))

    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"))
    app.config.update(settings)
    app.config["SQLALCHEMY_DATABASE_URI"] = settings["FILES_DATABASE_URL"]
    if settings["FILES_DATABASE_URL"].startswith("sqlite"):
        # How long a writer queues for SQLite's lock before the request becomes a 503. (A file
        # never drops a connection: no ping before each transaction, which cost a statement each.)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"connect_args": {"timeout": settings["FILES_SQLITE_BUSY_MS"] / 1000}}
    else:
        # A database server restarts and drops connections: ping one before handing it out.
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}
    app.config["MAX_CONTENT_LENGTH"] = None  # sessions enforce their own sizes while streaming
    app.url_map.merge_slashes = False  # a malformed path is a JSON 404, never a redirect
    app.json.sort_keys = False

    db.init_app(app)
    store = make_store(settings)
    objects = ObjectService(store, Retention(settings["FILES_TRASH_DAYS"], settings["FILES_VERSIONS"]))
    uploads = UploadService(store, objects, settings)
    accounts = AccountService()
    app.extensions["files"] = FilesExtension(store, objects, uploads, accounts,
                                             OpenAIService(uploads, objects, settings),
                                             FolderService(store, objects, uploads), ThumbnailService(objects),
                                             QuotaService(time.time), ShareService(uploads), PeopleService(accounts),
                                             TrashService(objects), settings["FILES_AUDIT_DAYS"])

    access("public")(app.view_functions["static"])  # the pages' CSS and scripts
    _serve_open_only_to_loopback(app)  # first: an open service answers no one else, however it is served
    guard.init_app(app)  # then: a request from the wrong Host or site goes no further
    api.init_app(app)
    openai.init_app(app)
    cors.init_app(app)
    web.init_app(app)
    shares.init_app(app)
    auth.init_app(app)
    metrics.init_app(app)
    _register_error_handlers(app)
    _register_health(app)

    from . import cli_store  # noqa: F401  (its commands join the group)
    from .cli import files_cli

    app.cli.add_command(files_cli)
    app.wsgi_app = close_when_asked(app.wsgi_app)  # outermost: it needs the server's own start_response
    return app


def _serve_open_only_to_loopback(app: Flask) -> None:
    """While the service is open (no token and no user, FILES_AUTH=auto), a request from a peer
    other than loopback is refused. gunicorn.conf.py also refuses to start on such an address, but
    only when it is the config read: `gunicorn -c other.conf.py app:app`, `--bind 0.0.0.0`, `flask
    run --host` or any other WSGI server come through here. Routes declared public (access.py) answer
    as they would anyway; /metrics keeps its own loopback rule. A peer on a Unix socket (no address) is
    this host's. Behind a proxy on this host the peer is the proxy: open there means open to what the
    proxy lets in, as with `make serve` on 127.0.0.1."""
    if app.config["FILES_AUTH"] == "off":
        return

    @app.before_request
    def refuse_open_service_off_loopback():
        peer = request.remote_addr or ""
        if not peer or peer.startswith("unix:") or guard.is_loopback(peer):
            return
        rule = rule_of(app.view_functions.get(request.endpoint)) if request.endpoint else None
        if rule is None or rule.level == "public":
            return  # routing's 404/405, and what anyone may call anyway (static, /healthz, share links)
        if not auth.service_open():
            return
        raise OpenService("this service is open (no token and no user exist), so it answers loopback only, "
                          f"and {peer} is not loopback: create a token or a user (flask --app app files token "
                          "create / user create), or set FILES_AUTH=off to run open on purpose")


def _private_data_dir(data_dir: Path) -> None:
    """Everything the service writes (database, blobs, keys) is readable by its own user only:
    the database holds password and token hashes. The data dir is made when missing; when the flask
    command line makes the app, the operator's commands (cli.py) first note what was there, so that
    one run in the wrong place takes back what it made instead of leaving a stray data dir."""
    from .cli import note_data_dir

    os.umask(0o077)
    note_data_dir(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    for made_before in ("files.db", "files.db-wal", "files.db-shm", "secret_key"):
        if (data_dir / made_before).exists():
            (data_dir / made_before).chmod(0o600)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the writer; NORMAL syncs at checkpoints, and the commits that
    # acknowledge a file wait for a group sync of the WAL (group_commit.py). Writers queue for up to
    # FILES_SQLITE_BUSY_MS (the driver's timeout) instead of failing at once.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()


def start_periodic_gc(app: Flask) -> threading.Event:
    """Run `files gc` every FILES_GC_INTERVAL seconds (with jitter, as every worker runs one) in
    a daemon thread. Returns the event that stops it."""
    stop = threading.Event()
    interval = app.config["FILES_GC_INTERVAL"]
    if not interval:
        return stop

    def loop() -> None:
        while not stop.wait(interval * random.uniform(0.8, 1.2)):
            try:
                with app.app_context():
                    counts = app.extensions["files"].collect_garbage()
                if any(counts.values()):
                    app.logger.info("gc: %s", counts)
            except Exception:  # noqa: BLE001 - a failed pass must not end the loop; the next one retries
                app.logger.exception("gc pass failed")

    threading.Thread(target=loop, name="files-gc", daemon=True).start()
    return stop


def start_periodic_scrub(app: Flask) -> threading.Event:
    """`files verify` of every file, paced to FILES_SCRUB_RATE MB/s, every FILES_SCRUB_INTERVAL
    seconds (0: never), in a daemon thread; one process at a time scrubs (services/scrub.exclusive),
    the others skip that round. Orphans are gc's. Returns the event that stops it."""
    from .services.scrub import exclusive, scrub

    stop = threading.Event()
    interval, rate = app.config["FILES_SCRUB_INTERVAL"], app.config["FILES_SCRUB_RATE"]
    if not interval:
        return stop

    def loop() -> None:
        while not stop.wait(interval * random.uniform(0.8, 1.2)):
            try:
                with app.app_context(), exclusive(app.config["FILES_DATA_DIR"]) as mine:
                    if not mine:
                        continue
                    report = scrub(app.extensions["files"].store, rate=rate * 1e6, orphans=False)
                for finding in report.findings:
                    app.logger.error("scrub: %s", finding)
                app.logger.info("scrub: %d files, %d bytes checked in %.0f s, %d problems", report.files,
                                report.bytes, report.seconds, len(report.findings))
            except Exception:  # noqa: BLE001 - a failed pass must not end the loop; the next one retries
                app.logger.exception("scrub pass failed")

    threading.Thread(target=loop, name="files-scrub", daemon=True).start()
    return stop


def error_headers(error: FilesError) -> dict[str, str]:
    """The one place where a domain error's data becomes HTTP headers."""
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.offset is not None:
        headers["Upload-Offset"] = str(error.offset)
    if error.challenge:
        headers["WWW-Authenticate"] = error.challenge
    if error.tus_version:
        headers["Tus-Version"] = error.tus_version
    return headers


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra):
    body = {"error": {"status": status, "code": code, "message": message, **extra}}
    return body, status, headers or {}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(FilesError)
    def domain_error(error: FilesError):
        if error.status >= 500:
            app.logger.error("server fault on %s %s: %s", request.method, request.path, error.message)
        if openai.speaks_openai():
            return openai.error_response(error.status, error.code, error.message, error.extra.get("param"),
                                         error_headers(error))
        if web.wants_html():
            page, status = web.error_page(error.status, _TITLES.get(error.status, "Something went wrong"),
                                          error.message)
            return page, status, error_headers(error)
        return error.to_dict(), error.status, error_headers(error)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    def database_unavailable(error: Exception):
        # Down, restarting or locked past the busy timeout: every step commits on its own, so
        # nothing is half done. Tell the client to come back.
        app.logger.warning("database unavailable on %s %s: %s", request.method, request.path, error)
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001 - the connection may be gone as well
            pass
        return domain_error(Unavailable("the database is unavailable; retry shortly"))

    @app.errorhandler(TimeoutError)
    @app.errorhandler(ConnectionError)
    def client_gone(error: OSError):
        # A form or JSON body whose client stalled past FILES_CLIENT_TIMEOUT or went away while
        # Werkzeug read it: the client's fault, and nothing was stored.
        return domain_error(IncompleteBody(f"the request body broke off: {error.__class__.__name__}"))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        if openai.speaks_openai():
            headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
            return openai.error_response(status, _code(error), error.description or error.name, headers=headers)
        if isinstance(error, InternalServerError):
            message = "the server failed; this is a bug"
            if web.wants_html():
                return web.error_page(500, "Something went wrong", "The server failed. This is a bug; try again.")
            return error_response(500, "internal_error", message)
        if web.wants_html():
            return web.error_page(status, _TITLES.get(status, error.name), error.description or error.name)
        headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
        return error_response(status, _code(error), error.description or error.name, headers)


def _code(error: HTTPException) -> str:
    return (error.name or "error").lower().replace(" ", "_").replace("'", "")


_TITLES = {400: "That did not work", 403: "Not allowed", 404: "Not found", 405: "Not allowed", 409: "Conflict",
           410: "This link no longer works", 413: "Too large", 429: "Too many attempts",
           500: "Something went wrong"}


def _register_health(app: Flask) -> None:
    @app.get("/healthz")
    @access("public")
    def healthz():
        db.session.execute(text("SELECT 1"))
        db.session.commit()
        return {"status": "ok"}
