"""The resumable sha256 gives hashlib's answers, across saved and restored states."""

from __future__ import annotations

import hashlib
import os

from files_app.hashing import STATE_SIZE, ResumableSha256


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

