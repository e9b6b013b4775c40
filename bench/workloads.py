"""What the benchmark clients do. Each function does one measured job and returns seconds taken."""

from __future__ import annotations

import http.client
import io
import json
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from tusclient import client as tus

MIB = 1024 * 1024


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)


def request(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None,
            expect=(200, 201, 204, 206)) -> bytes:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    if response.status not in expect:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return data


def create_session(conn, bucket: str, key: str, size: int) -> str:
    body = json.dumps({"bucket": bucket, "key": key, "size": size})
    return "/v1/files/session:" + json.loads(request(conn, "POST", "/v1/files", body))["id"]


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args], check=True)


def timed(job) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


# --- large uploads ----------------------------------------------------------------------------
def upload_ours_single(base: str, path: Path) -> float:
    conn = connect(base)
    session = create_session(conn, "bench", f"single-{uuid.uuid4().hex}", path.stat().st_size)
    return timed(lambda: curl("-X", "POST", "-T", str(path), base + session))


def upload_ours_chunked(base: str, path: Path, chunk: int = 8 * MIB) -> float:
    conn = connect(base)
    size = path.stat().st_size
    session = create_session(conn, "bench", f"chunked-{uuid.uuid4().hex}", size)

    def send():
        with open(path, "rb") as source:
            offset = 0
            while data := source.read(chunk):
                request(conn, "POST", session, data, {"Upload-Offset": str(offset)})
                offset += len(data)
    return timed(send)


def upload_bare(base: str, path: Path) -> float:
    return timed(lambda: curl("-X", "POST", "-T", str(path), f"{base}/upload/{uuid.uuid4().hex}"))


def upload_tus(endpoint: str, path: Path, chunk: int = 8 * MIB) -> float:
    uploader = tus.TusClient(endpoint).uploader(str(path), chunk_size=chunk,
                                                metadata={"bucket": "bench", "filename": uuid.uuid4().hex})
    return timed(uploader.upload)


# --- downloads --------------------------------------------------------------------------------
def download_whole(url: str) -> float:
    return timed(lambda: curl(url))


def download_ranges(url: str, size: int, parts: int = 16) -> float:
    step = size // parts
    args: list[str] = []
    for index in range(parts):
        end = size - 1 if index == parts - 1 else (index + 1) * step - 1
        args += (["--next"] if args else []) + ["-sS", "--fail", "-o", "/dev/null", "-r", f"{index * step}-{end}", url]
    return timed(lambda: subprocess.run(["curl", *args], check=True))


# --- many uploads at once ---------------------------------------------------------------------
def concurrent_uploads(base: str, kind: str, count: int = 32, size: int = 16 * MIB) -> tuple[float, int]:
    """`count` threads each upload `size` bytes; returns (seconds, errors)."""
    payload = b"x" * size

    def one(index: int) -> bool:
        conn = connect(base)
        try:
            if kind == "ours":
                session = create_session(conn, "bench", f"concurrent-{uuid.uuid4().hex}", size)
                request(conn, "POST", session, payload)
            else:
                request(conn, "POST", f"/upload/{uuid.uuid4().hex}", payload)
            return True
        except (OSError, RuntimeError):
            return False

    with ThreadPoolExecutor(count) as pool:
        start = time.perf_counter()
        results = list(pool.map(one, range(count)))
        return time.perf_counter() - start, results.count(False)


def small_files(base: str, kind: str, count: int, threads: int, size: int = 4096) -> float:
    """`count` files of `size` bytes, each a new object, over keep-alive connections. `kind`: ours
    (the seed's two requests: create the session, send the bytes), ours-put (one PUT), bare."""
    payload = b"s" * size
    per_thread = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def worker(n: int) -> None:
        conn = connect(base)
        for _ in range(n):
            name = uuid.uuid4().hex
            if kind == "ours":
                request(conn, "POST", create_session(conn, "small", name, size), payload)
            elif kind == "ours-put":
                request(conn, "PUT", f"/v1/files/small/{name}", payload)
            else:
                request(conn, "POST", f"/upload/{name}", payload)

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(worker, per_thread))
        return time.perf_counter() - start


