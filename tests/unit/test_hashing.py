"""The resumable sha256 gives hashlib's answers, across saved and restored states."""

from __future__ import annotations

import hashlib
import os

from files_app.hashing import STATE_SIZE, HashAhead, ResumableSha256


def test_matches_hashlib_across_restores():
    data = os.urandom(300_001)
    hasher = ResumableSha256()
    for start in range(0, len(data), 65_537):
        hasher = ResumableSha256.from_state(hasher.state())
        hasher.update(data[start:start + 65_537])
    assert len(hasher.state()) == STATE_SIZE
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()


def test_hexdigest_does_not_consume_the_state():
    hasher = ResumableSha256.from_state(None)
    hasher.update(b"abc")
    first = hasher.hexdigest()
    assert hasher.hexdigest() == first == hashlib.sha256(b"abc").hexdigest()
    hasher.update(b"def")
    assert hasher.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_empty():
    assert ResumableSha256().hexdigest() == hashlib.sha256(b"").hexdigest()


def test_hash_ahead_gives_the_same_digest_and_states_as_hashing_in_line():
    """Pieces hashed in a helper thread, big and small mixed: the same state after every piece as
    a hasher fed in line, and the same digest and chunk checksum at the end."""
    pieces = [os.urandom(size) for size in (1 << 20, 100, 300 * 1024, 1 << 20, 7, 2 << 20)]
    in_line, ahead = ResumableSha256(), HashAhead(ResumableSha256(), hashlib.md5())
    for piece in pieces:
        in_line.update(piece)
        ahead.add(piece)
        assert ahead.state() == in_line.state()
    ahead.settle()
    assert ahead.hasher.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()
    assert ahead.verifier.digest() == hashlib.md5(b"".join(pieces)).digest()
