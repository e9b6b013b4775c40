"""tus 1.0.0 through Flask's test client: every status code of the protocol, table-driven,
and one session carried across the two dialects."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from tests.helpers import assert_error, sha256

TUS = {"Tus-Resumable": "1.0.0"}
BYTES = {**TUS, "Content-Type": "application/offset+octet-stream"}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def create(client, length=11, metadata="filename " + b64("hello.txt"), **headers):
    all_headers = {**TUS, **headers}
    if length is not None:
        all_headers["Upload-Length"] = str(length)
    if metadata:
        all_headers["Upload-Metadata"] = metadata
    response = client.post("/v1/files", headers=all_headers)
    assert response.status_code == 201, response.data
    return response.headers["Location"].removeprefix("http://localhost")


def patch(client, url, data, offset, **headers):
    return client.patch(url, data=data, headers={**BYTES, "Upload-Offset": str(offset), **headers})


def test_options(client):
    response = client.options("/v1/files")
    assert response.status_code == 200  # as tusd answers
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "expiration", "checksum", "termination",
        "concatenation"}
    assert response.headers["Tus-Max-Size"] == str(1024**4)
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "sha256", "md5"}
    assert "Tus-Resumable" not in response.headers
    assert client.options(create(client)).status_code == 200
    assert client.options("/v1/files/").status_code == 200


def test_core_flow_head_and_patch(client):
    metadata = f"bucket {b64('docs')},filename {b64('hello.txt')},filetype {b64('text/plain')}"
    url = create(client, metadata=metadata)
    head = client.head(url, headers=TUS)
    assert head.status_code == 200
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("0", "11")
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Tus-Resumable"] == "1.0.0"
    assert head.headers["Upload-Metadata"] == metadata
    assert head.headers["Upload-Expires"].endswith("GMT")
    first = patch(client, url, b"hello", 0)
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "5"
    assert first.headers["Upload-Expires"].endswith("GMT") and "Content-Type" not in first.headers
    assert patch(client, url, b" world", 5).headers["Upload-Offset"] == "11"
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "11"
    file = client.get("/v1/files/docs/hello.txt").get_json()
    assert (file["bytes"], file["mime_type"], file["sha256"]) == (11, "text/plain", sha256(b"hello world"))


def test_key_and_bucket_names(client, app):
    create(client, length=1, metadata=f"key {b64('a/b.txt')},filename {b64('ignored.txt')}")
    create(client, length=1, metadata=f"name {b64('by-name.txt')}")
    url = create(client, length=1, metadata=None)
    listing = client.get(f"/v1/files/{app.config['FILES_DEFAULT_BUCKET']}").get_json()
    assert listing["data"] == []  # nothing is visible before its bytes are
    patch(client, url, b"x", 0)
    keys = [f["key"] for f in client.get("/v1/files/uploads").get_json()["data"]]
    assert len(keys) == 1 and len(keys[0]) == 32  # no name given: the server makes one


BAD_CREATIONS = [
    ({"Upload-Length": "-1"}, 400, "invalid_length"),
    ({"Upload-Length": "abc"}, 400, "invalid_length"),
    ({}, 400, "invalid_length"),
    ({"Upload-Defer-Length": "2"}, 400, "invalid_length"),
    ({"Upload-Defer-Length": "1", "Upload-Length": "5"}, 400, "invalid_length"),
    ({"Upload-Length": str(1024**4 + 1)}, 413, "too_large"),
    ({"Upload-Length": "5", "Upload-Metadata": "filename !!!"}, 400, "invalid_metadata"),
    ({"Upload-Length": "5", "Upload-Metadata": "a " + b64("1") + ",a " + b64("2")}, 400, "invalid_metadata"),
    ({"Upload-Length": "5", "Upload-Metadata": "bucket " + b64("not a bucket")}, 400, "invalid_bucket"),
    ({"Upload-Length": "5", "Upload-Metadata": "filename " + b64("../x")}, 400, "invalid_key"),
    ({"Upload-Length": "5", "Upload-Metadata": "filetype " + b64("nonsense")}, 400, "invalid_mime_type"),
    ({"Upload-Length": "5", "Upload-Concat": "whatever"}, 400, "invalid_concat"),
    ({"Upload-Concat": "final;/elsewhere/abc"}, 400, "invalid_concat"),
    ({"Upload-Concat": "final;/v1/files/session:" + "0" * 32}, 400, "invalid_concat"),
    ({"Upload-Length": "5", "Upload-Checksum": "crc32 AAAA"}, 400, "unsupported_checksum"),
]


@pytest.mark.parametrize("headers, status, code", BAD_CREATIONS)
def test_bad_creation(client, headers, status, code):
    response = client.post("/v1/files", headers={**TUS, **headers})
    assert_error(response, status, code)
    assert response.headers["Tus-Resumable"] == "1.0.0"


def test_unsupported_version_is_412_and_changes_nothing(client):
    for method, path in [("POST", "/v1/files"), ("HEAD", None), ("PATCH", None), ("DELETE", None)]:
        url = path or create(client)
        response = client.open(url, method=method, headers={"Tus-Resumable": "0.2.2", "Upload-Length": "5",
                                                            "Upload-Offset": "0",
                                                            "Content-Type": "application/offset+octet-stream"},
                               data=b"abc" if method == "PATCH" else None)
        assert response.status_code == 412, (method, response.data)
        assert response.headers["Tus-Version"] == "1.0.0"
        if path is None:
            assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    assert [b["name"] for b in client.get("/v1/files").get_json()["data"]] == ["uploads"]  # the 3 made here


def test_tus_methods_without_tus_resumable_are_412(client):
    url = create(client)
    assert client.head(url).status_code == 412
    assert client.patch(url, data=b"x", headers={"Upload-Offset": "0",
                                                "Content-Type": "application/offset+octet-stream"}).status_code == 412


def test_patch_status_codes(client):
    url = create(client, length=10)
    assert_error(client.patch(url, data=b"x", headers={**TUS, "Upload-Offset": "0"}), 415, "unsupported_media_type")
    assert_error(client.patch(url, data=b"x", headers={**TUS, "Upload-Offset": "0",
                                                       "Content-Type": "application/octet-stream"}),
                 415, "unsupported_media_type")
    assert_error(client.patch(url, data=b"x", headers=BYTES), 400, "invalid_offset")
    assert_error(patch(client, url, b"x", -1), 400, "invalid_offset")
    conflict = patch(client, url, b"x", 3)
    assert_error(conflict, 409, "offset_mismatch")
    assert conflict.headers["Upload-Offset"] == "0"
    assert_error(patch(client, url, b"x" * 11, 0), 413, "too_large")
    assert_error(patch(client, "/v1/files/session:" + "0" * 32, b"x", 0), 404, "not_found")
    good = "sha1 " + base64.b64encode(hashlib.sha1(b"abcde").digest()).decode()
    bad = "sha256 " + base64.b64encode(hashlib.sha256(b"zzz").digest()).decode()
    assert_error(patch(client, url, b"abcde", 0, **{"Upload-Checksum": bad}), 460, "checksum_mismatch")
    assert_error(patch(client, url, b"abcde", 0, **{"Upload-Checksum": "crc32 AAAA"}), 400, "unsupported_checksum")
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    assert patch(client, url, b"abcde", 0, **{"Upload-Checksum": good}).headers["Upload-Offset"] == "5"


def test_expired_upload_is_410(client, app):
    url = create(client)
    uploads = app.extensions["files"].uploads
    later = uploads.clock() + uploads.ttl + 1
    uploads.clock = lambda: later
    assert client.head(url, headers=TUS).status_code == 410
    assert "Upload-Offset" not in client.head(url, headers=TUS).headers
    assert_error(patch(client, url, b"x", 0), 410, "session_expired")


def test_termination(client):
    url = create(client)
    patch(client, url, b"hello", 0)
    response = client.delete(url, headers=TUS)
    assert response.status_code == 204 and response.headers["Tus-Resumable"] == "1.0.0"
    assert client.head(url, headers=TUS).status_code == 404
    assert "Upload-Offset" not in client.head(url, headers=TUS).headers
    assert_error(patch(client, url, b"x", 5), 404, "not_found")


def test_method_override(client):
    url = create(client, length=3)
    response = client.post(url, data=b"abc", headers={**BYTES, "Upload-Offset": "0",
                                                      "X-HTTP-Method-Override": "PATCH"})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "3"
    assert client.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"}).status_code == 204
    assert client.head(url, headers=TUS).status_code == 404


def test_creation_with_upload(client):
    response = client.post("/v1/files", data=b"hello", headers={
        **BYTES, "Upload-Length": "11", "Upload-Metadata": "filename " + b64("c.txt")})
    assert response.status_code == 201 and response.headers["Upload-Offset"] == "5"
    url = response.headers["Location"]
    assert patch(client, url, b" world", 5).status_code == 204
    assert client.get("/v1/files/uploads/c.txt").get_json()["sha256"] == sha256(b"hello world")
    whole = client.post("/v1/files", data=b"all of it", headers={
        **BYTES, "Upload-Length": "9", "Upload-Metadata": "filename " + b64("d.txt")})
    assert whole.headers["Upload-Offset"] == "9"
    assert client.get("/v1/content/uploads/d.txt").data == b"all of it"
    wrong_type = client.post("/v1/files", data=b"x", headers={**TUS, "Upload-Length": "1",
                                                             "Content-Type": "text/plain"})
    assert_error(wrong_type, 415, "unsupported_media_type")


def test_defer_length(client):
    url = create(client, length=None, **{"Upload-Defer-Length": "1"})
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Defer-Length"] == "1" and "Upload-Length" not in head.headers
    assert patch(client, url, b"hello", 0).headers["Upload-Offset"] == "5"
    assert_error(patch(client, url, b"!", 5, **{"Upload-Length": "3"}), 400, "invalid_length")
    assert patch(client, url, b" world", 5, **{"Upload-Length": "11"}).status_code == 204
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Length"] == "11" and "Upload-Defer-Length" not in head.headers
    assert client.get("/v1/content/uploads/hello.txt").data == b"hello world"
    other = create(client, length=5, metadata="filename " + b64("five"))
    assert_error(patch(client, other, b"12", 0, **{"Upload-Length": "6"}), 400, "length_mismatch")


def test_zero_length_upload_completes_at_creation(client):
    url = create(client, length=0, metadata="filename " + b64("empty"))
    assert client.head(url, headers=TUS).headers["Upload-Offset"] == "0"
    assert client.get("/v1/files/uploads/empty").get_json()["bytes"] == 0


def test_concatenation(client):
    parts = [b"hello", b" ", b"world"]
    urls = []
    for part in parts:
        url = create(client, length=len(part), metadata=None, **{"Upload-Concat": "partial"})
        assert client.head(url, headers=TUS).headers["Upload-Concat"] == "partial"
        urls.append(url)
    for url, part in zip(urls[:2], parts[:2], strict=True):
        patch(client, url, part, 0)
    concat = "final;" + " ".join(urls)
    meta = f"filename {b64('joined.txt')}"
    unfinished = client.post("/v1/files", headers={**TUS, "Upload-Concat": concat, "Upload-Metadata": meta})
    assert_error(unfinished, 400, "concat_unfinished")
    patch(client, urls[2], parts[2], 0)
    assert_error(client.post("/v1/files", headers={**TUS, "Upload-Concat": concat, "Upload-Length": "11"}),
                 400, "invalid_length")
    final = client.post("/v1/files", headers={**TUS, "Upload-Concat": concat, "Upload-Metadata": meta})
    assert final.status_code == 201
    final_url = final.headers["Location"]
    head = client.head(final_url, headers=TUS)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("11", "11")
    assert head.headers["Upload-Concat"] == concat
    assert_error(patch(client, final_url, b"x", 11), 403, "final_upload")
    file = client.get("/v1/files/uploads/joined.txt").get_json()
    assert (file["bytes"], file["sha256"]) == (11, sha256(b"hello world"))
    assert all(client.head(url, headers=TUS).status_code == 404 for url in urls)  # their bytes moved


def test_locked_upload_is_423(client, app):
    url = create(client)
    from files_app.models import UploadSession, db

    with app.app_context():
        db.session.execute(db.update(UploadSession).values(lease_token="f" * 32, lease_expires_at=2**40))
        db.session.commit()
    response = patch(client, url, b"hello", 0)
    assert_error(response, 423, "session_locked")
    assert int(response.headers["Retry-After"]) >= 1


def test_one_session_two_dialects(client):
    """Created by the seed's JSON API, finished by tus PATCH; and the other way round."""
    created = client.post("/v1/files", data=json.dumps({"bucket": "mix", "key": "json-then-tus", "size": 11}))
    url = created.get_json()["url"]
    client.post(url, data=b"hello")
    head = client.head(url, headers=TUS)
    assert head.headers["Upload-Offset"] == "5"
    assert base64.b64decode(head.headers["Upload-Metadata"].split(",")[1].split(" ")[1]) == b"json-then-tus"
    assert patch(client, url, b" world", 5).status_code == 204

    tus_url = create(client, metadata=f"bucket {b64('mix')},filename {b64('tus-then-json')}")
    patch(client, tus_url, b"hello", 0)
    assert client.get(tus_url).get_json()["offset"] == 5
    done = client.post(tus_url, data=b" world", headers={"Upload-Offset": "5"})
    assert done.status_code == 200 and done.get_json()["key"] == "tus-then-json"

    listing = client.get("/v1/files/mix").get_json()["data"]
    assert [f["key"] for f in listing] == ["json-then-tus", "tus-then-json"]
    assert {f["sha256"] for f in listing} == {sha256(b"hello world")}
    assert {f["mime_type"] for f in listing} == {"application/octet-stream"}


