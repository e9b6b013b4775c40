"""Copy files and folders (the bytes written again through the upload path, checked, counted,
refused where the space is short), and who uploaded each file, in both configurations."""

from __future__ import annotations

import json

from sqlalchemy import delete

from files_app.models import ApiToken, db, transaction
from tests.helpers import assert_error, bearer, blob_ids, make_token, put


def copy(client, headers=None, **fields):
    return client.post("/v1/copy", data=json.dumps(fields), headers=headers or {})


def keys(client, bucket: str, headers=None) -> list[str]:
    return [entry["key"] for entry in client.get(f"/v1/files/{bucket}", headers=headers or {}).get_json()["data"]]


def test_a_copy_has_its_own_bytes_and_outlives_its_source(client, services):
    data = b"some bytes " * 10000  # a blob, not inline
    put(client, "b", "docs/report.txt", data)
    copied = copy(client, bucket="b", key="docs/report.txt", to_key="archive/report.txt")
    assert copied.status_code == 200, copied.get_json()
    source = client.get("/v1/files/b/docs/report.txt").get_json()
    assert {k: v for k, v in copied.get_json().items() if k not in ("key", "url", "created_at")} == {
        k: v for k, v in source.items() if k in ("bucket", "mime_type", "bytes", "sha256")}
    assert len(blob_ids(services.store)) == 2  # not a shared blob: deleting either leaves the other whole
    assert client.delete("/v1/files/b/docs/report.txt").status_code == 200
    services.uploads.collect_garbage(grace=0)
    assert client.get("/v1/content/b/archive/report.txt").data == data
    assert [e["key"] for e in client.get("/v1/files/b?q=archive/rep").get_json()["data"]] == ["archive/report.txt"]
    bucket = client.get("/v1/files").get_json()["data"][0]
    assert (bucket["files"], bucket["bytes"]) == (1, len(data))


def test_small_and_empty_files_copy_across_buckets(client):
    put(client, "from", "tiny.txt", b"tiny")
    put(client, "from", "empty.txt", b"")
    for key in ("tiny.txt", "empty.txt"):
        assert copy(client, bucket="from", key=key, to_bucket="to", to_key=f"c/{key}").status_code == 200
    assert client.get("/v1/content/to/c/tiny.txt").data == b"tiny"
    assert client.get("/v1/content/to/c/empty.txt").data == b""
    counts = {b["name"]: (b["files"], b["bytes"]) for b in client.get("/v1/files").get_json()["data"]}
    assert counts == {"from": (2, 4), "to": (2, 4)}


def test_a_taken_name_needs_replace(client):
    put(client, "b", "a.txt", b"a" * 5000)
    put(client, "b", "b.txt", b"b" * 7000)
    assert_error(copy(client, bucket="b", key="a.txt", to_key="b.txt"), 412, "precondition_failed")
    assert_error(copy(client, bucket="b", key="a.txt", to_key="a.txt"), 412, "precondition_failed")
    assert client.get("/v1/content/b/b.txt").data == b"b" * 7000
    assert copy(client, bucket="b", key="a.txt", to_key="b.txt", replace=True).status_code == 200
    assert client.get("/v1/content/b/b.txt").data == b"a" * 5000
    assert copy(client, bucket="b", key="a.txt", to_key="a.txt", replace=True).get_json()["key"] == "a.txt"
    assert client.get("/v1/files").get_json()["data"][0]["bytes"] == 10000


