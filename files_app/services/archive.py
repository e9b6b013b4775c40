"""A folder (every file under a prefix) as a zip archive, streamed: memory flat whatever the size and
whatever the number of files. Files are stored, not compressed (most large files are compressed
already, and the CPU would cap the download), with zip64 where a file or the archive passes the
limits of the classic format.

The archive is written here, not by Python's zipfile: zipfile keeps a ZipInfo (~1 KB) for every
entry until it writes the central directory at the end, so a bucket of a million files cost ~1 GB
per download. Here each entry's central directory record is made as soon as its data is written and
spilled to a temporary file (in memory up to SPILL_IN_MEMORY, then on disk), which is streamed after
the last entry: what is kept per archive is a few counters, whatever the number of entries.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator

from ..errors import FileDamaged, NotFound
from .objects import ObjectInfo, ObjectService

READ_SIZE = 1024 * 1024
SEND_SIZE = 64 * 1024  # headers and small files are sent together in pieces of at least this
SPILL_IN_MEMORY = 1024 * 1024  # central directory records kept in memory before they go to a temporary file
# Python's zipfile's limits (a size or offset past 2 GiB - 1 is written as zip64, as it does).
_ZIP64_LIMIT = (1 << 31) - 1
_COUNT_LIMIT = 0xFFFF
_ZIP64_FROM = 0xFFFFFFFF - READ_SIZE  # a member this large gets zip64 sizes in its local header and descriptor
_UTF8 = 0x800
_DATA_DESCRIPTOR = 0x08
_PERMISSIONS = 0o600 << 16  # ?rw-------, as zipfile writes
_UNIX = 3
_LOCAL, _CENTRAL = b"PK\x03\x04", b"PK\x01\x02"
_DESCRIPTOR, _END64, _LOCATOR64, _END = b"PK\x07\x08", b"PK\x06\x06", b"PK\x06\x07", b"PK\x05\x06"


class ZipWriter:
    """Writes a zip archive as a stream of pieces: stored entries, each followed by a data descriptor
    (CRC and sizes known only once its bytes went out), then the central directory and its end
    records. Each entry's central directory record is spilled as soon as the entry is written; the
    writer itself keeps an offset, a count and a buffer of at most SEND_SIZE bytes."""

    def __init__(self):
        self._offset = 0
        self._count = 0
        self._pending = bytearray()
        self._directory = tempfile.SpooledTemporaryFile(max_size=SPILL_IN_MEMORY)

    def add(self, name: str, created_at: float, size: int, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """One stored entry of `size` bytes (zip64 as needed), its bytes taken from `chunks`."""
        try:
            encoded, flags = name.encode("ascii"), _DATA_DESCRIPTOR
        except UnicodeEncodeError:
            encoded, flags = name.encode("utf-8"), _DATA_DESCRIPTOR | _UTF8
        dostime, dosdate = _dos_time(created_at)
        zip64 = size > _ZIP64_LIMIT  # zipfile's rule: a member past 2 GiB - 1 has zip64 sizes
        version = 45 if zip64 else 20
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if zip64 else b""
        offset = self._offset
        yield from self._send(struct.pack("<4s2B4HL2L2H", _LOCAL, version, 0, flags, 0, dostime, dosdate, 0,
                                          0xFFFFFFFF if zip64 else 0, 0xFFFFFFFF if zip64 else 0, len(encoded),
                                          len(extra)) + encoded + extra)
        crc = written = 0
        for data in chunks:
            crc = zlib.crc32(data, crc)
            written += len(data)
            yield from self._send(data)
        if written > _ZIP64_LIMIT and not zip64:
            raise RuntimeError(f"{name!r} grew past its size while it was read")
        yield from self._send(struct.pack("<4sLQQ" if zip64 else "<4sLLL", _DESCRIPTOR, crc, written, written))
        self._directory.write(_central_record(encoded, flags, dostime, dosdate, crc, written, offset, zip64))
        self._count += 1

    def finish(self) -> Iterator[bytes]:
        """The central directory (read back from where it was spilled) and the end records."""
        start, size, count = self._offset, self._directory.tell(), self._count
        self._directory.seek(0)
        while data := self._directory.read(SEND_SIZE):
            yield from self._send(data)
        end = b""
        if count > _COUNT_LIMIT or start > _ZIP64_LIMIT or size > _ZIP64_LIMIT:
            end = (struct.pack("<4sQ2H2L4Q", _END64, 44, 45, 45, 0, 0, count, count, size, start)
                   + struct.pack("<4sLQL", _LOCATOR64, 0, start + size, 1))
        end += struct.pack("<4s4H2LH", _END, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), min(size, 0xFFFFFFFF),
                           min(start, 0xFFFFFFFF), 0)
        yield from self._send(end)
        if self._pending:
            yield bytes(self._pending)
            self._pending.clear()

    def close(self) -> None:
        self._directory.close()

    def _send(self, data: bytes) -> Iterator[bytes]:
        """Small pieces gathered up to SEND_SIZE (a million tiny files are not a million writes); a
        large one goes as it is, after what was gathered."""
        self._offset += len(data)
        if len(data) >= SEND_SIZE:
            if self._pending:
                yield bytes(self._pending)
                self._pending.clear()
            yield data
            return
        self._pending += data
        if len(self._pending) >= SEND_SIZE:
            yield bytes(self._pending)
            self._pending.clear()


def _central_record(name: bytes, flags: int, dostime: int, dosdate: int, crc: int, size: int, offset: int,
                    zip64: bool) -> bytes:
    extra = []
    if size > _ZIP64_LIMIT:
        extra += [size, size]
    if offset > _ZIP64_LIMIT:
        extra.append(offset)
    extra_data = struct.pack("<HH" + "Q" * len(extra), 1, 8 * len(extra), *extra) if extra else b""
    version = 45 if zip64 or extra else 20
    return struct.pack("<4s4B4HL2L5H2L", _CENTRAL, version, _UNIX, version, 0, flags, 0, dostime, dosdate, crc,
                       0xFFFFFFFF if size > _ZIP64_LIMIT else size, 0xFFFFFFFF if size > _ZIP64_LIMIT else size,
                       len(name), len(extra_data), 0, 0, 0, _PERMISSIONS,
                       0xFFFFFFFF if offset > _ZIP64_LIMIT else offset) + name + extra_data


def _dos_time(created_at: float) -> tuple[int, int]:
    """MS-DOS time and date (UTC, 2-second steps) of 1980 to 2107, the years they can say."""
    year, month, day, hour, minute, second = time.gmtime(max(created_at, 315532800))[:6]
    if year > 2107:
        year, month, day, hour, minute, second = 2107, 12, 31, 23, 59, 58
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


def zip_folder(objects: ObjectService, bucket: str, prefix: str) -> Iterator[bytes]:
    """The files under `prefix` (names relative to it) as a zip archive, piece by piece. The listing
    is read a page at a time, so no transaction stays open while the archive streams."""
    return zip_keys(objects, bucket, (info.key for info in _every_file(objects, bucket, prefix)), prefix)


def zip_keys(objects: ObjectService, bucket: str, keys: Iterable[str], folder: str = "") -> Iterator[bytes]:
    """These files as a zip archive, piece by piece, named relative to `folder` where they are in it.
    A file missing (or deleted while the archive is made) or damaged (never served) is left out."""
    folder = folder.rpartition("/")[0] + "/" if "/" in folder else ""  # "a/b" (no slash) is in folder "a/"
    writer = ZipWriter()
    try:
        for key in keys:
            try:
                info, stream = objects.open(bucket, key)
            except (NotFound, FileDamaged):
                continue
            name = entry_name(info.key[len(folder):] if info.key.startswith(folder) else info.key)
            with stream:
                yield from writer.add(name, info.created_at, info.size, _pieces(stream))
        yield from writer.finish()
    finally:
        writer.close()


def _pieces(stream) -> Iterator[bytes]:
    while data := stream.read(READ_SIZE):
        yield data


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
