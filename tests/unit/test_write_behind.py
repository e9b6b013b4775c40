"""Writing in helper threads: the same bytes in the same order, the same digests, a writer's error
at the caller, and no helper to spare means writing in line."""

from __future__ import annotations

import hashlib
import os

import pytest

from files_app.errors import InsufficientStorage
from files_app.hashing import ResumableSha256
from files_app.services.write_behind import WriteBehind


class ListWriter:
    def __init__(self, fail_on: int | None = None):
        self.pieces: list[bytes] = []
        self.fail_on = fail_on

    def write(self, data: bytes) -> None:
        if len(self.pieces) == self.fail_on:
            raise InsufficientStorage("full")
        self.pieces.append(data)


def test_pieces_arrive_in_order_with_the_in_line_hashers_states():
    pieces = [os.urandom(size) for size in (1 << 20, 100, 300 * 1024, 1 << 20, 7, 2 << 20)]
    writer, in_line = ListWriter(), ResumableSha256()
    behind = WriteBehind(writer, ResumableSha256(), hashlib.md5())
    for piece in pieces:
        in_line.update(piece)
        behind.add(piece)
        assert behind.hasher.state() == in_line.state()
    behind.settle()
    assert writer.pieces == pieces
    assert behind.hasher.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert behind.verifier.digest() == hashlib.md5(b"".join(pieces)).digest()


def test_a_write_that_fails_in_a_helper_thread_fails_at_the_caller():
    writer = ListWriter(fail_on=1)
    behind = WriteBehind(writer, ResumableSha256())
    behind.add(os.urandom(1 << 20))
    behind.add(os.urandom(1 << 20))  # fails in the background...
    with pytest.raises(InsufficientStorage):
        behind.settle()  # ...and is raised here
    assert len(writer.pieces) == 1


def test_with_no_helper_free_the_upload_writes_in_its_own_thread():
    import threading

    from files_app.services import write_behind

    helpers = write_behind._helpers()
    taken = 0
    while helpers.free.acquire(blocking=False):
        taken += 1
    try:
        threads = []
        writer = ListWriter()
        writer.write = lambda data: threads.append(threading.current_thread()) or writer.pieces.append(data)
        behind = WriteBehind(writer, ResumableSha256())
        behind.add(os.urandom(1 << 20))
        assert behind._pending is None and threads == [threading.current_thread()]
    finally:
        for _ in range(taken):
            helpers.free.release()
    assert taken >= 2
