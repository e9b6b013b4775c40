"""What backup and restore ask of both blob stores (local disk, S3 on a real SeaweedFS): a blob put from
a stream in pieces (S3: several parts), replacing one already there, and a blob's size or None."""

from __future__ import annotations

import os

from tests.unit.test_storage import PART, store  # noqa: F401 - the fixture: both stores

BLOB = "c" * 32


class Pieces:
    """A stream that hands out at most 64 KiB a read and cannot seek, as the restore's hashing reader."""

    def __init__(self, data: bytes):
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        size = 65536 if size < 0 else min(size, 65536)
        piece = self._data[self._at:self._at + size]
        self._at += len(piece)
        return piece


def test_a_blob_is_put_from_a_stream_and_replaced_whole(store):  # noqa: F811
    assert store.blob_size(BLOB) is None
    data = os.urandom(PART + 123_456)  # past one part: a multipart upload on S3
    store.put_blob_stream(BLOB, Pieces(data))
    assert store.blob_size(BLOB) == len(data)
    with store.open_blob(BLOB) as reader:
        assert reader.read() == data
    store.put_blob_stream(BLOB, Pieces(b"shorter"))  # a restore run again replaces what it finds
    assert store.blob_size(BLOB) == 7
    with store.open_blob(BLOB) as reader:
        assert reader.read() == b"shorter"
    store.put_blob_stream(BLOB, Pieces(b""))
    assert store.blob_size(BLOB) == 0


def test_a_local_blob_put_that_fails_leaves_nothing(tmp_path):
    from files_app.storage import LocalBlobStore

    local = LocalBlobStore(tmp_path)

    class Breaks(Pieces):
        def read(self, size: int = -1) -> bytes:
            if self._at > 100_000:
                raise OSError("the backup's disk went away")
            return super().read(size)

    try:
        local.put_blob_stream(BLOB, Breaks(os.urandom(300_000)))
    except OSError:
        pass
    assert local.blob_size(BLOB) is None
    assert list(local.objects.rglob("*" + BLOB + "*")) == []  # no draft left either
