"""/metrics in one process (the test client: this process's registry): what moves the counters,
what is read at scrape, and who may read it. The same across gunicorn's workers: tests/e2e/test_metrics.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import app_with, assert_error, bearer, make_token, put

ELSEWHERE = {"REMOTE_ADDR": "203.0.113.9"}  # an address that is not loopback


def scrape(client, **options) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **options)
    assert response.status_code == 200, response.data
    assert response.headers["Cache-Control"] == "no-store"
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.data.decode()) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples that carry `labels` (0 when there are none)."""
    return sum(found for (sample, sample_labels), found in samples.items()
               if sample == name and set(labels.items()) <= set(sample_labels))


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def csrf_of(page) -> str:
    return page.data.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()


def test_requests_uploads_and_bytes_are_counted(client):
    before = scrape(client)
    created = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "seed.txt", "size": 5}),
                          buffered=True).get_json()
    client.post(f"/v1/files/session:{created['id']}", data=b"hello", buffered=True)
    assert client.put("/v1/files/b/put.txt", data=b"world!", buffered=True).status_code == 200
    for _ in range(3):
        client.get("/v1/files/b/missing.txt", buffered=True)
    client.get("/no/such/route", buffered=True)
    assert client.get("/v1/content/b/put.txt", buffered=True).data == b"world!"
    after = scrape(client)

    assert moved(before, after, "files_uploads_completed_total") == 2
    assert moved(before, after, "files_http_requests_total", endpoint="files.put_file", method="PUT",
                 status="200") == 1
    assert moved(before, after, "files_http_requests_total", endpoint="files.file_info", status="404") == 3
    assert moved(before, after, "files_http_requests_total", endpoint="unmatched", status="404") == 1
    assert moved(before, after, "files_http_request_duration_seconds_count", endpoint="files.file_info") == 3
    assert moved(before, after, "files_http_received_bytes_total") >= len(b"hello") + len(b"world!")
    assert moved(before, after, "files_http_sent_bytes_total") >= len(b"world!")
    # The scrape counts itself once its status is set: the second scrape saw the first.
    assert moved(before, after, "files_http_requests_total", endpoint="metrics", status="200") == 1


def test_a_failed_upload_request_is_counted_once_by_its_code(client):
    created = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 10})).get_json()
    before = scrape(client)
    wrong = client.post(f"/v1/files/session:{created['id']}", data=b"abc", headers={"Upload-Offset": "4"})
    assert_error(wrong, 409, "offset_mismatch")
    refused = client.put("/v1/files/b/big.bin", data=b"x" * 100_000,
                         headers={"X-Checksum-Sha256": "0" * 64})  # a PUT that writes through a session
    assert refused.status_code == 422, refused.data
    after = scrape(client)
    assert moved(before, after, "files_upload_failures_total", code="offset_mismatch") == 1
    assert moved(before, after, "files_upload_failures_total", code="sha256_mismatch") == 1
    assert moved(before, after, "files_upload_failures_total") == 2
    assert moved(before, after, "files_uploads_completed_total") == 0


def test_open_sessions_are_read_at_scrape(client):
    open_before = value(scrape(client), "files_upload_sessions_open")
    created = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 3})).get_json()
    assert value(scrape(client), "files_upload_sessions_open") == open_before + 1
    client.post(f"/v1/files/session:{created['id']}", data=b"abc")
    assert value(scrape(client), "files_upload_sessions_open") == open_before
    samples = scrape(client)
    assert value(samples, "files_data_dir_free_bytes") > 0
    assert value(samples, "files_data_dir_size_bytes") >= value(samples, "files_data_dir_free_bytes")


def test_failed_sign_ins_are_counted(client, runner):
    result = runner.invoke(args=["files", "user", "create", "--name", "ada"], input="correct horse\n" * 2)
    assert result.exit_code == 0, result.output
    before = scrape(client)
    for _ in range(2):
        csrf = csrf_of(client.get("/login"))
        answer = client.post("/login", data={"username": "ada", "password": "wrong", "csrf_token": csrf})
        assert answer.status_code == 401
    after = scrape(client)
    assert moved(before, after, "files_sign_in_failures_total", reason="credentials") == 2
    assert moved(before, after, "files_http_requests_total", endpoint="web.login", method="POST", status="401") == 2


