"""Memory bounded by design (issue #22): a zip's writer keeps no state per entry, whatever the number
of entries; the archives it writes are valid, zip64 included. (The thumbnails' bound, a decoder slot
held before the source is read, is tested in tests/api/test_thumbnails.py.)"""

from __future__ import annotations

import shutil
import subprocess
import tracemalloc
import zipfile

import pytest

from files_app.errors import NotFound
from files_app.services import archive
from files_app.services.objects import ObjectInfo
from files_app.storage.base import MemoryBlobReader


class FakeObjects:
    """Files of a few bytes each, made up as they are opened: the writer's memory is all that grows."""

    def __init__(self, missing: set[str] = frozenset(), size: int = 3):
        self.missing, self.size = missing, size

    def open(self, bucket: str, key: str):
        if key in self.missing:
            raise NotFound(key)
        data = (key.encode() * (self.size // max(len(key), 1) + 1))[:self.size]
        return ObjectInfo(bucket, key, "application/octet-stream", len(data), "0" * 64, 1700000000), \
            MemoryBlobReader(data)


def keys(count: int) -> list[str]:
    return [f"d{index % 100:02}/f{index:07}.bin" for index in range(count)]


def zip_peak(count: int) -> tuple[int, int]:
    """(peak bytes traced while a zip of `count` entries streams to nowhere, bytes sent)."""
    names = keys(count)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline = tracemalloc.get_traced_memory()[0]
        sent = sum(len(piece) for piece in archive.zip_keys(FakeObjects(), "b", iter(names)))
        return tracemalloc.get_traced_memory()[1] - baseline, sent
    finally:
        tracemalloc.stop()


def test_a_zips_memory_does_not_grow_with_its_entries(monkeypatch):
    """2,000 entries and 20,000 cost the same (within 64 KiB): the central directory goes to a
    temporary file as it is written. It failed before: Python's zipfile kept a ZipInfo per entry,
    ~1 KB per entry: 2.0 MB traced at 2,000 entries, 20.1 MB at 20,000 (now 0.27 and 0.26 MB)."""
    # Both sizes spill (at 1 MiB only the larger one would). (raising=False: the test ran against zipfile too.)
    monkeypatch.setattr(archive, "SPILL_IN_MEMORY", 64 * 1024, raising=False)
    small, sent_small = zip_peak(2_000)
    large, sent_large = zip_peak(20_000)
    assert sent_large > 9 * sent_small
    assert large - small < 64 * 1024, (small, large)
    assert large < 1024 * 1024


def check(path, names: list[str]) -> zipfile.ZipFile:
    zipped = zipfile.ZipFile(path)
    assert zipped.testzip() is None
    assert zipped.namelist() == names
    # Where installed, a second, independent reader (it calls an empty archive a warning).
    if names and shutil.which("unzip"):
        tested = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True, timeout=120)
        assert tested.returncode == 0, tested.stdout + tested.stderr
    return zipped


def write(path, pieces) -> None:
    with open(path, "wb") as out:
        for piece in pieces:
            out.write(piece)


def test_more_than_65535_entries_get_zip64_end_records(tmp_path):
    names = keys(70_000)
    write(tmp_path / "many.zip", archive.zip_keys(FakeObjects(), "b", names))
    zipped = check(tmp_path / "many.zip", names)
    assert zipped.read(names[-1]) == names[-1].encode()[:3]


def test_zip64_sizes_and_offsets_where_they_pass_the_limit(tmp_path, monkeypatch):
    """The zip64 paths (sizes in the local header, the data descriptor and the central directory;
    offsets; the end records), reached with small files by lowering the limit zipfile uses (2 GiB - 1)."""
    monkeypatch.setattr(archive, "_ZIP64_LIMIT", 1000)
    names = ["small.txt", "big.bin", "after/ünïcode.txt", "last.bin"]
    objects = FakeObjects(size=5000)
    write(tmp_path / "z64.zip", archive.zip_keys(objects, "b", names))
    zipped = check(tmp_path / "z64.zip", names)
    assert all(info.file_size == 5000 and info.compress_type == zipfile.ZIP_STORED for info in zipped.infolist())
    assert zipped.getinfo("after/ünïcode.txt").flag_bits & 0x800  # UTF-8 name, flagged
    assert zipped.read("last.bin") == objects.open("b", "last.bin")[1].read()


@pytest.mark.parametrize("count", [0, 1, 3])
def test_small_archives_and_files_left_out(tmp_path, count):
    names = keys(count + 1)
    write(tmp_path / "few.zip", archive.zip_keys(FakeObjects(missing={names[0]}), "b", names, "d00/"))
    expected = [name[len("d00/"):] if name.startswith("d00/") else name for name in names[1:]]
    check(tmp_path / "few.zip", expected)


def test_an_abandoned_download_closes_its_spill_file(monkeypatch):
    spills = []
    real = archive.tempfile.SpooledTemporaryFile

    def recorded(*args, **kwargs):
        spills.append(real(*args, **kwargs))
        return spills[-1]

    monkeypatch.setattr(archive.tempfile, "SpooledTemporaryFile", recorded)
    pieces = archive.zip_keys(FakeObjects(size=100_000), "b", keys(50))
    next(pieces)
    pieces.close()  # the client went away
    assert spills and spills[0].closed
