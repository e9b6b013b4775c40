"""Buckets, file metadata, listing pages and downloads through Flask's test client."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from openapi_spec_validator import validate

from tests.helpers import assert_error, put, sha256


def test_buckets_come_and_go(client):
    assert client.get("/v1/files").get_json() == {"data": []}
    put(client, "dogs", "shiba.jpg", b"woof")
    put(client, "cats", "persian.jpg", b"meow")
    assert [b["name"] for b in client.get("/v1/files").get_json()["data"]] == ["cats", "dogs"]
    assert_error(client.delete("/v1/files/dogs"), 409, "bucket_not_empty")
    deleted = client.delete("/v1/files/dogs/shiba.jpg")
    assert deleted.get_json()["key"] == "shiba.jpg"
    assert [b["name"] for b in client.get("/v1/files").get_json()["data"]] == ["cats", "dogs"]  # still listed
    assert client.delete("/v1/files/dogs").status_code == 204
    assert [b["name"] for b in client.get("/v1/files").get_json()["data"]] == ["cats"]
    assert_error(client.delete("/v1/files/dogs"), 404, "not_found")


def test_bucket_with_an_upload_in_progress_is_not_empty(client):
    session = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 5})).get_json()
    assert_error(client.delete("/v1/files/b"), 409, "bucket_not_empty")
    client.post(f"/v1/files/session:{session['id']}", data=b"12345")
    client.delete("/v1/files/b/k")
    assert client.delete("/v1/files/b").status_code == 204  # the completed session does not count


def test_file_info_and_delete_with_slashes_and_unicode(client):
    key = "My Photos/Été 2024/cat #1?.jpg"
    put(client, "pics", key, b"jpeg bytes", "image/jpeg")
    from urllib.parse import quote

    path = f"/v1/files/pics/{quote(key)}"
    info = client.get(path).get_json()
    assert (info["key"], info["bytes"], info["mime_type"]) == (key, 10, "image/jpeg")
    assert info["url"] == f"http://localhost/v1/content/pics/{quote(key)}"
    assert client.get(info["url"]).data == b"jpeg bytes"
    assert info.pop("uploaded_by") is None  # an open service: nobody signed it
    assert client.delete(path).get_json() == info
    assert_error(client.get(path), 404, "not_found")
    assert_error(client.delete(path), 404, "not_found")


def test_listing_query(client):
    for key in ("a/1", "a/2", "b", "c/d/e"):
        put(client, "bk", key, b"x")
    body = client.get("/v1/files/bk?delimiter=/").get_json()
    assert [f["key"] for f in body["data"]] == ["b"]
    assert body["prefixes"] == ["a/", "c/"]
    assert (body["has_more"], body["next_cursor"]) == (False, None)
    first = client.get("/v1/files/bk?limit=2").get_json()
    assert [f["key"] for f in first["data"]] == ["a/1", "a/2"] and first["has_more"]
    second = client.get(f"/v1/files/bk?limit=2&cursor={first['next_cursor']}").get_json()
    assert [f["key"] for f in second["data"]] == ["b", "c/d/e"] and not second["has_more"]
    assert "prefixes" not in second
    assert [f["key"] for f in client.get("/v1/files/bk?prefix=a/").get_json()["data"]] == ["a/1", "a/2"]
    assert_error(client.get("/v1/files/bk?limit=0"), 400, "invalid_limit")
    assert_error(client.get("/v1/files/bk?limit=10001"), 400, "invalid_limit")
    assert_error(client.get("/v1/files/bk?cursor=***"), 400, "invalid_cursor")
    assert_error(client.get("/v1/files/bk?limit=1&limit=2"), 400, "invalid_limit")  # found by schemathesis
    assert_error(client.get("/v1/files/nope"), 404, "not_found")
    assert_error(client.get("/v1/files/bad.name"), 400, "invalid_bucket")


@pytest.fixture
def stored(client):
    data = os.urandom(10_000)
    return put(client, "dl", "data.bin", data), data


def test_download_headers(client, stored):
    file, data = stored
    response = client.get(file["url"])
    assert response.status_code == 200 and response.data == data
    headers = response.headers
    assert headers["ETag"] == f'"{sha256(data)}"'
    assert headers["Content-Length"] == str(len(data))
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Content-Disposition"].startswith("attachment;")
    assert headers["Last-Modified"]


def test_ranges(client, stored):
    file, data = stored
    part = client.get(file["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == data[100:200]
    assert part.headers["Content-Range"] == "bytes 100-199/10000"
    assert part.headers["Content-Length"] == "100"
    tail = client.get(file["url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == data[-10:]
    open_ended = client.get(file["url"], headers={"Range": "bytes=9990-"})
    assert open_ended.data == data[9990:]
    beyond = client.get(file["url"], headers={"Range": "bytes=20000-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == "bytes */10000"
    multi = client.get(file["url"], headers={"Range": "bytes=0-1,5-6"})
    assert multi.status_code == 200 and multi.data == data
    stale = client.get(file["url"], headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.data == data
    fresh = client.get(file["url"], headers={"Range": "bytes=0-9", "If-Range": f'"{file["sha256"]}"'})
    assert fresh.status_code == 206 and fresh.data == data[:10]


def test_conditional_get_and_head(client, stored):
    file, data = stored
    etag = f'"{file["sha256"]}"'
    assert client.get(file["url"], headers={"If-None-Match": etag}).status_code == 304
    assert client.get(file["url"], headers={"If-None-Match": '"other"'}).status_code == 200
    later = format_datetime(datetime.fromtimestamp(file["created_at"] + 60, UTC), usegmt=True)
    earlier = format_datetime(datetime.fromtimestamp(file["created_at"] - 60, UTC), usegmt=True)
    assert client.get(file["url"], headers={"If-Modified-Since": later}).status_code == 304
    assert client.get(file["url"], headers={"If-Modified-Since": earlier}).status_code == 200
    head = client.head(file["url"])
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["ETag"] == etag


def test_if_match_and_if_unmodified_since_answer_412_before_anything_else(client, stored):
    """RFC 9110 13.2.2: If-Match (strong comparison, or `*`), else If-Unmodified-Since; a failed one
    is 412 in the error shape, before If-None-Match, Range or the body (they were ignored: 200)."""
    file, data = stored
    etag = f'"{file["sha256"]}"'
    later = format_datetime(datetime.fromtimestamp(file["created_at"] + 60, UTC), usegmt=True)
    earlier = format_datetime(datetime.fromtimestamp(file["created_at"] - 60, UTC), usegmt=True)
    for headers in ({"If-Match": etag}, {"If-Match": f'"other", {etag}'}, {"If-Match": "*"},
                    {"If-Unmodified-Since": later}, {"If-Match": etag, "If-Unmodified-Since": earlier}):
        assert client.get(file["url"], headers=headers).data == data, headers
    for headers in ({"If-Match": '"other"'}, {"If-Match": f"W/{etag}"}, {"If-Match": "not an etag"},
                    {"If-Unmodified-Since": earlier}, {"If-Match": '"other"', "If-None-Match": etag},
                    {"If-Match": '"other"', "Range": "bytes=0-1"}):
        assert_error(client.get(file["url"], headers=headers), 412, "precondition_failed")
        assert client.head(file["url"], headers=headers).status_code == 412


@pytest.mark.parametrize("mime_type", ["text/html", "image/svg+xml", "application/javascript", "text/xml",
                                       "application/xhtml+xml"])
def test_executable_content_is_an_attachment(client, mime_type):
    file = put(client, "x", "evil", b"<script>alert(1)</script>", mime_type)
    response = client.get(file["url"])
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]


def test_safe_content_is_inline_unless_asked(client):
    file = put(client, "x", "pic.png", b"\x89PNG", "image/png")
    assert client.get(file["url"]).headers["Content-Disposition"].startswith("inline;")
    assert client.get(file["url"] + "?download=1").headers["Content-Disposition"].startswith("attachment;")


def test_unknown_routes_and_methods_are_json(client):
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/files/b//k"), 404, "not_found")
    assert_error(client.put("/v1/files"), 405, "method_not_allowed")
    assert_error(client.patch("/v1/files/b/k"), 404, "not_found")  # tus: not an upload URL
    response = client.post("/v1/files/b/k")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    assert_error(client.get("/v1/content/dl/missing"), 404, "not_found")


def test_openapi_is_valid(client):
    spec = client.get("/v1/openapi.json").get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for path in ("/v1/files", "/v1/files/session:{session_id}", "/v1/files/{bucket}", "/v1/files/{bucket}/{key}",
                 "/v1/content/{bucket}/{key}"):
        assert path in spec["paths"]


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_gc_command(runner, client):
    session = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 5})).get_json()
    client.post(f"/v1/files/session:{session['id']}", data=b"12")
    result = runner.invoke(args=["files", "gc", "--grace", "0"])
    assert result.exit_code == 0
    assert "expired sessions: 0" in result.output
    assert client.get(f"/v1/files/session:{session['id']}").get_json()["offset"] == 2


def test_database_outage_is_a_503(app, client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from files_app.models import db

    put(client, "up", "k", b"data")
    real_execute = db.session.execute

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("could not connect to server"))

    monkeypatch.setattr(db.session, "execute", down)
    for response in (client.get("/v1/files/up"), client.post("/v1/files", data=json.dumps(
            {"bucket": "up", "key": "x", "size": 1}))):
        error = assert_error(response, 503, "unavailable")
        assert response.headers["Retry-After"] == "1" and "database" in error["message"]
    monkeypatch.setattr(db.session, "execute", real_execute)
    assert [f["key"] for f in client.get("/v1/files/up").get_json()["data"]] == ["k"]  # recovered by itself


def test_security_headers_on_every_response(client):
    put(client, "h", "page.html", b"<b>x</b>", "text/html")
    for path in ("/", "/b/h/", "/v1/files", "/v1/files/h/page.html", "/v1/nothing", "/b/nothing/"):
        headers = client.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "same-origin", path
        assert headers["X-Frame-Options"] == "DENY", path
        assert "'unsafe-inline'" not in headers["Content-Security-Policy"].split("script-src")[-1].split(";")[0]
    content = client.get("/v1/content/h/page.html").headers
    assert content["Content-Security-Policy"].startswith("sandbox")
    assert content["Content-Disposition"].startswith("attachment")


def test_put_on_a_bucket_creates_it_empty_and_once(client):
    created = client.put("/v1/files/fresh")
    assert created.status_code == 201 and created.get_json()["name"] == "fresh"
    assert created.get_json()["files"] == 0
    assert [b["name"] for b in client.get("/v1/files").get_json()["data"]] == ["fresh"]
    assert_error(client.put("/v1/files/fresh"), 409, "conflict")
    assert_error(client.put("/v1/files/no%20spaces"), 400, "invalid_bucket")


def test_the_whole_files_sha256_may_come_with_its_last_chunk(client):
    data = os.urandom(3000)
    session = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 3000})).get_json()
    path = session["url"].removeprefix("http://localhost")
    wrong = client.post(path, data=data, headers={"X-Checksum-Sha256": "0" * 64})
    assert_error(wrong, 422, "sha256_mismatch")
    session = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "k", "size": 3000})).get_json()
    path = session["url"].removeprefix("http://localhost")
    assert client.post(path, data=data[:1000]).status_code == 200
    done = client.post(path, data=data[1000:], headers={"Upload-Offset": "1000",
                                                        "X-Checksum-Sha256": hashlib.sha256(data).hexdigest()})
    assert done.status_code == 200 and done.get_json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert_error(client.post(path, data=b"x", headers={"X-Checksum-Sha256": "nothex"}), 400, "invalid_sha256")
