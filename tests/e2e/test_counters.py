"""Counters you can trust, on a real server in both configurations (#22): requests that race for the
same files (a folder delete and moves out of the folder, deletes of the same files, a replacing move
and a delete of the file it replaces, a burst of mixed traffic) lose no acknowledged file, and
`flask files check` then finds no drift between the counters (buckets' counts and bytes, the token's
usage) and the rows.

Each race is bounded by its number of requests, not by time; the threads return what they were
answered and the main thread asserts."""

from __future__ import annotations

import http.client
import json
import random
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.helpers import flask_files  # noqa: F401 - other test files take it from here too

pytestmark = pytest.mark.e2e
THREADS = 8


def assert_no_drift(server) -> None:
    """`flask files check` finds every counter equal to its rows."""
    result = flask_files(server, "check")
    assert result.returncode == 0 and "no drift" in result.stdout, result.stdout + result.stderr


class Client:
    """One keep-alive connection, with the token (if any) on every request."""

    def __init__(self, server, token: str | None = None):
        self.server, self.headers = server, {"Authorization": f"Bearer {token}"} if token else {}
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def call(self, method: str, path: str, body: bytes | dict | None = None) -> tuple[int, dict]:
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        try:
            self.connection.request(method, path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError):  # a dropped keep-alive: once more on a new connection
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
            self.connection.request(method, path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            data = response.read()
        try:
            return response.status, json.loads(data) if data else {}
        except ValueError:
            return response.status, {"raw": data[:200].decode("latin-1")}

    def put(self, bucket: str, key: str, data: bytes) -> int:
        return self.call("PUT", f"/v1/files/{bucket}/{quote(key)}", data)[0]

    def delete(self, bucket: str, key: str) -> int:
        return self.call("DELETE", f"/v1/files/{bucket}/{quote(key)}")[0]

    def move(self, bucket: str, key: str, to_key: str, replace: bool = False) -> int:
        return self.call("POST", "/v1/move", {"bucket": bucket, "key": key, "to_key": to_key, "replace": replace})[0]

    def copy(self, bucket: str, key: str, to_key: str) -> int:
        return self.call("POST", "/v1/copy", {"bucket": bucket, "key": key, "to_key": to_key, "replace": True})[0]

    def delete_folder(self, bucket: str, prefix: str) -> tuple[int, dict]:
        return self.call("DELETE", f"/v1/folders/{bucket}/{quote(prefix)}")

    def keys(self, bucket: str) -> dict[str, int]:
        """Every file's key and size (a page of up to 1000 is enough here)."""
        status, listing = self.call("GET", f"/v1/files/{bucket}?limit=1000")
        assert status == 200, listing
        return {entry["key"]: entry["bytes"] for entry in listing["data"]}


@pytest.fixture
def token(any_server) -> str:
    """A write token with a quota of 1 MiB, as in the issue: its usage must follow its files."""
    result = flask_files(any_server, "token", "create", "--name", "racer", "--scope", "write", "--max-bytes", "1M")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _in_threads(tasks: list) -> list:
    """Run each task (a callable) on THREADS threads, each with its own connection; their results in order."""
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda task: task(), tasks))


def test_a_folder_delete_racing_moves_out_of_the_folder_keeps_every_moved_file(any_server, token):
    main = Client(any_server, token)
    clients = [Client(any_server, token) for _ in range(THREADS)]
    lost, rounds = [], 3
    for round_ in range(rounds):
        names = [f"r{round_}/dir/f{index:03}" for index in range(60)]
        for name in names:
            assert main.put("b", name, b"m" * 1000) == 200

        def mover(worker: int, names=names, round_=round_):
            client = clients[worker]
            return [(name, client.move("b", name, f"r{round_}/out/{name.rsplit('/', 1)[1]}"))
                    for name in names[worker::THREADS - 1]]

        def deleter(round_=round_):
            return clients[THREADS - 1].delete_folder("b", f"r{round_}/dir/")

        tasks = [lambda worker=worker: mover(worker) for worker in range(THREADS - 1)] + [deleter]
        *moves, (status, answer) = _in_threads(tasks)
        assert status == 200, answer
        moved = {name for results in moves for name, code in results if code == 200}
        assert all(code in (200, 404, 409) for results in moves for _, code in results), moves
        held = main.keys("b")
        lost += [name for name in moved if f"r{round_}/out/{name.rsplit('/', 1)[1]}" not in held]
        assert answer["deleted"] + len(moved) == len(names), (answer, len(moved))  # each file went one way
        assert not [key for key in held if key.startswith(f"r{round_}/dir/")]
    assert lost == []
    assert_no_drift(any_server)


