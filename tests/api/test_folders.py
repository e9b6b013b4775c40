"""Rename and move files and folders, count and delete folders, in both configurations: rows move,
bytes stay (the same blob), counts follow, search follows, and nothing beyond what was counted goes."""

from __future__ import annotations

import json

import pytest

from tests.helpers import assert_error, blob_ids, put


def move(client, **fields):
    return client.post("/v1/move", data=json.dumps(fields))


def keys(client, bucket: str) -> list[str]:
    return [entry["key"] for entry in client.get(f"/v1/files/{bucket}").get_json()["data"]]


def test_a_file_is_renamed_without_copying_its_bytes(client, services):
    put(client, "b", "old/name.txt", b"some bytes " * 10000)  # a blob, not inline
    blobs = blob_ids(services.store)
    moved = move(client, bucket="b", key="old/name.txt", to_key="new/name.txt")
    assert moved.status_code == 200 and moved.get_json()["key"] == "new/name.txt"
    assert keys(client, "b") == ["new/name.txt"] and blob_ids(services.store) == blobs
    assert client.get("/v1/content/b/new/name.txt").data == b"some bytes " * 10000
    assert_error(client.get("/v1/files/b/old/name.txt"), 404, "not_found")
    assert [e["key"] for e in client.get("/v1/files/b?q=new/na").get_json()["data"]] == ["new/name.txt"]
    assert client.get("/v1/files/b?q=old/").get_json()["data"] == []


def test_moving_onto_a_file_needs_replace_and_keeps_the_replaced_file_as_a_version(client, services):
    put(client, "b", "a.bin", b"a" * 100000)
    put(client, "b", "b.bin", b"b" * 100000)
    assert_error(move(client, bucket="b", key="a.bin", to_key="b.bin"), 412, "precondition_failed")
    assert move(client, bucket="b", key="a.bin", to_key="b.bin", replace=True).status_code == 200
    assert keys(client, "b") == ["b.bin"] and client.get("/v1/content/b/b.bin").data == b"a" * 100000
    [version] = client.get("/v1/versions/b/b.bin").get_json()["data"]
    assert client.get(f"/v1/versions/b/b.bin?version={version['id']}").data == b"b" * 100000
    bucket = client.get("/v1/files").get_json()["data"][0]
    assert (bucket["files"], bucket["bytes"]) == (1, 100000)
    # Deleting the version for good frees its bytes (S3 in gc's sweep, a local disk at once).
    assert client.delete(f"/v1/versions/b/b.bin?version={version['id']}").status_code == 204
    services.uploads.collect_garbage(grace=0)
    assert len(blob_ids(services.store)) == 1


def test_across_buckets_the_counts_follow(client):
    put(client, "from", "x.txt", b"12345")
    move(client, bucket="from", key="x.txt", to_bucket="to", to_key="y/x.txt")
    counts = {b["name"]: (b["files"], b["bytes"]) for b in client.get("/v1/files").get_json()["data"]}
    assert counts == {"from": (0, 0), "to": (1, 5)}


def test_a_folder_moves_file_by_file_and_skips_taken_names(client):
    for key in ("photos/a.jpg", "photos/2024/b.jpg", "photos/2024/c.jpg", "photosX/d.jpg", "archive/2024/c.jpg"):
        put(client, "b", key, key.encode())
    result = move(client, bucket="b", prefix="photos/", to_prefix="archive/").get_json()
    assert result == {"moved": 2, "skipped": ["photos/2024/c.jpg"]}
    assert keys(client, "b") == ["archive/2024/b.jpg", "archive/2024/c.jpg", "archive/a.jpg", "photos/2024/c.jpg",
                                 "photosX/d.jpg"]
    assert client.get("/v1/content/b/archive/2024/c.jpg").data == b"archive/2024/c.jpg"  # not replaced
    assert_error(move(client, bucket="b", prefix="archive/", to_prefix="archive/old/"), 400, "invalid_to_prefix")
    assert_error(move(client, bucket="b", prefix="archive", to_prefix="x/"), 400, "invalid_prefix")


def test_a_folder_delete_takes_what_was_counted_and_no_more(client, services):
    """Whatever is placed in the folder after the count stays, even within the same second: a new
    upload, a file moved in (a move keeps its creation time) and a counted file replaced since."""
    for index in range(7):
        put(client, "b", f"old/{index}.txt", b"x" * index)
    put(client, "b", "older/keep.txt", b"not in the folder")
    put(client, "b", "elsewhere.txt", b"moved in after the count")
    counted = client.get("/v1/folders/b/old/").get_json()
    assert (counted["files"], counted["bytes"]) == (7, 21) and isinstance(counted["until"], int)
    put(client, "b", "old/late.txt", b"arrived after the confirmation")
    moved = client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "elsewhere.txt", "to_key": "old/in.txt"}))
    assert moved.status_code == 200, moved.data
    replaced = client.put("/v1/files/b/old/6.txt", data=b"replaced after the count")
    assert replaced.status_code in (200, 201), replaced.data
    deleted = client.delete(f"/v1/folders/b/old/?until={counted['until']}").get_json()
    assert deleted["deleted"] == 6 and deleted["deletion"].startswith("del_")
    assert keys(client, "b") == ["old/6.txt", "old/in.txt", "old/late.txt", "older/keep.txt"]
    assert client.get("/v1/files").get_json()["data"][0]["files"] == 4
    assert client.get("/v1/folders/b/old/").get_json()["until"] > counted["until"]


