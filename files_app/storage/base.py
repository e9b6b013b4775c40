"""The BlobStore protocol: where bytes live. A second backend is one file implementing it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol


class PartialWriter(Protocol):
    """Appends to one session's private bytes, starting at the durable offset it was opened at."""

    def write(self, data: bytes) -> None: ...

    def sync(self) -> None:
        """Make every byte written so far durable; only then may the session's offset advance."""

    def sync_for_finalize(self) -> None:
        """Make the bytes durable when `finalize` follows at once (it makes the name durable)."""

    def rollback(self, offset: int) -> None:
        """Forget everything after `offset` (a refused or corrupt chunk)."""

    def close(self) -> None: ...


class BlobStore(Protocol):
    def open_partial(self, session_id: str, offset: int) -> PartialWriter:
        """Open a session's bytes for appending at `offset`, dropping anything past it that
        was written but never made durable (a writer that died)."""

    def open_partial_reader(self, session_id: str) -> BinaryIO:
        """A complete session's bytes, for concatenating tus partial uploads."""

    def discard_partial(self, session_id: str) -> None: ...

    def finalize(self, session_id: str, blob_id: str, size: int) -> None:
        """Make a session's complete, synced bytes durable as blob `blob_id`, leaving the session's
        own copy in place until `discard_partial` (so a crash before the commit loses nothing)."""

    def put_blob(self, blob_id: str, data: bytes) -> None:
        """Store a small file's bytes durably as blob `blob_id` in one go."""

    def open_blob(self, blob_id: str) -> BinaryIO:
        """A binary file object positioned at 0; a real file where the store can (for sendfile)."""

    def delete_blob(self, blob_id: str) -> None: ...

    def blob_ids(self, older_than: float) -> Iterator[str]:
        """Blobs last modified before `older_than` (Unix time), for the orphan sweep."""

    def partial_ids(self, older_than: float) -> Iterator[str]:
        """Sessions with private bytes last modified before `older_than`."""
