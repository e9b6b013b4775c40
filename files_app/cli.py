"""`flask --app app files ...`: the operator's commands (schema, gc, quotas, people, tokens, the audit log).

Each says on stderr which data dir and database it acts on. Every command but init-db first checks that
a service lives there and, when none does, says so in words and what to do; the data dir and what
create_app put in it for this command alone are taken back (see note_data_dir), so that a command run
in the wrong directory leaves no stray ./data behind. Changes are made as the operator: the audit log
says so.
"""

from __future__ import annotations

import atexit
import functools
import json
import time
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from .errors import FilesError
from .models import db
from .schema import alembic_config, upgrade_database
from .services import audit
from .services.acting import OPERATOR, acting_as

INIT_DB = "flask --app app files init-db"


@click.group("files")
def files_cli() -> None:
    """Files service maintenance: each command acts on FILES_DATA_DIR (default ./data) and its database."""


# --- where the commands act, and whether a service lives there ----------------------------------
@dataclass(frozen=True)
class _Found:
    data_dir: Path
    entries: frozenset[str] | None  # what the data dir held before create_app; None: it did not exist
    first_made: Path | None  # the topmost directory create_app had to make for it
    root: click.Context


_FOUND: dict[Path, _Found] = {}


def note_data_dir(data_dir: Path) -> None:
    """Called by create_app before it makes the data dir and what it needs there (directories, the
    secret key). When the flask command line makes the app (a click context is active), remember what
    was there: unless the command was init-db or one of Flask's own (run, shell), what this process
    made is taken back when the command line ends (after the command, a failure or --help)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return  # the server, a test: the data dir is theirs to make
    if data_dir.is_dir():
        try:
            entries = frozenset(entry.name for entry in data_dir.iterdir())
        except OSError:
            return  # unreadable: create_app says why; nothing here is ever taken back
        found = _Found(data_dir, entries, None, context.find_root())
    else:
        first = data_dir
        while not first.parent.exists() and first.parent != first:
            first = first.parent
        found = _Found(data_dir, None, first, context.find_root())
    _FOUND[data_dir] = found
    found.root.call_on_close(functools.partial(_take_back, data_dir))
    atexit.register(_take_back, data_dir)  # `flask --help` loads the app but closes no context


def _take_back(data_dir: Path) -> None:
    """Remove what create_app made for a command that was not init-db: new empty directories, a new
    secret key, the data dir itself if it was made (only when empty: nothing else is ever removed)."""
    found = _FOUND.pop(data_dir, None)
    if found is None or found.root.invoked_subcommand not in (None, files_cli.name):
        return
    for entry in data_dir.iterdir() if data_dir.is_dir() else ():
        if entry.name not in (found.entries or ()):
            with suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    entry.rmdir()
                elif entry.name == "secret_key":
                    entry.unlink()
    if found.first_made is not None:
        path = data_dir
        with suppress(OSError):  # not empty: it stays, and so do its parents
            while True:
                path.rmdir()
                if path == found.first_made:
                    break
                path = path.parent


def _keep_data_dir(app: Flask) -> None:
    _FOUND.pop(Path(app.config["FILES_DATA_DIR"]), None)


def _where(app: Flask) -> str:
    database = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).render_as_string(hide_password=True)
    blobs = ("blobs in the data dir" if app.config["FILES_STORAGE"] == "local" else
             f"blobs in S3 bucket {app.config['FILES_S3_BUCKET']} at {app.config['FILES_S3_ENDPOINT'] or 'AWS'}")
    return f"files: data dir {app.config['FILES_DATA_DIR']}, database {database}, {blobs}"


def _no_service(app: Flask) -> str | None:
    """Why no files service lives where this command looks (in words, with what to do), or None."""
    data_dir = Path(app.config["FILES_DATA_DIR"])
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    database = url.render_as_string(hide_password=True)
    sqlite_file = url.database if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
        else None
    elsewhere = (f"Set FILES_DATA_DIR to the server's data dir, or run `{INIT_DB}` to make a new one." if sqlite_file
                 else f"Set FILES_DATABASE_URL (and FILES_DATA_DIR) as the server has them, or run `{INIT_DB}` "
                      "to make the schema.")
    found = _FOUND.get(data_dir)
    if found is not None and found.entries is None and (sqlite_file or app.config["FILES_STORAGE"] == "local"):
        return f"there is no data dir at {data_dir} (FILES_DATA_DIR; default ./data). {elsewhere}"
    if sqlite_file and not Path(sqlite_file).exists():
        return f"data dir {data_dir} holds no database ({sqlite_file} does not exist). {elsewhere}"
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    try:
        with db.engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return f"cannot open the database {database}: {reason}. Check FILES_DATABASE_URL and that it is running."
    if revision is None:
        return f"the database {database} (data dir {data_dir}) has no schema. {elsewhere}"
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision != head:
        return (f"the database {database} has schema {revision}; this code's is {head}. Run `{INIT_DB}` to "
                "upgrade it (the server does when it starts), or run the code the server runs.")
    return None


def _operator(command):
    """Every command but init-db: say where, refuse in words when no service is there, act as the
    operator; a domain error (a bad name, a clash, the last admin) is a message and exit status 1."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        app = current_app._get_current_object()
        click.echo(_where(app), err=True)
        problem = _no_service(app)
        if problem:
            raise click.ClickException(problem)
        try:
            with acting_as(OPERATOR):
                return command(*args, **kwargs)
        except FilesError as error:
            raise click.ClickException(error.message) from None
        except (OperationalError, InterfaceError) as error:
            raise click.ClickException(f"the database failed: {str(error.orig or error).strip()}") from None
    return with_appcontext(run)


