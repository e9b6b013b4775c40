"""Fixtures after Flask's tutorial: a fresh app and data dir per test, its client and CLI runner."""

from __future__ import annotations

import pytest

from files_app import create_app
from files_app.schema import upgrade_database
from tests.live_server import GunicornServer


@pytest.fixture(scope="session")
def postgres():
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request):
    """Every test of the app runs on both metadata stores: SQLite (the default) and PostgreSQL."""
    if request.param == "sqlite":
        yield ""
        return
    cluster = request.getfixturevalue("postgres")
    url = cluster.create_database()
    yield url
    cluster.drop_database(url)


@pytest.fixture
def settings(tmp_path, database_url):
    return {"TESTING": True, "FILES_DATA_DIR": str(tmp_path / "data"), "FILES_DATABASE_URL": database_url}


@pytest.fixture
def app(settings):
    app = create_app(settings)
    upgrade_database(app)
    yield app
    with app.app_context():
        from files_app.models import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def services(app):
    """The domain services, inside an app context, for tests without HTTP."""
    with app.app_context():
        yield app.extensions["files"]




@pytest.fixture
def server_factory(tmp_path):
    """Real gunicorn servers on free ports sharing one data dir; stopped after the test."""
    servers: list[GunicornServer] = []

    def make(**env: str) -> GunicornServer:
        server = GunicornServer(tmp_path / "data", **env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(server_factory):
    """One real gunicorn server, as `make serve` runs it."""
    return server_factory().start()


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(request, server_factory):
    """A real server on SQLite, and one on PostgreSQL: the lease is a compare-and-set on both."""
    if request.param == "sqlite":
        yield server_factory().start()
        return
    cluster = request.getfixturevalue("postgres")
    url = cluster.create_database()
    server = server_factory(FILES_DATABASE_URL=url).start()
    yield server
    server.stop()
    cluster.drop_database(url)
