"""S3-compatible object storage (AWS S3, SeaweedFS, MinIO, Ceph) through boto3.

In the bucket, every name is server-made:
  blobs/<id>                  a file's bytes (its session's id, or a fresh id for a small file)
  tails/<session-id>/<name>   the bytes of a part that is not full yet, a new name each sync
An upload session is a multipart upload on `blobs/<session-id>`, made when its first part fills.
Parts are FILES_S3_PART_SIZE bytes (S3 wants at least 5 MiB but for the last), so a chunk that
ends inside a part leaves that part's bytes in a tail object, where any host can take them up.
The session row keeps the upload id, the parts' ETags and the tail's name with the offset
(`state()`), so going on needs no listing, and a writer that died or lost its lease after
writing a tail never changes the one the row names.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import StorageError, StorageUnavailable
from .base import checked_id

if TYPE_CHECKING:
    from .s3_parts import S3PartialWriter

MIN_PART_SIZE = 5 * 1024 * 1024
MISSING = ("NoSuchKey", "404", "NotFound")
_TAIL_RE = re.compile(r"[0-9a-f]{16}")


def translate_errors(function):
    """An unreachable or overloaded store is a 503 (retry); what it refused is a 500."""
    @functools.wraps(function)
    def guarded(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500 or error.response.get("Error", {}).get("Code") in ("SlowDown", "ServiceUnavailable"):
                raise StorageUnavailable("the object store is unavailable; retry shortly") from None
            raise StorageError(f"the object store refused {function.__name__}: {error}") from None
        except BotoCoreError as error:  # refused, reset or timed out connections
            raise StorageUnavailable(f"the object store is unreachable ({type(error).__name__}); "
                                     "retry shortly") from None
    return guarded


def _checked_tail(name: str) -> str:
    if not _TAIL_RE.fullmatch(name):
        raise ValueError(f"not a server-made tail name: {name!r}")
    return name


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3BlobStore:
    def __init__(self, *, endpoint: str, bucket: str, access_key: str, secret_key: str, region: str,
                 part_size: int, presign: bool, pool_size: int = 32):
        self.bucket = bucket
        self.part_size = part_size
        self.presign = presign
        self._client_args = dict(
            endpoint_url=endpoint or None, aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None, region_name=region,
            config=Config(
                signature_version="s3v4", s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=60,
                max_pool_connections=pool_size,
                # Integrity is the sha256 the service checks; per-request CRCs would hash it all again.
                request_checksum_calculation="when_required", response_checksum_validation="when_required",
            ),
        )
        self._pool_size = pool_size
        self._client = None
        self._uploader: ThreadPoolExecutor | None = None
        self._client_pid = 0
        self._client_lock = threading.Lock()

    @property
    def client(self):
        """One client per process (gunicorn forks after the app is made); boto3 clients are thread-safe."""
        if self._client is None or self._client_pid != os.getpid():
            with self._client_lock:
                if self._client is None or self._client_pid != os.getpid():
                    self._client = boto3.client("s3", **self._client_args)
                    self._uploader = ThreadPoolExecutor(self._pool_size // 2, thread_name_prefix="s3-parts")
                    self._client_pid = os.getpid()
        return self._client

    @property
    def uploader(self) -> ThreadPoolExecutor:
        """Threads that upload parts while writers go on reading their request bodies."""
        self.client  # noqa: B018 - made with the client, once per process
        return self._uploader

    # --- names -----------------------------------------------------------------------------------
    @staticmethod
    def blob_key(blob_id: str) -> str:
        return f"blobs/{checked_id(blob_id)}"

    @staticmethod
    def tail_key(session_id: str, name: str) -> str:
        return f"tails/{checked_id(session_id)}/{_checked_tail(name)}"

    # --- one object; callers translate the errors --------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def fetch(self, key: str, byte_range: str | None = None):
        """The object's streaming body (only `byte_range`, an HTTP Range, if given), or None if
        there is no such object."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key,
                                          **({"Range": byte_range} if byte_range else {}))["Body"]
        except ClientError as error:
            if error_code(error) in MISSING:
                return None
            raise

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    # --- sessions --------------------------------------------------------------------------------
    @translate_errors
    def ensure_ready(self) -> None:
        """Create the bucket if it is missing (the first start of a new deployment)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error_code(error) not in MISSING + ("NoSuchBucket",):
                raise
            self.client.create_bucket(Bucket=self.bucket)

    def open_partial(self, session_id: str, offset: int, state: str | None) -> S3PartialWriter:
        from .s3_parts import S3PartialWriter  # it uses this module's helpers

        return S3PartialWriter(self, checked_id(session_id), offset, state)

    @translate_errors
    def discard_partial(self, session_id: str, state: str | None) -> None:
        parsed = json.loads(state) if state is not None else None
        if parsed is None:  # an orphan, or a session gone without its row: whatever is there
            for upload in self._uploads(prefix=self.blob_key(session_id)):
                self._abort(session_id, upload["UploadId"])
        elif parsed["upload"] and not parsed.get("sealed"):  # a sealed one was completed by `finalize`
            self._abort(session_id, parsed["upload"])
        if parsed is not None and not parsed["tail"] and not parsed["stale"]:
            return  # it never held a tail
        for entry in self._objects(f"tails/{checked_id(session_id)}/"):
            self.delete(entry["Key"])

    def _abort(self, session_id: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.blob_key(session_id), UploadId=upload_id)
        except ClientError as error:
            if error_code(error) not in ("NoSuchUpload",) + MISSING:
                raise

    @translate_errors
    def finalize(self, session_id: str, size: int, state: str | None) -> str:
        """CompleteMultipartUpload with the parts the row lists. A session that fit in one part was
        put whole by `sync_for_finalize`. Done again after a crash, the upload is gone and the blob
        is there: its size says whether it is this session's."""
        parsed = json.loads(state or "{}")
        if parsed.get("upload"):
            parts = [{"PartNumber": number, "ETag": etag} for number, etag in enumerate(parsed["etags"], 1)]
            try:
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=self.blob_key(session_id),
                                                      UploadId=parsed["upload"], MultipartUpload={"Parts": parts})
                return session_id
            except ClientError as error:
                if error_code(error) != "NoSuchUpload":
                    raise
        placed = self.blob_size(session_id)
        if placed != size:
            raise StorageError(f"session {session_id} holds {placed} bytes, not {size}")
        return session_id

    # --- blobs -------------------------------------------------------------------------------------
    @translate_errors
    def put_blob(self, blob_id: str, data: bytes) -> None:
        self.put(self.blob_key(blob_id), data)

    def open_blob(self, blob_id: str) -> S3BlobReader:
        return S3BlobReader(self, self.blob_key(blob_id))

    @translate_errors
    def blob_size(self, blob_id: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.blob_key(blob_id))["ContentLength"]
        except ClientError as error:
            if error_code(error) in MISSING:
                return None
            raise

    @translate_errors
    def delete_blob(self, blob_id: str) -> None:
        self.delete(self.blob_key(blob_id))

    def release_blob(self, blob_id: str) -> None:
        """Left for gc's orphan sweep: a reader fetches a blob only when it starts sending, and
        must not find it gone after its row said it was there."""

    # --- for gc --------------------------------------------------------------------------------------
    @translate_errors
    def blob_ids(self, older_than: float) -> list[str]:
        return [entry["Key"].rsplit("/", 1)[-1] for entry in self._objects("blobs/")
                if entry["LastModified"].timestamp() < older_than]

    @translate_errors
    def partial_ids(self, older_than: float) -> list[str]:
        """Sessions with multipart uploads or tails older than `older_than`."""
        seen = {upload["Key"].rsplit("/", 1)[-1] for upload in self._uploads(prefix="blobs/")
                if upload["Initiated"].timestamp() < older_than}
        seen.update(entry["Key"].split("/")[1] for entry in self._objects("tails/")
                    if entry["LastModified"].timestamp() < older_than)
        return sorted(seen)

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", ())

    def _uploads(self, prefix: str) -> Iterator[dict[str, Any]]:
        for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Uploads", ())