@files_cli.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the schema to the newest migration (and the data dir, when missing)."""
    click.echo(_where(current_app), err=True)
    upgrade_database(current_app)
    _keep_data_dir(current_app)
    click.echo("schema is up to date")


@files_cli.command("gc")
@click.option("--grace", default=3600.0, show_default=True,
              help="Spare unreferenced files younger than this many seconds.")
@_operator
def gc(grace: float) -> None:
    """Delete expired sessions, OpenAI files and uploads, and their bytes, and bytes that no row refers to."""
    counts = current_app.extensions["files"].collect_garbage(grace=grace)
    click.echo(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in counts.items()))


# --- output -----------------------------------------------------------------------------------
def _when(timestamp: float | None, seconds: bool = False) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in (headers, *rows):
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _json_lines(records: list[dict]) -> None:
    for record in records:
        click.echo(json.dumps(record))


class ByteSize(click.ParamType):
    """A size in bytes: 1000, 512K, 10M, 20G, 1T (powers of 1024), or "none"."""

    name = "size"

    def convert(self, value, param, ctx):
        from . import validation
        from .errors import InvalidInput

        if isinstance(value, int) or value is None:
            return value
        try:
            return validation.byte_size(str(value), "size")
        except InvalidInput:
            self.fail(f"{value!r} is not a size such as 1000, 512K, 10M, 20G or none", param, ctx)


class Moment(click.ParamType):
    """A time: Unix seconds, or a date and time in ISO 8601 (2026-12-01, 2026-12-01T14:30; local time
    unless it says its zone)."""

    name = "time"

    def convert(self, value, param, ctx):
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip()
        if text.replace(".", "", 1).isdigit():
            return float(text)
        try:
            return datetime.fromisoformat(text).timestamp()
        except ValueError:
            self.fail(f"{value!r} is not a time such as 2026-12-01, 2026-12-01T14:30 or Unix seconds", param, ctx)


def _set_quota(subject: str, max_bytes: int | None, max_files: int | None = None) -> None:
    info = current_app.extensions["files"].quotas.set(subject, max_bytes, max_files)
    kind = subject.partition(":")[0]
    limits = ", ".join(f"{name} {value}" for name, value in (("max_bytes", info.max_bytes),
                                                              ("max_files", info.max_files)) if value is not None)
    click.echo(f"{kind} {info.name}: {limits or 'no quota'} (holds {info.usage.bytes} bytes in "
               f"{info.usage.files} files)", err=True)


# --- tokens -----------------------------------------------------------------------------------
@files_cli.group("token")
def token_group() -> None:
    """API tokens: the operator's and everyone's."""


@token_group.command("create")
@click.option("--name", required=True, help="What the token is for (shown in logs, never secret).")
@click.option("--scope", type=click.Choice(["read", "write", "manage", "admin"]), default="read", show_default=True)
@click.option("--bucket", default=None, help="Confine the token to this bucket.")
@click.option("--expires-in", "days", type=click.IntRange(1, 3650), default=None, metavar="DAYS",
              help="It stops working after this many days (default: never).")
@click.option("--max-bytes", type=ByteSize(), default=None, help="Its quota over all buckets (e.g. 20G).")
@_operator
def token_create(name: str, scope: str, bucket: str | None, days: int | None, max_bytes: int | None) -> None:
    """Create an operator's token and print it once: only its hash is kept."""
    expires_at = int(time.time()) + days * 86400 if days else None
    token_id, token = current_app.extensions["files"].accounts.create_token(name, scope, bucket,
                                                                            expires_at=expires_at)
    if max_bytes is not None:
        _set_quota(f"token:{token_id}", max_bytes)
    click.echo(f"token {token_id} {name!r} ({scope}{', bucket ' + bucket if bucket else ''}"
               f"{', until ' + _when(expires_at) if expires_at else ''}); it is shown only now:", err=True)
    click.echo(token)  # the secret alone on the last line


