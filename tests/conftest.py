"""Fixtures after Flask's tutorial: a fresh app and data dir per test, its client and CLI runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from files_app import create_app
from files_app.schema import upgrade_database
from tests.live_server import GunicornServer

# Files of these folders take longest (real servers, browsers, fuzzing): they are handed out first,
# so that `pytest -n 2 --dist loadfile` ends with short files filling the gaps, not one worker
# finishing a long file while the other waits.
_LONGEST_FIRST = ("tests/fuzz/", "tests/e2e/test_model_concurrency.py", "tests/e2e/test_ui.py", "tests/e2e/test_cli.py",
                  "tests/e2e/test_team_attacks.py", "tests/e2e/test_crash.py", "tests/e2e/test_openai_limits.py",
                  "tests/e2e/", "tests/interop/", "tests/unit/test_listing.py", "tests/api/", "tests/tus/",
                  "tests/unit/")


def _handed_out(item) -> int:
    path = item.nodeid.split("::")[0]
    return next((rank for rank, folder in enumerate(_LONGEST_FIRST) if path.startswith(folder)), len(_LONGEST_FIRST))


def pytest_collection_modifyitems(items):
    """Mark what needs PostgreSQL or SeaweedFS, so that `pytest tests/unit -m "not scaled"` starts
    nothing; order the files longest first (each file's tests keep their order)."""
    items.sort(key=_handed_out)
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


def _migrated(settings: dict) -> None:
    """Run the migrations once on `settings`' database, then let go of it."""
    app = create_app({"TESTING": True, **settings})
    upgrade_database(app)
    with app.app_context():
        from files_app.models import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A SQLite database at the newest migration, made once per test process: each test's app
    starts from a copy of it instead of running every migration again."""
    data_dir = tmp_path_factory.mktemp("migrated")
    _migrated({"FILES_DATA_DIR": str(data_dir), "FILES_DATABASE_URL": ""})
    return data_dir / "files.db"


@pytest.fixture(scope="session")
def migrated_postgres(postgres, tmp_path_factory) -> str:
    """The same for PostgreSQL: a template database that each test's database is made from."""
    url = postgres.create_database()
    _migrated({"FILES_DATA_DIR": str(tmp_path_factory.mktemp("migrated-pg")), "FILES_DATABASE_URL": url})
    return url


@pytest.fixture(params=["local", "scaled"])
def deployment(request):
    """Every test of the app runs on both configurations: `local`, the embedded defaults (SQLite
    and the data dir), and `scaled`, PostgreSQL and SeaweedFS's S3 (a database and a bucket of
    its own per test, the database already at the newest migration). The value is the FILES_*
    settings that differ from the defaults."""
    if request.param == "local":
        yield {}
        return
    cluster, weed = request.getfixturevalue("postgres"), request.getfixturevalue("seaweedfs")
    url, bucket = cluster.create_database(request.getfixturevalue("migrated_postgres")), weed.create_bucket()
    yield {"FILES_DATABASE_URL": url, **weed.settings(bucket)}
    cluster.drop_database(url)
    weed.delete_bucket(bucket)


@pytest.fixture
def settings(tmp_path, deployment):
    return {"TESTING": True, "FILES_DATA_DIR": str(tmp_path / "data"), "FILES_DATABASE_URL": "", **deployment}


@pytest.fixture
def app(settings, request):
    if not settings["FILES_DATABASE_URL"]:  # SQLite in the data dir: start from the migrated copy
        data_dir = Path(settings["FILES_DATA_DIR"])
        data_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), data_dir / "files.db")
    app = create_app(settings)
    upgrade_database(app)  # (at the newest migration already: this only readies the blob store)
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
    """Real gunicorn servers on free ports sharing one data dir; killed after the test (a graceful
    stop waits a second or two per server for nothing: the data dir goes with the test)."""
    servers: list[GunicornServer] = []

    def make(**env: str) -> GunicornServer:
        server = GunicornServer(tmp_path / "data", **env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.kill()


@pytest.fixture
def server(server_factory):
    """One real gunicorn server, as `make serve` runs it."""
    return server_factory().start()


@pytest.fixture
def any_server(deployment, server_factory):
    """A real server in each configuration: the lease is a compare-and-set on both databases."""
    return server_factory(**deployment).start()
