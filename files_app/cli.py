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


@files_cli.group("token")
def token_group() -> None:
    """API tokens."""


@token_group.command("create")
@click.option("--name", required=True, help="What the token is for (shown in logs, never secret).")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="read", show_default=True)
@click.option("--bucket", default=None, help="Confine the token to this bucket.")
@with_appcontext
@_domain_errors
def token_create(name: str, scope: str, bucket: str | None) -> None:
    """Create a token and print it once: only its hash is kept."""
    token = current_app.extensions["files"].accounts.create_token(name, scope, bucket)
    click.echo(f"token {name!r} ({scope}{', bucket ' + bucket if bucket else ''}); it is shown only now:",
               err=True)
    click.echo(token)  # the secret alone on the last line


@files_cli.group("user")
def user_group() -> None:
    """People who sign in to the web UI."""


@user_group.command("create")
@click.option("--name", required=True)
@click.password_option("--password", help="Asked for (twice) when not given.")
@with_appcontext
@_domain_errors
def user_create(name: str, password: str) -> None:
    """Create a user who can sign in to the web pages (and do everything there)."""
    current_app.extensions["files"].accounts.create_user(name, password)
    click.echo(f"user {name!r} created")
