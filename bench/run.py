"""`make bench`: every row a ratio against a baseline measured in the same run, interleaved
(A B, B A, A B ...), median of BENCH_REPEATS (>= 3). Prints a Markdown table and writes
bench/results.json. BENCH_SIZE scales the large file (default 1 GiB)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bounded, kept, servers, slow, workloads  # noqa: E402
from files_app.services.objects import encode_cursor  # noqa: E402

MIB = 1024 * 1024
SIZE = int(os.environ.get("BENCH_SIZE", 1024 * MIB))
REPEATS = max(3, int(os.environ.get("BENCH_REPEATS", 3)))
SMALL_COUNT = int(os.environ.get("BENCH_SMALL", 5000))
AUDIT_PUTS = int(os.environ.get("BENCH_AUDIT_PUTS", 1500))
# Groups: transfer, concurrency, listing, memory, bounded, slow, postgres, openai, cli, audit, kept, s3.
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
LIST_SIZES = [int(n) for n in os.environ.get("BENCH_LIST", "1000,100000,1000000").split(",")]
HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("BENCH_WORK", HERE / ".work"))


def row(name, value, unit, baseline, baseline_value, ratio, target, holds, rss_mib=None) -> dict:
    entry = {"name": name, "value": round(value, 2), "unit": unit, "baseline": baseline,
             "baseline_value": round(baseline_value, 2), "ratio": round(ratio, 3), "target": target,
             "holds": bool(holds)}
    if rss_mib is not None:
        entry["rss_mib"] = rss_mib
    print(f"  {name}: {entry['value']} {unit} vs {entry['baseline_value']} ({baseline}), ratio {entry['ratio']}",
          flush=True)
    return entry


def interleaved(a, b) -> tuple[float, float]:
    """Median seconds of jobs a and b, run alternately, each REPEATS times."""
    times_a, times_b = [], []
    for repeat in range(REPEATS):
        order = [(a, times_a), (b, times_b)] if repeat % 2 == 0 else [(b, times_b), (a, times_a)]
        for job, times in order:
            times.append(job())
    return statistics.median(times_a), statistics.median(times_b)


def speed_row(name, ours_job, base_job, megabytes, baseline, target, rss=None):
    ours_s, base_s = interleaved(ours_job, base_job)
    ratio = base_s / ours_s
    return row(name, megabytes / ours_s, "MB/s", baseline, megabytes / base_s, ratio, f">= {target}",
               ratio >= target, rss() if rss else None)


def rate_row(name, ours_job, base_job, count, baseline, target):
    ours_s, base_s = interleaved(ours_job, base_job)
    ratio = base_s / ours_s
    return row(name, count / ours_s, "files/s", baseline, count / base_s, ratio, f">= {target}", ratio >= target)


def big_file(size: int) -> Path:
    path = WORK / f"big-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as out:
            left = size
            while left:
                out.write(os.urandom(min(left, 16 * MIB)))
                left -= min(left, 16 * MIB)
    return path


def transfer_rows(ours, bare, peer) -> list[dict]:
    path, megabytes = big_file(SIZE), SIZE / 1e6
    rows = [
        speed_row("upload_single", lambda: workloads.upload_ours_single(ours.url, path),
                  lambda: workloads.upload_bare(bare.url, path), megabytes, "bare Flask upload", 1.2,
                  ours.peak_rss_mib),
        speed_row("upload_chunked_8m", lambda: workloads.upload_ours_chunked(ours.url, path),
                  lambda: workloads.upload_bare(bare.url, path), megabytes, "bare Flask upload (one request)",
                  1.2, ours.peak_rss_mib),
        speed_row("tus_upload_vs_peer", lambda: workloads.upload_tus(f"{ours.url}/v1/files", path),
                  lambda: workloads.upload_tus(f"{peer.url}/files/", path), megabytes,
                  "tuspyserver, same tuspy client", 1.0),
    ]
    # One stored copy each to download.
    conn = workloads.connect(ours.url)
    session = workloads.create_session(conn, "bench", "download.bin", SIZE)
    workloads.curl("-X", "POST", "-T", str(path), ours.url + session)
    workloads.curl("-X", "POST", "-T", str(path), f"{bare.url}/upload/download.bin")
    ours_url, bare_url = f"{ours.url}/v1/content/bench/download.bin", f"{bare.url}/download/download.bin"
    rows.append(speed_row("download_whole", lambda: workloads.download_whole(ours_url),
                          lambda: workloads.download_whole(bare_url), megabytes, "bare Flask send_file", 0.95))
    rows.append(speed_row("download_ranges", lambda: workloads.download_ranges(ours_url, SIZE),
                          lambda: workloads.download_ranges(bare_url, SIZE), megabytes,
                          "bare Flask send_file, 16 ranges", 0.95))
    return rows


def concurrency_rows(ours, bare, peer) -> list[dict]:
    errors = []

    def measure(kind, server):
        seconds, failed = workloads.concurrent_uploads(server.url, kind)
        errors.append(failed)
        return seconds

    entry = speed_row("concurrent_upload_32", lambda: measure("ours", ours), lambda: measure("bare", bare),
                      32 * 16 * MIB / 1e6, "bare Flask, same load", 0.90)
    entry["errors"] = sum(errors)
    entry["holds"] = entry["holds"] and entry["errors"] == 0
    count = SMALL_COUNT
    return [
        entry,
        rate_row("small_files_seq", lambda: workloads.small_files(ours.url, "ours", count, 1),
                 lambda: workloads.small_files(bare.url, "bare", count, 1), count, "bare Flask, one POST each", 0.8),
        rate_row("small_files_threads", lambda: workloads.small_files(ours.url, "ours", count, 8),
                 lambda: workloads.small_files(bare.url, "bare", count, 8), count, "bare Flask, 8 threads", 0.8),
        rate_row("small_files_put_seq", lambda: workloads.small_files(ours.url, "ours-put", count, 1),
                 lambda: workloads.small_files(bare.url, "bare", count, 1), count, "bare Flask, one POST each", 1.2),
        rate_row("small_files_put_threads", lambda: workloads.small_files(ours.url, "ours-put", count, 8),
                 lambda: workloads.small_files(bare.url, "bare", count, 8), count, "bare Flask, 8 threads", 1.5),
        rate_row("small_files_tus_vs_peer", lambda: workloads.small_files_tus(f"{ours.url}/v1/files", count // 5),
                 lambda: workloads.small_files_tus(f"{peer.url}/files/", count // 5), count // 5,
                 "tuspyserver, same tuspy client", 1.0),
    ]


def seed_bucket(database: Path, bucket: str, count: int, folders: int = 100) -> list[str]:
    """Rows straight into the database (listing reads no blob), keys in `folders` folders."""
    keys = sorted(f"d{i % folders:02}/f{i:07}.bin" for i in range(count))
    with sqlite3.connect(database) as db:
        now = int(time.time())
        cursor = db.execute("INSERT INTO buckets (name, created_at, object_count, total_bytes, updated_at)"
                            " VALUES (?, ?, ?, ?, ?)", (bucket, now, count, 4096 * count, now))
        bucket_id = cursor.lastrowid
        db.executemany(
            "INSERT INTO objects (bucket_id, key, blob_id, mime_type, size, sha256, created_at)"
            " VALUES (?, ?, ?, 'application/octet-stream', 4096, ?, ?)",
            ((bucket_id, key, uuid.uuid4().hex, "0" * 64, int(time.time())) for key in keys))
    return keys


def listing_rows(ours) -> list[dict]:
    database = WORK / "ours" / "files.db"
    times = {}
    for count in LIST_SIZES:
        bucket = f"list{count}"
        keys = seed_bucket(database, bucket, count)
        middle = encode_cursor(keys[len(keys) // 2] + "\x01")
        paths = {"start": f"/v1/files/{bucket}?limit=100", "middle": f"/v1/files/{bucket}?limit=100&cursor={middle}",
                 "prefix": f"/v1/files/{bucket}?limit=100&prefix=d42/",
                 "folders": f"/v1/files/{bucket}?limit=100&delimiter=/"}
        paths["html"] = f"/b/{bucket}/?limit=100"
        times[count] = {label: workloads.page_time(ours.url, path) for label, path in paths.items()}
        print(f"  list {count}: " + ", ".join(f"{k} {v * 1000:.2f} ms" for k, v in times[count].items()), flush=True)
    # Search the largest bucket for a fragment of 10 keys (f0000120 ... f0000129), from the index.
    biggest = LIST_SIZES[-1]
    search_ms = workloads.page_time(ours.url, f"/v1/files/list{biggest}?q=f000012&limit=100") * 1000
    # A page in the middle of one flat folder of them all: "x-y of N" counted past both caps.
    flat = seed_bucket(database, "flat", biggest, folders=1)
    middle = encode_cursor(flat[len(flat) // 2] + "\x01")
    flat_ms = workloads.page_time(ours.url, f"/b/flat/d00/?limit=100&cursor={middle}") * 1000
    print(f"  flat folder of {biggest}: html middle page {flat_ms:.2f} ms", flush=True)
    small, large = times[LIST_SIZES[0]], times[LIST_SIZES[-1]]
    html_small, html_large = small.pop("html") * 1000, large.pop("html") * 1000
    worst_small, worst_large = max(small.values()) * 1000, max(large.values()) * 1000
    ratio, html_ratio = worst_small / worst_large, html_small / html_large
    return [
        row("list_api_1k", worst_small, "ms", "budget", 10.0, 10.0 / worst_small, "< 10 ms", worst_small < 10),
        row("list_api_1m", worst_large, "ms", "budget", 10.0, 10.0 / worst_large, "< 10 ms", worst_large < 10),
        row("list_api_1m_vs_1k", ratio, "x", f"{LIST_SIZES[0]} files", worst_small, ratio, ">= 0.5 (within 2x)",
            ratio >= 0.5),
        row("list_html_1m_vs_1k", html_large, "ms", f"{LIST_SIZES[0]} files", html_small, html_ratio,
            ">= 0.5 (within 2x)", html_ratio >= 0.5),
        row("search_1m", search_ms, "ms", "budget", 100.0, 100.0 / search_ms, "< 100 ms (10 matches)",
            search_ms < 100),
        row("list_html_flat_1m", flat_ms, "ms", "budget", 100.0, 100.0 / flat_ms, "< 100 ms (a middle page)",
            flat_ms < 100),
    ]


def memory_rows(ours) -> list[dict]:
    peaks = {}
    for size in (64 * MIB, SIZE):
        ours.restart()
        workloads.upload_ours_single(ours.url, big_file(size))
        peaks[size] = ours.peak_rss_mib()
    growth = peaks[SIZE] - peaks[64 * MIB]
    rows = [row("rss_growth_64m_to_1g", growth, "MiB", "budget", 16.0, 16.0 / max(growth, 0.1), "< 16 MiB",
                growth < 16, rss_mib=peaks[SIZE])]
    # A folder's zip streams: a worker's peak is the same for 10 MiB and for SIZE of content.
    zip_peaks = {}
    for size in (10 * MIB, SIZE):
        bucket = f"zip-{size}"
        conn = workloads.connect(ours.url)
        session = workloads.create_session(conn, bucket, "folder/content.bin", size)
        workloads.curl("-X", "POST", "-T", str(big_file(size)), ours.url + session)
        ours.restart()
        workloads.curl(f"{ours.url}/v1/zip/{bucket}?prefix=folder/")
        zip_peaks[size] = ours.peak_rss_mib()
    growth = zip_peaks[SIZE] - zip_peaks[10 * MIB]
    return rows + [row("zip_rss_growth_10m_to_1g", growth, "MiB", "budget", 16.0, 16.0 / max(growth, 0.1),
                       "< 16 MiB", growth < 16, rss_mib=zip_peaks[SIZE])]


def openai_rows(ours) -> list[dict]:
    """The OpenAI-compatible API through the openai SDK, against the seed's single-request upload."""
    path, megabytes = big_file(SIZE), SIZE / 1e6
    rows = [
        speed_row("openai_upload_1g", lambda: workloads.upload_openai_file(ours.url, path),
                  lambda: workloads.upload_ours_single(ours.url, path), megabytes,
                  "seed API, one request (curl)", 0.85),
        # Every byte is written durably twice: as a part (in any order), then in the file, in the
        # order the completion names (ext4 has no reflink to join files without a copy).
        speed_row("openai_uploads_parts_1g", lambda: workloads.upload_openai_parts(ours.url, path),
                  lambda: workloads.upload_ours_single(ours.url, path), megabytes,
                  "seed API, one request (curl)", 0.5),
    ]
    peaks = {}  # the multipart part streams: a worker's peak is the same for 64 MiB and for SIZE
    for size in (64 * MIB, SIZE):
        ours.restart()
        workloads.upload_openai_file(ours.url, big_file(size))
        peaks[size] = ours.peak_rss_mib()
    growth = peaks[SIZE] - peaks[64 * MIB]
    return rows + [row("openai_rss_growth_64m_to_1g", growth, "MiB", "budget", 16.0, 16.0 / max(growth, 0.1),
                       "< 16 MiB", growth < 16, rss_mib=peaks[SIZE])]


