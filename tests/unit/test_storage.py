"""The local blob store: partial files, durable offsets, publishing, server-made names only."""

from __future__ import annotations

import pytest

from files_app.errors import StorageError
from files_app.storage import LocalBlobStore

SESSION, BLOB = "a" * 32, "b" * 32


@pytest.fixture
def store(tmp_path):
    return LocalBlobStore(tmp_path)


def test_append_sync_finalize_read(store):
    writer = store.open_partial(SESSION, 0)
    writer.write(b"hello ")
    writer.sync()
    writer.close()
    writer = store.open_partial(SESSION, 6)
    writer.write(b"world")
    writer.close()
    store.finalize(SESSION, BLOB, 11)
    assert (store.objects / "bb" / BLOB).exists()
    assert (store.uploads / SESSION).exists()  # kept until the object's row is committed
    store.discard_partial(SESSION)
    assert not (store.uploads / SESSION).exists()
    with store.open_blob(BLOB) as blob:
        assert blob.read() == b"hello world"
    assert list(store.blob_ids(older_than=float("inf"))) == [BLOB]
    store.delete_blob(BLOB)
    with pytest.raises(StorageError):
        store.open_blob(BLOB)


def test_reopen_drops_bytes_past_the_durable_offset(store):
    writer = store.open_partial(SESSION, 0)
    writer.write(b"0123456789")
    writer.close()
    writer = store.open_partial(SESSION, 4)
    writer.write(b"xy")
    writer.close()
    assert (store.uploads / SESSION).read_bytes() == b"0123xy"


def test_lost_durable_bytes_are_a_storage_error(store):
    with pytest.raises(StorageError):
        store.open_partial(SESSION, 5)


def test_finalize_checks_the_size(store):
    writer = store.open_partial(SESSION, 0)
    writer.write(b"abc")
    writer.close()
    with pytest.raises(StorageError):
        store.finalize(SESSION, BLOB, 4)


def test_empty_file_needs_no_partial(store):
    store.finalize(SESSION, BLOB, 0)
    with store.open_blob(BLOB) as blob:
        assert blob.read() == b""


@pytest.mark.parametrize("bad", ["../x", "a" * 31, "A" * 32, "a" * 31 + "/", ""])
def test_only_server_made_ids_become_paths(store, bad):
    with pytest.raises(ValueError):
        store.open_partial(bad, 0)
    with pytest.raises(ValueError):
        store.delete_blob(bad)