def test_gc_runs_and_what_they_freed_are_counted(app, client):
    client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 3}))
    before = scrape(client)
    with app.app_context():
        counts = app.extensions["files"].collect_garbage(grace=-1e9)  # as if a long time had passed
    after = scrape(client)
    assert moved(before, after, "files_gc_runs_total") == 1
    assert moved(before, after, "files_gc_freed_total", what="expired_sessions") == counts["expired_sessions"] == 0
    for what, count in counts.items():
        assert moved(before, after, "files_gc_freed_total", what=what) == count


@pytest.mark.parametrize("deployment", [{}])  # SQLite's lock
def test_sqlite_lock_timeouts_are_counted(settings, tmp_path):
    app = app_with(settings, FILES_SQLITE_BUSY_MS=50)
    client = app.test_client()
    before = scrape(client)
    holder = sqlite3.connect(Path(settings["FILES_DATA_DIR"]) / "files.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
        answer = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 3}))
        assert_error(answer, 503, "unavailable")
    finally:
        holder.rollback()
        holder.close()
    after = scrape(client)
    assert moved(before, after, "files_sqlite_busy_total") >= 1


# --- who may read ------------------------------------------------------------------------------

def test_local_mode_answers_loopback_and_admins_elsewhere_only(client, runner):
    admin, read = make_token(runner, "admin"), make_token(runner, "read")
    assert client.get("/metrics").status_code == 200  # loopback needs nothing, on a closed service too
    assert_error(client.get("/metrics", environ_base=ELSEWHERE), 403, "forbidden")
    assert_error(client.get("/metrics", environ_base=ELSEWHERE, headers=bearer(read)), 403, "forbidden")
    assert client.get("/metrics", environ_base=ELSEWHERE, headers=bearer(admin)).status_code == 200


def test_an_open_service_is_no_admin_to_metrics(client):
    """Open (no token, no user) lets anyone do anything, but metrics stay loopback's."""
    assert_error(client.get("/metrics", environ_base=ELSEWHERE), 403, "forbidden")


def test_admin_mode_needs_an_admin_credential_even_from_loopback(settings, runner):
    app = app_with(settings, FILES_METRICS="admin")
    client, runner = app.test_client(), app.test_cli_runner()
    admin, read = make_token(runner, "admin"), make_token(runner, "read")
    confined = make_token(runner, "admin", bucket="b")
    assert_error(client.get("/metrics"), 403, "forbidden")
    assert_error(client.get("/metrics", headers=bearer(read)), 403, "forbidden")
    assert_error(client.get("/metrics", headers=bearer(confined)), 403, "forbidden")
    assert_error(client.get("/metrics", headers=bearer("not-a-token")), 401, "unauthorized")
    assert client.get("/metrics", headers=bearer(admin)).status_code == 200


def test_an_admin_signed_in_may_read_in_admin_mode(settings):
    app = app_with(settings, FILES_METRICS="admin")
    client, runner = app.test_client(), app.test_cli_runner()
    result = runner.invoke(args=["files", "user", "create", "--name", "ada"], input="correct horse\n" * 2)
    assert result.exit_code == 0, result.output
    csrf = csrf_of(client.get("/login"))
    client.post("/login", data={"username": "ada", "password": "correct horse", "csrf_token": csrf})
    assert client.get("/metrics", environ_base=ELSEWHERE).status_code == 200


def test_off_is_not_found(settings, runner):
    app = app_with(settings, FILES_METRICS="off")
    admin = make_token(app.test_cli_runner(), "admin")
    assert_error(app.test_client().get("/metrics", headers=bearer(admin)), 404, "not_found")


def test_openmetrics_when_asked(client):
    put(client, "b", "k", b"x")
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.data.rstrip().endswith(b"# EOF")
