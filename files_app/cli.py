"""`flask --app app files ...`: schema, garbage collection."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from .schema import upgrade_database


@click.group("files")
def files_cli() -> None:
    """Files service maintenance."""


@files_cli.command("init-db")
@with_appcontext
def init_db() -> None:
    """Create or upgrade the schema to the newest migration."""
    upgrade_database(current_app)
    click.echo("schema is up to date")


def _domain_errors(command):
    """A bad name or a clash is a clear message and exit status 1, not a traceback."""
    import functools

    from .errors import FilesError

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FilesError as error:
            raise click.ClickException(error.message) from None
    return run


@files_cli.command("gc")
@click.option("--grace", default=3600.0, show_default=True,
              help="Spare unreferenced files younger than this many seconds.")
@with_appcontext
def gc(grace: float) -> None:
    """Delete expired sessions, OpenAI files and uploads, and their bytes, and bytes that no row refers to."""
    counts = current_app.extensions["files"].collect_garbage(grace=grace)
    click.echo(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in counts.items()))


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


def _set_quota(subject: str, max_bytes: int | None, max_files: int | None = None) -> None:
    info = current_app.extensions["files"].quotas.set(subject, max_bytes, max_files)
    kind = subject.partition(":")[0]
    limits = ", ".join(f"{name} {value}" for name, value in (("max_bytes", info.max_bytes),
                                                              ("max_files", info.max_files)) if value is not None)
    click.echo(f"{kind} {info.name}: {limits or 'no quota'} (holds {info.usage.bytes} bytes in "
               f"{info.usage.files} files)", err=True)


@files_cli.group("token")
def token_group() -> None:
    """API tokens."""


@token_group.command("create")
@click.option("--name", required=True, help="What the token is for (shown in logs, never secret).")
@click.option("--scope", type=click.Choice(["read", "write", "manage", "admin"]), default="read", show_default=True)
@click.option("--bucket", default=None, help="Confine the token to this bucket.")
@click.option("--max-bytes", type=ByteSize(), default=None, help="Its quota over all buckets (e.g. 20G).")
@with_appcontext
@_domain_errors
def token_create(name: str, scope: str, bucket: str | None, max_bytes: int | None) -> None:
    """Create a token and print it once: only its hash is kept."""
    token_id, token = current_app.extensions["files"].accounts.create_token(name, scope, bucket)
    if max_bytes is not None:
        _set_quota(f"token:{token_id}", max_bytes)
    click.echo(f"token {name!r} ({scope}{', bucket ' + bucket if bucket else ''}); it is shown only now:",
               err=True)
    click.echo(token)  # the secret alone on the last line


@files_cli.group("user")
def user_group() -> None:
    """People who sign in to the web UI."""


@user_group.command("create")
@click.option("--name", required=True)
@click.password_option("--password", help="Asked for (twice) when not given.")
@click.option("--role", type=click.Choice(["admin", "member"]), default=None,
              help="admin: everything; member: their own buckets and what they are granted.")
@click.option("--max-bytes", type=ByteSize(), default=None, help="Their quota over all buckets (e.g. 20G).")
@with_appcontext
@_domain_errors
def user_create(name: str, password: str, role: str | None, max_bytes: int | None) -> None:
    """Create a person who signs in to the web pages: an admin if they are the first, else a member
    (--role to choose)."""
    current_app.extensions["files"].people.create_user(name, password, role)
    if max_bytes is not None:
        _set_quota(current_app.extensions["files"].quotas.subject("user", name), max_bytes)
    click.echo(f"user {name!r} created")


@files_cli.group("quota")
def quota_group() -> None:
    """Quotas: a bucket's bytes and files, a user's or a token's bytes."""


@quota_group.command("set")
@click.argument("kind", type=click.Choice(["bucket", "user", "token"]))
@click.argument("name")
@click.option("--max-bytes", type=ByteSize(), default=None, help="e.g. 20G; none (the default) for no limit.")
@click.option("--max-files", type=int, default=None, help="A bucket's limit on its number of files.")
@with_appcontext
@_domain_errors
def quota_set(kind: str, name: str, max_bytes: int | None, max_files: int | None) -> None:
    """Set KIND NAME's quota (a bucket's name, a user's name, a token's id); no limits removes it."""
    _set_quota(current_app.extensions["files"].quotas.subject(kind, name), max_bytes, max_files)


@quota_group.command("list")
@with_appcontext
def quota_list() -> None:
    """Every quota, with what it counts now."""
    for info in current_app.extensions["files"].quotas.all():
        usage = info.usage
        click.echo(f"{info.subject}\tmax_bytes={info.max_bytes}\tmax_files={info.max_files}\t"
                   f"used_bytes={usage.bytes}\tused_files={usage.files}\tpromised_bytes={usage.promised_bytes}")
