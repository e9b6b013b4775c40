"""A folder (every file under a prefix) as a zip archive, streamed: no temporary file, memory flat
whatever the size. Files are stored, not compressed (most large files are compressed already, and
the CPU would cap the download), with zip64 where a file or the archive passes 4 GiB.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterable, Iterator

from ..errors import NotFound
from .objects import ObjectInfo, ObjectService

READ_SIZE = 1024 * 1024
_ZIP64_FROM = 0xFFFFFFFF - READ_SIZE  # a member this large needs zip64 sizes


class _Chunks(io.RawIOBase):
    """Where zipfile writes: bytes kept until taken, a position, and no seek (so zipfile streams,
    with a data descriptor after each member)."""

    def __init__(self):
        super().__init__()
        self._pending: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._pending.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        return data


def zip_folder(objects: ObjectService, bucket: str, prefix: str) -> Iterator[bytes]:
    """The files under `prefix` (names relative to it) as a zip archive, piece by piece. The listing
    is read a page at a time, so no transaction stays open while the archive streams."""
    return zip_keys(objects, bucket, (info.key for info in _every_file(objects, bucket, prefix)), prefix)


def zip_keys(objects: ObjectService, bucket: str, keys: Iterable[str], folder: str = "") -> Iterator[bytes]:
    """These files as a zip archive, piece by piece, named relative to `folder` where they are in it.
    A file missing (or deleted while the archive is made) is left out."""
    folder = folder.rpartition("/")[0] + "/" if "/" in folder else ""  # "a/b" (no slash) is in folder "a/"
    sink = _Chunks()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key in keys:
            try:
                info, stream = objects.open(bucket, key)
            except NotFound:
                continue
            name = entry_name(info.key[len(folder):] if info.key.startswith(folder) else info.key)
            entry = zipfile.ZipInfo(name, time.gmtime(max(info.created_at, 315532800))[:6])
            with stream, archive.open(entry, "w", force_zip64=info.size >= _ZIP64_FROM) as member:
                while data := stream.read(READ_SIZE):
                    member.write(data)
                    if chunk := sink.take():
                        yield chunk
            if chunk := sink.take():
                yield chunk
    if chunk := sink.take():
        yield chunk  # the central directory


def entry_name(name: str) -> str:
    """A member's name that no unzip tool can place outside the folder it extracts into: never empty,
    absolute or with '.' or '..' segments, '/' its only separator. A key is such a name already (the key
    rules); this holds for whatever an older rule stored, and for a folder that cuts a key mid-segment."""
    segments = [segment for segment in name.replace("\\", "/").split("/") if segment not in ("", ".", "..")]
    if segments and len(segments[0]) == 2 and segments[0][1] == ":":
        segments[0] = segments[0][0] + "_"  # "C:" is a drive to Windows tools
    return "/".join(segments) or "file"


def _every_file(objects: ObjectService, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
    cursor = None
    while True:
        page = objects.list(bucket, prefix=prefix, limit=1000, cursor=cursor)
        yield from page.objects
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
