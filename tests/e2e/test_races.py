"""Races against the real server, in both configurations: replacing a file while others read it,
and deleting a bucket while sessions are created in it. No 5xx, and no session answered 201 is lost."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter

import pytest

pytestmark = pytest.mark.e2e
SECONDS = 6.0  # each loop stops after this long (or its count)


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, server):
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.connection.request(method, path, body=body)
        response = self.connection.getresponse()
        return response.status, response.read()


def run_threads(targets) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS * 10)


def test_replacing_a_file_while_it_is_read(any_server):
    versions = [b"A" * 3000, b"B" * 200_000, b"C" * 70]
    seen: Counter = Counter()
    stop = threading.Event()

    def put(client: Client, data: bytes) -> None:
        status, body = client.call("POST", "/v1/files", json.dumps({"bucket": "r", "key": "k.txt",
                                                                      "size": len(data)}).encode())
        assert status == 201, body
        path = json.loads(body)["url"].removeprefix(any_server.url)
        status, body = client.call("POST", path, data)
        assert status == 200, body

    def writer() -> None:
        client = Client(any_server)
        try:
            for round_ in range(400):
                put(client, versions[round_ % len(versions)])
                if stop.is_set():
                    break
        finally:
            stop.set()

    def reader(path: str) -> None:
        client = Client(any_server)
        deadline = time.monotonic() + SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            status, body = client.call("GET", path)
            seen[(path, status)] += 1
            if path.startswith("/v1/content/"):
                assert status != 200 or body in versions, body[:50]

    put(Client(any_server), versions[0])
    deadline_stop = threading.Timer(SECONDS, stop.set)
    deadline_stop.start()
    run_threads([writer] + [lambda: reader("/v1/content/r/k.txt")] * 3 + [lambda: reader("/b/r/k.txt")] * 2)
    deadline_stop.cancel()
    assert {status for _, status in seen} == {200}, seen
    assert sum(seen.values()) > 50


def test_deleting_a_bucket_while_sessions_are_created_in_it(any_server):
    outcomes: Counter = Counter()
    lost: list[str] = []
    stop = threading.Event()

    def creator() -> None:
        client = Client(any_server)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline and not stop.is_set():
            status, body = client.call("POST", "/v1/files", json.dumps({"bucket": "race", "key": "k",
                                                                          "size": 5}).encode())
            outcomes[("create", status)] += 1
            if status != 201:
                continue
            path = json.loads(body)["url"].removeprefix(any_server.url)
            status, _ = client.call("GET", path)
            if status != 200:
                lost.append(path)  # answered 201, and gone before its client came back
            outcomes[("abort", client.call("DELETE", path)[0])] += 1  # empty again: the deleter may win

    def deleter() -> None:
        client = Client(any_server)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline and not stop.is_set():
            outcomes[("delete", client.call("DELETE", "/v1/files/race")[0])] += 1

    run_threads([creator] * 4 + [deleter] * 2)
    assert lost == []
    assert not [key for key in outcomes if key[1] >= 500], outcomes
    assert outcomes[("create", 201)] > 20 and outcomes[("delete", 204)] > 0, outcomes
    assert {status for (kind, status) in outcomes if kind == "delete"} <= {204, 404, 409}, outcomes


def test_put_delete_and_read_of_one_key_at_once(any_server):
    """PUTs (inline and blob sizes) racing DELETEs and reads of the same key: no 5xx, and every
    read is one whole version or a 404."""
    versions = [b"i" * 500, b"B" * 100_000]
    outcomes: Counter = Counter()
    torn: list[bytes] = []

    def loop(action) -> None:
        client = Client(any_server)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            action(client)

    def put(client: Client) -> None:
        data = versions[outcomes[("put", 200)] % 2]
        outcomes[("put", client.call("PUT", "/v1/files/pd/k.bin", data)[0])] += 1

    def delete(client: Client) -> None:
        outcomes[("delete", client.call("DELETE", "/v1/files/pd/k.bin")[0])] += 1

    def read(client: Client) -> None:
        status, body = client.call("GET", "/v1/content/pd/k.bin")
        outcomes[("read", status)] += 1
        if status == 200 and body not in versions:
            torn.append(body[:40])

    run_threads([lambda: loop(put)] * 2 + [lambda: loop(delete)] * 2 + [lambda: loop(read)] * 2)
    assert torn == []
    assert not [key for key in outcomes if key[1] >= 500], outcomes
    assert outcomes[("put", 200)] > 20 and outcomes[("delete", 200)] > 0 and outcomes[("read", 200)] > 0, outcomes
    assert {status for (kind, status) in outcomes if kind == "delete"} <= {200, 404, 409}, outcomes
