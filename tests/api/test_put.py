"""A whole file in one request: `PUT /v1/files/{bucket}/{key}`, through the same finish as sessions."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest
from sqlalchemy import func, select

from files_app.models import UploadSession, db
from tests.helpers import assert_error, bearer, make_token, sha256

MIB = 1024 * 1024


@pytest.mark.parametrize("size", [0, 5, MIB, 3 * MIB + 7])
def test_put_stores_and_replaces(client, size):
    data = os.urandom(size)
    reply = client.put("/v1/files/b/dir/file.bin", data=data)
    assert reply.status_code == 200, reply.data
    body = reply.get_json()
    assert (body["bucket"], body["key"], body["bytes"], body["sha256"]) == ("b", "dir/file.bin", size, sha256(data))
    assert client.get("/v1/content/b/dir/file.bin").data == data
    again = client.put("/v1/files/b/dir/file.bin", data=b"new")
    assert again.get_json()["bytes"] == 3 and client.get("/v1/content/b/dir/file.bin").data == b"new"
    assert client.get("/v1/files/b").get_json()["data"][0]["bytes"] == 3


def test_put_types(client):
    assert client.put("/v1/files/b/a.txt", data=b"x", content_type="image/png").get_json()["mime_type"] == "image/png"
    form = client.put("/v1/files/b/a.txt", data=b"x", content_type="application/x-www-form-urlencoded")
    assert form.get_json()["mime_type"] == "text/plain"  # curl's default says nothing: guessed from the key
    assert_error(client.put("/v1/files/b/a.txt", data=b"x", content_type='a/b; c="\u0100"'), 400,
                 "invalid_mime_type")


def test_put_preconditions_and_checksums(app, client):
    client.put("/v1/files/b/k", data=b"first")
    assert_error(client.put("/v1/files/b/k", data=b"second", headers={"If-None-Match": "*"}), 412,
                 "precondition_failed")
    assert client.put("/v1/files/b/new", data=b"x", headers={"If-None-Match": "*"}).status_code == 200
    wrong = hashlib.sha256(b"other").hexdigest()
    assert_error(client.put("/v1/files/b/k", data=b"second", headers={"X-Checksum-Sha256": wrong}), 422,
                 "sha256_mismatch")
    right = base64.b64encode(hashlib.sha256(b"second").digest()).decode()
    assert client.put("/v1/files/b/k", data=b"second", headers={"X-Checksum-Sha256": right}).status_code == 200
    assert client.get("/v1/content/b/k").data == b"second"
    with app.app_context():
        active = db.session.scalar(select(func.count()).where(UploadSession.state == "active"))
        db.session.commit()
    assert active == 0  # refused PUTs leave no session behind


def test_put_needs_a_length_and_valid_names(client):
    reply = client.put("/v1/files/b/k", input_stream=io.BytesIO(b"abc"), headers={"Transfer-Encoding": "chunked"})
    assert_error(reply, 411, "length_required")
    assert_error(client.put("/v1/files/b/a\u202eb", data=b"x"), 400, "invalid_key")
    assert_error(client.put("/v1/files/bad bucket/k", data=b"x"), 400, "invalid_bucket")


def test_put_obeys_scopes_confinement_and_origin(client, runner):
    reader, confined = make_token(runner, "read"), make_token(runner, "write", bucket="mine")
    assert_error(client.put("/v1/files/b/k", data=b"x", headers=bearer(reader)), 403, "forbidden")
    assert_error(client.put("/v1/files/b/k", data=b"x", headers=bearer(confined)), 403, "forbidden")
    assert client.put("/v1/files/mine/k", data=b"x", headers=bearer(confined)).status_code == 200
    assert_error(client.put("/v1/files/mine/k", data=b"x", headers={"Origin": "http://evil.example"}), 403,
                 "cross_site")


def _statements_of(app, send) -> tuple[object, list[str]]:
    """The reply of `send()` and the SQL statements it ran."""
    from sqlalchemy import event

    statements: list[str] = []
    with app.app_context():
        engine = db.engine
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        return send(), statements
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def test_a_chunk_that_does_not_complete_the_file_costs_three_statements(app, client, runner):
    """Token lookup, take the lease and read the session (one UPDATE ... RETURNING), then the
    offset's update that releases it."""
    token = make_token(runner, "write")
    made = client.post("/v1/files", data='{"bucket": "b", "key": "k", "size": 8388608}', headers=bearer(token))
    path = made.get_json()["url"].removeprefix("http://localhost")
    client.get("/v1/files", headers=bearer(token))  # warm: connection opened, 'is the service open' cached
    reply, statements = _statements_of(app, lambda: client.post(
        path, data=b"x" * (2 * MIB), headers={**bearer(token), "Upload-Offset": "0"}))
    assert reply.status_code == 200 and reply.get_json()["offset"] == 2 * MIB
    assert 2 <= len(statements) <= 3, statements


def test_a_small_file_costs_one_transaction_after_its_lease_and_a_put_needs_no_lease(app, client, runner):
    """The seed's second request for a small file: token, lease (UPDATE ... RETURNING), then one
    transaction: session completed, the key looked up, the file inserted, the bucket and the
    token's usage counted, the audit entry. A PUT: token, then the quotas taken (none here: its
    session-less file is checked as it is published), the bucket and key in one query, the insert,
    the counts, the audit entry. (A token's last use is written once a minute: the warm-up did.)"""
    token = make_token(runner, "write")
    made = client.post("/v1/files", data='{"bucket": "b", "key": "k", "size": 1000}', headers=bearer(token))
    path = made.get_json()["url"].removeprefix("http://localhost")
    client.get("/v1/files", headers=bearer(token))  # warm
    reply, statements = _statements_of(app, lambda: client.post(path, data=b"x" * 1000, headers=bearer(token)))
    assert reply.status_code == 200 and reply.get_json()["bytes"] == 1000
    assert len(statements) <= 8, statements
    assert sum(statement.startswith("INSERT INTO audit_log") for statement in statements) == 1
    reply, statements = _statements_of(app, lambda: client.put("/v1/files/b/p", data=b"y" * 1000,
                                                              headers=bearer(token)))
    assert reply.status_code == 200 and reply.get_json()["bytes"] == 1000
    assert len(statements) <= 7, statements
    assert sum(statement.startswith("INSERT INTO audit_log") for statement in statements) == 1
