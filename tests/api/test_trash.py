"""Trash and versions through the API, in both configurations: a delete goes to the bucket's trash
and comes back; a replaced file is kept as a version, downloadable and restorable; both count toward
quotas until purged; counters never drift."""

from __future__ import annotations

import hashlib
import json
import time

from files_app.services import consistency
from files_app.services.kept import Retention
from tests.api.test_team import person
from tests.helpers import assert_error, bearer, blob_ids, make_token, put

BLOB = b"blob bytes " * 10_000  # past FILES_INLINE_MAX: kept in the blob store


def restore(client, bucket: str, headers=None, **fields):
    return client.post(f"/v1/trash/{bucket}/restore", data=json.dumps(fields), headers=headers or {})


def trash_keys(client, bucket: str) -> list[str]:
    return [entry["key"] for entry in client.get(f"/v1/trash/{bucket}").get_json()["data"]]


def listed(client, bucket: str) -> list[str]:
    return [entry["key"] for entry in client.get(f"/v1/files/{bucket}").get_json()["data"]]


def counts(client, bucket: str) -> tuple[int, int]:
    info = next(b for b in client.get("/v1/files").get_json()["data"] if b["name"] == bucket)
    return info["files"], info["bytes"]


def assert_no_drift(services) -> None:
    assert [str(drift) for drift in consistency.check()] == []


def test_a_deleted_file_goes_to_the_trash_and_comes_back_whole(client, services):
    put(client, "b", "docs/report.txt", BLOB)
    put(client, "b", "docs/note.txt", b"small note")
    deleted = client.delete("/v1/files/b/docs/report.txt")
    assert deleted.status_code == 200 and deleted.get_json()["key"] == "docs/report.txt"  # the seed's answer
    deletion = deleted.headers["Files-Deletion"]
    assert_error(client.get("/v1/files/b/docs/report.txt"), 404, "not_found")
    assert_error(client.get("/v1/content/b/docs/report.txt"), 404, "not_found")
    assert listed(client, "b") == ["docs/note.txt"]
    assert client.get("/v1/files/b?q=report").get_json()["data"] == []
    assert counts(client, "b") == (1, len(b"small note"))
    [entry] = client.get("/v1/trash/b").get_json()["data"]
    assert (entry["key"], entry["bytes"], entry["sha256"]) == ("docs/report.txt", len(BLOB),
                                                               hashlib.sha256(BLOB).hexdigest())
    assert entry["deletion"] == deletion and entry["purge_at"] - entry["deleted_at"] == 30 * 86400
    services.uploads.collect_garbage(grace=0)  # the trash keeps its blob through gc
    answer = restore(client, "b", ids=[entry["id"]])
    assert answer.status_code == 200, answer.data
    assert answer.get_json() == {"restored": [{"id": entry["id"], "key": "docs/report.txt",
                                               "restored_as": "docs/report.txt"}], "skipped": []}
    assert client.get("/v1/content/b/docs/report.txt").data == BLOB
    assert client.get("/v1/trash/b").get_json()["data"] == []
    assert counts(client, "b") == (2, len(BLOB) + len(b"small note"))
    assert_no_drift(services)


def test_undo_restores_exactly_one_folder_delete(client, services):
    for name in ("a", "b", "c"):
        put(client, "b", f"photos/{name}.jpg", name.encode() * 100)
    put(client, "b", "other.txt", b"other")
    assert client.delete("/v1/files/b/other.txt").status_code == 200  # another delete, not undone
    count = client.get("/v1/folders/b/photos/").get_json()
    gone = client.delete(f"/v1/folders/b/photos/?until={count['until']}").get_json()
    assert gone["deleted"] == 3 and gone["deletion"].startswith("del_")
    assert listed(client, "b") == []
    answer = restore(client, "b", deletion=gone["deletion"]).get_json()
    assert sorted(item["key"] for item in answer["restored"]) == ["photos/a.jpg", "photos/b.jpg", "photos/c.jpg"]
    assert listed(client, "b") == ["photos/a.jpg", "photos/b.jpg", "photos/c.jpg"]
    assert trash_keys(client, "b") == ["other.txt"]
    assert restore(client, "b", prefix="").get_json()["restored"][0]["key"] == "other.txt"
    assert_no_drift(services)