def test_the_older_clients_before_is_refused_and_deletes_nothing(client):
    """`before` (the count's time, Unix seconds) compared creation times, which a move keeps: a file
    moved in after the count went with the folder. It is refused, and nothing is deleted."""
    put(client, "b", "old/counted.txt", b"x")
    put(client, "b", "elsewhere/later.txt", b"moved in after the count")
    assert client.get("/v1/folders/b/old/").get_json()["files"] == 1
    assert client.post("/v1/move", json={"bucket": "b", "key": "elsewhere/later.txt",
                                         "to_key": "old/later.txt"}).status_code == 200
    response = client.delete(f"/v1/folders/b/old/?before={2**31}")
    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "until_required")
    assert keys(client, "b") == ["old/counted.txt", "old/later.txt"]


@pytest.mark.parametrize("path", ["/v1/folders/b/old", "/v1/folders/b/old/?before=soon", "/v1/folders/b/old/?before=1",
                                  "/v1/folders/b/old/?until=-1",
                                  "/v1/folders/b/old/?until=1e9", "/v1/folders/none/x/"])
def test_bad_folder_requests(client, path):
    put(client, "b", "old/x.txt", b"x")
    response = client.delete(path)
    assert response.status_code in (400, 404) and response.get_json()["error"]["code"]
    assert keys(client, "b") == ["old/x.txt"]


def test_a_token_confined_to_a_bucket_cannot_move_out_of_it(client, runner):
    from tests.helpers import bearer, make_token

    put(client, "mine", "x.txt", b"x")
    token = make_token(runner, "write", bucket="mine")
    response = client.post("/v1/move", data=json.dumps({"bucket": "mine", "key": "x.txt", "to_bucket": "theirs",
                                                        "to_key": "x.txt"}), headers=bearer(token))
    assert_error(response, 403, "forbidden")


def test_scopes_and_confined_tokens_on_moves_and_folder_deletes(client, runner):
    from tests.helpers import bearer, make_token

    put(client, "mine", "d/x.txt", b"x")
    put(client, "theirs", "d/y.txt", b"y")
    read, mine = make_token(runner, "read"), make_token(runner, "write", bucket="mine")
    assert client.get("/v1/folders/mine/d/", headers=bearer(read)).get_json()["files"] == 1  # counting is reading
    assert_error(client.delete("/v1/folders/mine/d/", headers=bearer(read)), 403, "forbidden")
    assert_error(client.post("/v1/move", data=json.dumps({"bucket": "mine", "key": "d/x.txt", "to_key": "z"}),
                             headers=bearer(read)), 403, "forbidden")
    assert_error(client.delete("/v1/folders/theirs/d/", headers=bearer(mine)), 403, "forbidden")
    assert_error(client.post("/v1/move", data=json.dumps({"bucket": "theirs", "prefix": "d/", "to_prefix": "e/"}),
                             headers=bearer(mine)), 403, "forbidden")
    assert_error(client.get("/v1/thumbnails/theirs/d/y.txt", headers=bearer(mine)), 403, "forbidden")
    assert [e["key"] for e in client.get("/v1/files/theirs", headers=bearer(read)).get_json()["data"]] == ["d/y.txt"]
    assert client.delete("/v1/folders/mine/d/", headers=bearer(mine)).get_json()["deleted"] == 1


def test_the_pages_confirmation_deletes_what_it_showed(client):
    """The page's count carries `until`: a file moved into the folder after it was shown stays."""
    import re

    for name in ("a.txt", "b.txt"):
        put(client, "b", f"old/{name}", b"x")
    put(client, "b", "elsewhere.txt", b"moved in after the page was shown")
    page = client.get("/b/b/delete-folder?prefix=old/")
    assert b"2 files" in page.data
    until = re.search(rb'name="until" value="(\d+)"', page.data)[1].decode()
    csrf = page.data.split(b'name="csrf-token" content="')[1].split(b'"')[0].decode()
    assert client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "elsewhere.txt",
                                                    "to_key": "old/in.txt"})).status_code == 200
    done = client.post("/b/b/delete-folder", data={"prefix": "old/", "until": until, "csrf_token": csrf})
    assert done.status_code == 302
    assert keys(client, "b") == ["old/in.txt"]