def test_deletes_of_the_same_files_and_a_replacing_move_racing_a_delete(any_server, token):
    main = Client(any_server, token)
    clients = [Client(any_server, token) for _ in range(THREADS)]
    names = [f"same/f{index:02}" for index in range(24)]
    for name in names:
        assert main.put("b", name, b"d" * 5000) == 200
    # Every thread deletes every file: each is deleted once (200), the rest find it gone.
    answers = _in_threads([lambda client=client: [(name, client.delete("b", name)) for name in names]
                           for client in clients])
    codes = [code for results in answers for _, code in results]
    assert sorted(set(codes)) <= [200, 404, 409], codes
    assert codes.count(200) == len(names)
    assert main.keys("b") == {}

    # A move that replaces B with A, racing a delete of B (and of A): whichever wins, the counts hold.
    pairs = [(f"rep/a{index:02}", f"rep/b{index:02}") for index in range(32)]
    for source, target in pairs:
        assert main.put("b", source, b"a" * 3000) == 200
        assert main.put("b", target, b"b" * 7000) == 200

    def mover(worker: int):
        return [("move", source, target, clients[worker].move("b", source, target, replace=True))
                for source, target in pairs[worker::4]]

    def deleter(worker: int):
        return [("delete", source, target, clients[worker].delete("b", target if worker % 2 else source))
                for source, target in pairs[(worker - 4)::4]]

    answers = _in_threads([lambda worker=worker: mover(worker) for worker in range(4)]
                          + [lambda worker=worker: deleter(worker) for worker in range(4, 8)])
    results = [result for batch in answers for result in batch]
    assert [result for result in results if result[-1] not in (200, 404, 409)] == []
    held = main.keys("b")
    for what, source, target, code in results:
        if what == "move" and code == 200:  # moved: the source's bytes are at the target, unless deleted after
            assert source not in held
            assert held.get(target) in (3000, None)
    assert_no_drift(any_server)


def test_a_burst_of_mixed_traffic_leaves_no_drift(any_server, token):
    main = Client(any_server, token)
    clients = [Client(any_server, token) for _ in range(THREADS)]
    keys = [f"{folder}/k{index}" for folder in ("x", "y") for index in range(6)]

    def traffic(worker: int) -> list:
        client, rng, seen = clients[worker], random.Random(worker), []
        for _ in range(40):
            action, key, other = rng.random(), rng.choice(keys), rng.choice(keys)
            if action < 0.3:
                seen.append(("put", client.put("b", key, bytes([65 + worker]) * rng.randrange(100, 20_000))))
            elif action < 0.5:
                seen.append(("delete", client.delete("b", key)))
            elif action < 0.7:
                seen.append(("move", client.move("b", key, other, replace=rng.random() < 0.5)))
            elif action < 0.85:
                seen.append(("copy", client.copy("b", key, other)))
            else:
                seen.append(("folder", client.delete_folder("b", key.split("/")[0] + "/")[0]))
        return seen

    answers = [result for batch in _in_threads([lambda worker=worker: traffic(worker) for worker in range(THREADS)])
               for result in batch]
    assert not [answer for answer in answers if answer[1] >= 500], answers
    assert sum(1 for _, code in answers if code == 200) > len(answers) // 3  # the traffic did something
    listing = main.keys("b")
    status, bucket = main.call("GET", "/v1/files")
    counted = {entry["name"]: (entry["files"], entry["bytes"]) for entry in bucket["data"]}
    assert counted.get("b", (0, 0)) == (len(listing), sum(listing.values()))
    assert_no_drift(any_server)
