"""Slow clients against the real server (loopback only, bounded in time): how fast a normal client
is answered while slow-header and slow-body connections are open, and a thousand slow uploads at once."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time

from tests.slow_clients import HeldConnections, SlowHeaders, Trickle, trickle, upload_head

MIB = 1024 * 1024


def _sessions(port: int, count: int, size: int, prefix: str) -> list[str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    paths = []
    for index in range(count):
        connection.request("POST", "/v1/files", body=json.dumps({"bucket": "slow", "key": f"{prefix}-{index}",
                                                                 "size": size}))
        response = connection.getresponse()
        body = response.read()
        if response.status != 201:
            raise RuntimeError(f"session creation: {response.status} {body[:200]!r}")
        paths.append("/v1/files/session:" + json.loads(body)["id"])
    return paths


def healthz_latencies(port: int, count: int = 300, path: str = "/healthz") -> list[float]:
    """`count` sequential GET `path` on fresh connections, each timed (seconds)."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status}")
        latencies.append(time.perf_counter() - started)
    return latencies


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def healthz_under_attack(port: int, slow_headers: int = 256, slow_bodies: int = 256) -> tuple[float, float]:
    """p99 of /healthz (ms) with no attack, then with the slow connections open."""
    idle = p99(healthz_latencies(port))
    paths = _sessions(port, slow_bodies, 4 * MIB, f"attack-{time.monotonic_ns()}")
    bodies = [Trickle(upload_head(path, 4 * MIB), b"s" * 4 * MIB, rate=16 * 1024) for path in paths]
    driver = threading.Thread(target=trickle, args=(port, bodies, time.monotonic() + 8), daemon=True)
    with SlowHeaders(port, slow_headers, interval=1.0):
        driver.start()
        time.sleep(1.0)  # let every slow connection open before measuring (a ramp, not an assertion)
        attacked = p99(healthz_latencies(port))
    driver.join(timeout=60)
    return idle * 1000, attacked * 1000


def slow_uploads(port: int, count: int = 1000, size: int = MIB, rate: int = 64 * 1024) -> tuple[float, int]:
    """`count` uploads of `size` bytes, each sent at `rate` bytes/s, all at once. Returns the seconds
    until the last was answered and how many completed (200 with the file)."""
    paths = _sessions(port, count, size, f"slow-{time.monotonic_ns()}")
    body = b"u" * size
    uploads = [Trickle(upload_head(path, size), body, rate=rate) for path in paths]
    started = time.monotonic()
    trickle(port, uploads, deadline=started + 4 * size / rate)
    finished = [u.finished for u in uploads if u.finished is not None]
    completed = sum(1 for u in uploads if u.status == 200 and b'"sha256"' in u.response)
    return (max(finished) if finished else time.monotonic()) - started, completed


def held_10000(port: int) -> dict[str, float]:
    """p99 (ms) of /healthz and of a small GET (a 1 KiB file), with nothing else open, then while
    10,000 connections are held: 2,500 idle, 2,500 sending their headers a byte a second and 5,000
    sending a 1 MB body a byte a second. The server must run with deadlines longer than the
    measurement (FILES_HEADER_TIMEOUT), so that every one of them still holds at the end: `cut`
    says how many the server let go (it should be 0)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/v1/files", body=json.dumps({"bucket": "held", "key": "small.txt", "size": 1024}))
    url = json.loads(connection.getresponse().read())["url"]
    connection.request("POST", url.split(str(port), 1)[1], body=b"s" * 1024)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"small upload: {response.status} {response.read()[:200]!r}")
    connection.close()
    small = "/v1/content/held/small.txt"
    figures = {"healthz_idle": p99(healthz_latencies(port)), "small_idle": p99(healthz_latencies(port, path=small))}
    with HeldConnections(port, idle=2500, slow_headers=2500, slow_bodies=5000, interval=1.0) as held:
        held.opened.wait(timeout=120)
        if held.failures:
            raise RuntimeError(f"{len(held.failures)} connections could not be opened: {held.failures[:3]}")
        figures["healthz_held"] = p99(healthz_latencies(port))
        figures["small_held"] = p99(healthz_latencies(port, path=small))
        cut = held.cut
    return {name: value * 1000 for name, value in figures.items()} | {"cut": cut}
