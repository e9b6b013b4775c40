"""The schema is owned by Alembic migrations (files_app/migrations); this runs them.

Alembic is imported only when there is something to migrate: a database already at the newest
migration (every start of a server but the first) is told apart by one query, and importing
Alembic and its migration scripts took a good part of a server's start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from flask import Flask

from .models import db

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# What a migration script says of its place in the chain, as `alembic revision` writes it.
_LINE = re.compile(r'^(revision|down_revision|branch_labels|depends_on)\s*=\s*(None|"([^"\n]*)")\s*$', re.M)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def newest_revision() -> str | None:
    """The newest migration's revision, read from the scripts' text without importing them; None
    when the chain is not a plain line of single-parent revisions (a merge, a branch, a script
    written otherwise): then only Alembic may say. A test checks it against Alembic's head."""
    revisions, parents = set(), set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        said: dict[str, list[str | None]] = {}
        for name, _value, quoted in _LINE.findall(script.read_text(encoding="utf-8")):
            said.setdefault(name, []).append(quoted or None)
        if any(len(said.get(name, ())) != 1 for name in ("revision", "down_revision", "branch_labels", "depends_on")):
            return None
        if said["revision"][0] is None or said["branch_labels"][0] or said["depends_on"][0]:
            return None
        revisions.add(said["revision"][0])
        if said["down_revision"][0]:
            parents.add(said["down_revision"][0])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and len(parents) == len(revisions) - 1 else None


def _at_newest(head: str | None) -> bool:
    """Whether the database's recorded revision is `head` (Alembic's own record, which it commits
    in the same transaction as the migration's changes)."""
    if head is None:
        return False
    with db.engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return False
        recorded = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return recorded == [head]


def upgrade_database(app: Flask) -> None:
    """Apply pending migrations, and make what the blob store needs (its S3 bucket)."""
    app.extensions["files"].store.ensure_ready()
    with app.app_context():
        if _at_newest(newest_revision()):
            return  # what `alembic upgrade head` would find: nothing to do
        from alembic import command

        config = alembic_config()
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
