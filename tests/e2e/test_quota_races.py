"""Quotas against a real server in both configurations: parallel creations that race for the last
bytes or files of a quota cannot overshoot it together, and the usage is right after a SIGKILL in
the middle of an upload; `flask files check` finds no drift after each."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.test_counters import assert_no_drift
from tests.helpers import curl, send_partially, wait_for_offset


def _request(server, method: str, path: str, body: bytes | str = b"") -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def test_32_parallel_creations_cannot_overshoot_a_quota(any_server):
    server = any_server
    curl("-X", "PUT", f"{server.url}/v1/quotas/race", "-d", '{"max_bytes": 10000}')
    curl("-X", "PUT", f"{server.url}/v1/quotas/puts", "-d", '{"max_files": 5}')

    def create(index: int) -> int:
        body = json.dumps({"bucket": "race", "key": f"f{index:02}", "size": 1000})
        return _request(server, "POST", "/v1/files", body)[0]

    def put_small(index: int) -> int:  # session-less files, checked as they are published
        return _request(server, "PUT", f"/v1/files/puts/p{index:02}", b"small file")[0]

    with ThreadPoolExecutor(32) as pool:
        created = list(pool.map(create, range(32)))
        stored = list(pool.map(put_small, range(32)))
    assert sorted(created) == [201] * 10 + [507] * 22
    assert sorted(stored) == [200] * 5 + [507] * 27
    _, race = curl(f"{server.url}/v1/quotas/race")
    _, puts = curl(f"{server.url}/v1/quotas/puts")
    assert (race["promised_bytes"], race["promised_files"]) == (10000, 10)
    assert (puts["used_files"], puts["used_bytes"]) == (5, 50)
    assert_no_drift(server)


def test_the_usage_is_right_after_a_kill_mid_upload(deployment, server_factory):
    server = server_factory(FILES_CHECKPOINT_BYTES=str(1024 * 1024), FILES_LEASE_TTL="1", **deployment).start()
    curl("-X", "PUT", f"{server.url}/v1/quotas/k", "-d", '{"max_bytes": 10000000}')
    for index in range(3):
        curl("-X", "PUT", "--data-binary", "x" * 1000, f"{server.url}/v1/files/k/done{index}")
    data = b"y" * (4 * 1024 * 1024)
    _, session = curl("-X", "POST", f"{server.url}/v1/files", "-d",
                      json.dumps({"bucket": "k", "key": "cut.bin", "size": len(data)}))
    connection = send_partially(server, session["url"], data, 2 * 1024 * 1024)
    wait_for_offset(server, session["id"], 1)
    server.kill()
    connection.close()
    server.start(same_port=True)
    _, usage = curl(f"{server.url}/v1/quotas/k")
    assert (usage["used_files"], usage["used_bytes"]) == (3, 3000)  # the three stored files, no more
    assert (usage["promised_files"], usage["promised_bytes"]) == (1, len(data))  # the cut upload, still open
    deadline = time.monotonic() + 30
    while True:  # the killed writer's lease runs out within a second
        _, state = curl(f"{server.url}/v1/files/session:{session['id']}")
        status, _ = _request(server, "POST", f"/v1/files/session:{session['id']}", data[state["offset"]:])
        if status != 423 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200
    _, usage = curl(f"{server.url}/v1/quotas/k")
    assert (usage["used_files"], usage["used_bytes"], usage["promised_bytes"]) == (4, 3000 + len(data), 0)
    _, listing = curl(f"{server.url}/v1/files/k")
    assert sum(entry["bytes"] for entry in listing["data"]) == usage["used_bytes"]
    assert_no_drift(server)


def test_a_copy_killed_mid_way_gives_back_its_promise_within_a_few_leases(deployment, server_factory):
    """A SIGKILL in the middle of a large copy: its hidden session (nobody knows its URL) held its
    promised bytes for FILES_SESSION_TTL (24 h) before; now it expires within 3 x FILES_LEASE_TTL."""
    server = server_factory(FILES_CHECKPOINT_BYTES=str(1024 * 1024), FILES_LEASE_TTL="1", **deployment).start()
    size = 48 * 1024 * 1024
    status, _ = _request(server, "PUT", "/v1/files/src/big.bin", b"z" * size)
    assert status == 200
    curl("-X", "PUT", f"{server.url}/v1/quotas/dst", "-d", json.dumps({"max_bytes": size + 1000}))
    copying = ThreadPoolExecutor(1)
    copying.submit(_request, server, "POST", "/v1/copy",
                   json.dumps({"bucket": "src", "key": "big.bin", "to_bucket": "dst", "to_key": "c.bin"}))
    deadline = time.monotonic() + 30
    while curl(f"{server.url}/v1/quotas/dst")[1]["promised_bytes"] == 0:  # the copy's session is made
        assert time.monotonic() < deadline
    server.kill()
    copying.shutdown(wait=True)
    server.start(same_port=True)
    deadline = time.monotonic() + 30
    while (held := curl(f"{server.url}/v1/quotas/dst")[1]["promised_bytes"]) != 0:
        assert time.monotonic() < deadline, f"the killed copy still holds {held} bytes"
        time.sleep(0.2)
    status, _ = _request(server, "POST", "/v1/copy",
                         json.dumps({"bucket": "src", "key": "big.bin", "to_bucket": "dst", "to_key": "c.bin"}))
    assert status == 200
    assert_no_drift(server)
