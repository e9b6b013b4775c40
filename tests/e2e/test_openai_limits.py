"""OpenAI Uploads' limits on a real gunicorn server, driven by the `openai` SDK (#22):

- parts sent all at once never add up past the Upload's `bytes`: of 8 parallel 1 MiB parts for a
  3 MiB Upload exactly 3 are kept, the others get 413 too_large, and the counters stay true;
- a completion SIGKILLed midway (the Upload `completing` in the database) does not block its
  Upload: after a restart a retry of complete finishes it (the same file if the killed one had
  published it), or a cancel cancels it, once the claim is older than FILES_LEASE_TTL.

Threads return what they were answered; the main thread asserts. Every wait is on a condition,
bounded by a deadline."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.e2e.test_counters import assert_no_drift
from tests.e2e.test_openai_sdk import create_token, sdk

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
THREADS = 8


def _send_part(client: openai.OpenAI, upload_id: str, data: bytes):
    """A part's answer: the part, or the error (asserted on in the main thread)."""
    try:
        return client.uploads.parts.create(upload_id, data=data)
    except openai.APIError as error:
        return error


def test_parallel_parts_never_pass_the_uploads_bytes(any_server):
    client = sdk(any_server, create_token(any_server, "write"))
    upload = client.uploads.create(bytes=3 * MIB, filename="three.bin", mime_type="application/octet-stream",
                                   purpose="batch")
    pieces = [os.urandom(MIB) for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def send(piece: bytes):
        start.wait(timeout=30)  # all at once
        return _send_part(client, upload.id, piece)

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(send, pieces))
    accepted = [(piece, answer) for piece, answer in zip(pieces, answers, strict=True)
                if isinstance(answer, openai.types.uploads.UploadPart)]
    refused = [answer for answer in answers if not isinstance(answer, openai.types.uploads.UploadPart)]
    assert len(accepted) == 3, answers
    assert all(isinstance(error, openai.APIStatusError) and error.status_code == 413
               and error.body["code"] == "too_large" and error.body["type"] == "invalid_request_error"
               for error in refused), refused
    assert len(refused) == THREADS - 3

    content = b"".join(piece for piece, _ in accepted)
    done = client.uploads.complete(upload.id, part_ids=[part.id for _, part in accepted],
                                   md5=hashlib.md5(content).hexdigest())
    assert done.status == "completed" and done.bytes == done.file.bytes == 3 * MIB
    assert client.files.content(done.file.id).content == content
    assert_no_drift(any_server)


# --- a completion killed midway ---------------------------------------------------------------
PART = 16 * MIB
PARTS = 4


