"""The BlobStore protocol: where bytes live. A backend is one module implementing it.

A session's bytes are private to it until `finalize` makes them the blob whose id is the
session's own id; a small whole file goes straight in with `put_blob` under a fresh id. Ids are
server-made: a user's key never names bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import BinaryIO, Protocol

_ID_RE = re.compile(r"[0-9a-f]{32}")


def checked_id(value: str) -> str:
    """Ids come from our own rows, but names of files and objects are built from them: refuse anything else."""
    if not _ID_RE.fullmatch(value):
        raise ValueError(f"not a server-made id: {value!r}")
    return value


def is_id(value: str) -> bool:
    return bool(_ID_RE.fullmatch(value))


class _HeldBytes:
    """BlobReader's extras for bytes held right here: nothing to fetch ahead, no URL of their own."""

    can_sendfile = False  # (bytes in memory have no descriptor)

    def bound(self, end: int) -> None:
        pass

    def direct_url(self, *, content_type: str, disposition: str) -> str | None:
        return None


class FileBlobReader(_HeldBytes, io.FileIO):
    """A blob that is a file on this host: the server can sendfile() it."""

    can_sendfile = True


class MemoryBlobReader(_HeldBytes, io.BytesIO):
    """Bytes already in memory (a file kept inline in its row)."""


class PartialWriter(Protocol):
    """Appends to one session's private bytes, starting at the durable offset it was opened at."""

    def write(self, data: bytes) -> None: ...

    def sync(self) -> None:
        """Make every byte written so far durable; only then may the session's offset advance."""

    def sync_for_finalize(self) -> None:
        """Make the bytes durable when `finalize` follows at once (it makes the name durable)."""

    def rollback(self, offset: int) -> None:
        """Forget everything after `offset`: the offset this writer was opened at, or one it synced."""

    def state(self) -> str | None:
        """The store's own bookkeeping for what is synced (an S3 multipart upload's parts, say).
        The session row keeps it with the offset and hands it back to `open_partial`/`finalize`."""

    def close(self) -> None: ...


class BlobReader(Protocol):
    """A blob's bytes: read from the position `seek` set; a real file where the store can (sendfile)."""

    def read(self, size: int = -1) -> bytes: ...

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def bound(self, end: int) -> None:
        """No byte past `end` will be read: a store that fetches over the network asks for no more."""

    def direct_url(self, *, content_type: str, disposition: str) -> str | None:
        """A URL the client may fetch the bytes from itself (an object store's presigned GET), or None."""

    #: A file on this host, from its current position: the server may sendfile() it.
    can_sendfile: bool

    def close(self) -> None: ...

    def __enter__(self) -> BlobReader: ...

    def __exit__(self, *exc_info) -> None: ...


class BlobStore(Protocol):
    def ensure_ready(self) -> None:
        """At start-up: make what the store needs (an S3 bucket), or fail loudly."""

    def open_partial(self, session_id: str, offset: int, state: str | None) -> PartialWriter:
        """Open a session's bytes for appending at `offset`, dropping anything past it that
        was written but never made durable (a writer that died)."""

    def discard_partial(self, session_id: str, state: str | None) -> None:
        """Free a session's private bytes. `state` None: whatever there is (an orphan)."""

    def finalize(self, session_id: str, size: int, state: str | None) -> str:
        """Make a session's complete, synced bytes durable as the blob named by the session's id,
        and return that id. Done again after a crash before the commit, it finds the blob made."""

    def put_blob(self, blob_id: str, data: bytes) -> None:
        """Store a small file's bytes durably as blob `blob_id` in one go."""

    def can_join(self, sizes: list[int]) -> bool:
        """Whether `join_blobs` can join blobs of these sizes (else the caller copies their bytes)."""

    def join_blobs(self, blob_ids: list[str], into: str) -> str:
        """Make the blob `into` from the blobs `blob_ids`, in order, without their bytes passing
        through this process (S3: a multipart upload of server-side part copies); its id."""

    def put_blob_stream(self, blob_id: str, source: BinaryIO) -> None:
        """Store blob `blob_id` from `source`, read to its end in pieces (never whole in memory; a read may
        return fewer bytes than asked, b"" at the end), durably and whole or not at all: a blob of that id
        already there is replaced (a restore, done again)."""

    def blob_size(self, blob_id: str) -> int | None:
        """The size of blob `blob_id`, or None if the store holds no such blob."""

    def open_blob(self, blob_id: str) -> BlobReader: ...

    def delete_blob(self, blob_id: str) -> None: ...

    def free_bytes(self) -> int | None:
        """Bytes that new uploads may still fill, or None where the store has no such limit (S3)."""

    def release_blob(self, blob_id: str) -> None:
        """Free a blob that no row refers to any more but that a reader may have looked up a moment
        ago: at once where open readers keep their bytes (a file), else later, by gc's orphan sweep."""

    def quarantine_blob(self, blob_id: str) -> None:
        """Move a blob no row refers to out of the way (kept, for a person to look at), for verify."""

    def blob_ids(self, older_than: float) -> Iterator[str]:
        """Blobs last modified before `older_than` (Unix time), for the orphan sweep."""

    def partial_ids(self, older_than: float) -> Iterator[str]:
        """Sessions with private bytes last modified before `older_than`."""
