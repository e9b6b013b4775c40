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


def test_the_newest_revision_read_from_the_scripts_is_alembics_head():
    from alembic.script import ScriptDirectory

    from files_app.schema import alembic_config, newest_revision

    assert [newest_revision()] == ScriptDirectory.from_config(alembic_config()).get_heads()


def test_a_chain_that_is_not_a_plain_line_is_left_to_alembic(tmp_path, monkeypatch):
    """Two heads, a merge, a branch label or an unreadable script: no head is guessed."""
    from files_app import schema

    def scripts(*texts: str) -> str | None:
        versions = tmp_path / str(len(list(tmp_path.iterdir()))) / "versions"
        versions.mkdir(parents=True)
        for number, text in enumerate(texts):
            (versions / f"{number:04}_x.py").write_text(text)
        monkeypatch.setattr(schema, "MIGRATIONS", versions.parent)
        return schema.newest_revision()

    def script(revision: str, down: str | None, labels: str = "None") -> str:
        down = f'"{down}"' if down else "None"
        return (f'revision = "{revision}"\ndown_revision = {down}\nbranch_labels = {labels}\n'
                "depends_on = None\n")

    assert scripts(script("a", None), script("b", "a"), script("c", "b")) == "c"
    assert scripts(script("a", None), script("b", "a"), script("c", "a")) is None  # two heads
    assert scripts(script("a", None), script("b", None)) is None  # two roots
    assert scripts(script("a", None), script("b", "a", labels='("x",)')) is None
    assert scripts(script("a", None), 'revision = "b"\ndown_revision = ("a", "z")\nbranch_labels = None\n'
                   "depends_on = None\n") is None  # a merge
    assert scripts(script("a", None), "REVISION = 'b'\n") is None


def test_a_database_at_the_newest_revision_is_not_migrated_again_and_an_older_one_is(tmp_path, monkeypatch):
    import sqlalchemy as sa
    from alembic import command

    from files_app import create_app
    from files_app.schema import alembic_config, newest_revision, upgrade_database

    app = create_app({"TESTING": True, "FILES_DATA_DIR": str(tmp_path), "FILES_DATABASE_URL": ""})
    app.extensions["files"].store.ensure_ready()
    with app.app_context(), db.engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0013")

    def recorded() -> list[str]:
        with app.app_context(), db.engine.connect() as connection:
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()

    upgrade_database(app)
    assert recorded() == [newest_revision()] != ["0013"]
    upgraded = []
    monkeypatch.setattr(command, "upgrade", lambda *args: upgraded.append(args))
    upgrade_database(app)
    assert upgraded == [] and recorded() == [newest_revision()]
    with app.app_context():
        db.engine.dispose()
