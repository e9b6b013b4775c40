"""Memory bounded by design (issue #22): a worker's RSS under a burst of first-time thumbnails of
large images, and while it streams a zip of a million tiny files. Each against a server of its own
with one worker (so the burst lands in one process), started like ours (`gunicorn -c gunicorn.conf.py`).

The baseline of each row is the worker's RSS just before the load (after a warm-up request);
the peak is its VmHWM, reset first through /proc/<pid>/clear_refs ("5"), so the growth is the load's.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from bench import servers, workloads

MIB = 1024 * 1024
THUMB_SOURCES = int(os.environ.get("BENCH_THUMB_SOURCES", 10))  # x 3 sizes = 30 first-time thumbnails
THUMB_SIDE = int(os.environ.get("BENCH_THUMB_SIDE", 4480))  # noise RGB: a PNG of ~60 MB (20 Mpixel)
ZIP_ENTRIES = int(os.environ.get("BENCH_ZIP_ENTRIES", 1_000_000))


def _worker(server: servers.Server) -> int:
    workers = [pid for pid in servers._tree(server.process.pid) if pid != server.process.pid]
    if len(workers) != 1:
        raise RuntimeError(f"expected one worker, found {workers}")
    return workers[0]


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def _baseline_mib(pid: int) -> float:
    """The worker's RSS now, and its peak reset to it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kib(pid, "VmRSS") / 1024


def _png(path: Path, side: int) -> Path:
    if not path.exists():
        from PIL import Image

        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(path, "PNG", compress_level=1)
    return path


def thumbnail_burst(server: servers.Server, work: Path) -> dict:
    source = _png(work / f"noise-{THUMB_SIDE}.png", THUMB_SIDE)
    for index in range(THUMB_SOURCES):  # one blob (content-named), ten files: each thumbnail is made anew
        workloads.curl("-T", str(source), "-H", "Content-Type: image/png", f"{server.url}/v1/files/thumbs/{index}.png")
    workloads.curl("-T", str(_png(work / "tiny.png", 64)), "-H", "Content-Type: image/png",
                   f"{server.url}/v1/files/thumbs/warm.png")
    server.restart()
    workloads.curl(f"{server.url}/v1/thumbnails/thumbs/warm.png?size=128")  # Pillow and its codecs loaded
    pid = _worker(server)
    baseline = _baseline_mib(pid)
    statuses: list[int] = []

    def one(index: int, size: int) -> None:
        url = f"{server.url}/v1/thumbnails/thumbs/{index}.png?size={size}"
        try:
            with urllib.request.urlopen(url, timeout=600) as response:
                response.read()
                statuses.append(response.status)
        except OSError as error:
            statuses.append(getattr(error, "code", 0))

    threads = [threading.Thread(target=one, args=(index, size))
               for size in (128, 256, 512) for index in range(THUMB_SOURCES)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    peak = _status_kib(pid, "VmHWM") / 1024
    return {"baseline": baseline, "peak": peak, "seconds": seconds, "count": len(threads),
            "ok": statuses.count(200), "source_mb": source.stat().st_size / 1e6}


def seed_tiny_files(database: Path, bucket: str, count: int) -> None:
    """`count` files of 8 bytes kept inline in their rows, straight into the database (as the
    listing rows seed theirs): what a zip reads of each is its row."""
    with sqlite3.connect(database) as db:
        now = int(time.time())
        bucket_id = db.execute("INSERT INTO buckets (name, created_at, object_count, total_bytes, updated_at)"
                               " VALUES (?, ?, ?, ?, ?)", (bucket, now, count, 8 * count, now)).lastrowid
        db.executemany(
            "INSERT INTO objects (bucket_id, key, blob_id, mime_type, size, sha256, created_at, inline_data)"
            " VALUES (?, ?, ?, 'application/octet-stream', 8, ?, ?, ?)",
            ((bucket_id, f"d{i % 100:02}/f{i:07}.bin", uuid.uuid4().hex, "0" * 64, now, b"%08d" % i)
             for i in range(count)))


def zip_many(server: servers.Server, work: Path) -> dict:
    started = time.perf_counter()
    seed_tiny_files(Path(server.env["FILES_DATA_DIR"]) / "files.db", "zipmany", ZIP_ENTRIES)
    seed_seconds = time.perf_counter() - started
    server.restart()
    workloads.curl(f"{server.url}/v1/files/zipmany?limit=10")  # warm
    pid = _worker(server)
    baseline = _baseline_mib(pid)
    target = work / "many.zip"
    start = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(target), f"{server.url}/v1/zip/zipmany"], check=True)
    seconds = time.perf_counter() - start
    peak = _status_kib(pid, "VmHWM") / 1024
    size, entries = target.stat().st_size, _entries(target)
    target.unlink()
    return {"baseline": baseline, "peak": peak, "seconds": seconds, "entries": entries, "bytes": size,
            "seed_seconds": seed_seconds}


def _entries(path: Path) -> int:
    """The entry count the archive's end records give (zip64 past 65,535), read without zipfile
    (which would hold a ZipInfo per entry in this process)."""
    with open(path, "rb") as archive:
        archive.seek(-22, os.SEEK_END)
        end = archive.read(22)
        if end[:4] != b"PK\x05\x06":
            raise RuntimeError("no end of central directory record")
        count = struct.unpack("<H", end[10:12])[0]
        if count == 0xFFFF:
            archive.seek(-22 - 20 - 56, os.SEEK_END)
            end64 = archive.read(56)
            if end64[:4] != b"PK\x06\x06":
                raise RuntimeError("no zip64 end of central directory record")
            count = struct.unpack("<Q", end64[32:40])[0]
        return count


def rows(work: Path, row) -> list[dict]:
    server = servers.ours(work, name="ours-bounded", FILES_WORKERS="1")
    out = []
    try:
        server.start()
        burst = thumbnail_burst(server, work)
        growth = burst["peak"] - burst["baseline"]
        print(f"  thumbnail burst: {burst}", flush=True)
        entry = row("thumbnail_burst_rss", growth, "MiB", "worker RSS before the burst", burst["baseline"],
                    256 / max(growth, 0.1), f"< 256 MiB growth, {burst['count']} first-time thumbnails of "
                    f"{burst['source_mb']:.1f} MB PNGs, all 200", growth < 256 and burst["ok"] == burst["count"],
                    rss_mib=round(burst["peak"], 1))
        entry.update(seconds=round(burst["seconds"], 1), ok=burst["ok"])
        out.append(entry)
        many = zip_many(server, work)
        growth = many["peak"] - many["baseline"]
        print(f"  zip of many: {many}", flush=True)
        entry = row(f"zip_rss_{ZIP_ENTRIES // 1000}k_entries" if ZIP_ENTRIES != 1_000_000 else "zip_rss_1m_entries",
                    growth, "MiB", "worker RSS before the zip", many["baseline"], 64 / max(growth, 0.1),
                    f"< 64 MiB growth, {ZIP_ENTRIES} entries in the archive",
                    growth < 64 and many["entries"] == ZIP_ENTRIES, rss_mib=round(many["peak"], 1))
        entry.update(seconds=round(many["seconds"], 1), entries=many["entries"], bytes=many["bytes"])
        out.append(entry)
    finally:
        server.stop()
    return out
