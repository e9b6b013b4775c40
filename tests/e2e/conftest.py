from __future__ import annotations

import pytest

from tests.e2e.server import GunicornServer


@pytest.fixture
def server_factory(tmp_path):
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
    return server_factory().start()