def test_a_restore_onto_a_taken_name_follows_on_conflict(client, services):
    put(client, "b", "a.txt", b"first")
    client.delete("/v1/files/b/a.txt")
    put(client, "b", "a.txt", b"second")
    [entry] = client.get("/v1/trash/b").get_json()["data"]
    assert restore(client, "b", ids=[entry["id"]]).get_json() == {
        "restored": [], "skipped": [{"id": entry["id"], "key": "a.txt", "reason": "exists"}]}
    assert client.get("/v1/content/b/a.txt").data == b"second"
    both = restore(client, "b", ids=[entry["id"]], on_conflict="keep_both").get_json()
    assert both["restored"][0]["restored_as"] == "a (1).txt"
    assert client.get("/v1/content/b/a (1).txt").data == b"first"
    client.delete("/v1/files/b/a (1).txt")
    [entry] = client.get("/v1/trash/b").get_json()["data"]
    replaced = restore(client, "b", ids=[entry["id"]], on_conflict="keep_both")
    assert replaced.get_json()["restored"][0]["restored_as"] == "a (1).txt"
    client.delete("/v1/files/b/a (1).txt")
    [entry] = client.get("/v1/trash/b").get_json()["data"]
    assert client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "a.txt", "to_key": "a (1).txt"})
                       ).status_code == 200
    put(client, "b", "a.txt", b"third")
    assert restore(client, "b", ids=[entry["id"]], on_conflict="replace").get_json()["restored"][0][
        "restored_as"] == "a (1).txt"
    assert client.get("/v1/content/b/a (1).txt").data == b"first"
    # The file it replaced is kept as a version of the key.
    [version] = client.get("/v1/versions/b/a (1).txt").get_json()["data"]
    assert client.get(f"/v1/versions/b/a (1).txt?version={version['id']}").data == b"second"
    assert_error(restore(client, "b", ids=[entry["id"]], on_conflict="merge"), 400, "invalid_on_conflict")
    assert_error(restore(client, "b", ids=[1], prefix="x"), 400, "invalid_selection")
    assert_error(restore(client, "b"), 400, "missing_field")
    assert_error(restore(client, "b", ids=["1"]), 400, "invalid_ids")
    assert_error(restore(client, "b", ids=list(range(1, 1002))), 400, "invalid_ids")
    assert_error(restore(client, "b", deletion="../x"), 400, "invalid_deletion")
    assert_no_drift(services)


def test_a_replaced_file_is_kept_as_a_version(client, services):
    put(client, "b", "doc.txt", BLOB)
    put(client, "b", "doc.txt", b"version two")
    put(client, "b", "doc.txt", b"version three")
    versions = client.get("/v1/versions/b/doc.txt").get_json()["data"]
    assert [v["bytes"] for v in versions] == [len(b"version two"), len(BLOB)]  # newest first
    oldest = versions[1]
    assert oldest["sha256"] == hashlib.sha256(BLOB).hexdigest() and oldest["replaced_at"] >= oldest["created_at"]
    ranged = client.get(f"/v1/versions/b/doc.txt?version={oldest['id']}", headers={"Range": "bytes=5-9"})
    assert ranged.status_code == 206 and ranged.data == BLOB[5:10]
    assert client.head(f"/v1/versions/b/doc.txt?version={oldest['id']}").headers["Content-Length"] == str(len(BLOB))
    assert client.get(f"/v1/versions/b/doc.txt?version={oldest['id']}",
                      headers={"If-None-Match": f'"{oldest["sha256"]}"'}).status_code == 304
    assert counts(client, "b") == (1, len(b"version three"))  # a version is no file of the listing
    restored = client.post("/v1/versions/b/doc.txt", data=json.dumps({"version": oldest["id"]}))
    assert restored.status_code == 200 and restored.get_json()["sha256"] == oldest["sha256"]
    assert client.get("/v1/content/b/doc.txt").data == BLOB
    assert [v["bytes"] for v in client.get("/v1/versions/b/doc.txt").get_json()["data"]] == [
        len(b"version three"), len(b"version two")]
    assert_error(client.get(f"/v1/versions/b/doc.txt?version={oldest['id']}"), 404, "not_found")
    assert_error(client.get("/v1/versions/b/doc.txt?version=x"), 400, "invalid_version")
    assert_error(client.get("/v1/versions/b/other.txt?version=1"), 404, "not_found")
    newest = client.get("/v1/versions/b/doc.txt").get_json()["data"][0]
    assert client.delete(f"/v1/versions/b/doc.txt?version={newest['id']}").status_code == 204
    assert len(client.get("/v1/versions/b/doc.txt").get_json()["data"]) == 1
    assert_no_drift(services)


def test_moves_and_copies_that_replace_keep_versions_and_the_limit_holds(app, client, services):
    app.extensions["files"].objects.retention = Retention(trash_days=30, versions=2)
    put(client, "b", "x.txt", BLOB + b"1")
    put(client, "b", "y.txt", b"y")
    assert client.post("/v1/move", data=json.dumps({"bucket": "b", "key": "y.txt", "to_key": "x.txt",
                                                    "replace": True})).status_code == 200
    put(client, "b", "z.txt", b"z")
    assert client.post("/v1/copy", data=json.dumps({"bucket": "b", "key": "z.txt", "to_key": "x.txt",
                                                    "replace": True})).status_code == 200
    put(client, "b", "x.txt", b"latest")
    kept = client.get("/v1/versions/b/x.txt").get_json()["data"]
    assert [v["bytes"] for v in kept] == [1, 1]  # z's copy, then y's move; the first (BLOB) went
    services.uploads.collect_garbage(grace=0)
    assert len(blob_ids(services.store)) == 0  # the pruned version's blob is gone, nothing else was a blob
    assert_no_drift(services)