def _token_state(info, now: float, disabled: set[str]) -> str:
    if info.revoked_at is not None:
        return "revoked"
    if info.expires_at is not None and info.expires_at <= now:
        return "expired"
    return "owner disabled" if info.user in disabled else "active"


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_operator
def token_list(as_json: bool) -> None:
    """Every token, newest first: what it may do, whose it is (-: an operator's, or a deleted
    person's), when it was made and last used (and from where), until when it works, and its state."""
    people, now = current_app.extensions["files"].people, time.time()
    disabled = {user.name for user in people.users() if user.disabled_at is not None}
    tokens = [(info, _token_state(info, now, disabled)) for info in people.tokens(None, everyone=True)]
    if as_json:
        _json_lines([{**asdict(info), "state": state} for info, state in tokens])
        return
    _table(["ID", "NAME", "SCOPE", "BUCKET", "OWNER", "CREATED", "LAST USED", "FROM", "EXPIRES", "STATE"],
           [[str(info.id), info.name, info.scope, info.bucket or "-", info.user or "-", _when(info.created_at),
             _when(info.last_used_at), info.last_used_from or "-", _when(info.expires_at), state]
            for info, state in tokens])


@token_group.command("revoke")
@click.argument("token_id", type=int)
@_operator
def token_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID (as `token list` shows it): the next request with it is 401."""
    info = current_app.extensions["files"].people.revoke_token(token_id, None, everyone=True)
    click.echo(f"token {info.id} {info.name!r}{' of ' + info.user if info.user else ''} revoked "
               f"(since {_when(info.revoked_at)})")


# --- people -----------------------------------------------------------------------------------
@files_cli.group("user")
def user_group() -> None:
    """People who sign in to the web UI."""


@user_group.command("create")
@click.option("--name", required=True)
@click.password_option("--password", help="Asked for (twice) when not given.")
@click.option("--role", type=click.Choice(["admin", "member"]), default=None,
              help="admin: everything; member: their own buckets and what they are granted.")
@click.option("--max-bytes", type=ByteSize(), default=None, help="Their quota over all buckets (e.g. 20G).")
@_operator
def user_create(name: str, password: str, role: str | None, max_bytes: int | None) -> None:
    """Create a person who signs in to the web pages: an admin if they are the first, else a member
    (--role to choose)."""
    current_app.extensions["files"].people.create_user(name, password, role)
    if max_bytes is not None:
        _set_quota(current_app.extensions["files"].quotas.subject("user", name), max_bytes)
    click.echo(f"user {name!r} created")


@user_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_operator
def user_list(as_json: bool) -> None:
    """Everyone, by name: role, when they were made, and since when they are disabled."""
    users = current_app.extensions["files"].people.users()
    if as_json:
        _json_lines([asdict(user) for user in users])
        return
    _table(["NAME", "ROLE", "CREATED", "DISABLED"],
           [[user.name, user.role, _when(user.created_at), _when(user.disabled_at)] for user in users])


@user_group.command("disable")
@click.argument("name")
@_operator
def user_disable(name: str) -> None:
    """NAME signs in no more: their web sessions end now, their tokens and shares at their next use."""
    current_app.extensions["files"].people.update_user(name, disabled=True)
    click.echo(f"user {name!r} disabled")


@user_group.command("enable")
@click.argument("name")
@_operator
def user_enable(name: str) -> None:
    """NAME may sign in again (and their tokens and shares work again)."""
    current_app.extensions["files"].people.update_user(name, disabled=False)
    click.echo(f"user {name!r} enabled")


@user_group.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "member"]))
@_operator
def user_set_role(name: str, role: str) -> None:
    """Make NAME an admin or a member (the last admin stays one)."""
    current_app.extensions["files"].people.update_user(name, role=role)
    click.echo(f"user {name!r} is now {'an' if role == 'admin' else 'a'} {role}")


@user_group.command("delete")
@click.argument("name")
@click.option("--transfer-to", default=None, metavar="OTHER", help="Who takes over the buckets NAME owns.")
@_operator
def user_delete(name: str, transfer_to: str | None) -> None:
    """Delete NAME: their sessions, grants and shares go, their tokens are revoked. Refused while
    they own buckets, unless --transfer-to names who takes them over."""
    current_app.extensions["files"].people.delete_user(name, transfer_to)
    click.echo(f"user {name!r} deleted{f'; their buckets now belong to {transfer_to!r}' if transfer_to else ''}")


@user_group.command("set-password")
@click.argument("name")
@click.password_option("--password", help="Asked for (twice) when not given.")
@_operator
def user_set_password(name: str, password: str) -> None:
    """Give NAME a new password: their web sessions end."""
    current_app.extensions["files"].people.set_password(name, password)
    click.echo(f"user {name!r} has a new password")


# --- the audit log ------------------------------------------------------------------------------
@files_cli.command("audit")
@click.option("--user", default=None, help="A person's name (their own and their tokens' entries), or "
              "an owner such as token:7; operator for these commands.")
@click.option("--bucket", default=None)
@click.option("--action", default=None, help="e.g. delete, upload, user (every user.* action), token.revoke.")
@click.option("--since", type=Moment(), default=None, help="2026-12-01, 2026-12-01T14:30 or Unix seconds.")
@click.option("--until", type=Moment(), default=None, help="As --since; entries before it.")
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_operator
def audit_log(user: str | None, bucket: str | None, action: str | None, since: float | None, until: float | None,
              limit: int, as_json: bool) -> None:
    """Who did what, newest first: when, who, from where, what, its outcome."""
    filters = audit.AuditFilter(actor=user, bucket=bucket, action=action, since=since, until=until)
    entries, cursor = [], None
    while len(entries) < limit:
        page = audit.page(filters, buckets=None, cursor=cursor, limit=min(limit - len(entries), 500))
        entries += page.entries
        cursor = page.next_cursor
        if cursor is None:
            break
    if as_json:
        _json_lines([asdict(entry) for entry in entries])
    else:
        _table(["WHEN", "WHO", "FROM", "ACTION", "WHAT", "BYTES", "OUTCOME", "DETAIL"],
               [[_when(entry.at, seconds=True), entry.actor_name or entry.actor or "-", entry.address or "-",
                 entry.action, "/".join(part for part in (entry.bucket, entry.key) if part) or "-",
                 "-" if entry.bytes is None else str(entry.bytes), entry.outcome,
                 json.dumps(entry.detail, separators=(",", ":")) if entry.detail else ""] for entry in entries])
    if cursor is not None:
        click.echo(f"(more entries: raise --limit past {limit}, or narrow with --since)", err=True)


# --- quotas -----------------------------------------------------------------------------------
@files_cli.group("quota")
def quota_group() -> None:
    """Quotas: a bucket's bytes and files, a user's or a token's bytes."""