def cli_rows(ours) -> list[dict]:
    """The `files` client against curl, on the same server."""
    path, megabytes, state = big_file(SIZE), SIZE / 1e6, WORK / "cli"
    rows = [speed_row("cli_upload_1g", lambda: workloads.cli_copy(ours.url, path, f"cli/{uuid.uuid4().hex}", state),
                      lambda: workloads.upload_ours_single(ours.url, path), megabytes,
                      "curl, the seed API's one-request upload", 0.95)]
    folder = WORK / "cli-small"
    for index in range(1000):
        (folder / f"d{index % 10}").mkdir(parents=True, exist_ok=True)
        (folder / f"d{index % 10}" / f"f{index:04}.bin").write_bytes(os.urandom(4096))
    return rows + [rate_row("cli_small_files_1000",
                            lambda: workloads.cli_copy(ours.url, folder, f"small/{uuid.uuid4().hex}/", state,
                                                       "-r", "--parallel", "8"),
                            lambda: workloads.curl_put_loop(ours.url, folder, f"{uuid.uuid4().hex}/"), 1000,
                            "a sequential curl -T loop", 3.0)]


def slow_client_rows(ours) -> list[dict]:
    """The serving model's rows: a normal client among slow attackers, and a thousand slow uploads."""
    ours.restart()
    idle_ms, attacked_ms = slow.healthz_under_attack(ours.port)
    rows = [row("slow_clients_healthz_p99", attacked_ms, "ms", "no slow clients", idle_ms, idle_ms / attacked_ms,
                "< 250 ms with 256 slow-header + 256 slow-body connections", attacked_ms < 250)]
    held_server = servers.ours(WORK, name="ours-held", FILES_HEADER_TIMEOUT="600").start()
    try:
        held = slow.held_10000(held_server.port)
        rss = held_server.peak_rss_mib()
    finally:
        held_server.stop()
    target = "< 250 ms while 10,000 connections are held (2,500 idle, 2,500 slow headers, 5,000 slow bodies), none cut"
    rows += [row("slow_bodies_10000_healthz_p99", held["healthz_held"], "ms", "no connection held",
                 held["healthz_idle"], held["healthz_idle"] / held["healthz_held"], target,
                 held["healthz_held"] < 250 and held["cut"] == 0, rss),
             row("slow_bodies_10000_small_get_p99", held["small_held"], "ms", "no connection held",
                 held["small_idle"], held["small_idle"] / held["small_held"], target.replace("ms", "ms (1 KiB GET)"),
                 held["small_held"] < 250 and held["cut"] == 0, rss)]
    ours.restart()
    ideal = MIB / (64 * 1024)
    seconds, completed = slow.slow_uploads(ours.port)
    entry = row("concurrent_slow_uploads_1000", seconds, "s", "ideal (1 MiB at 64 KiB/s)", ideal, ideal / seconds,
                ">= 0.8, all 1000 complete", ideal / seconds >= 0.8 and completed == 1000, ours.peak_rss_mib())
    entry["completed"] = completed
    return rows + [entry]


