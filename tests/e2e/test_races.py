"""Races against the real server, in both configurations: replacing a file while others read it,
and deleting a bucket while sessions are created in it. No 5xx, no session answered 201 is lost, and
`flask files check` finds the counters equal to the rows after each race.

Each race runs in threads for at least SECONDS, and then until it has seen every outcome its test
counts on (a slow or busy machine races longer rather than failing), for at most LIMIT seconds.
An assertion or an error in any thread stops the race and fails the test."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import pytest

from tests.e2e.test_counters import assert_no_drift

pytestmark = pytest.mark.e2e
SECONDS = 6.0  # each race runs at least this long...
LIMIT = 60.0  # ... and at most this long: by then it has seen what its test needs, or the test fails
STRAGGLERS = 60.0  # how long a thread may take to notice the race is over (a request in flight: 30 s at most)


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, server):
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.connection.request(method, path, body=body)
        response = self.connection.getresponse()
        return response.status, response.read()


class Race:
    """Threads racing one another, and the outcomes they count: `enough(outcomes)` says when the
    race has shown what its test needs. The counts are kept under a lock (`counter[key] += 1` from
    several threads can lose counts)."""

    def __init__(self, enough: Callable[[Counter], bool]):
        self.outcomes: Counter = Counter()
        self.over = threading.Event()
        self._enough = enough
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def count(self, *key) -> None:
        with self._lock:
            self.outcomes[key] += 1

    def running(self) -> bool:
        """Whether a thread goes on: not once a thread failed or ended the race, nor once the race ran
        SECONDS and saw enough, nor after LIMIT."""
        if not self.over.is_set():
            elapsed = time.monotonic() - self._started
            with self._lock:
                enough = self._enough(self.outcomes)
            if elapsed >= LIMIT or (elapsed >= SECONDS and enough):
                self.over.set()
        return not self.over.is_set()

    def run(self, targets: list[Callable[[], None]]) -> Counter:
        """Every target in a thread of its own, all at once, until the race is over. Whatever a
        thread raises (a failed assertion included) stops the others and fails the test, and so
        does a thread that does not stop."""
        self._started = time.monotonic()
        pool = ThreadPoolExecutor(len(targets))
        try:
            futures = [pool.submit(target) for target in targets]
            wait(futures, timeout=LIMIT + STRAGGLERS, return_when=FIRST_EXCEPTION)
            self.over.set()
            running = wait(futures, timeout=STRAGGLERS).not_done
            for future in futures:
                if future.done():
                    future.result()  # raises what its thread raised
            assert not running, f"{len(running)} of {len(futures)} threads did not stop"
        finally:
            self.over.set()
            pool.shutdown(wait=False, cancel_futures=True)
        assert self._enough(self.outcomes), f"the race did not show what the test needs: {self.outcomes}"
        return self.outcomes


def test_replacing_a_file_while_it_is_read(any_server):
    versions = [b"A" * 3000, b"B" * 200_000, b"C" * 70]
    race = Race(lambda seen: sum(n for (kind, *_), n in seen.items() if kind == "read") > 50
                and sum(1 for kind, *_ in seen if kind == "version") >= 2)  # readers saw it replaced

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
                if not race.running():
                    break
                put(client, versions[round_ % len(versions)])
        finally:
            race.over.set()  # the writer is done: so are the readers

    def reader(path: str) -> None:
        client = Client(any_server)
        while race.running():
            status, body = client.call("GET", path)
            race.count("read", path, status)
            assert status == 200, (path, status, body[:200])
            if path.startswith("/v1/content/"):
                assert body in versions, f"a torn read: {len(body)} bytes, {body[:50]!r}"
                race.count("version", body[:1])

    put(Client(any_server), versions[0])
    seen = race.run([writer] + [lambda: reader("/v1/content/r/k.txt")] * 3 + [lambda: reader("/b/r/k.txt")] * 2)
    assert {key[2] for key in seen if key[0] == "read"} == {200}, seen
    assert_no_drift(any_server)


def test_deleting_a_bucket_while_sessions_are_created_in_it(any_server):
    race = Race(lambda outcomes: outcomes[("create", 201)] > 20 and outcomes[("delete", 204)] > 0)

    def creator() -> None:
        client = Client(any_server)
        while race.running():
            status, body = client.call("POST", "/v1/files", json.dumps({"bucket": "race", "key": "k",
                                                                          "size": 5}).encode())
            race.count("create", status)
            if status != 201:
                continue
            path = json.loads(body)["url"].removeprefix(any_server.url)
            status, _ = client.call("GET", path)
            assert status == 200, f"session {path} answered 201, and was gone ({status}) before its client came back"
            race.count("abort", client.call("DELETE", path)[0])  # empty again: the deleter may win

    def deleter() -> None:
        client = Client(any_server)
        while race.running():
            race.count("delete", client.call("DELETE", "/v1/files/race")[0])

    outcomes = race.run([creator] * 4 + [deleter] * 2)
    assert not [key for key in outcomes if key[1] >= 500], outcomes
    assert {status for (kind, status) in outcomes if kind == "delete"} <= {204, 404, 409}, outcomes
    assert_no_drift(any_server)


def test_put_delete_and_read_of_one_key_at_once(any_server):
    """PUTs (inline and blob sizes) racing DELETEs and reads of the same key: no 5xx, and every
    read is one whole version or a 404."""
    versions = [b"i" * 500, b"B" * 100_000]
    race = Race(lambda outcomes: outcomes[("put", 200)] > 20 and outcomes[("delete", 200)] > 0
                and all(outcomes[("version", version[:1])] > 0 for version in versions))  # each size read whole

    def loop(action) -> Callable[[], None]:
        def racing() -> None:
            client, state = Client(any_server), itertools.cycle(versions)
            while race.running():
                action(client, state)
        return racing

    def put(client: Client, state) -> None:
        race.count("put", client.call("PUT", "/v1/files/pd/k.bin", next(state))[0])

    def delete(client: Client, state) -> None:
        race.count("delete", client.call("DELETE", "/v1/files/pd/k.bin")[0])

    def read(client: Client, state) -> None:
        status, body = client.call("GET", "/v1/content/pd/k.bin")
        race.count("read", status)
        if status == 200:
            assert body in versions, f"a torn read: {len(body)} bytes, {body[:40]!r}"
            race.count("version", body[:1])

    outcomes = race.run([loop(put)] * 2 + [loop(delete)] * 2 + [loop(read)] * 2)
    assert not [key for key in outcomes if isinstance(key[1], int) and key[1] >= 500], outcomes
    assert outcomes[("read", 200)] > 0, outcomes
    assert {status for (kind, status) in outcomes if kind == "delete"} <= {200, 404, 409}, outcomes
    assert_no_drift(any_server)
