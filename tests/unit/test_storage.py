"""The blob stores, local disk and S3 (a real SeaweedFS): private bytes, durable offsets,
finalizing, reading back, server-made names only."""

from __future__ import annotations

import json
import os

import pytest

from files_app.errors import Conflict, StorageError, StorageUnavailable
from files_app.storage import LocalBlobStore
from files_app.storage.s3 import MIN_PART_SIZE, S3BlobStore
from tests.helpers import blob_ids, holds_private_bytes

SESSION, OTHER = "a" * 32, "b" * 32
PART = MIN_PART_SIZE


def s3_store(weed, bucket: str | None = None, **overrides) -> S3BlobStore:
    settings = weed.settings(bucket or weed.create_bucket())
    return S3BlobStore(endpoint=settings["FILES_S3_ENDPOINT"], bucket=settings["FILES_S3_BUCKET"],
                       access_key=settings["FILES_S3_ACCESS_KEY"], secret_key=settings["FILES_S3_SECRET_KEY"],
                       region="us-east-1", part_size=PART, presign=False, **overrides)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalBlobStore(tmp_path)
    return s3_store(request.getfixturevalue("seaweedfs"))


@pytest.fixture
def s3(seaweedfs):
    return s3_store(seaweedfs)


def write(store, session_id, offset, state, data, sync="sync"):
    """One request's worth: open at the durable offset, append, sync; the new state."""
    writer = store.open_partial(session_id, offset, state)
    try:
        writer.write(data)
        getattr(writer, sync)()
        return writer.state()
    finally:
        writer.close()


def read_blob(store, blob_id, start=0):
    with store.open_blob(blob_id) as blob:
        blob.seek(start)
        return blob.read()


def test_append_sync_finalize_read(store):
    state = write(store, SESSION, 0, None, b"hello ")
    state = write(store, SESSION, 6, state, b"world", sync="sync_for_finalize")
    assert store.finalize(SESSION, 11, state) == SESSION
    assert holds_private_bytes(store, SESSION)  # a session's private bytes stay until they are discarded
    store.discard_partial(SESSION, state)
    assert not holds_private_bytes(store, SESSION)
    assert read_blob(store, SESSION) == b"hello world"
    assert read_blob(store, SESSION, start=6) == b"world"
    assert blob_ids(store) == [SESSION]
    store.delete_blob(SESSION)
    assert blob_ids(store) == []


def test_many_parts_with_chunks_that_end_inside_parts(store):
    """Chunks of 1 MiB + 1 (no chunk ends on a part boundary): each request leaves a held tail
    that the next request, opened afresh (as another host would), takes up."""
    data = os.urandom(2 * PART + 3 * 1024 * 1024 + 7)
    step, state, offset = 1024 * 1024 + 1, None, 0
    while offset < len(data):
        piece = data[offset:offset + step]
        last = offset + len(piece) == len(data)
        state = write(store, SESSION, offset, state, piece, sync="sync_for_finalize" if last else "sync")
        offset += len(piece)
    store.finalize(SESSION, len(data), state)
    store.discard_partial(SESSION, state)
    assert not holds_private_bytes(store, SESSION)
    assert read_blob(store, SESSION) == data
    assert read_blob(store, SESSION, start=PART - 3) == data[PART - 3:]


def test_reopen_drops_bytes_past_the_durable_offset(store):
    state = write(store, SESSION, 0, None, b"0123")
    write(store, SESSION, 4, state, b"456789")  # synced, but its offset never committed
    state = write(store, SESSION, 4, state, b"xy", sync="sync_for_finalize")
    store.finalize(SESSION, 6, state)
    assert read_blob(store, SESSION) == b"0123xy"


def test_rollback_to_the_opening_offset_forgets_whole_parts(store):
    """A refused chunk that already filled parts: back to where it started."""
    state = write(store, SESSION, 0, None, b"a" * 100)
    writer = store.open_partial(SESSION, 100, state)
    writer.write(b"b" * (PART + 10))
    writer.rollback(100)
    writer.write(b"c" * 50)
    writer.sync_for_finalize()
    store.finalize(SESSION, 150, writer.state())
    writer.close()
    assert read_blob(store, SESSION) == b"a" * 100 + b"c" * 50


def test_lost_durable_bytes_are_a_storage_error(store):
    with pytest.raises(StorageError):
        store.open_partial(SESSION, 5, None)


def test_finalize_checks_the_size(store):
    state = write(store, SESSION, 0, None, b"abc", sync="sync_for_finalize")
    if isinstance(store, S3BlobStore):
        state = json.dumps({**json.loads(state), "upload": "gone"})  # the size check is S3's second line
    with pytest.raises(StorageError):
        store.finalize(SESSION, 4, state)


def test_empty_file(store):
    state = write(store, SESSION, 0, None, b"", sync="sync_for_finalize")
    store.finalize(SESSION, 0, state)
    assert read_blob(store, SESSION) == b""


