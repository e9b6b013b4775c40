"""The Alembic migrations create exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from files_app.models import Base, db

# The key search index lives outside the models (an FTS5 table and its triggers, or a GIN index), and
# so does SQLite's placement counter (PostgreSQL's is a sequence, which the comparison leaves out).
SEARCH_INDEX = ("objects_fts", "ix_objects_key_trgm", "placement_clock")


def test_migrations_match_models(services):
    def modelled(_object, name, _kind, _reflected, _compare_to) -> bool:
        return not (name or "").startswith(SEARCH_INDEX)

    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_object": modelled})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_0008_keeps_signed_in_browsers_and_never_reuses_an_id(tmp_path):
    """0008 makes SQLite's token and user tables again (AUTOINCREMENT): the signed-in browsers,
    which would cascade away with the old `users`, stay; a deleted token's id is not given again,
    so its files never pass to a new token."""
    import sqlalchemy as sa
    from alembic import command

    from files_app import create_app
    from files_app.schema import alembic_config

    app = create_app({"TESTING": True, "FILES_DATA_DIR": str(tmp_path), "FILES_DATABASE_URL": ""})
    app.extensions["files"].store.ensure_ready()

    def migrate(revision: str, *statements: str) -> list:
        with app.app_context(), db.engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            return [connection.execute(sa.text(statement)).all() for statement in statements]

    migrate("0007", "INSERT INTO users VALUES (1, 'ann', 'x', 0) RETURNING id",
            "INSERT INTO web_sessions VALUES ('s', 1, 0, 1e12) RETURNING user_id",
            "INSERT INTO api_tokens VALUES (7, 'ci', 'h', 'read', NULL, 0) RETURNING id")
    sessions, _, new_token = migrate("head", "SELECT id_sha256, user_id FROM web_sessions",
                                     "DELETE FROM api_tokens RETURNING id",
                                     "INSERT INTO api_tokens (name, token_sha256, scope, created_at) "
                                     "VALUES ('new', 'h2', 'read', 0) RETURNING id")
    assert sessions == [("s", 1)] and new_token == [(8,)]
    with app.app_context():
        db.engine.dispose()
