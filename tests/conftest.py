"""Fixtures after Flask's tutorial: a fresh app and data dir per test, its client and CLI runner."""

from __future__ import annotations

import pytest

from files_app import create_app
from files_app.schema import upgrade_database
from tests.live_server import GunicornServer


def pytest_collection_modifyitems(items):
    """Mark what needs PostgreSQL or SeaweedFS, so that `pytest tests/unit -m "not scaled"` starts nothing."""
    for item in items:
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        if (params.get("deployment") == "scaled" or params.get("store") == "s3"
                or {"postgres", "seaweedfs"} & set(getattr(item, "fixturenames", ()))):
            item.add_marker(pytest.mark.scaled)


@pytest.fixture(scope="session")
def postgres():
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def seaweedfs():
    from tests.seaweedfs import SeaweedFS

    weed = SeaweedFS()
    yield weed
    weed.stop()


@pytest.fixture(params=["local", "scaled"])
def deployment(request):
    """Every test of the app runs on both configurations: `local`, the embedded defaults (SQLite
    and the data dir), and `scaled`, PostgreSQL and SeaweedFS's S3 (a database and a bucket of
    its own per test). The value is the FILES_* settings that differ from the defaults."""
    if request.param == "local":
        yield {}
        return
    cluster, weed = request.getfixturevalue("postgres"), request.getfixturevalue("seaweedfs")
    url, bucket = cluster.create_database(), weed.create_bucket()
    yield {"FILES_DATABASE_URL": url, **weed.settings(bucket)}
    cluster.drop_database(url)
    weed.delete_bucket(bucket)


@pytest.fixture
def settings(tmp_path, deployment):
    return {"TESTING": True, "FILES_DATA_DIR": str(tmp_path / "data"), "FILES_DATABASE_URL": "", **deployment}


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


@pytest.fixture
def any_server(deployment, server_factory):
    """A real server in each configuration: the lease is a compare-and-set on both databases."""
    server = server_factory(**deployment).start()
    yield server
    server.stop()