@pytest.mark.parametrize("bad", ["../x", "a" * 31, "A" * 32, "a" * 31 + "/", ""])
def test_only_server_made_ids_become_names(store, bad):
    with pytest.raises(ValueError):
        store.open_partial(bad, 0, None)
    with pytest.raises(ValueError):
        store.delete_blob(bad)


# --- S3 only: what a multipart upload adds ---------------------------------------------------------
def test_s3_holds_small_chunks_until_a_part_is_full(s3, seaweedfs):
    state = write(s3, SESSION, 0, None, b"x" * 1000)
    first = json.loads(state)
    assert first["upload"] is None  # no multipart upload for less than a part
    assert seaweedfs.keys(s3.bucket, "tails/") == [f"tails/{SESSION}/{first['tail']}"]
    state = write(s3, SESSION, 1000, state, b"y" * PART)
    second = json.loads(state)
    assert second["upload"] and len(second["etags"]) == 1 and second["stale"] == [first["tail"]]
    state = write(s3, SESSION, PART + 1000, state, b"z")  # the next writer deletes what the row calls stale
    third = json.loads(state)
    assert sorted(seaweedfs.keys(s3.bucket, "tails/")) == sorted(
        f"tails/{SESSION}/{name}" for name in (second["tail"], third["tail"]))
    s3.discard_partial(SESSION, state)
    assert seaweedfs.keys(s3.bucket) == [] and seaweedfs.uploads(s3.bucket) == []


def test_s3_lost_held_bytes_are_a_storage_error(s3, seaweedfs):
    state = write(s3, SESSION, 0, None, b"mine")
    seaweedfs.client().delete_object(Bucket=s3.bucket, Key=f"tails/{SESSION}/{json.loads(state)['tail']}")
    with pytest.raises(StorageError):
        s3.open_partial(SESSION, 4, state)


def test_s3_retry_after_a_lost_commit_finds_the_completed_upload(s3):
    """CompleteMultipartUpload succeeded but the row never said so: the retried last chunk is
    compared with the blob, not uploaded again, and different bytes are refused."""
    data = os.urandom(PART + 1000)
    state = write(s3, SESSION, 0, None, data[:PART])
    final = write(s3, SESSION, PART, state, data[PART:], sync="sync_for_finalize")
    s3.finalize(SESSION, len(data), final)
    again = write(s3, SESSION, PART, state, data[PART:], sync="sync_for_finalize")
    assert s3.finalize(SESSION, len(data), again) == SESSION
    assert read_blob(s3, SESSION) == data
    with pytest.raises(Conflict):
        write(s3, SESSION, PART, state, b"z" * 1000, sync="sync_for_finalize")


def test_s3_discard_without_state_finds_everything(s3, seaweedfs):
    state = write(s3, SESSION, 0, None, b"p" * (PART + 5))
    assert s3.partial_ids(older_than=float("inf")) == [SESSION]
    s3.discard_partial(SESSION, None)  # an orphan: nothing says what it has
    assert seaweedfs.uploads(s3.bucket) == [] and seaweedfs.keys(s3.bucket) == []
    assert json.loads(state)["upload"]


def test_s3_range_reads_ask_for_the_range_only(s3):
    data = os.urandom(3000)
    s3.put_blob(OTHER, data)
    with s3.open_blob(OTHER) as blob:
        blob.seek(1000)
        blob.bound(1500)
        assert blob.read() == data[1000:1500]


def test_s3_unreachable_is_a_503(seaweedfs):
    from tests.live_server import free_port

    store = S3BlobStore(endpoint=f"http://127.0.0.1:{free_port()}", bucket="nowhere", access_key="k",
                        secret_key="s", region="us-east-1", part_size=PART, presign=False)
    with pytest.raises(StorageUnavailable) as caught:
        store.put_blob(OTHER, b"data")
    assert caught.value.status == 503 and caught.value.retry_after


def test_s3_a_session_keeps_its_part_size_across_a_change_of_setting(s3):
    data = os.urandom(PART + 2 * 1024 * 1024)
    state = write(s3, SESSION, 0, None, data[:PART + 1024 * 1024])
    s3.part_size = 2 * PART  # restarted with a larger FILES_S3_PART_SIZE
    state = write(s3, SESSION, PART + 1024 * 1024, state, data[PART + 1024 * 1024:], sync="sync_for_finalize")
    s3.finalize(SESSION, len(data), state)
    assert read_blob(s3, SESSION) == data


def test_s3_first_start_makes_the_bucket(seaweedfs):
    store = s3_store(seaweedfs, bucket="fresh-" + os.urandom(6).hex())  # not made yet
    store.ensure_ready()
    store.ensure_ready()  # and finds it there the next time
    store.put_blob(OTHER, b"x")
    assert blob_ids(store) == [OTHER]
