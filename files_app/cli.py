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


@files_cli.command("gc")
@click.option("--grace", default=3600.0, show_default=True,
              help="Spare unreferenced files younger than this many seconds.")
@with_appcontext
def gc(grace: float) -> None:
    """Delete expired sessions and their bytes, and bytes that no row refers to."""
    counts = current_app.extensions["files"].uploads.collect_garbage(grace=grace)
    click.echo(", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in counts.items()))