class S3BlobReader:
    """A blob's bytes, fetched from where `seek` puts it onwards (Range), in one streamed GET."""

    def __init__(self, store: S3BlobStore, key: str):
        self._store, self._key = store, key
        self._position = 0
        self._end: int | None = None
        self._body = None

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0:
            raise OSError("S3 blobs seek from the start only")
        if offset != self._position:
            self._drop()
            self._position = offset
        return offset

    @translate_errors
    def direct_url(self, *, content_type: str, disposition: str) -> str | None:
        """With FILES_S3_PRESIGN, a presigned GET (five minutes) that answers with our headers."""
        if not self._store.presign:
            return None
        return self._store.client.generate_presigned_url("get_object", ExpiresIn=300, Params={
            "Bucket": self._store.bucket, "Key": self._key,
            "ResponseContentType": content_type, "ResponseContentDisposition": disposition})

    def bound(self, end: int) -> None:
        """Only bytes before `end` will be read: ask S3 for no more."""
        if self._body is None:
            self._end = end

    @translate_errors
    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            wanted = f"bytes={self._position}-" + ("" if self._end is None else str(self._end - 1))
            if self._end is not None and self._end <= self._position:
                return b""
            try:
                self._body = self._store.fetch(self._key, wanted)
            except ClientError as error:
                if error_code(error) == "InvalidRange":
                    return b""  # at or past the end
                raise
            if self._body is None:
                raise StorageError(f"{self._key} is missing from the object store")
        data = self._body.read(None if size < 0 else size)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def __enter__(self) -> S3BlobReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
