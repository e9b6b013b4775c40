"""Damage done on purpose: SIGKILLs during many concurrent chunked uploads, and many writers on
one session. Every object ends right, no listing shows a partial object, and after `files gc`
every blob has a row and every row a blob."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.live_server import ROOT

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


class Client:
    """A resumable uploader: asks the server where it is, sends the rest in chunks, and rides out
    refused connections (the server is being killed) and 423s (a dead writer's lease)."""

    def __init__(self, server, bucket: str, key: str, data: bytes, chunk: int, progress=None):
        self.server, self.bucket, self.key, self.data, self.chunk = server, bucket, key, data, chunk
        self.session = None
        self.result = None
        self.progress = progress  # a Progress shared by all clients, or None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}"), response
        finally:
            connection.close()

    def run(self, deadline: float) -> dict:
        while time.monotonic() < deadline:
            try:
                if self.session is None:
                    status, body, _ = self.request("POST", "/v1/files", json.dumps(
                        {"bucket": self.bucket, "key": self.key, "size": len(self.data)}).encode())
                    self.session = "/v1/files/session:" + body["id"]
                status, body, _ = self.request("GET", self.session)
                offset = body["offset"]
                status, body, response = self.request(
                    "POST", self.session, self.data[offset:offset + self.chunk], {"Upload-Offset": str(offset)})
                if status == 200 and self.progress:
                    self.progress.add(min(self.chunk, len(self.data) - offset))
                if status == 200 and "sha256" in body:
                    self.result = body
                    return body
                if status == 423:
                    time.sleep(min(float(response.getheader("Retry-After", "1")), 0.5))
                elif status not in (200, 409):
                    raise AssertionError(f"{self.key}: unexpected {status} {body}")
            except (ConnectionError, http.client.HTTPException, OSError, KeyError):
                time.sleep(0.05)  # the server is down or restarting: try again shortly
        raise AssertionError(f"{self.key} did not finish in time")


class Progress:
    """Bytes acknowledged so far, across clients; the killer waits on it."""

    def __init__(self):
        self.sent = 0
        self.changed = threading.Condition()

    def add(self, count: int) -> None:
        with self.changed:
            self.sent += count
            self.changed.notify_all()

    def wait_for(self, at_least: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.sent >= at_least, timeout)


def blobs_rows_and_partials(settings: dict) -> tuple[set[str], set[str], list[str]]:
    """The blobs in the store, the blob ids of the rows, and the sessions holding private bytes,
    as the app itself sees them."""
    from sqlalchemy import select

    from files_app import create_app
    from files_app.models import StoredObject, db

    app = create_app(settings)
    with app.app_context():
        store = app.extensions["files"].store
        blobs, partials = set(store.blob_ids(float("inf"))), list(store.partial_ids(float("inf")))
        rows = set(db.session.scalars(select(StoredObject.blob_id)))
        db.session.remove()
        db.engine.dispose()
    return blobs, rows, partials


def test_sigkill_during_30_concurrent_uploads(server_factory, deployment):
    server = server_factory(FILES_CHECKPOINT_BYTES=str(MIB), FILES_LEASE_TTL="2", **deployment).start()
    rng = random.Random(20261127)
    sources = {f"up{i:02}.bin": os.urandom(3 * MIB + rng.randrange(MIB)) for i in range(30)}
    progress = Progress()
    clients = [Client(server, "crash", key, data, 512 * 1024, progress) for key, data in sources.items()]
    total = sum(len(data) for data in sources.values())
    deadline = time.monotonic() + 240
    partial_seen = []

    def watch_listings(stop: threading.Event) -> int:
        """List the bucket until stopped; a listed file that is not its whole source is a partial
        object. Returns how many listed files it checked."""
        checked = 0
        while not stop.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            try:
                connection.request("GET", "/v1/files/crash?limit=100")
                response = connection.getresponse()
                listed = json.loads(response.read())["data"] if response.status == 200 else []
            except (OSError, http.client.HTTPException, ValueError):
                listed = []  # the server is being killed or restarted
            finally:
                connection.close()
            for file in listed:
                source = sources[file["key"]]
                if (file["bytes"], file["sha256"]) != (len(source), hashlib.sha256(source).hexdigest()):
                    partial_seen.append(file)
                checked += 1
            stop.wait(0.05)
        return checked

    stop = threading.Event()
    kills = 0
    with ThreadPoolExecutor(31) as pool:  # the watcher's result is read too: an error in it fails the test
        watcher = pool.submit(watch_listings, stop)
        try:
            futures = [pool.submit(client.run, deadline) for client in clients]
            for share in sorted(rng.uniform(0.1, 0.8) for _ in range(3)):  # kills while uploads are in flight
                assert progress.wait_for(int(total * share), timeout=120)
                server.kill()
                kills += 1
                server.start()
            results = [f.result() for f in futures]
        finally:
            stop.set()
        checked = watcher.result(timeout=30)
    assert kills == 3
    assert partial_seen == [] and checked > 0
    for client, result in zip(clients, results, strict=True):
        assert (result["bytes"], result["sha256"]) == (len(client.data), hashlib.sha256(client.data).hexdigest())
    server.stop()
    settings = {"FILES_DATA_DIR": str(server.data_dir), "FILES_DATABASE_URL": "", **deployment}
    gc = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "files", "gc", "--grace", "0"],
                        cwd=ROOT, env={**os.environ, **settings}, capture_output=True, text=True, timeout=60)
    assert gc.returncode == 0, gc.stderr
    blobs, rows, partials = blobs_rows_and_partials(settings)
    assert blobs == rows and len(rows) == 30  # no blob without a row, no row without a blob
    assert partials == []  # nor bytes of an upload in progress (multipart uploads, held tails, partial files)


