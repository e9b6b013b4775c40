"""The plain values the upload path passes between its layers: no rows, no HTTP."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import Protocol

from ..models import SessionKind, SessionState


class Body(Protocol):
    def read(self, size: int) -> bytes:
        """Up to `size` bytes, b"" at the end; raises IncompleteBody if the body breaks off."""


class BytesBody:
    """Bytes already in hand, read as a body."""

    def __init__(self, data: bytes = b""):
        self._stream = io.BytesIO(data)

    def read(self, size: int) -> bytes:
        return self._stream.read(size)


@dataclass(frozen=True)
class ChunkRequest:
    """One request's bytes for a session, parsed by whichever dialect received it.

    `offset`: where the client thinks this chunk starts (None: wherever the session is);
    `length`: the declared body length (None when chunked); `checksum`: an (algorithm, digest) the
    chunk must match or be discarded; `declared_size`: the upload's length, when a tus client
    deferred it until now; `sha256`: the whole file's, checked if this chunk completes the upload
    (a client that hashes while it reads knows it only at the end).
    """

    body: Body
    offset: int | None = None
    length: int | None = None
    checksum: tuple[str, bytes] | None = None
    declared_size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class SessionInfo:
    """A session as the API shows it."""

    id: str
    kind: SessionKind
    bucket: str | None
    key: str | None
    mime_type: str
    size: int | None  # None while a tus client defers the length
    offset: int
    completed: bool
    expires_at: float
    tus_metadata: str | None = None
    tus_concat: str | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A session's row as the upload path works with it (the lease claim returns one)."""

    id: str
    kind: SessionKind
    bucket_id: int | None
    bucket: str | None
    key: str | None
    mime_type: str
    size: int | None
    offset: int
    state: SessionState
    expected_sha256: str | None
    create_only: bool
    hash_state: bytes | None
    store_state: str | None
    expires_at: float
    owner: str | None
    lease_expires_at: float
    tus_metadata: str | None
    tus_concat: str | None

    @classmethod
    def from_row(cls, row) -> SessionRecord:
        return cls(row.id, SessionKind(row.kind), row.bucket_id, row.bucket, row.key, row.mime_type, row.size,
                   row.offset, SessionState(row.state), row.expected_sha256, bool(row.create_only), row.hash_state,
                   row.store_state, row.expires_at, row.owner, row.lease_expires_at, row.tus_metadata,
                   row.tus_concat)

    @property
    def completed(self) -> bool:
        return self.state == SessionState.COMPLETED

    def is_whole_file(self, chunk: ChunkRequest, small: int) -> bool:
        """The chunk is this untouched upload's whole content, and small enough to hold in memory."""
        return (self.kind == SessionKind.UPLOAD and self.offset == 0 and chunk.declared_size is None
                and chunk.length is not None and 0 < chunk.length <= small and chunk.length == self.size)

    def info(self, **changes) -> SessionInfo:
        info = SessionInfo(self.id, self.kind, self.bucket, self.key, self.mime_type, self.size, self.offset,
                           self.completed, self.expires_at, self.tus_metadata, self.tus_concat)
        return replace(info, **changes) if changes else info


@dataclass(frozen=True)
class Target:
    """Where a finished upload's bytes become visible."""

    bucket: str
    bucket_id: int | None  # None: found (or made) by name when the file is published
    key: str
    mime_type: str
    size: int
    create_only: bool = False
    expected_sha256: str | None = None
    owner: str | None = None  # who uploads it

    @classmethod
    def of(cls, record: SessionRecord, sha256: str | None = None) -> Target:
        """`sha256`: the whole file's, announced by the chunk that completes it (else at creation)."""
        return cls(record.bucket, record.bucket_id, record.key, record.mime_type, record.size, record.create_only,
                   sha256 or record.expected_sha256, record.owner)
