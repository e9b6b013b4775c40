"""Small files kept in their row (FILES_INLINE_MAX): stored by one durable commit, served like any file."""

from __future__ import annotations

import os

from sqlalchemy import select

from files_app.models import StoredObject, db
from tests.helpers import app_with, blob_ids, sha256

KIB = 1024


def inline_bytes(app, key: str) -> bytes | None:
    with app.app_context():
        data = db.session.scalar(select(StoredObject.inline_data).where(StoredObject.key == key))
        db.session.commit()
        return data


def test_a_small_file_lives_in_its_row_and_is_served_like_any_other(app, client):
    data = os.urandom(5000)
    stored = client.put("/v1/files/b/notes/small.txt", data=data, content_type="text/plain").get_json()
    assert inline_bytes(app, "notes/small.txt") == data
    assert blob_ids(app.extensions["files"].store) == []  # no blob, no blob fsync
    whole = client.get("/v1/content/b/notes/small.txt")
    assert whole.status_code == 200 and whole.data == data and whole.headers["Content-Length"] == "5000"
    assert whole.headers["ETag"] == f'"{sha256(data)}"' and whole.headers["Content-Type"] == "text/plain"
    part = client.get("/v1/content/b/notes/small.txt", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == data[100:200]
    assert client.get("/v1/content/b/notes/small.txt", headers={"If-None-Match": whole.headers["ETag"]}
                      ).status_code == 304
    assert client.head("/v1/content/b/notes/small.txt").headers["Content-Length"] == "5000"
    listed = client.get("/v1/files/b?prefix=notes/").get_json()["data"]
    assert [(f["key"], f["bytes"], f["sha256"]) for f in listed] == [("notes/small.txt", 5000, stored["sha256"])]
    assert client.get("/b/b/notes/small.txt").status_code == 200  # the file page previews it
    with app.app_context():
        app.extensions["files"].uploads.collect_garbage(grace=-60)
    assert client.get("/v1/content/b/notes/small.txt").data == data  # gc leaves it alone
    assert client.delete("/v1/files/b/notes/small.txt").status_code == 200
    assert client.get("/v1/content/b/notes/small.txt").status_code == 404


def test_replacing_between_inline_and_blob(app, client):
    small, large = b"s" * 100, os.urandom(100 * KIB)
    client.put("/v1/files/b/k", data=small)
    client.put("/v1/files/b/k", data=large)
    assert inline_bytes(app, "k") is None and len(blob_ids(app.extensions["files"].store)) == 1
    assert client.get("/v1/content/b/k").data == large
    client.put("/v1/files/b/k", data=small)
    assert inline_bytes(app, "k") == small
    assert client.get("/v1/content/b/k").data == small
    with app.app_context():
        app.extensions["files"].uploads.collect_garbage(grace=-60)
    assert len(blob_ids(app.extensions["files"].store)) == 1  # the large version is kept as a version
    versions = client.get("/v1/versions/b/k").get_json()["data"]
    assert [v["bytes"] for v in versions] == [len(large), len(small)]
    assert client.get(f"/v1/versions/b/k?version={versions[1]['id']}").data == small  # an inline version
    for version in versions:
        client.delete(f"/v1/versions/b/k?version={version['id']}")
    with app.app_context():
        app.extensions["files"].uploads.collect_garbage(grace=-60)
    assert blob_ids(app.extensions["files"].store) == []  # the large version's blob is freed with it
    assert client.get("/v1/files/b").get_json()["data"][0]["bytes"] == 100


def test_the_seed_and_tus_small_paths_inline_too(app, client):
    session = client.post("/v1/files", data='{"bucket": "b", "key": "seed.bin", "size": 3}').get_json()
    client.post(session["url"].removeprefix("http://localhost"), data=b"abc")
    assert inline_bytes(app, "seed.bin") == b"abc"


def test_inline_max_zero_keeps_every_file_a_blob(settings):
    app = app_with(settings, FILES_INLINE_MAX="0")
    client = app.test_client()
    client.put("/v1/files/b/k", data=b"abc")
    assert inline_bytes(app, "k") is None and len(blob_ids(app.extensions["files"].store)) == 1
    assert client.get("/v1/content/b/k").data == b"abc"
