"""Slow clients against the real server (loopback only, bounded in time): how fast a normal client
is answered while slow-header and slow-body connections are open, and a thousand slow uploads at once."""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time

from tests.slow_clients import SlowHeaders, Trickle, trickle, upload_head

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


def healthz_latencies(port: int, count: int = 300) -> list[float]:
    """`count` sequential GET /healthz on fresh connections, each timed (seconds)."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"healthz: {response.status}")
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
