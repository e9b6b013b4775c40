"""One file up or down, resumable.

Up: a file that fits in one chunk is one PUT with its sha256; a larger one goes through an upload
session, chunk by chunk, each read from the file (and hashed) as it is sent, the last with the whole
file's sha256, which the server checks before it stores anything.
The session's URL is kept in the state dir (keyed by the source's path, size and mtime and the
destination), so the same command after Ctrl-C, a kill or a broken network asks the server where
the session stands and sends only the rest. Down: into `<name>.part`, resumed with Range and
If-Range (the file's ETag is its sha256), checked against the sha256, then renamed into place.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from .api import Api, ApiError, content_path, file_path
from .config import TransferState

Progress = Callable[[int], None]  # called with each number of bytes moved (negative: taken back)
STOP = threading.Event()  # set on Ctrl-C: transfers stop at their next chunk, resumable


@dataclass(frozen=True)
class Done:
    bytes: int
    sha256: str
    resumed_from: int = 0


class TransferFailed(Exception):
    pass


class Stopped(Exception):
    """Ctrl-C: the transfer stopped between two chunks; the same command resumes it."""


def _check_stop() -> None:
    if STOP.is_set():
        raise Stopped("stopped; run the same command again to resume")


def upload_file(api: Api, source: Path, bucket: str, key: str, *, chunk_size: int, if_not_exists: bool,
                progress: Progress, on_resume: Callable[[int], None] | None = None) -> Done:
    stat = source.stat()
    if stat.st_size <= chunk_size:
        return _put_whole(api, source, bucket, key, if_not_exists, progress)
    state = TransferState("uploads")
    identity = (str(source.resolve()), stat.st_size, stat.st_mtime_ns, api.url, bucket, key)
    session_url, offset = _session(api, state, identity, source, bucket, key, stat.st_size, if_not_exists)
    if offset and on_resume:
        on_resume(offset)
    resumed_from, refused = offset, 0
    hasher = _hash_prefix(source, offset)
    progress(offset)
    with open(source, "rb") as reader:
        while True:
            _check_stop()
            length = min(chunk_size, stat.st_size - offset)
            headers = {"Upload-Offset": str(offset), "Content-Type": "application/octet-stream",
                       "Content-Length": str(length)}
            last, data = offset + length == stat.st_size, b""
            if last:  # its headers carry the whole file's sha256: hash it before it goes
                reader.seek(offset)
                data = reader.read(length)
                whole = hasher.copy()
                whole.update(data)
                headers["X-Checksum-Sha256"] = whole.hexdigest()
            sent = hasher

            def attempt(offset=offset, length=length, headers=headers, last=last, data=data, base=hasher):
                nonlocal sent
                sent = base.copy()  # a retry hashes its bytes again, from the chunk's start
                body = data if last else _pieces(reader, offset, length, sent)
                return api.checked(api.http.post(session_url, content=body, headers=headers))
            try:
                response = api.patiently(attempt)
            except (ApiError, httpx.TransportError) as error:
                # The server knows where the session stands (a lost answer may have stored this chunk).
                if isinstance(error, ApiError) and (error.status != 409 or refused == 5):
                    if error.status in (404, 410, 422):
                        state.forget(identity)
                    raise
                refused += 1
                moved = _where(api, session_url)
                progress(moved - offset)
                hasher, offset = _hash_prefix(source, moved), moved
                if offset == stat.st_size:
                    return _finished(api, state, identity, bucket, key, whole_sha256(source), resumed_from)
                continue
            progress(length)
            offset, refused = offset + length, 0
            if not last:
                hasher = sent
                continue
            stored = response.json()
            state.forget(identity)
            if stored.get("sha256") != whole.hexdigest():
                raise TransferFailed(f"the server stored sha256 {stored.get('sha256')}, not {whole.hexdigest()}")
            return Done(stat.st_size, stored["sha256"], resumed_from)


def _pieces(reader, offset: int, length: int, hasher) -> Iterator[bytes]:
    """A chunk's bytes read from the file as they are sent, hashed on the way (no chunk in memory)."""
    reader.seek(offset)
    while length > 0:
        data = reader.read(min(length, 1024 * 1024))
        if not data:
            raise TransferFailed("the file shrank while it was being sent")
        hasher.update(data)
        length -= len(data)
        yield data