def small_puts(base: str, token: str, count: int, bucket: str = "audit", size: int = 1024) -> float:
    """`count` new files of `size` bytes, one `PUT /v1/files/{bucket}/{key}` each with a bearer
    token, one after the other on one keep-alive connection."""
    payload, headers = b"a" * size, {"Authorization": f"Bearer {token}"}
    conn = connect(base)

    def run():
        for _ in range(count):
            request(conn, "PUT", f"/v1/files/{bucket}/{uuid.uuid4().hex}", payload, headers)
    try:
        return timed(run)
    finally:
        conn.close()


def small_files_tus(endpoint: str, count: int, size: int = 4096) -> float:
    client = tus.TusClient(endpoint)
    payload = b"t" * size

    def run():
        for _ in range(count):
            client.uploader(file_stream=io.BytesIO(payload), chunk_size=size,
                            metadata={"bucket": "smalltus", "filename": uuid.uuid4().hex}).upload()
    return timed(run)


# --- listing ----------------------------------------------------------------------------------
def page_time(base: str, path: str, repeats: int = 25) -> float:
    """Median seconds for one GET of `path` on a warm keep-alive connection."""
    conn = connect(base)
    request(conn, "GET", path)  # warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        request(conn, "GET", path)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- straight to S3 (the baseline of the S3 rows) ----------------------------------------------
def s3_upload_file(client, bucket: str, path: Path) -> float:
    """boto3's managed transfer: multipart, 8 MiB parts, 10 threads (its defaults)."""
    return timed(lambda: client.upload_file(str(path), bucket, f"direct/{uuid.uuid4().hex}"))


def s3_download_file(client, bucket: str, key: str, target: Path) -> float:
    def run():
        client.download_file(bucket, key, str(target))
        target.unlink()
    return timed(run)


# --- the OpenAI-compatible API, driven by the openai SDK -------------------------------------------
def openai_client(base: str):
    import openai

    return openai.OpenAI(base_url=f"{base}/v1/openai/v1", api_key="bench", max_retries=0, timeout=600)


def upload_openai_file(base: str, path: Path) -> float:
    """`files.create` of a file object: the SDK streams it as one multipart request."""
    client = openai_client(base)

    def send():
        with open(path, "rb") as source:
            client.files.create(file=source, purpose="batch")
    return timed(send)


def upload_openai_parts(base: str, path: Path, part_size: int = 64 * MIB, parallel: int = 4) -> float:
    """The Uploads API: parts of 64 MiB, four at a time, then one completion."""
    client = openai_client(base)
    size = path.stat().st_size

    def part(offset: int) -> str:
        with open(path, "rb") as source:
            source.seek(offset)
            return client.uploads.parts.create(upload_id, data=source.read(part_size)).id

    def send():
        nonlocal upload_id
        upload_id = client.uploads.create(bytes=size, filename=path.name, mime_type="application/octet-stream",
                                          purpose="batch").id
        with ThreadPoolExecutor(parallel) as pool:
            part_ids = list(pool.map(part, range(0, size, part_size)))
        assert client.uploads.complete(upload_id, part_ids=part_ids).status == "completed"
    upload_id = ""
    return timed(send)


# --- the command-line client (client/) ----------------------------------------------------------
def _cli_env(base: str, state: Path) -> dict:
    import os

    return {"PATH": os.environ["PATH"], "HOME": str(state), "XDG_CONFIG_HOME": str(state / "config"),
            "XDG_STATE_HOME": str(state / "state"), "FILES_URL": base}


def cli_copy(base: str, source: Path, target: str, state: Path, *extra: str) -> float:
    """`files cp` (with `extra` options), as a user runs it."""
    import sys

    files = str(Path(sys.executable).with_name("files"))
    return timed(lambda: subprocess.run([files, "cp", *extra, str(source), target], env=_cli_env(base, state),
                                        check=True, capture_output=True))


def curl_put_loop(base: str, folder: Path, prefix: str) -> float:
    """One `curl -T` per file, one after the other: what a shell script does."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return timed(lambda: [curl("-T", str(path), f"{base}/v1/files/small/{prefix}{uuid.uuid4().hex}")
                          for path in files])