def audit_rows() -> list[dict]:
    """A small PUT with its audit entry against the same server code with audit.record a no-op
    (baselines/no_audit_app.py): two servers of their own, started like ours, each closed by an
    admin token as in production, 1 KiB PUTs one after the other, interleaved."""
    ours, base = servers.ours(WORK, name="ours-audit"), servers.no_audit(WORK)
    tokens = {server.name: servers.admin_token(server) for server in (ours, base)}
    try:
        for server in (ours, base):
            server.start()
            workloads.small_puts(server.url, tokens[server.name], 200)  # warm: the bucket, imports, caches
        entry = rate_row("audit_overhead_small_put",
                         lambda: workloads.small_puts(ours.url, tokens[ours.name], AUDIT_PUTS),
                         lambda: workloads.small_puts(base.url, tokens[base.name], AUDIT_PUTS), AUDIT_PUTS,
                         "same server, audit.record a no-op", 0.9)
    finally:
        ours.stop()
        base.stop()
    # Each side did what it says: an upload entry per PUT of ours, none in the baseline's log.
    puts = 200 + REPEATS * AUDIT_PUTS
    entry["upload_entries"] = {name: _uploads_logged(WORK / name / "files.db") for name in ("ours-audit", "no-audit")}
    entry["holds"] = entry["holds"] and entry["upload_entries"] == {"ours-audit": puts, "no-audit": 0}
    return [entry]