def test_a_folder_copies_file_by_file_and_skips_taken_names(client):
    for key in ("photos/a.jpg", "photos/2024/b.jpg", "photos/2024/c.jpg", "photosX/d.jpg", "archive/2024/c.jpg"):
        put(client, "b", key, key.encode())
    result = copy(client, bucket="b", prefix="photos/", to_prefix="archive/").get_json()
    assert result == {"copied": 2, "skipped": ["photos/2024/c.jpg"]}
    assert keys(client, "b") == ["archive/2024/b.jpg", "archive/2024/c.jpg", "archive/a.jpg", "photos/2024/b.jpg",
                                 "photos/2024/c.jpg", "photos/a.jpg", "photosX/d.jpg"]
    assert client.get("/v1/content/b/archive/2024/c.jpg").data == b"archive/2024/c.jpg"  # not replaced
    assert_error(copy(client, bucket="b", prefix="photos/", to_prefix="photos/old/"), 400, "invalid_to_prefix")
    assert_error(copy(client, bucket="b", prefix="photos", to_prefix="x/"), 400, "invalid_prefix")
    assert_error(copy(client, bucket="b", key="nope", to_key="x"), 404, "not_found")


def test_a_copy_that_cannot_fit_is_refused_before_a_byte_is_written(app, client, services, monkeypatch):
    put(client, "b", "big.bin", b"x" * (2 * 1024 * 1024))
    before = blob_ids(services.store)
    monkeypatch.setattr(services.store, "free_bytes", lambda: app.config["FILES_RESERVED_SPACE"] + 1024 * 1024)
    assert_error(copy(client, bucket="b", key="big.bin", to_key="big2.bin"), 507, "insufficient_storage")
    assert keys(client, "b") == ["big.bin"] and blob_ids(services.store) == before


def test_scopes_and_confined_tokens_on_copies(client, runner):
    put(client, "mine", "d/x.txt", b"x")
    put(client, "theirs", "d/y.txt", b"y")
    read, mine = make_token(runner, "read"), make_token(runner, "write", bucket="mine")
    assert_error(copy(client, bearer(read), bucket="mine", key="d/x.txt", to_key="z"), 403, "forbidden")
    assert_error(copy(client, bearer(mine), bucket="theirs", key="d/y.txt", to_bucket="mine", to_key="y"),
                 403, "forbidden")  # reading another bucket through a copy
    assert_error(copy(client, bearer(mine), bucket="mine", prefix="d/", to_bucket="theirs", to_prefix="e/"),
                 403, "forbidden")
    assert copy(client, bearer(mine), bucket="mine", key="d/x.txt", to_key="d/x2.txt").status_code == 200
    assert keys(client, "theirs", bearer(read)) == ["d/y.txt"]
    assert keys(client, "mine", bearer(read)) == ["d/x.txt", "d/x2.txt"]


def test_every_file_says_who_uploaded_it(app, client, runner):
    put(client, "b", "open.txt", b"made while the service was open")
    assert client.get("/v1/files/b/open.txt").get_json()["uploaded_by"] is None
    token = make_token(runner, "write")  # now the service is closed
    alice = bearer(token)
    session = client.post("/v1/files", data=json.dumps({"bucket": "b", "key": "big.bin", "size": 100000}),
                          headers=alice).get_json()
    assert client.post(f"/v1/files/session:{session['id']}", data=b"z" * 100000, headers=alice).status_code == 200
    client.put("/v1/files/b/small.txt", data=b"small", headers=alice)
    copy(client, alice, bucket="b", key="open.txt", to_key="copied.txt")
    for key in ("big.bin", "small.txt", "copied.txt"):
        assert client.get(f"/v1/files/b/{key}", headers=alice).get_json()["uploaded_by"] == "token write-test"
    client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "big.bin", "to_key": "moved.bin"}), headers=alice)
    assert client.get("/v1/files/b/moved.bin", headers=alice).get_json()["uploaded_by"] == "token write-test"
    assert client.get("/v1/files/b/open.txt", headers=alice).get_json()["uploaded_by"] is None
    with app.app_context(), transaction():  # the token is gone; its files stay
        db.session.execute(delete(ApiToken).where(ApiToken.name == "write-test"))
    other = bearer(make_token(runner, "read"))
    assert client.get("/v1/files/b/small.txt", headers=other).get_json()["uploaded_by"] == "a deleted token"
