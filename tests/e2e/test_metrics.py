"""/metrics of a real gunicorn server with two workers, scraped and parsed with prometheus_client:
the counters move by exactly what was sent, whichever worker served it (each worker writes its own
files in the server's metrics directory, and a scrape adds them up); gc runs in both workers and
what it frees is counted; and FILES_METRICS decides who may read, from loopback and from elsewhere."""

from __future__ import annotations

import concurrent.futures
import json
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import flask_files_ok as flask_cli

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


def scrape(url: str, headers: dict | None = None) -> dict[tuple[str, tuple], float]:
    response = httpx.get(f"{url}/metrics", headers=headers or {}, timeout=30)
    assert response.status_code == 200, response.text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that carry `labels` (0 when there are none)."""
    return sum(found for (sample, sample_labels), found in samples.items()
               if sample == name and set(labels.items()) <= set(sample_labels))


def wait_for(read, done, timeout: float = 30.0, what: str = "condition"):
    """Read until `done(read())` holds; the last reading."""
    deadline = time.monotonic() + timeout
    while not done(reading := read()):
        assert time.monotonic() < deadline, f"{what}: still not there after {timeout}s: {reading}"
        time.sleep(0.05)
    return reading


def metrics_dir(server) -> Path:
    """The directory gunicorn.conf.py made for this server start, as its log names it."""
    found = re.findall(r"metrics: the workers write theirs in (\S+)", server.log.read_text())
    assert found, server.log.read_text()
    return Path(found[-1])


def by_worker(server, name: str, **labels: str) -> dict[int, float]:
    """Each process's own share of a counter, read from the file it writes (pid -> value)."""
    shares = {}
    for path in metrics_dir(server).glob("counter_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        shares[pid] = sum(sample.value for metric in MultiProcessCollector.merge([str(path)])
                          for sample in metric.samples
                          if sample.name == name and set(labels.items()) <= set(sample.labels.items()))
    return shares


def not_found(url: str, index: int, headers: dict) -> int:
    """A 404 on a connection of its own (so that either worker may take it)."""
    response = httpx.get(f"{url}/v1/files/metrics/missing-{index}.txt", headers={"Connection": "close", **headers},
                         timeout=30)
    return response.status_code