def _upload_row(server, upload_id: str) -> tuple[str, str | None] | None:
    """(status, file_id) of the Upload, read from the server's SQLite database (read-only)."""
    connection = sqlite3.connect(f"file:{server.data_dir / 'files.db'}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute("SELECT status, file_id FROM openai_uploads WHERE id = ?", (upload_id,)).fetchone()
    finally:
        connection.close()


def _published(server, key: str) -> bool:
    connection = sqlite3.connect(f"file:{server.data_dir / 'files.db'}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute("SELECT 1 FROM objects WHERE key = ?", (key,)).fetchone() is not None
    finally:
        connection.close()


def _in_parts(client: openai.OpenAI, content: bytes, filename: str):
    """An Upload of `content` with its parts (PART bytes each) sent: (upload, part ids in order)."""
    upload = client.uploads.create(bytes=len(content), filename=filename, mime_type="application/octet-stream",
                                   purpose="assistants")
    return upload, [client.uploads.parts.create(upload.id, data=content[i:i + PART]).id
                    for i in range(0, len(content), PART)]


def _killed_while_completing(server, client: openai.OpenAI, content: bytes):
    """An Upload of PARTS parts whose completion is SIGKILLed while the Upload is `completing`:
    (upload id, part ids, the claim's file id, whether its object was published by then,
    what the killed completion was answered)."""
    upload, part_ids = _in_parts(client, content, "killed.bin")
    answer: list = []

    def complete():
        try:
            answer.append(client.uploads.complete(upload.id, part_ids=part_ids))
        except openai.APIError as error:
            answer.append(error)

    completing = threading.Thread(target=complete)
    completing.start()
    deadline = time.monotonic() + 20
    row = None
    while time.monotonic() < deadline and not answer:  # polled: the claim is short-lived
        row = _upload_row(server, upload.id)
        if row is not None and row[0] == "completing":
            break
    server.kill()
    completing.join(timeout=30)
    assert not completing.is_alive()
    assert row is not None and row[0] == "completing", (row, answer)
    status, claim = _upload_row(server, upload.id)  # after the kill: what the restart finds
    published = claim is not None and _published(server, f"{claim}/killed.bin")
    return upload.id, part_ids, status, claim, published, answer[0]


@pytest.fixture
def short_lease(server_factory):
    """A local server whose claims and leases go stale after 1 s (the smallest FILES_LEASE_TTL)."""
    return server_factory(FILES_LEASE_TTL="1").start()


def _until_not_conflict(call, seconds: float = 20):
    """`call()` again while it answers 409 (a claim still fresh), until the deadline."""
    deadline, conflicts = time.monotonic() + seconds, 0
    while True:
        try:
            return call(), conflicts
        except openai.ConflictError:
            conflicts += 1
            if time.monotonic() > deadline:
                raise


def test_a_killed_completion_is_finished_by_a_retry(short_lease):
    server = short_lease
    client = sdk(server, create_token(server, "write"))
    content = os.urandom(PARTS * PART)
    upload_id, part_ids, status, claim, published, first = _killed_while_completing(server, client, content)
    assert isinstance(first, openai.APIConnectionError), first  # it never answered
    server.start(same_port=True)

    done, conflicts = _until_not_conflict(lambda: client.uploads.complete(upload_id, part_ids=part_ids))
    assert done.status == "completed" and done.file.bytes == len(content)
    if status == "completed" or published:  # the killed completion had made its file: it is the Upload's
        assert done.file.id == claim
    else:
        assert status == "completing" and done.file.id != claim
    downloaded = client.files.content(done.file.id).content
    assert hashlib.sha256(downloaded).hexdigest() == hashlib.sha256(content).hexdigest()
    # The retry's answer again, and the killed claim's leftovers gone: one file, true counters.
    assert client.uploads.complete(upload_id, part_ids=part_ids).file.id == done.file.id
    assert [file.id for file in client.files.list()] == [done.file.id]
    assert_no_drift(server)
    print(f"killed at status={status} published={published}; {conflicts} conflicts before the retry went through")


def test_a_killed_completion_is_cancelled_by_a_cancel(short_lease):
    server = short_lease
    client = sdk(server, create_token(server, "write"))
    content = os.urandom(PARTS * PART)
    upload_id, part_ids, status, claim, published, first = _killed_while_completing(server, client, content)
    assert isinstance(first, openai.APIConnectionError), first
    server.start(same_port=True)

    def cancel():
        try:
            return client.uploads.cancel(upload_id)
        except openai.BadRequestError as error:  # the killed completion had made its file
            return error

    cancelled, conflicts = _until_not_conflict(cancel)
    if status == "completed" or published:
        assert isinstance(cancelled, openai.BadRequestError) and cancelled.body["code"] == "upload_completed"
        assert client.uploads.complete(upload_id, part_ids=part_ids).file.id == claim
        assert [file.id for file in client.files.list()] == [claim]
    else:
        assert not isinstance(cancelled, Exception) and cancelled.status == "cancelled" and cancelled.file is None
        assert client.files.list().data == []
        with pytest.raises(openai.BadRequestError) as refused:
            client.uploads.complete(upload_id, part_ids=part_ids)
        assert refused.value.body["code"] == "upload_cancelled"
    assert_no_drift(server)
    print(f"killed at status={status} published={published}; {conflicts} conflicts before the cancel went through")


def test_a_live_completion_is_never_taken_over(short_lease):
    """A completion that is alive (its joining session's lease renewed) is never taken over by
    retries sent all the while it runs, even past FILES_LEASE_TTL (1 s): they get 409, then its
    answer. (6 parts of 16 MiB with an md5 to check: about a second on 2 cores.)"""
    server = short_lease
    client = sdk(server, create_token(server, "write"))
    content = os.urandom(6 * PART)
    upload, part_ids = _in_parts(client, content, "live.bin")
    answer: list = []

    def complete():
        try:
            answer.append(client.uploads.complete(upload.id, part_ids=part_ids, md5=hashlib.md5(content).hexdigest()))
        except openai.APIError as error:
            answer.append(error)

    completing = threading.Thread(target=complete)
    began = time.monotonic()
    completing.start()
    deadline = began + 20
    while not answer and time.monotonic() < deadline:  # the thread's completion claims first
        row = _upload_row(server, upload.id)
        if row is not None and row[0] != "pending":
            break
    retries = []
    while not answer and time.monotonic() < deadline:  # then retries, for as long as it runs
        try:
            retries.append((time.monotonic() - began, client.uploads.complete(upload.id, part_ids=part_ids)))
        except openai.APIError as error:
            retries.append((time.monotonic() - began, error))
    completing.join(timeout=30)
    took = time.monotonic() - began
    [first] = answer
    assert not isinstance(first, Exception), (first, retries[-5:])  # before the fix: "taken over", its file row gone
    assert first.status == "completed"
    assert all(isinstance(retry, openai.ConflictError) or retry.file.id == first.file.id for _, retry in retries), \
        [retry for retry in retries if not isinstance(retry[1], openai.ConflictError)]
    assert [file.id for file in client.files.list()] == [first.file.id]
    assert hashlib.sha256(client.files.content(first.file.id).content).hexdigest() == \
        hashlib.sha256(content).hexdigest()
    assert_no_drift(server)
    late = sum(1 for at, _ in retries if at > 1)
    print(f"{len(retries)} retries ({late} after the TTL) in the {took:.2f} s the completion ran")
