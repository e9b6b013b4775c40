"""The upload service without HTTP: offsets, durability, integrity, leases, expiry, replace."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from sqlalchemy import update

from files_app.errors import (
    ChecksumMismatch,
    DigestMismatch,
    IncompleteBody,
    LeaseLost,
    NotFound,
    OffsetMismatch,
    PreconditionFailed,
    SessionExpired,
    SessionLocked,
    TooLarge,
)
from files_app.models import UploadSession, db
from files_app.services import ChunkRequest
from files_app.storage import LocalBlobStore
from tests.helpers import ChunkedBody, blob_ids, holds_private_bytes, sha256, upload

MIB = 1024 * 1024


@pytest.fixture
def settings(settings, deployment):  # naming `deployment` keeps both configurations in play
    return {**settings, "FILES_CHECKPOINT_BYTES": MIB}


# Tests of what only a local disk does (its files, a full disk) run in the local configuration.
local_only = pytest.mark.parametrize("deployment", ["local"], indirect=True)


def partial_path(services, session_id):
    return services.store.uploads / session_id


def test_whole_file_in_one_write(services):
    data = os.urandom(3 * MIB + 17)
    info, obj = upload(services.uploads, "b", "dir/file.bin", data)
    assert (obj.bucket, obj.key, obj.size, obj.sha256) == ("b", "dir/file.bin", len(data), sha256(data))
    assert services.uploads.get(info.id).offset == len(data)
    with services.objects.open("b", "dir/file.bin")[1] as stream:
        assert stream.read() == data
    assert not holds_private_bytes(services.store, info.id)


def test_chunks_hash_across_writes(services):
    data = os.urandom(5 * MIB + 3)
    _, obj = upload(services.uploads, "b", "k", data, chunk=MIB + 1)
    assert obj.sha256 == sha256(data)


def test_offset_mismatch_changes_nothing(services):
    data = os.urandom(1000)
    info = services.uploads.create(bucket="b", key="k", size=len(data))
    services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[:400]), length=400, offset=0))
    with pytest.raises(OffsetMismatch) as caught:
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[300:]), length=700, offset=300))
    assert caught.value.offset == 400
    assert caught.value.offset == 400
    assert services.uploads.get(info.id).offset == 400
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[400:]), length=600, offset=400))
    assert result.object.sha256 == sha256(data)


def test_declared_body_past_size_is_refused_before_reading(services):
    info = services.uploads.create(bucket="b", key="k", size=10)
    body = ChunkedBody(b"x" * 11)
    with pytest.raises(TooLarge):
        services.uploads.write(info.id, ChunkRequest(body, length=11))
    assert body.read_bytes == 0
    assert services.uploads.get(info.id).offset == 0


def test_chunked_body_past_size_keeps_nothing_even_after_checkpoints(services):
    size = 2 * MIB + MIB // 2
    info = services.uploads.create(bucket="b", key="k", size=size)
    services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"a" * 100), length=100))
    with pytest.raises(TooLarge):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"b" * 3 * MIB), length=None))  # passes 2 checkpoints
    assert services.uploads.get(info.id).offset == 100
    rest = b"c" * (size - 100)
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(rest), length=None))
    assert result.object.sha256 == sha256(b"a" * 100 + rest)


def test_broken_body_keeps_every_byte_that_arrived(services):
    data = os.urandom(3 * MIB)
    info = services.uploads.create(bucket="b", key="k", size=len(data))
    cut = 2 * MIB + 12345
    with pytest.raises(IncompleteBody):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(data, fail_after=cut), length=len(data)))
    assert services.uploads.get(info.id).offset == cut
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[cut:]), offset=cut))
    assert result.object.sha256 == sha256(data)


@local_only
def test_bytes_written_but_not_durable_are_dropped_on_resume(services):
    """A writer killed between write() and its checkpoint leaves bytes past the offset."""
    data = os.urandom(4000)
    info = services.uploads.create(bucket="b", key="k", size=len(data))
    services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[:1000]), length=1000))
    with open(partial_path(services, info.id), "ab") as partial:
        partial.write(b"garbage that was never acknowledged")
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[1000:]), offset=1000))
    assert result.object.sha256 == sha256(data)


@pytest.mark.parametrize("algorithm", ["sha256", "sha1", "md5"])
def test_chunk_checksum(services, algorithm):
    data = os.urandom(2 * MIB + 5)
    info = services.uploads.create(bucket="b", key="k", size=len(data) * 2)
    good = base64.b64decode(base64.b64encode(hashlib.new(algorithm, data).digest()))
    services.uploads.write(info.id, ChunkRequest(ChunkedBody(data), checksum=(algorithm, good)))
    assert services.uploads.get(info.id).offset == len(data)
    bad = hashlib.new(algorithm, b"other").digest()
    with pytest.raises(ChecksumMismatch) as caught:
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(data), checksum=(algorithm, bad)))
    assert caught.value.status == 460
    assert services.uploads.get(info.id).offset == len(data)
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(data), checksum=(algorithm, good)))
    assert result.object.sha256 == sha256(data + data)


def test_whole_file_digest_mismatch_discards_the_session(services):
    data = b"hello world"
    info = services.uploads.create(bucket="b", key="k", size=len(data), sha256=sha256(b"other"))
    with pytest.raises(DigestMismatch):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(data)))
    with pytest.raises(NotFound):
        services.objects.get("b", "k")
    with pytest.raises(NotFound):
        services.uploads.get(info.id)
    assert not holds_private_bytes(services.store, info.id)
    assert blob_ids(services.store) == []


def test_whole_file_digest_match(services):
    data = b"hello world"
    _, obj = upload(services.uploads, "b", "k", data, sha256=sha256(data).upper())
    assert obj.sha256 == sha256(data)


def test_empty_file_exists_as_soon_as_its_session(services):
    info, obj = upload(services.uploads, "b", "empty", b"")
    assert (obj.size, obj.sha256) == (0, sha256(b""))
    again = services.uploads.write(info.id, ChunkRequest(ChunkedBody(b""), offset=0))
    assert again.object == obj
    with pytest.raises(TooLarge):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"x")))


def test_second_writer_is_locked_out_until_the_lease_expires(services):
    info = services.uploads.create(bucket="b", key="k", size=10)
    now = services.uploads.clock()
    db.session.execute(update(UploadSession).values(lease_token="f" * 32, lease_expires_at=now + 20))
    db.session.commit()
    with pytest.raises(SessionLocked) as caught:
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"0123456789")))
    assert caught.value.status == 423
    assert caught.value.retry_after in range(1, 21)
    services.uploads.clock = lambda: now + 21  # the holder died: its lease runs out
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"0123456789")))
    assert result.object.size == 10


def test_expired_sessions_answer_410_and_gc_frees_them(services):
    info = services.uploads.create(bucket="b", key="k", size=10)
    services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"01234")))
    later = services.uploads.clock() + services.uploads.ttl + 1
    services.uploads.clock = lambda: later
    with pytest.raises(SessionExpired):
        services.uploads.get(info.id)
    with pytest.raises(SessionExpired):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"56789")))
    counts = services.uploads.collect_garbage(grace=0)
    assert counts["expired_sessions"] == 1
    with pytest.raises(NotFound):
        services.uploads.get(info.id)
    assert not holds_private_bytes(services.store, info.id)


@local_only
def test_gc_sweeps_unreferenced_bytes_but_spares_young_ones(services):
    _, obj = upload(services.uploads, "b", "kept", b"kept")
    orphan_old = services.store.objects / "ab" / ("ab" + "0" * 30)
    orphan_young = services.store.objects / "cd" / ("cd" + "0" * 30)
    stray_partial = services.store.uploads / ("e" * 32)
    for path in (orphan_old, orphan_young, stray_partial):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"orphan")
    hour_ago = services.uploads.clock() - 3700
    os.utime(orphan_old, (hour_ago, hour_ago))
    os.utime(stray_partial, (hour_ago, hour_ago))
    counts = services.uploads.collect_garbage(grace=3600)
    assert counts == {"expired_sessions": 0, "orphan_partials": 1, "orphan_blobs": 1}
    assert not orphan_old.exists() and not stray_partial.exists() and orphan_young.exists()
    with services.objects.open("b", "kept")[1] as stream:
        assert stream.read() == b"kept"


def test_replace_is_atomic_for_readers(services):
    old, new = os.urandom(2 * MIB), os.urandom(MIB)
    upload(services.uploads, "b", "k", old)
    _, reader = services.objects.open("b", "k")
    with reader:
        head = reader.read(1000)
        _, obj = upload(services.uploads, "b", "k", new)
        assert head + reader.read() == old  # the reader keeps the old file whole
    assert obj.sha256 == sha256(new)
    with services.objects.open("b", "k")[1] as stream:
        assert stream.read() == new
    [version] = services.trash.versions("b", "k")  # the old file is kept as a version
    services.trash.delete_version("b", "k", version.id)
    services.uploads.collect_garbage(grace=-60)  # an object store leaves the old blob to gc (release_blob)
    assert len(blob_ids(services.store)) == 1  # the old blob is freed


def test_create_only(services):
    upload(services.uploads, "b", "k", b"first")
    with pytest.raises(PreconditionFailed):
        services.uploads.create(bucket="b", key="k", size=3, create_only=True)


def test_create_only_loses_a_race_at_completion(services):
    first = services.uploads.create(bucket="b", key="k", size=3, create_only=True)
    second = services.uploads.create(bucket="b", key="k", size=3, create_only=True)
    services.uploads.write(first.id, ChunkRequest(ChunkedBody(b"one")))
    with pytest.raises(PreconditionFailed):
        services.uploads.write(second.id, ChunkRequest(ChunkedBody(b"two")))
    with services.objects.open("b", "k")[1] as stream:
        assert stream.read() == b"one"
    with pytest.raises(NotFound):
        services.uploads.get(second.id)


def test_abort_frees_bytes(services):
    info = services.uploads.create(bucket="b", key="k", size=10)
    services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"01234")))
    services.uploads.abort(info.id)
    with pytest.raises(NotFound):
        services.uploads.get(info.id)
    assert not holds_private_bytes(services.store, info.id)


def test_unknown_session_ids_are_not_found(services):
    for session_id in ("0" * 32, "../../etc/passwd", "", "Z" * 32):
        with pytest.raises(NotFound):
            services.uploads.get(session_id)


def test_body_shorter_than_declared_keeps_what_arrived(services):
    data = os.urandom(3000)
    info = services.uploads.create(bucket="b", key="k", size=len(data))
    with pytest.raises(IncompleteBody):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[:1200]), length=len(data)))
    assert services.uploads.get(info.id).offset == 1200


def test_small_whole_body_losing_the_race_leaves_nothing_behind(services, monkeypatch):
    """A small whole file is written without a partial file: if another writer takes the session
    over between the read and the commit, its blob is removed and the session is left as it was."""
    body = b"hello" * 20_000  # above FILES_INLINE_MAX: a blob is written before the commit
    info = services.uploads.create(bucket="b", key="k", size=len(body))
    real_put = services.store.put_blob

    def put_then_lose_the_race(blob_id, data):
        real_put(blob_id, data)
        db.session.execute(update(UploadSession).values(lease_token="f" * 32,
                                                        lease_expires_at=services.uploads.clock() + 20))
        db.session.commit()

    monkeypatch.setattr(services.store, "put_blob", put_then_lose_the_race)
    with pytest.raises(LeaseLost):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(body), length=len(body)))
    assert blob_ids(services.store) == []
    assert services.uploads.get(info.id).offset == 0


def test_small_whole_body_with_a_bad_checksum_keeps_nothing(services):
    info = services.uploads.create(bucket="b", key="k", size=5)
    with pytest.raises(ChecksumMismatch):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"hello"), length=5, checksum=("md5", b"0" * 16)))
    assert services.uploads.get(info.id).offset == 0
    assert blob_ids(services.store) == []


def test_bucket_counters_follow_uploads_replacements_and_deletes(services):
    upload(services.uploads, "b", "one", b"12345")
    upload(services.uploads, "b", "two", b"123")
    upload(services.uploads, "b", "one", b"1234567")  # replaces: same count, new size
    upload(services.uploads, "b", "big", os.urandom(2 * MIB))  # the streamed path
    services.objects.delete("b", "two")
    [bucket] = services.objects.list_buckets()
    assert (bucket.name, bucket.object_count, bucket.total_bytes) == ("b", 2, 7 + 2 * MIB)
    assert bucket.updated_at >= bucket.created_at


@local_only
def test_disk_full_keeps_the_durable_offset_and_resumes(services, monkeypatch):
    import errno

    from files_app.errors import InsufficientStorage
    from files_app.storage import local

    data = os.urandom(4 * MIB)
    info = services.uploads.create(bucket="b", key="k", size=len(data))
    real_write, written = local.os.write, [0]

    def write_until_full(fd, view):
        if written[0] >= 2 * MIB + MIB // 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written[0] += len(view)
        return real_write(fd, view)

    monkeypatch.setattr(local.os, "write", write_until_full)
    with pytest.raises(InsufficientStorage) as caught:
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(data), length=len(data)))
    assert caught.value.status == 507
    durable = services.uploads.get(info.id).offset
    assert durable == 2 * MIB == caught.value.offset  # the last checkpoint (every MiB here)
    assert partial_path(services, info.id).stat().st_size == durable  # what was not durable is freed
    monkeypatch.setattr(local.os, "write", real_write)  # space is freed
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[durable:]), offset=durable))
    assert result.object.sha256 == sha256(data)


@local_only
def test_disk_full_on_a_small_file_leaves_no_blob(services, monkeypatch):
    import errno

    from files_app.errors import InsufficientStorage
    from files_app.storage import local

    upload(services.uploads, "b", "old", b"still readable" * 10_000)  # blobs, above FILES_INLINE_MAX
    body = b"hello" * 20_000
    info = services.uploads.create(bucket="b", key="new", size=len(body))

    def full(fd, view):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local.os, "write", full)
    with pytest.raises(InsufficientStorage):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(body), length=len(body)))
    monkeypatch.undo()
    assert len(list(services.store.objects.glob("??/*"))) == 1
    with services.objects.open("b", "old")[1] as stream:
        assert stream.read() == b"still readable" * 10_000
    assert services.uploads.write(info.id, ChunkRequest(ChunkedBody(body), length=len(body))).object.size == len(body)


def test_a_crash_between_blob_and_commit_loses_nothing(services, monkeypatch):
    """The process dies after the blob is in place but before the object's row commits: the
    session keeps its bytes, the client finishes it, and the blob made is found, not made twice."""
    from files_app.services import uploads as uploads_module

    data = os.urandom(3 * MIB)
    info = services.uploads.create(bucket="b", key="k", size=len(data))
    real_publish, real_delete = uploads_module.publish, services.store.delete_blob

    def die(*args, **kwargs):
        raise KeyboardInterrupt("SIGKILL")  # not an Exception: nothing may handle it

    monkeypatch.setattr(uploads_module, "publish", die)
    monkeypatch.setattr(services.store, "delete_blob", lambda blob_id: None)  # a dead process cleans nothing
    with pytest.raises(KeyboardInterrupt):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(data), length=len(data)))
    monkeypatch.setattr(uploads_module, "publish", real_publish)
    monkeypatch.setattr(services.store, "delete_blob", real_delete)
    db.session.rollback()
    db.session.execute(update(UploadSession).values(lease_token=None, lease_expires_at=0.0))  # its lease ran out
    db.session.commit()
    offset = services.uploads.get(info.id).offset
    assert blob_ids(services.store) == [info.id]  # spared by gc while its session lives:
    assert services.uploads.collect_garbage(grace=0)["orphan_blobs"] == 0
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(data[offset:]), offset=offset))
    assert result.object.sha256 == sha256(data)
    assert blob_ids(services.store) == [info.id]
    assert services.uploads.collect_garbage(grace=0)["orphan_blobs"] == 0
    with services.objects.open("b", "k")[1] as stream:
        assert stream.read() == data


@pytest.mark.parametrize("deployment", ["scaled"], indirect=True)
def test_gc_aborts_multipart_uploads_and_frees_blobs_no_row_refers_to(services, seaweedfs):
    store, data = services.store, os.urandom(12 * MIB)
    live = services.uploads.create(bucket="b", key="live", size=len(data))
    # a part, and a held tail
    services.uploads.write(live.id, ChunkRequest(ChunkedBody(data[:9 * MIB]), length=9 * MIB))
    orphan, orphan_blob = "e" * 32, "f" * 32
    store.client.create_multipart_upload(Bucket=store.bucket, Key=f"blobs/{orphan}")
    store.client.put_object(Bucket=store.bucket, Key=f"tails/{orphan}/0123456789abcdef", Body=b"held")
    store.put_blob(orphan_blob, b"nobody's")
    counts = services.uploads.collect_garbage(grace=0)
    assert (counts["orphan_partials"], counts["orphan_blobs"]) == (1, 1)
    assert seaweedfs.uploads(store.bucket) == [f"blobs/{live.id}"]
    assert {key.split("/")[1] for key in seaweedfs.keys(store.bucket, "tails/")} == {live.id}
    assert blob_ids(store) == []
    result = services.uploads.write(live.id, ChunkRequest(ChunkedBody(data[9 * MIB:]), offset=9 * MIB))
    assert result.object.sha256 == sha256(data)
    assert seaweedfs.uploads(store.bucket) == [] and seaweedfs.keys(store.bucket, "tails/") == []


def test_gc_frees_what_a_killed_writer_left_of_a_completed_session(services):
    """A writer killed after starting private bytes the row never named (a second multipart
    upload, a stray partial file): once the session is complete, gc frees them."""
    data = os.urandom(2 * MIB)
    info, _ = upload(services.uploads, "b", "k", data, chunk=MIB)
    store = services.store
    if isinstance(store, LocalBlobStore):
        (store.uploads / info.id).write_bytes(b"left behind")
    else:
        store.client.create_multipart_upload(Bucket=store.bucket, Key=f"blobs/{info.id}")
    assert holds_private_bytes(store, info.id)
    assert services.uploads.collect_garbage(grace=0)["orphan_partials"] == 1
    assert not holds_private_bytes(store, info.id)
    with services.objects.open("b", "k")[1] as stream:
        assert stream.read() == data


def test_no_transaction_is_open_while_a_body_streams(services, monkeypatch):
    """Every upload in this suite passes the check; here one is left open on purpose, and caught."""
    from sqlalchemy import text

    from files_app.models import TransactionOpen

    info = services.uploads.create(bucket="b", key="k", size=3 * MIB)
    real_open = services.store.open_partial

    def open_after_a_forgotten_commit(*args):
        db.session.execute(text("SELECT 1"))  # a read on the way to the body, never committed
        return real_open(*args)

    monkeypatch.setattr(services.store, "open_partial", open_after_a_forgotten_commit)
    with pytest.raises(TransactionOpen):
        services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"x" * 3 * MIB), length=3 * MIB))
    monkeypatch.undo()
    db.session.rollback()
    result = services.uploads.write(info.id, ChunkRequest(ChunkedBody(b"x" * 3 * MIB), length=3 * MIB))
    assert result.object.size == 3 * MIB


def test_a_transaction_block_commits_at_its_end_and_rolls_back_on_any_error(services):
    from files_app.models import transaction

    info = services.uploads.create(bucket="b", key="k", size=10)
    with pytest.raises(KeyboardInterrupt), transaction():  # not even an Exception escapes uncommitted
        db.session.execute(update(UploadSession).values(mime_type="text/broken"))
        raise KeyboardInterrupt
    assert not db.session().in_transaction()
    assert services.uploads.get(info.id).mime_type != "text/broken"
    with transaction():
        db.session.execute(update(UploadSession).values(mime_type="text/kept"))
    assert not db.session().in_transaction()
    assert services.uploads.get(info.id).mime_type == "text/kept"


def test_an_upload_that_cannot_fit_is_refused_at_creation_counting_what_others_were_promised(services, monkeypatch):
    from files_app.errors import InsufficientStorage

    room = 10 * MIB
    monkeypatch.setattr(services.store, "free_bytes", lambda: services.uploads.reserved_space + room)
    first = services.uploads.create(bucket="b", key="one", size=6 * MIB)  # fits
    with pytest.raises(InsufficientStorage) as refused:
        services.uploads.create(bucket="b", key="two", size=6 * MIB)  # alone it would; with "one" it does not
    assert "promised" in refused.value.message
    services.uploads.create(bucket="b", key="small", size=3000)  # a small file is never held up
    services.uploads.abort(first.id)
    services.uploads.create(bucket="b", key="two", size=6 * MIB)  # "one" gave its promise back
    with pytest.raises(InsufficientStorage):
        services.uploads.create(bucket="b", key="three", size=room + 1)
    assert services.objects.list("b").objects == []  # nothing was stored by the refusals
