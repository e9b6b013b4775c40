"""The OpenAI API's service without HTTP, in both configurations: expiry and gc, freed bytes,
crash leftovers, and the claim that keeps a completion and a cancel apart."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import select

from files_app.errors import Conflict, InvalidInput, NotFound, QuotaExceeded, TooLarge
from files_app.models import OpenAIFile, OpenAIUpload, UploadSession, db
from files_app.services.records import BytesBody
from tests.helpers import blob_ids

MIB = 1024 * 1024


@pytest.fixture
def openai_service(services):
    return services.openai


def make_file(service, content: bytes, purpose: str = "assistants", expires_after: int | None = None,
              name: str = "f.txt"):
    staged = service.stage_file(filename=name, mime_type=None, body=BytesBody(content), owner=None)
    return service.commit_file(staged, purpose=purpose, expires_after=expires_after)


def move_clock(services, seconds: float) -> None:
    later = services.openai.clock() + seconds
    services.openai.clock = services.uploads.clock = services.quotas.clock = lambda: later


def test_an_expired_file_vanishes_at_once_and_gc_frees_its_bytes(services, openai_service):
    keep = make_file(openai_service, os.urandom(2 * MIB))
    soon = make_file(openai_service, os.urandom(2 * MIB), purpose="batch", expires_after=3600)
    assert soon.expires_at == soon.created_at + 3600
    blobs = blob_ids(services.store)
    assert len(blobs) == 2
    move_clock(services, 3601)
    with pytest.raises(NotFound):
        openai_service.get_file(soon.id)
    assert [f.id for f in openai_service.list_files().files] == [keep.id]
    assert services.objects.get("openai", soon.key).size == 2 * MIB  # not yet collected
    counts = services.collect_garbage()
    assert counts["expired_openai_files"] == 1
    with pytest.raises(NotFound):
        services.objects.get("openai", soon.key)
    assert len(blob_ids(services.store)) == 1
    with db.engine.connect() as connection:
        assert connection.execute(select(OpenAIFile.id)).scalars().all() == [keep.id]


def test_a_row_left_without_its_object_is_invisible_then_collected(services, openai_service):
    staged = openai_service.stage_file(filename="crash.txt", mime_type=None, body=BytesBody(b"abc"), owner=None)
    file = openai_service.commit_file(staged, purpose="assistants", expires_after=None)
    services.objects.delete("openai", file.key)  # through the seed's routes, or a crash before the publish
    with pytest.raises(NotFound):
        openai_service.get_file(file.id)
    assert openai_service.list_files().files == []
    assert services.collect_garbage(grace=3600)["stray_openai_files"] == 0  # too young to be sure
    move_clock(services, 7200)
    assert services.collect_garbage(grace=3600)["stray_openai_files"] == 1


def test_a_refused_file_leaves_nothing(services, openai_service):
    staged = openai_service.stage_file(filename="x.bin", mime_type=None, body=BytesBody(os.urandom(MIB)), owner=None)
    with pytest.raises(InvalidInput):
        openai_service.commit_file(staged, purpose="weights", expires_after=None)
    with db.engine.connect() as connection:
        assert connection.execute(select(UploadSession.id)).all() == []
        assert connection.execute(select(OpenAIFile.id)).all() == []
    assert blob_ids(services.store) == []


def part(service, upload_id: str, content: bytes):
    return service.add_part(upload_id, BytesBody(content), owner=None)


def session_rows() -> list[str]:
    """The parts' sessions (a completed upload's own session stays for its expiry, as any does)."""
    with db.engine.connect() as connection:
        return connection.execute(select(UploadSession.id).where(
            UploadSession.kind == "partial", UploadSession.state == "completed")).scalars().all()


def promise_rows() -> list[str]:
    with db.engine.connect() as connection:
        return connection.execute(select(UploadSession.id).where(
            UploadSession.kind == "partial", UploadSession.state == "active")).scalars().all()


def test_cancel_frees_every_parts_bytes(services, openai_service):
    upload = openai_service.create_upload(filename="c.bin", purpose="batch", size=3 * MIB, mime_type="text/plain",
                                          expires_after=None, owner=None)
    for _ in range(3):
        part(openai_service, upload.id, os.urandom(MIB))
    assert len(session_rows()) == 3 and len(blob_ids(services.store)) == 3
    assert openai_service.cancel_upload(upload.id, owner=None).status == "cancelled"
    assert session_rows() == [] and blob_ids(services.store) == []


def test_expired_uploads_say_so_and_gc_frees_their_parts(services, openai_service):
    upload = openai_service.create_upload(filename="e.bin", purpose="batch", size=MIB, mime_type="text/plain",
                                          expires_after=None, owner=None)
    first = part(openai_service, upload.id, os.urandom(MIB))
    move_clock(services, 3601)
    with pytest.raises(InvalidInput) as expired:
        openai_service.complete_upload(upload.id, part_ids=[first.id], md5=None, owner=None)
    assert expired.value.code == "upload_expired"
    with pytest.raises(InvalidInput):
        part(openai_service, upload.id, b"late")
    assert services.collect_garbage()["expired_openai_uploads"] == 1
    assert session_rows() == [] and blob_ids(services.store) == []
    with pytest.raises(NotFound):
        openai_service.cancel_upload(upload.id, owner=None)


def test_completion_joins_parts_in_the_order_given_and_frees_them(services, openai_service):
    pieces = [os.urandom(MIB), os.urandom(MIB + 1), os.urandom(7)]
    upload = openai_service.create_upload(filename="j.bin", purpose="vision", size=sum(map(len, pieces)),
                                          mime_type="application/octet-stream", expires_after=86400, owner=None)
    parts = [part(openai_service, upload.id, piece) for piece in pieces]
    order = [2, 0, 1]
    content = b"".join(pieces[i] for i in order)
    done = openai_service.complete_upload(upload.id, part_ids=[parts[i].id for i in order],
                                          md5=hashlib.md5(content).hexdigest(), owner=None)
    assert done.status == "completed" and done.file.expires_at == done.file.created_at + 86400
    with services.objects.open("openai", done.file.key)[1] as stream:
        assert stream.read() == content
    assert session_rows() == [] and len(blob_ids(services.store)) == 1  # the file's blob alone


def test_a_cancel_cannot_free_parts_a_completion_is_reading(services, openai_service):
    upload = openai_service.create_upload(filename="r.bin", purpose="batch", size=MIB, mime_type="text/plain",
                                          expires_after=None, owner=None)
    only = part(openai_service, upload.id, os.urandom(MIB))
    assert openai_service._claim_pending(upload.id)  # a completion under way elsewhere
    with pytest.raises(Conflict):
        openai_service.cancel_upload(upload.id, owner=None)
    with pytest.raises(Conflict):
        openai_service.complete_upload(upload.id, part_ids=[only.id], md5=None, owner=None)
    assert len(blob_ids(services.store)) == 1
    with db.engine.connect() as connection:
        assert connection.execute(select(OpenAIUpload.status)).scalar_one() == "completing"


def test_a_part_past_64_mib_keeps_nothing(services, openai_service, monkeypatch):
    monkeypatch.setattr("files_app.services.openai_files.PART_MAX", MIB)
    upload = openai_service.create_upload(filename="p.bin", purpose="batch", size=2 * MIB, mime_type="text/plain",
                                          expires_after=None, owner=None)
    with pytest.raises(TooLarge):
        part(openai_service, upload.id, os.urandom(MIB + 1))
    assert session_rows() == [] and blob_ids(services.store) == []


def test_uploads_are_their_creators(services, openai_service):
    upload = openai_service.create_upload(filename="o.bin", purpose="batch", size=1, mime_type="text/plain",
                                          expires_after=None, owner="token:1")
    with pytest.raises(NotFound):
        openai_service.add_part(upload.id, BytesBody(b"x"), owner="token:2")
    with pytest.raises(NotFound):
        openai_service.cancel_upload(upload.id, owner="token:2")
    assert openai_service.add_part(upload.id, BytesBody(b"x"), owner="token:1").upload_id == upload.id


@pytest.mark.parametrize("deployment", ["local"], indirect=True)  # EXPLAIN QUERY PLAN is SQLite's
def test_lists_walk_the_primary_key(services, openai_service):
    """A page costs the same at a million files: the plan walks an index, it sorts nothing."""
    from files_app.services.openai_files import _VISIBLE, _files

    query = _VISIBLE.params(now=0).where(_files.c.id < "file-f").order_by(_files.c.id.desc()).limit(101)
    compiled = query.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.engine.connect() as connection:
        plan = " ".join(str(row) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", ()))
    assert "TEMP B-TREE" not in plan, plan


def test_a_wrong_md5_publishes_nothing_and_the_upload_stays_pending(services, openai_service):
    pieces = [os.urandom(MIB), os.urandom(MIB)]
    upload = openai_service.create_upload(filename="m.bin", purpose="batch", size=2 * MIB, mime_type="text/plain",
                                          expires_after=None, owner=None)
    parts = [part(openai_service, upload.id, piece) for piece in pieces]
    with pytest.raises(InvalidInput) as refused:
        openai_service.complete_upload(upload.id, part_ids=[p.id for p in parts], md5="0" * 32, owner=None)
    assert refused.value.code == "md5_mismatch"
    assert openai_service.list_files().files == []
    with db.engine.connect() as connection:  # no session left of the attempt; the parts are kept
        assert connection.execute(select(UploadSession.kind)).scalars().all() == ["partial", "partial"]
    assert len(blob_ids(services.store)) == 2
    done = openai_service.complete_upload(upload.id, part_ids=[p.id for p in parts],
                                          md5=hashlib.md5(b"".join(pieces)).hexdigest(), owner=None)
    assert done.status == "completed" and done.file.bytes == 2 * MIB


def test_an_empty_upload_checks_its_md5_too(openai_service):
    upload = openai_service.create_upload(filename="e", purpose="batch", size=0, mime_type="text/plain",
                                          expires_after=None, owner=None)
    with pytest.raises(InvalidInput):
        openai_service.complete_upload(upload.id, part_ids=[], md5="0" * 32, owner=None)
    done = openai_service.complete_upload(upload.id, part_ids=[], md5=hashlib.md5(b"").hexdigest(), owner=None)
    assert done.file.bytes == 0


def test_big_parts_are_joined_by_the_object_store_itself(services, openai_service, deployment, monkeypatch):
    """On S3, parts of at least 5 MiB become the parts of one multipart upload by server-side
    copies (their bytes are read once, to hash them); a local disk copies them."""
    joined = []
    join = services.store.join_blobs
    monkeypatch.setattr(services.store, "join_blobs", lambda ids, into: joined.append(ids) or join(ids, into))
    pieces = [os.urandom(5 * MIB), os.urandom(5 * MIB + 3), os.urandom(1)]
    upload = openai_service.create_upload(filename="big.bin", purpose="batch", size=sum(map(len, pieces)),
                                          mime_type="application/octet-stream", expires_after=None, owner=None)
    parts = [part(openai_service, upload.id, piece) for piece in pieces]
    content = pieces[1] + pieces[0] + pieces[2]
    with pytest.raises(InvalidInput):  # a wrong md5: nothing joined, nothing published
        openai_service.complete_upload(upload.id, part_ids=[parts[1].id, parts[0].id, parts[2].id], md5="1" * 32,
                                       owner=None)
    assert joined == [] and len(blob_ids(services.store)) == 3
    done = openai_service.complete_upload(upload.id, part_ids=[parts[1].id, parts[0].id, parts[2].id],
                                          md5=hashlib.md5(content).hexdigest(), owner=None)
    info, stream = services.objects.open("openai", done.file.key)
    with stream:
        assert stream.read() == content
    assert info.sha256 == hashlib.sha256(content).hexdigest()
    assert len(joined) == (1 if deployment.get("FILES_STORAGE") == "s3" else 0)
    assert session_rows() == [] and len(blob_ids(services.store)) == 1


def new_upload(service, size: int, owner: str | None = None):
    return service.create_upload(filename="q.bin", purpose="batch", size=size, mime_type="text/plain",
                                 expires_after=None, owner=owner)


def test_parts_never_add_up_past_the_uploads_bytes(services, openai_service):
    upload = new_upload(openai_service, 10)
    with pytest.raises(TooLarge) as refused:  # the attack: 900 KB parts for an Upload of 10 bytes
        part(openai_service, upload.id, os.urandom(900 * 1024))
    assert refused.value.code == "too_large" and "10" in refused.value.message
    first = part(openai_service, upload.id, b"123456")
    with pytest.raises(TooLarge):
        part(openai_service, upload.id, b"12345")  # 11 > 10: refused, the first kept
    second = part(openai_service, upload.id, b"7890")
    with pytest.raises(TooLarge):
        part(openai_service, upload.id, b"x")
    assert len(session_rows()) == 2
    done = openai_service.complete_upload(upload.id, part_ids=[first.id, second.id], md5=None, owner=None)
    with services.objects.open("openai", done.file.key)[1] as stream:
        assert stream.read() == b"1234567890"
    assert session_rows() == [] and promise_rows() == []


def test_an_uploads_bytes_count_against_the_quota_until_it_ends(services, openai_service):
    services.quotas.set("token:7", MIB, None)
    first = new_upload(openai_service, MIB, owner="token:7")
    openai_service.add_part(first.id, BytesBody(os.urandom(MIB // 2)), owner="token:7")  # half of it
    assert services.quotas.get("token:7").usage.promised_bytes == MIB // 2
    with pytest.raises(QuotaExceeded):  # before: parts were counted nowhere
        new_upload(openai_service, MIB, owner="token:7")
    openai_service.cancel_upload(first.id, owner="token:7")  # given back
    assert services.quotas.get("token:7").usage.promised_bytes == 0
    second = new_upload(openai_service, MIB, owner="token:7")
    openai_service.add_part(second.id, BytesBody(os.urandom(MIB // 2)), owner="token:7")
    move_clock(services, 3601)  # expired: given back by gc
    services.collect_garbage()
    assert services.quotas.get("token:7").usage.promised_bytes == 0
    third = new_upload(openai_service, MIB, owner="token:7")
    assert second.id != third.id
    only = openai_service.add_part(third.id, BytesBody(os.urandom(MIB)), owner="token:7")
    done = openai_service.complete_upload(third.id, part_ids=[only.id], md5=None, owner="token:7")
    assert done.file.bytes == MIB  # completing at the quota's edge: its bytes counted once
    usage = services.quotas.get("token:7").usage
    assert (usage.bytes, usage.promised_bytes) == (MIB, 0)


class Killed(BaseException):
    """A SIGKILL, as far as the code that was running can tell: nothing after it runs."""


def crash_at(monkeypatch, target, name):
    def killed(*args, **kwargs):
        raise Killed()
    monkeypatch.setattr(target, name, killed)


@pytest.mark.parametrize("published", [False, True])
def test_a_completion_killed_midway_is_finished_by_a_retry(services, openai_service, monkeypatch, published):
    pieces = [os.urandom(MIB), os.urandom(MIB)]
    upload = new_upload(openai_service, 2 * MIB)
    parts = [part(openai_service, upload.id, piece) for piece in pieces]
    with monkeypatch.context() as crash:
        for cleanup in ("_release_claim", "_forget_rows"):  # nothing runs after a kill
            crash_at(crash, openai_service, cleanup)
        crash_at(crash, openai_service, "_completed" if published else "_join")
        with pytest.raises(Killed):
            openai_service.complete_upload(upload.id, part_ids=[p.id for p in parts], md5=None, owner=None)
    with db.engine.connect() as connection:
        assert connection.execute(select(OpenAIUpload.status)).scalar_one() == "completing"
    with pytest.raises(Conflict):  # a completion could still be under way
        openai_service.complete_upload(upload.id, part_ids=[p.id for p in parts], md5=None, owner=None)
    move_clock(services, services.uploads.lease_ttl + 1)  # its claim is stale now: before, 409 until it expired
    done = openai_service.complete_upload(upload.id, part_ids=[p.id for p in parts],
                                          md5=hashlib.md5(b"".join(pieces)).hexdigest(), owner=None)
    assert done.status == "completed"
    with services.objects.open("openai", done.file.key)[1] as stream:
        assert stream.read() == b"".join(pieces)
    assert [f.id for f in openai_service.list_files().files] == [done.file.id]
    assert session_rows() == [] and promise_rows() == []


def test_a_completion_killed_midway_can_be_cancelled(services, openai_service, monkeypatch):
    upload = new_upload(openai_service, MIB)
    only = part(openai_service, upload.id, os.urandom(MIB))
    with monkeypatch.context() as crash:
        for cleanup in ("_release_claim", "_forget_rows", "_join"):
            crash_at(crash, openai_service, cleanup)
        with pytest.raises(Killed):
            openai_service.complete_upload(upload.id, part_ids=[only.id], md5=None, owner=None)
    with pytest.raises(Conflict):
        openai_service.cancel_upload(upload.id, owner=None)
    move_clock(services, services.uploads.lease_ttl + 1)
    assert openai_service.cancel_upload(upload.id, owner=None).status == "cancelled"
    assert session_rows() == [] and promise_rows() == [] and blob_ids(services.store) == []
    assert openai_service.list_files().files == []