def test_eight_writers_on_one_session(any_server):
    server = any_server
    data = os.urandom(8 * MIB)
    first = Client(server, "race", "shared.bin", data, MIB)
    status, body, _ = first.request("POST", "/v1/files", json.dumps(
        {"bucket": "race", "key": "shared.bin", "size": len(data)}).encode())
    seen = []

    def writer(index: int) -> dict:
        client = Client(server, "race", "shared.bin", data, MIB)
        client.session = "/v1/files/session:" + body["id"]
        original = client.request

        def recording(method, path, payload=None, headers=None):
            status, answer, response = original(method, path, payload, headers)
            if method == "POST":
                seen.append(status)
            return status, answer, response

        client.request = recording
        try:
            return client.run(time.monotonic() + 60)
        except AssertionError:  # another writer finished it: the session now answers the file
            return client.request("POST", client.session, b"", {"Upload-Offset": str(len(data))})[1]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(writer, range(8)))
    assert set(seen) <= {200, 409, 413, 423}
    assert seen.count(200) >= 8  # one per chunk at least
    info = first.request("GET", "/v1/files/race/shared.bin")[1]
    assert (info["bytes"], info["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert all(result.get("sha256") == info["sha256"] for result in results)


def test_sigkill_during_small_puts_keeps_every_acknowledged_file(server_factory, deployment):
    """8 threads PUT small files (inline in the database, or blobs) while the server is killed:
    every file acknowledged before the kill is there after the restart, byte for byte."""
    server = server_factory(**deployment).start()
    acknowledged: dict[str, bytes] = {}
    wrong: list[str] = []
    changed, stop = threading.Condition(), threading.Event()

    def putter(thread: int) -> None:
        rng = random.Random(thread)
        for index in range(100_000):
            if stop.is_set():
                return
            key = f"t{thread}/f{index}"
            data = rng.randbytes(rng.choice([10, 3000, 60_000, 70_000]))  # inline, and blobs above 64 KiB
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                connection.request("PUT", f"/v1/files/small/{key}", body=data)
                response = connection.getresponse()
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError):
                continue  # killed mid-request or mid-answer: not acknowledged
            finally:
                connection.close()
            if response.status == 200:
                with changed:
                    acknowledged[key] = data
                    wrong.extend([key] if answer["sha256"] != hashlib.sha256(data).hexdigest() else [])
                    changed.notify_all()

    with ThreadPoolExecutor(8) as pool:  # each putter's result is read: an error in one fails the test
        putters = [pool.submit(putter, n) for n in range(8)]
        try:
            with changed:  # until a few hundred files are acknowledged
                changed.wait_for(lambda: len(acknowledged) >= 200, timeout=30)
            server.kill()
        finally:
            stop.set()
        for done in putters:
            done.result(timeout=30)
    with changed:
        before_kill = dict(acknowledged)
    assert len(before_kill) >= 200 and wrong == []
    server.start()
    for key, data in before_kill.items():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", f"/v1/content/small/{key}")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, data), key
        connection.close()