def _uploads_logged(database: Path) -> int:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT count(*) FROM audit_log WHERE action = 'upload'").fetchone()[0]


def postgres_rows(bare) -> list[dict]:
    """The seed's two-request flow with PostgreSQL holding the metadata (small files inline in it),
    against the bare app in the same run."""
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster()
    ours = servers.ours(WORK, name="ours-pg", FILES_DATABASE_URL=cluster.create_database())
    count = max(100, SMALL_COUNT // 5)
    try:
        ours.start()
        return [rate_row("small_files_seed_pg", lambda: workloads.small_files(ours.url, "ours", count, 1),
                         lambda: workloads.small_files(bare.url, "bare", count, 1), count,
                         "bare Flask, one POST each", 0.8)]
    finally:
        ours.stop()
        cluster.stop()


def s3_rows() -> list[dict]:
    """The scaled configuration (PostgreSQL, SeaweedFS) against boto3 talking to SeaweedFS itself."""
    from tests.postgres import PostgresCluster
    from tests.seaweedfs import SeaweedFS

    weed, cluster = SeaweedFS(), PostgresCluster()
    bucket = weed.create_bucket()
    ours = servers.ours(WORK, FILES_DATABASE_URL=cluster.create_database(), **weed.settings(bucket))
    try:
        ours.start()
        client, path, megabytes = weed.client(), big_file(SIZE), SIZE / 1e6
        rows = [speed_row("s3_upload_vs_boto3", lambda: workloads.upload_ours_single(ours.url, path),
                          lambda: workloads.s3_upload_file(client, bucket, path), megabytes,
                          "boto3 upload_file to SeaweedFS", 0.5, ours.peak_rss_mib)]
        # Parts joined by SeaweedFS itself (server-side part copies), against the same one-request upload.
        rows.append(speed_row("s3_openai_uploads_parts_1g", lambda: workloads.upload_openai_parts(ours.url, path),
                              lambda: workloads.upload_ours_single(ours.url, path), megabytes,
                              "seed API, one request (curl), same S3", 0.5))
        conn = workloads.connect(ours.url)
        workloads.curl("-X", "POST", "-T", str(path), ours.url + workloads.create_session(conn, "bench", "d.bin", SIZE))
        client.upload_file(str(path), bucket, "direct/download.bin")
        target = WORK / "s3-download.bin"
        rows.append(speed_row("s3_download_vs_boto3",
                              lambda: workloads.download_whole(f"{ours.url}/v1/content/bench/d.bin"),
                              lambda: workloads.s3_download_file(client, bucket, "direct/download.bin", target),
                              megabytes, "boto3 download_file from SeaweedFS", 0.5))
        return rows
    finally:
        ours.stop()
        weed.stop()
        cluster.stop()


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    ours, bare, peer = servers.ours(WORK), servers.bare(WORK), servers.peer(WORK)
    rows: list[dict] = []
    try:
        for server in (ours, bare, peer):
            server.start()
        print(f"bench: {SIZE / MIB:.0f} MiB files, {REPEATS} repeats, {SMALL_COUNT} small files", flush=True)
        groups = {"transfer": lambda: transfer_rows(ours, bare, peer),
                  "concurrency": lambda: concurrency_rows(ours, bare, peer),
                  "listing": lambda: listing_rows(ours), "memory": lambda: memory_rows(ours),
                  "bounded": lambda: bounded.rows(WORK, row),
                  "slow": lambda: slow_client_rows(ours), "postgres": lambda: postgres_rows(bare),
                  "openai": lambda: openai_rows(ours), "cli": lambda: cli_rows(ours), "audit": audit_rows,
                  "kept": lambda: kept.rows(WORK, row, interleaved, min(SIZE, 1024 * MIB))}
        for name, rows_of in groups.items():
            if not ONLY or name in ONLY:
                rows += rows_of()
    finally:
        for server in (ours, bare, peer):
            server.stop()
    if not ONLY or "s3" in ONLY:  # after the others: their servers are down, the machine is ours
        rows += s3_rows()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} " \
              f"{platform.python_version()}, {platform.system()} {platform.release()}"
    (HERE / "results.json").write_text(json.dumps({"machine": machine, "size": SIZE, "rows": rows}, indent=2))
    print(markdown(machine, rows))
    shutil.rmtree(WORK, ignore_errors=True)


def markdown(machine: str, rows: list[dict]) -> str:
    lines = [f"Machine: {machine}; large file {SIZE / MIB:.0f} MiB; median of {REPEATS}, interleaved.", "",
             "| row | ours | baseline | ratio | target | holds | peak RSS |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        rss = f"{r['rss_mib']} MiB" if "rss_mib" in r else ""
        lines.append(f"| {r['name']} | {r['value']} {r['unit']} | {r['baseline_value']} ({r['baseline']}) | "
                     f"{r['ratio']} | {r['target']} | {'yes' if r['holds'] else 'no'} | {rss} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