@quota_group.command("set")
@click.argument("kind", type=click.Choice(["bucket", "user", "token"]))
@click.argument("name")
@click.option("--max-bytes", type=ByteSize(), default=None, help="e.g. 20G; none (the default) for no limit.")
@click.option("--max-files", type=int, default=None, help="A bucket's limit on its number of files.")
@_operator
def quota_set(kind: str, name: str, max_bytes: int | None, max_files: int | None) -> None:
    """Set KIND NAME's quota (a bucket's name, a user's name, a token's id); no limits removes it."""
    _set_quota(current_app.extensions["files"].quotas.subject(kind, name), max_bytes, max_files)


@quota_group.command("list")
@_operator
def quota_list() -> None:
    """Every quota, with what it counts now."""
    for info in current_app.extensions["files"].quotas.all():
        usage = info.usage
        click.echo(f"{info.subject}\tmax_bytes={info.max_bytes}\tmax_files={info.max_files}\t"
                   f"used_bytes={usage.bytes}\tused_files={usage.files}\tpromised_bytes={usage.promised_bytes}")


# --- counters -----------------------------------------------------------------------------------
@files_cli.command("check")
@click.option("--repair", is_flag=True, help="Set every counter that differs to what its rows say (under a lock).")
@_operator
def check(repair: bool) -> None:
    """Compare every counter (buckets' files and bytes, owners' usage, shares' counts, sessions' offsets)
    with the rows it counts; print each difference. Exit status 1 when a counter drifted (unless --repair
    mended it), 0 when none did."""
    from .services import consistency

    found = consistency.repair() if repair else consistency.check()
    for drift in found:
        click.echo(str(drift))
    if not found:
        click.echo("no drift: every counter matches its rows")
        return
    mended = [drift for drift in found if drift.actual is not None]
    if repair:
        click.echo(f"repaired {len(mended)} counter{'s' if len(mended) != 1 else ''}"
                   + (f"; {len(found) - len(mended)} difference(s) left as they are" if len(mended) < len(found)
                      else ""))
        if len(mended) == len(found):
            return
    else:
        click.echo(f"{len(found)} difference{'s' if len(found) != 1 else ''}; `flask files check --repair` "
                   "mends the counters")
    raise SystemExit(1)
