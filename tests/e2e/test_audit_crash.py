"""The audit log and the data cannot disagree, even when the server is SIGKILLed mid-operation:
replaying the log's entries for a bucket gives exactly the files the bucket holds (keys and sizes),
on both configurations. (This test found that a delete, a replacing upload, and a move that
replaces acted on a file by its id alone: one moved to another key meanwhile was deleted or
overwritten at its new place.)"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.e2e.test_access_matrix import flask_cli

KEYS = [f"k{number}" for number in range(12)]


def work(url: str, headers: dict, seed: int, stop: threading.Event, done: list[int]) -> None:
    """PUTs, replacing PUTs, deletes and moves over a few keys, until told to stop or the server dies."""
    chooser = random.Random(seed)
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        while not stop.is_set():
            key = chooser.choice(KEYS)
            action = chooser.random()
            try:
                if action < 0.5:
                    answer = http.put(f"/v1/files/audited/{key}", content=b"x" * chooser.randrange(1, 200_000))
                elif action < 0.8:
                    answer = http.delete(f"/v1/files/audited/{key}")
                else:
                    answer = http.post("/v1/move", json={"bucket": "audited", "key": key, "replace": True,
                                                         "to_key": chooser.choice(KEYS)})
            except httpx.HTTPError:
                return  # the server was killed under us
            # No 5xx, ever (read by the test through the executor): two moves across each other's
            # names lock their two files in one order, so PostgreSQL ends neither as a deadlock.
            assert answer.status_code < 500, answer.text
            done.append(1)


def replay(entries: list[dict]) -> dict[str, int]:
    files: dict[str, int] = {}
    for entry in sorted(entries, key=lambda entry: entry["id"]):
        if entry["action"] == "upload":
            files[entry["key"]] = entry["bytes"]
        elif entry["action"] == "delete":
            assert files.pop(entry["key"], None) == entry["bytes"], history(entries, entry["key"])
        elif entry["action"] == "move":
            assert files.get(entry["key"]) == entry["bytes"], history(entries, entry["key"])
            files[entry["detail"]["to_key"]] = files.pop(entry["key"])
    return files


def history(entries: list[dict], key: str) -> str:
    """What the log says happened to `key`, for a failure's message."""
    return "\n".join(str((e["id"], e["action"], e["key"], e["bytes"], e["detail"]))
                     for e in sorted(entries, key=lambda e: e["id"])
                     if key in (e["key"], (e["detail"] or {}).get("to_key")))


def all_entries(http: httpx.Client, bucket: str = "audited") -> list[dict]:
    entries, cursor = [], None
    while True:
        page = http.get("/v1/audit", params={"bucket": bucket, "limit": 1000,
                                             **({"cursor": cursor} if cursor else {})}).json()
        entries += page["data"]
        if not page["has_more"]:
            return entries
        cursor = page["next_cursor"]


def test_the_audit_log_matches_the_data_after_sigkill(any_server):
    server = any_server
    token = flask_cli(server, "token", "create", "--name", "audited", "--scope", "admin")
    headers = {"Authorization": f"Bearer {token}"}
    stop, done = threading.Event(), []
    with ThreadPoolExecutor(6) as pool:
        workers = [pool.submit(work, server.url, headers, seed, stop, done) for seed in range(6)]
        try:  # kill once enough has happened that some requests are surely in flight (checked every 50 ms)
            deadline = time.monotonic() + 120
            while len(done) < 300 and not stop.wait(0.05):
                assert time.monotonic() < deadline, f"only {len(done)} operations in 120 s"
                assert not any(worker.done() for worker in workers), [w.exception() for w in workers if w.done()]
        finally:  # whatever happened, the workers stop (else leaving the pool would wait for them forever)
            server.kill()
            stop.set()
        for worker in workers:
            worker.result()
    server.start(same_port=True)
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
        listed = {f["key"]: f["bytes"] for f in http.get("/v1/files/audited", params={"limit": 1000}).json()["data"]}
        assert replay(all_entries(http)) == listed
        assert listed  # the run stored something
