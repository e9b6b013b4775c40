"""Nothing lost (issue #24), group `kept`: what the trash costs, and how fast `flask files verify` reads.

- `delete_to_trash_10k`: a folder of 10,000 files deleted into the trash (one request's work, in
  process), against the same folder deleted for good (FILES_TRASH_DAYS=0) in the same run.
- `delete_restore_10k`: that delete and its undo (restore by the deletion id), seconds in all,
  against the same delete-for-good.
- `verify_throughput`: `flask files verify` over BENCH_SIZE bytes in 8 files, against `sha256sum`
  of the same blob files, in the same run (the command's start included: what an operator waits for).

Each interleaved, median of BENCH_REPEATS, on SQLite and the data dir (the embedded defaults).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDER = 10_000
MIB = 1024 * 1024


def rows(work: Path, row, interleaved, size: int) -> list[dict]:
    from files_app import create_app
    from files_app.schema import upgrade_database
    from files_app.services.kept import Retention

    data_dir = work / "kept"
    app = create_app({"FILES_DATA_DIR": str(data_dir), "FILES_DATABASE_URL": "", "FILES_GC_INTERVAL": 0})
    upgrade_database(app)
    files = app.extensions["files"]
    results = []
    with app.app_context():
        def delete(trash_days: int, restore: bool):
            def job() -> float:
                bucket = f"kept{uuid.uuid4().hex[:8]}"
                _seed(bucket)
                files.objects.retention = Retention(trash_days, 10)
                started = time.perf_counter()
                deletion = "del_" + uuid.uuid4().hex[:24]
                assert files.folders.delete_folder(bucket, "d/", deletion=deletion) == FOLDER
                if restore:
                    assert len(files.trash.restore(bucket, deletion=deletion).restored) == FOLDER
                return time.perf_counter() - started
            return job

        trash_s, forever_s = interleaved(delete(30, False), delete(0, False))
        results.append(row("delete_to_trash_10k", trash_s, "s", "delete for good", forever_s, forever_s / trash_s,
                           ">= 0.5 (within 2x)", forever_s / trash_s >= 0.5))
        both_s, forever_s = interleaved(delete(30, True), delete(0, False))
        results.append(row("delete_restore_10k", both_s, "s", "delete for good", forever_s, forever_s / both_s,
                           "< 10 s", both_s < 10))
        _big_files(files, size)
    env = {**os.environ, "FILES_DATA_DIR": str(data_dir), "FILES_DATABASE_URL": ""}
    blobs = sorted(str(path) for path in (data_dir / "objects").glob("??/*"))

    def verify() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "flask", "--app", "app", "files", "verify", "--bucket", "big"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - started

    def sha256sum() -> float:
        started = time.perf_counter()
        subprocess.run(["sha256sum", *blobs], check=True, capture_output=True)
        return time.perf_counter() - started

    ours_s, base_s = interleaved(verify, sha256sum)
    megabytes = size / 1e6
    results.append(row("verify_throughput", megabytes / ours_s, "MB/s", "sha256sum", megabytes / base_s,
                       base_s / ours_s, ">= 0.8", base_s / ours_s >= 0.8))
    return results


def _seed(bucket: str) -> None:
    """A folder of FOLDER small files (inline rows, as 4 KiB uploads are kept), straight into the database."""
    from files_app.models import Bucket, StoredObject, db, transaction

    now = int(time.time())
    with transaction():
        bucket_id = db.session.execute(db.insert(Bucket).values(
            name=bucket, created_at=now, object_count=FOLDER, total_bytes=4096 * FOLDER, updated_at=now)
            .returning(Bucket.id)).scalar_one()
        db.session.execute(db.insert(StoredObject), [
            dict(bucket_id=bucket_id, key=f"d/f{index:06}.bin", blob_id=uuid.uuid4().hex, mime_type="text/plain",
                 size=4096, sha256="0" * 64, created_at=now, inline_data=b"x" * 4096) for index in range(FOLDER)])


def _big_files(files, size: int) -> None:
    """8 files of size/8 random bytes, uploaded as any PUT is."""
    from files_app.services.acting import OPERATOR, acting_as

    part = max(1, size // 8)
    with acting_as(OPERATOR):
        for index in range(8):
            data = os.urandom(part)
            files.uploads.put(bucket="big", key=f"f{index}.bin", body=io.BytesIO(data), length=part,
                              mime_type="application/octet-stream", create_only=False, owner=None)

