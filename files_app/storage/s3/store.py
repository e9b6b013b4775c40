"""The S3 blob store: sessions as multipart uploads, blobs as objects (see the package's docstring)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import wait
from typing import Any, BinaryIO

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from ...errors import StorageError
from ..base import checked_id
from .client import MIN_PART_SIZE, MISSING, S3Client, error_code, translate_errors
from .reader import S3BlobReader
from .writer import S3PartialWriter

MAX_PART_SIZE = 5 * 1024 ** 3


class S3BlobStore(S3Client):
    """Blobs and upload sessions in one S3 bucket; its client, names and error mapping are S3Client's."""

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

    @translate_errors
    def put_blob_stream(self, blob_id: str, source: BinaryIO) -> None:
        """boto3's managed transfer: one PUT for a small blob, else a multipart upload of part_size
        parts, two at a time (at most three parts in memory; an object appears only when complete)."""
        config = TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
                                max_concurrency=2)
        self.client.upload_fileobj(_Filled(source), self.bucket, self.blob_key(blob_id), Config=config)

    def can_join(self, sizes: list[int]) -> bool:
        """S3's rules for a multipart upload's parts: at most 10,000, each at most 5 GiB, all but the
        last at least 5 MiB (and none empty: a copy of nothing is refused)."""
        return (0 < len(sizes) <= 10000 and all(0 < size <= MAX_PART_SIZE for size in sizes)
                and all(size >= MIN_PART_SIZE for size in sizes[:-1]))

    @translate_errors
    def join_blobs(self, blob_ids: list[str], into: str) -> str:
        """A multipart upload whose parts are UploadPartCopy's of the blobs, a few at a time: the
        object store copies the bytes itself. Done again after a crash, it makes the same blob."""
        key = self.blob_key(checked_id(into))
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        copies = [self.uploader.submit(self.client.upload_part_copy, Bucket=self.bucket, Key=key, UploadId=upload,
                                       PartNumber=number, CopySource={"Bucket": self.bucket,
                                                                      "Key": self.blob_key(blob_id)})
                  for number, blob_id in enumerate(blob_ids, 1)]
        try:
            parts = [{"PartNumber": number, "ETag": copy.result()["CopyPartResult"]["ETag"]}
                     for number, copy in enumerate(copies, 1)]
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload,
                                                  MultipartUpload={"Parts": parts})
        except BaseException:
            for copy in copies:
                copy.cancel()
            wait(copies)
            self._abort(into, upload)
            raise
        return into

    def open_blob(self, blob_id: str) -> S3BlobReader:
        return S3BlobReader(self, self.blob_key(blob_id))

    @translate_errors
    def delete_blob(self, blob_id: str) -> None:
        self.delete(self.blob_key(blob_id))

    @translate_errors
    def quarantine_blob(self, blob_id: str) -> None:
        """Copied under quarantine/ by the object store itself, then deleted from blobs/."""
        key = self.blob_key(blob_id)
        try:
            # The managed copy: a blob past 5 GiB is copied in parts (copy_object takes at most 5 GiB).
            self.client.copy({"Bucket": self.bucket, "Key": key}, self.bucket, f"quarantine/{checked_id(blob_id)}")
        except ClientError as error:
            if error_code(error) not in MISSING:
                raise
            return
        self.delete(key)

    def free_bytes(self) -> None:
        return None  # an object store has no free space to promise

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


class _Filled:
    """A source whose reads return all that was asked unless at the end: the managed transfer takes a
    short first read for the whole object (and would store a blob cut short)."""

    def __init__(self, source: BinaryIO):
        self._source = source

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self._source.read(1024 * 1024), b""))
        pieces, wanted = [], size
        while wanted > 0 and (piece := self._source.read(wanted)):
            pieces.append(piece)
            wanted -= len(piece)
        return b"".join(pieces)
