"""The seed's session routes through Flask's test client."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest

from tests.helpers import assert_error, sha256


def create(client, headers=None, **fields):
    body = {"bucket": "images", "key": "image123.jpg", "mime_type": "image/jpg", "size": 11, **fields}
    # Like the seed's `curl -d`, which sends application/x-www-form-urlencoded.
    return client.post("/v1/files", data=json.dumps(body), headers=headers or {},
                       content_type="application/x-www-form-urlencoded")


def test_seed_flow(client):
    created = create(client)
    assert created.status_code == 201
    session = created.get_json()
    assert set(session) == {"id", "url", "offset", "size"}
    assert session["url"] == f"http://localhost/v1/files/session:{session['id']}"
    assert created.headers["Location"] == session["url"]
    assert (session["offset"], session["size"]) == (0, 11)

    done = client.post(f"/v1/files/session:{session['id']}", data=b"hello world")
    assert done.status_code == 200
    file = done.get_json()
    assert set(file) == {"key", "bucket", "mime_type", "bytes", "created_at", "url", "sha256"}
    assert (file["key"], file["bucket"], file["mime_type"]) == ("image123.jpg", "images", "image/jpg")
    assert file["bytes"] == 11
    assert isinstance(file["created_at"], int)
    assert file["sha256"] == sha256(b"hello world")
    assert client.get(file["url"]).data == b"hello world"

    again = client.get(f"/v1/files/session:{session['id']}")
    assert again.get_json() == {**session, "offset": 11}


def test_chunks_with_offsets(client):
    data = os.urandom(3000)
    session = create(client, size=len(data)).get_json()
    url = f"/v1/files/session:{session['id']}"
    first = client.post(url, data=data[:1000], headers={"Upload-Offset": "0"})
    assert first.get_json()["offset"] == 1000 and first.headers["Upload-Offset"] == "1000"
    wrong = client.post(url, data=data[500:], headers={"Upload-Offset": "500"})
    error = assert_error(wrong, 409, "offset_mismatch")
    assert error["offset"] == 1000 and wrong.headers["Upload-Offset"] == "1000"
    assert client.get(url).get_json()["offset"] == 1000
    client.post(url, data=data[1000:2000])  # no header: appends at the session's offset
    done = client.post(url, data=data[2000:], headers={"Upload-Offset": "2000"})
    assert done.get_json()["sha256"] == sha256(data)


def test_body_past_size_is_413_and_kept_nothing(client):
    session = create(client, size=5).get_json()
    url = f"/v1/files/session:{session['id']}"
    assert_error(client.post(url, data=b"123456"), 413, "too_large")
    assert client.get(url).get_json()["offset"] == 0
    assert client.post(url, data=b"12345").get_json()["bytes"] == 5


def test_completed_session_answers_retries_the_same(client):
    session = create(client, size=3).get_json()
    url = f"/v1/files/session:{session['id']}"
    done = client.post(url, data=b"abc").get_json()
    assert client.post(url, data=b"", headers={"Upload-Offset": "3"}).get_json() == done
    assert_error(client.post(url, data=b"d"), 413, "too_large")
    assert_error(client.post(url, data=b"", headers={"Upload-Offset": "1"}), 409, "offset_mismatch")


def test_size_zero(client):
    session = create(client, key="empty.txt", size=0).get_json()
    assert (session["offset"], session["size"]) == (0, 0)
    file = client.post(f"/v1/files/session:{session['id']}", data=b"").get_json()
    assert (file["bytes"], file["sha256"]) == (0, sha256(b""))
    assert client.get("/v1/files/images/empty.txt").status_code == 200


def test_chunk_checksums(client):
    session = create(client, size=8).get_json()
    url = f"/v1/files/session:{session['id']}"
    good = "sha1 " + base64.b64encode(hashlib.sha1(b"abcd").digest()).decode()
    bad = "md5 " + base64.b64encode(hashlib.md5(b"nope").digest()).decode()
    assert client.post(url, data=b"abcd", headers={"Upload-Checksum": good}).get_json()["offset"] == 4
    mismatch = client.post(url, data=b"efgh", headers={"Upload-Checksum": bad})
    assert_error(mismatch, 460, "checksum_mismatch")
    assert client.get(url).get_json()["offset"] == 4
    assert_error(client.post(url, data=b"efgh", headers={"Upload-Checksum": "crc32 AAAA"}), 400,
                 "unsupported_checksum")


def test_whole_file_sha256(client):
    session = create(client, size=3, sha256="0" * 64).get_json()
    error = assert_error(client.post(f"/v1/files/session:{session['id']}", data=b"abc"), 422, "sha256_mismatch")
    assert error["sha256"] == sha256(b"abc")
    assert client.get("/v1/files/images/image123.jpg").status_code == 404
    assert client.get(f"/v1/files/session:{session['id']}").status_code == 404
    ok = create(client, size=3, sha256=sha256(b"abc")).get_json()
    assert client.post(f"/v1/files/session:{ok['id']}", data=b"abc").status_code == 200


def test_if_none_match_star(client):
    session = create(client, size=1).get_json()
    client.post(f"/v1/files/session:{session['id']}", data=b"x")
    assert_error(create(client, size=1, headers={"If-None-Match": "*"}), 412, "precondition_failed")
    assert create(client, key="other", size=1, headers={"If-None-Match": "*"}).status_code == 201
    assert_error(create(client, headers={"If-None-Match": '"abc"'}), 400, "invalid_precondition")


def test_replace_keeps_one_file(client):
    for content in (b"old!", b"new content"):
        session = create(client, size=len(content)).get_json()
        client.post(f"/v1/files/session:{session['id']}", data=content)
    listing = client.get("/v1/files/images").get_json()["data"]
    assert [(f["key"], f["bytes"]) for f in listing] == [("image123.jpg", 11)]
    assert client.get("/v1/content/images/image123.jpg").data == b"new content"


def test_abort(client):
    session = create(client).get_json()
    url = f"/v1/files/session:{session['id']}"
    client.post(url, data=b"hello")
    assert client.delete(url).status_code == 204
    assert_error(client.get(url), 404, "not_found")
    assert_error(client.delete(url), 404, "not_found")


def test_expired_session_is_410(app, client):
    session = create(client).get_json()
    uploads = app.extensions["files"].uploads
    later = uploads.clock() + uploads.ttl + 5
    uploads.clock = lambda: later
    url = f"/v1/files/session:{session['id']}"
    assert_error(client.get(url), 410, "session_expired")
    assert_error(client.post(url, data=b"x"), 410, "session_expired")


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b"", 400, "invalid_json"),
        (b"\xff\xfe", 400, "invalid_json"),
        (json.dumps({"key": "k", "size": 1}).encode(), 400, "missing_field"),
        (json.dumps({"bucket": "b", "size": 1}).encode(), 400, "missing_field"),
        (json.dumps({"bucket": "b", "key": "k"}).encode(), 400, "missing_field"),
        (json.dumps({"bucket": "b", "key": "k", "size": -1}).encode(), 400, "invalid_size"),
        (json.dumps({"bucket": "b", "key": "k", "size": "12"}).encode(), 400, "invalid_size"),
        (json.dumps({"bucket": "b", "key": "k", "size": 1.5}).encode(), 400, "invalid_size"),
        (json.dumps({"bucket": "b", "key": "k", "size": 10**20}).encode(), 413, "too_large"),
        (json.dumps({"bucket": "b c", "key": "k", "size": 1}).encode(), 400, "invalid_bucket"),
        (json.dumps({"bucket": 5, "key": "k", "size": 1}).encode(), 400, "invalid_bucket"),
        (json.dumps({"bucket": "b", "key": "../etc/passwd", "size": 1}).encode(), 400, "invalid_key"),
        (json.dumps({"bucket": "b", "key": "/abs", "size": 1}).encode(), 400, "invalid_key"),
        (json.dumps({"bucket": "b", "key": "k", "size": 1, "mime_type": "nope"}).encode(), 400, "invalid_mime_type"),
        (json.dumps({"bucket": "b", "key": "k", "size": 1, "sha256": "xyz"}).encode(), 400, "invalid_sha256"),
        (b"{" + b" " * 70000 + b"}", 400, "body_too_large"),
        (b"[" * 60000, 400, "invalid_json"),  # deeper than Python's stack
    ],
)
def test_bad_session_creation(client, body, status, code):
    error = assert_error(client.post("/v1/files", data=body), status, code)
    if code == "missing_field":
        assert error["field"] in error["message"]
    assert client.get("/v1/files").get_json()["data"] == []  # nothing was created


def test_bad_upload_requests(client):
    session = create(client).get_json()
    url = f"/v1/files/session:{session['id']}"
    assert_error(client.post(url, data=b"x", headers={"Upload-Offset": "-3"}), 400, "invalid_offset")
    assert_error(client.post(url, data=b"x", headers={"Upload-Offset": "abc"}), 400, "invalid_offset")
    assert_error(client.post("/v1/files/session:" + "0" * 32, data=b"x"), 404, "not_found")
    assert_error(client.get("/v1/files/session:not-an-id"), 404, "not_found")
    assert client.get(url).get_json()["offset"] == 0


def test_size_null_is_not_a_size(client):
    """Found by schemathesis: the JSON API must not create a length-deferred session."""
    error = assert_error(create(client, size=None), 400, "invalid_size")
    assert "size" in error["message"]