def test_cors(app, settings):
    from files_app import create_app

    cors_app = create_app({**settings, "FILES_CORS_ORIGINS": "https://app.example"})
    client = cors_app.test_client()
    preflight = client.options("/v1/files", headers={"Origin": "https://app.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Upload-Offset" in preflight.headers["Access-Control-Allow-Headers"]
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Location" in preflight.headers["Access-Control-Expose-Headers"]
    other = client.options("/v1/files", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    plain = app.test_client().options("/v1/files", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in plain.headers  # default: no origins


def test_tus_endpoint_with_a_trailing_slash(client):
    response = client.post("/v1/files/", headers={**TUS, "Upload-Length": "3",
                                                  "Upload-Metadata": "filename " + b64("slash.txt")})
    assert response.status_code == 201
    url = response.headers["Location"].removeprefix("http://localhost")
    assert patch(client, url, b"abc", 0).status_code == 204
    assert client.get("/v1/files/uploads/slash.txt").get_json()["bytes"] == 3


@pytest.mark.parametrize("headers", [{"Upload-Length": "5"}, {"Upload-Defer-Length": "1"},
                                     {"Upload-Length": "3", "Content-Type": "application/offset+octet-stream"}])
def test_a_tus_creation_without_tus_resumable_is_412(client, headers):
    body = b"abc" if "Content-Type" in headers else None
    response = client.post("/v1/files", data=body, headers=headers)
    assert_error(response, 412, "precondition_failed")
    assert response.headers["Tus-Version"] == "1.0.0"


def test_a_seed_creation_that_happens_to_send_upload_length_stays_seed(client):
    body = json.dumps({"bucket": "b", "key": "k", "size": 2})
    assert client.post("/v1/files", data=body, headers={"Upload-Length": "2"}).status_code == 201


@pytest.mark.parametrize("path", ["/v1/files/b/k.txt", "/v1/files/b", "/v1/files/session:nothex"])
def test_patch_on_what_is_not_an_upload_is_404(client, path):
    response = client.patch(path, data=b"x", headers={**BYTES, "Upload-Offset": "0"})
    assert_error(response, 404, "not_found")


@pytest.mark.parametrize("value, status", [("*", 412), ('"abc"', 400), ("W/*", 400)])
def test_if_none_match_on_creation_means_the_same_in_both_dialects(client, value, status):
    """`*`: create only if no file has the key (412 if one has); anything else is refused (400),
    by the seed's creation and by tus's alike."""
    client.put("/v1/files/b/taken.txt", data=b"here")
    seed = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "taken.txt", "size": 3}),
                       headers={"If-None-Match": value})
    tus = client.post("/v1/files", headers={**TUS, "Upload-Length": "3", "If-None-Match": value,
                                            "Upload-Metadata": f"bucket {b64('b')},filename {b64('taken.txt')}"})
    assert (seed.status_code, tus.status_code) == (status, status)
    assert client.get("/v1/files/b/taken.txt").get_json()["bytes"] == 4


def test_the_tus_hooks_are_the_files_blueprints_own(client):
    """Tus-Resumable marks every /v1/files answer, and only those: downloads are no tus URLs."""
    client.put("/v1/files/b/k.txt", data=b"x")
    assert client.get("/v1/files/b/k.txt").headers["Tus-Resumable"] == "1.0.0"
    assert client.get("/v1/files").headers["Tus-Resumable"] == "1.0.0"
    assert "Tus-Resumable" not in client.get("/v1/content/b/k.txt").headers
    assert "Tus-Resumable" not in client.get("/healthz").headers
    assert client.options("/v1/files").headers["Tus-Version"] == "1.0.0"
    assert "Tus-Version" not in client.options("/v1/content/b/k.txt").headers