def test_trash_and_versions_count_toward_quotas_until_emptied(client, runner, services):
    admin = bearer(make_token(runner, "admin"))
    assert client.put("/v1/quotas/q", data=json.dumps({"max_bytes": 100_000}), headers=admin).status_code == 200
    assert client.put("/v1/files/q/one.bin", data=b"1" * 60_000, headers=admin).status_code == 200
    client.delete("/v1/files/q/one.bin", headers=admin)
    refused = client.post("/v1/files", data=json.dumps({"bucket": "q", "key": "two.bin", "size": 60_000}),
                          headers=admin)
    error = assert_error(refused, 507, "quota_exceeded")
    assert error["kept_bytes"] == 60_000 and "trash" in error["message"]
    quota = client.get("/v1/quotas/q", headers=admin).get_json()
    assert (quota["used_bytes"], quota["kept_bytes"], quota["kept_files"]) == (0, 60_000, 1)
    assert client.delete("/v1/trash/q", headers=admin).get_json() == {"purged": 1}
    assert client.post("/v1/files", data=json.dumps({"bucket": "q", "key": "two.bin", "size": 60_000}),
                       headers=admin).status_code == 201
    assert_no_drift(services)


def test_gc_purges_what_was_in_the_trash_longer_than_the_setting(client, services):
    put(client, "b", "old.bin", BLOB)
    client.delete("/v1/files/b/old.bin")
    assert services.trash.collect_garbage(time.time()) == 0
    assert services.trash.collect_garbage(time.time() + 29 * 86400) == 0
    assert services.trash.collect_garbage(time.time() + 31 * 86400) == 1
    assert client.get("/v1/trash/b").get_json()["data"] == []
    services.uploads.collect_garbage(grace=0)
    assert blob_ids(services.store) == []
    assert_no_drift(services)


def test_with_the_trash_off_a_delete_is_forever(app, client, services):
    app.extensions["files"].objects.retention = Retention(trash_days=0, versions=0)
    put(client, "b", "gone.bin", BLOB)
    put(client, "b", "gone.bin", BLOB + b"2")  # no version either
    deleted = client.delete("/v1/files/b/gone.bin")
    assert deleted.status_code == 200 and "Files-Deletion" not in deleted.headers
    assert client.get("/v1/trash/b").get_json()["data"] == []
    services.uploads.collect_garbage(grace=0)
    assert blob_ids(services.store) == []
    assert_no_drift(services)


def test_a_bucket_with_only_trash_can_be_deleted_and_its_trash_goes_with_it(client, runner, services):
    put(client, "b", "f.bin", BLOB)
    put(client, "b", "f.bin", BLOB + b"v2")
    admin = bearer(make_token(runner, "admin"))
    assert_error(client.delete("/v1/files/b", headers=admin), 409, "bucket_not_empty")
    client.delete("/v1/files/b/f.bin", headers=admin)
    assert client.delete("/v1/files/b", headers=admin).status_code == 204
    services.uploads.collect_garbage(grace=0)
    assert blob_ids(services.store) == []
    assert_no_drift(services)


def test_who_may_see_restore_and_empty_a_trash(app, client, runner, services):
    admin = make_token(runner, "admin")
    ada = person(app, client, admin, "ada")
    bob = person(app, client, admin, "bob")
    assert client.put("/v1/files/ada-files", headers=ada).status_code == 201
    assert client.put("/v1/grants/ada-files/bob", data=json.dumps({"level": "write"}),
                      headers=ada).status_code in (200, 201)
    put_as = client.put("/v1/files/ada-files/secret.txt", data=b"secret", headers=ada)
    assert put_as.status_code == 200, put_as.data
    assert client.delete("/v1/files/ada-files/secret.txt", headers=bob).status_code == 200
    [entry] = client.get("/v1/trash/ada-files", headers=ada).get_json()["data"]
    assert entry["deleted_by"].startswith("bob")
    assert client.get("/v1/trash/ada-files", headers=bob).status_code == 200  # a writer sees and restores
    carol = person(app, client, admin, "carol")
    assert_error(client.get("/v1/trash/ada-files", headers=carol), 404, "not_found")
    assert_error(restore(client, "ada-files", carol, ids=[entry["id"]]), 404, "not_found")
    assert_error(client.delete("/v1/trash/ada-files", headers=bob), 403, "forbidden")  # emptying: manage
    assert client.get("/v1/trash/ada-files", headers=ada).get_json()["data"] != []
    assert restore(client, "ada-files", bob, ids=[entry["id"]]).get_json()["restored"]
    # An id of another bucket's trash restores nothing here.
    client.delete("/v1/files/ada-files/secret.txt", headers=ada)
    [entry] = client.get("/v1/trash/ada-files", headers=ada).get_json()["data"]
    assert client.put("/v1/files/bob-files", headers=bob).status_code == 201
    assert restore(client, "bob-files", bob, ids=[entry["id"]]).get_json() == {
        "restored": [], "skipped": [{"id": entry["id"], "key": None, "reason": "not_in_trash"}]}
    assert client.delete("/v1/trash/ada-files", headers=ada).get_json() == {"purged": 1}
    assert_no_drift(services)
