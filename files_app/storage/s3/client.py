"""What the S3 store's writer, reader and store share: the client, the names, the error mapping."""

from __future__ import annotations

import functools
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ...errors import StorageError, StorageUnavailable
from ..base import checked_id

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


class S3Client:
    """The bucket, one boto3 client per process, a pool for part uploads, and the server-made names."""


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

    @translate_errors
    def blob_size(self, blob_id: str) -> int | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.blob_key(blob_id))["ContentLength"]
        except ClientError as error:
            if error_code(error) in MISSING:
                return None
            raise
