"""Local disk: `uploads/<session-id>` while a session writes, then fsync and a hard link as
`objects/<2 hex>/<blob-id>`. Names are server-made ids; a key never becomes a path."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import BlobMissing, InsufficientStorage, StorageError
from .base import FileBlobReader, checked_id, is_id

_FULL = (errno.ENOSPC, errno.EDQUOT)
STREAM_PIECE = 1024 * 1024  # what put_blob_stream reads from its source at a time


def _space(function):
    """A full disk is the client's 507, not a server fault."""
    @functools.wraps(function)
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except OSError as error:
            if error.errno in _FULL:
                raise InsufficientStorage("the server's storage is full; retry when space is freed") from None
            raise
    return guarded

_SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h: start write-back of the range, do not wait


def _load_sync_file_range():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return None  # not Linux: the final fdatasync does all the work
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return function


# Starting write-back as each piece arrives leaves the fdatasync at the end of a chunk little to
# wait for (measured in bench/README.md). Python's os module does not offer it.
_sync_file_range = _load_sync_file_range()


def fsync_dir(path: Path) -> None:
    """Make a rename or link in the directory durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalPartialWriter:
    def __init__(self, fd: int, new_name_in: Path | None, position: int = 0):
        self._fd = fd
        self._new_name_in = new_name_in  # a directory whose new entry is not yet durable
        self._position = position

    @_space
    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if _sync_file_range is not None:
            _sync_file_range(self._fd, self._position, len(data), _SYNC_FILE_RANGE_WRITE)
        self._position += len(data)

    @_space
    def sync(self) -> None:
        os.fdatasync(self._fd)
        if self._new_name_in is not None:  # once per new file, before an offset may rely on it
            fsync_dir(self._new_name_in)
            self._new_name_in = None

    @_space
    def sync_for_finalize(self) -> None:
        """The bytes only: finalize renames the file and makes its new name durable itself."""
        os.fdatasync(self._fd)

    def rollback(self, offset: int) -> None:
        os.ftruncate(self._fd, offset)
        os.lseek(self._fd, offset, os.SEEK_SET)
        self._position = offset

    def state(self) -> None:
        return None  # the file's length says it all

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LocalBlobStore:
    def __init__(self, data_dir: str | os.PathLike):
        self.root = Path(data_dir)
        self.uploads = self.root / "uploads"
        self.objects = self.root / "objects"
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.objects.mkdir(parents=True, exist_ok=True)

    def ensure_ready(self) -> None:
        pass  # the directories were made with the store

    def _partial_path(self, session_id: str) -> Path:
        return self.uploads / checked_id(session_id)

    def _blob_path(self, blob_id: str) -> Path:
        blob_id = checked_id(blob_id)
        return self.objects / blob_id[:2] / blob_id

    @_space
    def open_partial(self, session_id: str, offset: int, state: str | None = None) -> LocalPartialWriter:
        path = self._partial_path(session_id)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            length = os.fstat(fd).st_size
            if length < offset:
                raise StorageError(f"session {session_id} lost durable bytes ({length} < {offset})")
            writer = LocalPartialWriter(fd, self.uploads if length == 0 and offset == 0 else None)
            writer.rollback(offset)  # bytes past the durable offset were never acknowledged
            return writer
        except BaseException:
            os.close(fd)
            raise

    def discard_partial(self, session_id: str, state: str | None = None) -> None:
        self._partial_path(session_id).unlink(missing_ok=True)

    @_space
    def finalize(self, session_id: str, size: int, state: str | None = None) -> str:
        """Link the partial file in as the blob. A link, not a rename: if the process dies before
        the object's row commits, the session still has its bytes and can finish (the link is
        found made); gc spares the blob while its session lives. The caller discards the partial
        name once the row is committed."""
        source = self._partial_path(session_id)
        target = self._blob_path(session_id)
        target.parent.mkdir(exist_ok=True)
        if size == 0 and not source.exists():
            source.touch(0o600)
        if source.stat().st_size != size:
            raise StorageError(f"session {session_id} holds {source.stat().st_size} bytes, not {size}")
        try:
            os.link(source, target)
        except FileExistsError:
            if not os.path.samefile(source, target):
                raise StorageError(f"blob {session_id} exists and is not the session's bytes") from None
        fsync_dir(target.parent)
        return session_id

    @_space
    def put_blob(self, blob_id: str, data: bytes) -> None:
        target = self._blob_path(blob_id)
        target.parent.mkdir(exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fdatasync(fd)
        except BaseException:
            target.unlink(missing_ok=True)  # a half-written blob must not stay behind
            raise
        finally:
            os.close(fd)
        fsync_dir(target.parent)

    @_space
    def put_blob_stream(self, blob_id: str, source: BinaryIO) -> None:
        """Written under a draft name beside the blob (not an id: gc and verify never see it), synced,
        then renamed: a process killed midway leaves no blob that looks whole."""
        target = self._blob_path(blob_id)
        target.parent.mkdir(exist_ok=True)
        draft = target.with_name(f".{target.name}.draft")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while data := source.read(STREAM_PIECE):
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            os.fdatasync(fd)
        except BaseException:
            draft.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)
        os.replace(draft, target)
        fsync_dir(target.parent)

    def blob_size(self, blob_id: str) -> int | None:
        try:
            return self._blob_path(blob_id).stat().st_size
        except FileNotFoundError:
            return None

    def can_join(self, sizes: list[int]) -> bool:
        return False  # ext4 and most local file systems cannot share extents: the caller copies

    def join_blobs(self, blob_ids: list[str], into: str) -> str:
        raise NotImplementedError("a local disk joins blobs by copying them (can_join is False)")

    def open_blob(self, blob_id: str) -> BinaryIO:
        try:
            return FileBlobReader(self._blob_path(blob_id), "rb")
        except FileNotFoundError:
            raise BlobMissing(f"blob {blob_id} is missing") from None

    def delete_blob(self, blob_id: str) -> None:
        self._blob_path(blob_id).unlink(missing_ok=True)

    def free_bytes(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def release_blob(self, blob_id: str) -> None:
        self.delete_blob(blob_id)  # a reader that opened it keeps its bytes; one that did not looks again

    def quarantine_blob(self, blob_id: str) -> None:
        quarantine = self.root / "quarantine"
        quarantine.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.rename(self._blob_path(blob_id), quarantine / checked_id(blob_id))

    def blob_ids(self, older_than: float) -> Iterator[str]:
        for path in self.objects.glob("??/*"):
            if is_id(path.name) and _mtime(path) < older_than:
                yield path.name

    def partial_ids(self, older_than: float) -> Iterator[str]:
        for path in self.uploads.iterdir():
            if is_id(path.name) and _mtime(path) < older_than:
                yield path.name


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()  # vanished meanwhile: treat as new, i.e. leave it alone