def test_counters_move_across_both_workers(any_server):
    server = any_server
    admin = {"Authorization": f"Bearer {flask_cli(server, 'token', 'create', '--name', 'ops', '--scope', 'admin')}"}
    flask_cli(server, "user", "create", "--name", "ada", "--password", "correct horse")
    before = scrape(server.url)  # loopback: FILES_METRICS=local needs no credential
    big = b"m" * (2 * MIB + 7)
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as api:
        # A seed upload (session, then its content), a whole PUT, a download, a session left open.
        created = api.post("/v1/files", content=json.dumps({"bucket": "metrics", "key": "seed.txt", "size": 5}))
        assert created.status_code == 201, created.text
        assert api.post(f"/v1/files/session:{created.json()['id']}", content=b"hello").json()["sha256"]
        assert api.put("/v1/files/metrics/big.bin", content=big).status_code in (200, 201)
        assert api.get("/v1/content/metrics/big.bin").content == big
        assert api.post("/v1/files", content=json.dumps({"bucket": "metrics", "key": "open", "size": 9})).is_success
    # A failed sign-in: the form with its CSRF token, a wrong password.
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        form = browser.get("/login").text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', form).group(1)
        refused = browser.post("/login", data={"username": "ada", "password": "wrong password", "csrf_token": csrf})
        assert refused.status_code == 401
    # 404s on connections of their own, in parallel, until both workers have answered some.
    sent = 0
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        while len([pid for pid, count in by_worker(server, "files_http_requests_total", endpoint="files.file_info",
                                                   status="404").items() if count]) < 2:
            assert sent < 2000, "one worker answered every request"
            assert set(pool.map(lambda index: not_found(server.url, index, admin), range(sent, sent + 40))) == {404}
            sent += 40

    def moved(samples: dict, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    # Counted once each answer is on its way, durations and bytes once sent: wait for the last.
    after = wait_for(lambda: scrape(server.url),
                     lambda now: moved(now, "files_http_request_duration_seconds_count", endpoint="files.file_info")
                     >= sent and moved(now, "files_http_sent_bytes_total") >= len(big), what="durations and bytes")
    assert moved(after, "files_http_requests_total", endpoint="files.file_info", method="GET", status="404") == sent
    assert moved(after, "files_http_request_duration_seconds_count", endpoint="files.file_info") == sent
    shares = by_worker(server, "files_http_requests_total", endpoint="files.file_info", status="404")
    assert sum(shares.values()) - value(before, "files_http_requests_total", endpoint="files.file_info") == sent
    assert moved(after, "files_http_requests_total", endpoint="files.put_file", method="PUT") == 1
    assert moved(after, "files_http_requests_total", endpoint="web.login", method="POST", status="401") == 1
    assert moved(after, "files_uploads_completed_total") == 2
    assert moved(after, "files_upload_failures_total") == 0
    assert moved(after, "files_sign_in_failures_total", reason="credentials") == 1
    assert moved(after, "files_http_received_bytes_total") >= len(big) + 5
    assert moved(after, "files_http_sent_bytes_total") >= len(big)  # by sendfile, or streamed from S3
    assert value(after, "files_upload_sessions_open") == 1
    assert value(after, "files_data_dir_free_bytes") > 0
    assert value(after, "files_sqlite_busy_total") == 0
    # A second scrape sees the first; its answers are counted like any other.
    again = scrape(server.url)
    assert value(again, "files_http_requests_total", endpoint="metrics", status="200") > value(
        after, "files_http_requests_total", endpoint="metrics", status="200")
    # The directory was this start's alone: the master takes it away when it stops.
    directory = metrics_dir(server)
    server.stop()
    assert not directory.exists()


def test_gc_runs_in_every_worker_and_what_it_frees_is_counted(server_factory):
    server = server_factory(FILES_GC_INTERVAL="1", FILES_SESSION_TTL="1").start()
    made = httpx.post(f"{server.url}/v1/files", content=json.dumps({"bucket": "gc", "key": "left", "size": 9}))
    assert made.status_code == 201, made.text
    first = wait_for(lambda: scrape(server.url),
                     lambda now: value(now, "files_gc_freed_total", what="expired_sessions") >= 1,
                     what="the expired session collected")
    assert value(first, "files_upload_sessions_open") == 0
    assert value(first, "files_gc_failures_total") == 0
    wait_for(lambda: scrape(server.url),
             lambda now: value(now, "files_gc_runs_total") > value(first, "files_gc_runs_total"), what="another pass")
    wait_for(lambda: by_worker(server, "files_gc_runs_total"),
             lambda shares: len([pid for pid, runs in shares.items() if runs]) >= 2, what="a pass in each worker")


def test_a_killed_servers_directory_goes_at_the_next_start(server_factory):
    first = server_factory().start()
    left = metrics_dir(first)
    first.kill()  # SIGKILL: no exit handler ran
    assert left.exists()
    second = server_factory().start()
    assert metrics_dir(second) != left and metrics_dir(second).exists()
    assert not left.exists()


# --- who may read ------------------------------------------------------------------------------

def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert (response.json()["error"]["status"], response.json()["error"]["code"]) == (status, code)


def test_admin_mode_answers_admins_only_even_on_loopback(server_factory):
    server = server_factory(FILES_METRICS="admin").start()
    admin = flask_cli(server, "token", "create", "--name", "ops", "--scope", "admin")
    read = flask_cli(server, "token", "create", "--name", "reader", "--scope", "read")
    assert_json_error(httpx.get(f"{server.url}/metrics"), 403, "forbidden")
    assert_json_error(httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {read}"}), 403,
                      "forbidden")
    assert value(scrape(server.url, {"Authorization": f"Bearer {admin}"}), "files_data_dir_free_bytes") > 0


def test_off_is_not_found(server_factory):
    server = server_factory(FILES_METRICS="off").start()
    admin = flask_cli(server, "token", "create", "--name", "ops", "--scope", "admin")
    assert_json_error(httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {admin}"}), 404,
                      "not_found")


def outward_address() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_local_mode_is_never_public_off_loopback(server_factory):
    address = outward_address()
    if address is None:
        pytest.skip("this host has no address but loopback")
    server = server_factory(FILES_HOST="0.0.0.0")  # closed first: serving off loopback needs a credential
    server.data_dir.mkdir(parents=True, exist_ok=True)
    flask_cli(server, "init-db")
    admin = flask_cli(server, "token", "create", "--name", "ops", "--scope", "admin")
    read = flask_cli(server, "token", "create", "--name", "reader", "--scope", "read")
    server.start()
    elsewhere = f"http://{address}:{server.port}"
    assert_json_error(httpx.get(f"{elsewhere}/metrics"), 403, "forbidden")
    assert_json_error(httpx.get(f"{elsewhere}/metrics", headers={"Authorization": f"Bearer {read}"}), 403,
                      "forbidden")
    assert value(scrape(elsewhere, {"Authorization": f"Bearer {admin}"}), "files_data_dir_free_bytes") > 0
    assert value(scrape(server.url), "files_data_dir_free_bytes") > 0  # loopback needs nothing
