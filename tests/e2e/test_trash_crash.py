"""Nothing lost when the trash is interrupted or raced (#24), on a real server in both
configurations: a restore of 1,000 files and an empty-trash killed by SIGKILL midway leave every
file in the trash or back (never both, never neither) and the counters equal to the rows; a
restore racing uploads to the same keys follows on_conflict and keeps both contents exactly once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from tests.e2e.test_counters import THREADS, Client, assert_no_drift

pytestmark = pytest.mark.e2e
FILES = 1000


def trash_entries(client: Client, bucket: str) -> list[dict]:
    entries, cursor = [], ""
    while True:
        status, page = client.call("GET", f"/v1/trash/{bucket}?limit=1000&cursor={cursor}")
        assert status == 200, page
        entries += page["data"]
        if not page["has_more"]:
            return entries
        cursor = page["next_cursor"]


def listed(client: Client, bucket: str) -> set[str]:
    keys, cursor = set(), ""
    while True:
        status, page = client.call("GET", f"/v1/files/{bucket}?limit=1000&cursor={cursor}")
        assert status == 200, page
        keys |= {entry["key"] for entry in page["data"]}
        if not page["has_more"]:
            return keys
        cursor = page["next_cursor"]


def in_background(call) -> tuple[threading.Thread, list]:
    """Run `call` on a thread; its answer (or the error the kill caused) lands in the list."""
    answers: list = []

    def run():
        try:
            answers.append(call())
        except Exception as error:  # noqa: BLE001 - the server is killed under it: recorded, asserted by the caller
            answers.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


def kill_once(server, thread: threading.Thread, started) -> bool:
    """SIGKILL the server as soon as `started()` says the work is under way; False if it had
    already finished (then nothing was interrupted)."""
    while thread.is_alive() and not started():
        pass  # each probe is a request to the server: the loop is paced by its answers
    finished = not thread.is_alive()
    server.kill()
    thread.join(timeout=60)
    return not finished


def test_a_killed_restore_and_a_killed_empty_leave_each_file_in_one_place(any_server):
    client = Client(any_server)
    names = {f"many/f{index:04}.txt" for index in range(FILES)}
    with ThreadPoolExecutor(THREADS) as pool:
        assert set(pool.map(lambda name: Client(any_server).put("b", name, name.encode() * 20), sorted(names))) == {200}
    interrupted = False
    for _attempt in range(3):  # until a kill lands midway (a restore may finish before the probe sees it begin)
        status, gone = client.call("DELETE", "/v1/folders/b/many/")
        assert status == 200 and gone["deleted"] > 0 and gone["deletion"], gone
        thread, _ = in_background(lambda gone=gone: Client(any_server).call(
            "POST", "/v1/trash/b/restore", {"deletion": gone["deletion"]}))
        probe = Client(any_server)
        interrupted = kill_once(any_server, thread, lambda probe=probe: probe.call("GET", "/v1/files/b?limit=1")[1]
                                .get("data"))
        any_server.start(same_port=True)
        back, in_trash = listed(client, "b"), [entry["key"] for entry in trash_entries(client, "b")]
        assert len(in_trash) == len(set(in_trash)), "a file is in the trash twice"
        assert back.isdisjoint(in_trash) and back | set(in_trash) == names, "a file is in both places or in neither"
        assert_no_drift(any_server)
        if interrupted:
            break
        client.call("POST", "/v1/trash/b/restore", {"prefix": ""})
    assert interrupted, "the restore finished before the kill three times"
    status, answer = client.call("POST", "/v1/trash/b/restore", {"prefix": ""})
    assert status == 200 and answer["skipped"] == [], answer
    assert listed(client, "b") == names and trash_entries(client, "b") == []
    for name in sorted(names)[:3]:
        assert client.call("GET", f"/v1/content/b/{quote(name)}")[0] == 200

    # Emptying the trash, killed midway: what was purged is gone, the rest is still there, counted.
    assert client.call("DELETE", "/v1/folders/b/many/")[0] == 200
    thread, _ = in_background(lambda: Client(any_server).call("DELETE", "/v1/trash/b"))
    probe = Client(any_server)
    kill_once(any_server, thread, lambda: len(trash_entries(probe, "b")) < FILES)
    any_server.start(same_port=True)
    left = trash_entries(client, "b")
    assert {entry["key"] for entry in left} <= names and listed(client, "b") == set()
    assert_no_drift(any_server)
    status, answer = client.call("DELETE", "/v1/trash/b")
    assert status == 200 and answer["purged"] == len(left)
    assert trash_entries(client, "b") == []
    assert_no_drift(any_server)

    # Version restores, one after another, killed midway: every content of the key is still there
    # exactly once, as the file or a version.
    contents = [f"content {index}".encode() for index in range(5)]
    for content in contents:
        assert client.put("b", "v/k.txt", content) == 200

    def restores():
        mine = Client(any_server)
        for _ in range(40):
            status, versions = mine.call("GET", "/v1/versions/b/v/k.txt")
            mine.call("POST", "/v1/versions/b/v/k.txt", {"version": versions["data"][-1]["id"]})

    thread, _ = in_background(restores)
    probe = Client(any_server)
    kill_once(any_server, thread, lambda: _read(probe, "/v1/content/b/v/k.txt") != contents[-1])
    any_server.start(same_port=True)
    status, versions = client.call("GET", "/v1/versions/b/v/k.txt")
    held = [_read(client, "/v1/content/b/v/k.txt")] + [
        _read(client, f"/v1/versions/b/v/k.txt?version={version['id']}") for version in versions["data"]]
    assert sorted(held) == sorted(contents)
    assert_no_drift(any_server)


def test_a_restore_racing_uploads_to_the_same_keys_keeps_both_contents_once(any_server):
    """With on_conflict fail, then replace (one server for both): each key ends with its old and its
    new content exactly once, as the file, a version or still in the trash."""
    for on_conflict in ("fail", "replace"):
        _race_restore_against_uploads(any_server, on_conflict)
    assert_no_drift(any_server)


def _race_restore_against_uploads(server, on_conflict: str) -> None:
    client, folder = Client(server), f"race-{on_conflict}/"
    names = [f"{folder}k{index:02}" for index in range(40)]
    for name in names:
        assert client.put("b", name, b"old " + name.encode()) == 200
    status, gone = client.call("DELETE", f"/v1/folders/b/{folder}")
    assert status == 200, gone
    ids = [entry["id"] for entry in trash_entries(client, "b") if entry["deletion"] == gone["deletion"]]

    def upload(worker: int):
        mine = Client(server)
        return [mine.put("b", name, b"new " + name.encode()) for name in names[worker::THREADS - 1]]

    def restore():
        return Client(server).call("POST", "/v1/trash/b/restore", {"ids": ids, "on_conflict": on_conflict})

    with ThreadPoolExecutor(THREADS) as pool:
        uploads = [pool.submit(upload, worker) for worker in range(THREADS - 1)]
        restored = pool.submit(restore)
        codes = [code for future in uploads for code in future.result()]
        status, answer = restored.result()
    assert set(codes) == {200} and status == 200, (codes, answer)
    in_trash = {entry["key"] for entry in trash_entries(client, "b") if entry["key"].startswith(folder)}
    assert {item["key"] for item in answer["skipped"]} == in_trash
    for name in names:
        status, versions = client.call("GET", f"/v1/versions/b/{quote(name)}")
        assert status == 200, versions
        contents = sorted([_body(client, name)] + [_raw(client, name, v["id"]) for v in versions["data"]]
                          + ([b"old " + name.encode()] if name in in_trash else []))
        assert contents == sorted([b"new " + name.encode(), b"old " + name.encode()]), (name, contents)
        if on_conflict == "fail":  # a restore never replaces: the upload's bytes are current
            assert _body(client, name) == b"new " + name.encode()


def _body(client: Client, key: str) -> bytes:
    return _read(client, f"/v1/content/b/{quote(key)}")


def _raw(client: Client, key: str, version: int) -> bytes:
    return _read(client, f"/v1/versions/b/{quote(key)}?version={version}")


def _read(client: Client, path: str) -> bytes:
    client.connection.request("GET", path, headers=client.headers)
    response = client.connection.getresponse()
    body = response.read()
    assert response.status == 200, (path, response.status, body[:200])
    return body