def _put_whole(api: Api, source: Path, bucket: str, key: str, if_not_exists: bool, progress: Progress) -> Done:
    data = source.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    headers = {"X-Checksum-Sha256": digest, "Content-Type": _mime_type(key)}
    if if_not_exists:
        headers["If-None-Match"] = "*"
    stored = api.call("PUT", file_path(bucket, key), content=data, headers=headers).json()
    progress(len(data))
    return Done(len(data), stored["sha256"])


def _session(api: Api, state: TransferState, identity: tuple, source: Path, bucket: str, key: str, size: int,
             if_not_exists: bool) -> tuple[str, int]:
    """The session to send to and its durable offset: the one kept for this very transfer if the
    server still has it, else a new one."""
    kept = state.get(identity)
    if kept:
        try:
            return kept["url"], _where(api, kept["url"])
        except ApiError as error:
            if error.status not in (404, 410):
                raise
            state.forget(identity)  # expired or aborted meanwhile: start again
    headers = {"If-None-Match": "*"} if if_not_exists else {}
    body = {"bucket": bucket, "key": key, "size": size, "mime_type": _mime_type(key)}
    session = api.call("POST", "/v1/files", json=body, headers=headers).json()
    state.put(identity, {"url": session["url"], "source": identity[0], "bucket": bucket, "key": key})
    return session["url"], session["offset"]


def _where(api: Api, session_url: str) -> int:
    return api.call("GET", session_url).json()["offset"]


def _finished(api: Api, state: TransferState, identity: tuple, bucket: str, key: str, digest: str,
              resumed_from: int) -> Done:
    """The session ended with a chunk whose answer was lost: the file is there; check it is ours."""
    state.forget(identity)
    stored = api.info(bucket, key)
    if stored["sha256"] != digest:
        raise TransferFailed(f"the server stored sha256 {stored['sha256']}, not {digest}")
    return Done(stored["bytes"], digest, resumed_from)


def download_file(api: Api, bucket: str, key: str, target: Path, *, progress: Progress,
                  on_resume: Callable[[int], None] | None = None) -> Done:
    info = api.info(bucket, key)
    partial = target.with_name(target.name + ".part")
    state = TransferState("downloads")
    identity = (str(partial.resolve()), api.url, bucket, key)
    kept = state.get(identity)
    if not (kept and kept.get("etag") == info["sha256"] and partial.exists()):
        partial.unlink(missing_ok=True)  # another file's bytes, or none: from the start
    target.parent.mkdir(parents=True, exist_ok=True)
    state.put(identity, {"etag": info["sha256"]})
    resumed_from = partial.stat().st_size if partial.exists() else 0
    if resumed_from and on_resume:
        on_resume(resumed_from)
    progress(resumed_from)

    def fetch() -> httpx.Response:
        have = partial.stat().st_size if partial.exists() else 0
        headers = {"Range": f"bytes={have}-", "If-Range": f'"{info["sha256"]}"'} if have else {}
        with api.http.stream("GET", content_path(bucket, key), headers=headers) as response:
            api.checked(response, ok=(416,))
            if response.status_code == 200 and have:  # the file changed: If-Range sent it whole
                progress(-have)
                have = 0
            if response.status_code != 416:
                with open(partial, "r+b" if have else "wb") as out:
                    out.seek(have)
                    out.truncate()
                    for data in response.iter_bytes(1024 * 1024):
                        out.write(data)
                        progress(len(data))
                        _check_stop()
                    out.flush()
                    os.fsync(out.fileno())
        return response

    api.patiently(fetch)
    digest = whole_sha256(partial)
    if digest != info["sha256"]:
        partial.unlink(missing_ok=True)
        state.forget(identity)
        raise TransferFailed(f"downloaded bytes have sha256 {digest}, not the file's {info['sha256']}")
    partial.replace(target)
    state.forget(identity)
    return Done(info["bytes"], digest, resumed_from)


def whole_sha256(path: Path) -> str:
    return _hash_prefix(path, path.stat().st_size).hexdigest()


def _hash_prefix(path: Path, length: int):
    """The sha256 of a file's first `length` bytes (what a resumed transfer already moved)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as reader:
        while length > 0 and (data := reader.read(min(length, 8 * 1024 * 1024))):
            hasher.update(data)
            length -= len(data)
    return hasher


def _mime_type(key: str) -> str:
    return mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"
