"""An S3 upload session's writer: the parts of a multipart upload, and the held tail (see __init__.py)."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import Future

from botocore.exceptions import ClientError

from ...errors import Conflict, StorageError
from .client import S3Client, error_code, translate_errors


class S3PartialWriter:
    """Fills a part in memory and uploads it in the background as the next one fills, with at
    most PARTS_IN_FLIGHT uploads pending: memory per writer stays under (1 + PARTS_IN_FLIGHT)
    parts, and the network works while the request body is read and hashed."""

    PARTS_IN_FLIGHT = 2

    def __init__(self, store: S3Client, session_id: str, offset: int, state: str | None):
        parsed = json.loads(state) if state else {}
        # A session keeps the part size it started with, whatever FILES_S3_PART_SIZE says now.
        self._store, self._id, self._part_size = store, session_id, parsed.get("part", store.part_size)
        self._upload: str | None = parsed.get("upload")
        self._etags: list[str] = list(parsed.get("etags", ()))
        self._tail: str | None = parsed.get("tail")
        self._stale: set[str] = set(parsed.get("stale", ()))
        self._position = offset
        self._pending: list[tuple[Future, bytes, int]] = []  # (upload, its bytes, their offset)
        self._placed = False  # an earlier attempt completed the upload; bytes are only compared
        self._sealed = False
        if len(self._etags) != offset // self._part_size or (offset % self._part_size and not self._tail):
            raise StorageError(f"session {session_id} lost durable bytes (its parts do not reach offset {offset})")
        self._buffer = bytearray(self._read_tail(offset % self._part_size))
        self._tails_written = {self._tail} if self._tail else set()
        self._synced = {offset: self.state()}
        self._clear_stale()

    def write(self, data: bytes) -> None:
        if self._placed:
            self._compare_placed(self._position, data)
            self._position += len(data)
            return
        self._buffer += data
        self._position += len(data)
        while len(self._buffer) >= self._part_size:
            self._upload_part(bytes(memoryview(self._buffer)[:self._part_size]))
            del self._buffer[:self._part_size]

    @translate_errors
    def sync(self) -> None:
        self._settle()
        if self._placed:
            return
        if self._buffer:
            name = uuid.uuid4().hex[:16]
            self._store.put(self._store.tail_key(self._id, name), bytes(self._buffer))
            self._tail = name
            self._tails_written.add(name)
        else:
            self._tail = None
        self._synced[self._position] = self.state()

    @translate_errors
    def sync_for_finalize(self) -> None:
        """The last part goes up now, below the minimum size as S3 allows; a file that never
        filled a part is put whole, with no multipart upload at all."""
        if not self._placed and self._upload is None:
            self._store.put(self._store.blob_key(self._id), bytes(self._buffer))
            self._buffer.clear()
        elif not self._placed and self._buffer:
            self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        self._settle()
        self._tail = None
        self._sealed = True

    def rollback(self, offset: int) -> None:
        self._abandon_pending()
        if self._placed:
            self._position = offset
            return
        if offset not in self._synced:
            raise StorageError(f"cannot roll session {self._id} back to {offset}, which was never synced")
        parsed = json.loads(self._synced[offset])
        self._etags, self._tail, self._position = parsed["etags"], parsed.get("tail"), offset
        self._buffer = bytearray(self._read_tail(offset % self._part_size))

    def state(self) -> str:
        """Call after `sync` or `sync_for_finalize`, which wait for the pending uploads."""
        # Once this state commits, the tails it does not name are nobody's: the next writer deletes them.
        stale = sorted(self._stale | (self._tails_written - {self._tail}))
        # "sealed": every part is up, for `finalize` to complete (and nobody to abort afterwards).
        return json.dumps({"upload": self._upload, "etags": self._etags, "tail": self._tail, "stale": stale,
                           "part": self._part_size, "sealed": self._sealed}, separators=(",", ":"))

    def close(self) -> None:
        """No upload of this writer may land after it is closed (and its lease given up)."""
        self._abandon_pending()
        self._buffer = bytearray()

    # --- inside ----------------------------------------------------------------------------------
    @translate_errors
    def _upload_part(self, data: bytes) -> None:
        client, bucket, key = self._store.client, self._store.bucket, self._store.blob_key(self._id)
        if self._upload is None:
            self._upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self._settle(keep=self.PARTS_IN_FLIGHT - 1)
        if self._placed:
            return  # found out just now: `data` was compared with the rest of the buffer
        number = len(self._etags) + len(self._pending) + 1
        future = self._store.uploader.submit(client.upload_part, Bucket=bucket, Key=key, UploadId=self._upload,
                                             PartNumber=number, Body=data)
        self._pending.append((future, data, self._position - len(self._buffer)))

    @translate_errors
    def _settle(self, keep: int = 0) -> None:
        """Wait for pending part uploads, oldest first, until `keep` remain."""
        while len(self._pending) > keep:
            future, data, start = self._pending.pop(0)
            try:
                self._etags.append(future.result()["ETag"])
                continue
            except ClientError as error:
                if error_code(error) != "NoSuchUpload" or not self._store.blob_size(self._id):
                    raise
            # Completed by an earlier attempt whose commit was lost: what is sent again must match.
            self._placed = True
            for _, later, later_start in self._pending:
                self._compare_placed(later_start, later)
            self._pending.clear()
            self._compare_placed(start, data)
            self._compare_placed(self._position - len(self._buffer), bytes(self._buffer))
            self._buffer.clear()

    def _abandon_pending(self) -> None:
        for future, _, _ in self._pending:
            try:
                future.result()
            except Exception:  # noqa: BLE001 - its bytes are being given up anyway
                pass
        self._pending.clear()

    @translate_errors
    def _read_tail(self, length: int) -> bytes:
        if not length:
            return b""
        key = self._store.tail_key(self._id, self._tail)
        found = self._store.fetch(key)
        if found is None:
            raise StorageError(f"session {self._id} lost the held bytes at {key}")
        data = found.read()
        if len(data) < length:
            raise StorageError(f"session {self._id} holds {len(data)} bytes of a part, not {length}")
        return data[:length]

    @translate_errors
    def _clear_stale(self) -> None:
        """Tails whose parts are uploaded, as a committed row says: nothing refers to them."""
        for name in sorted(self._stale):
            self._store.delete(self._store.tail_key(self._id, name))
        self._stale.clear()

    @translate_errors
    def _compare_placed(self, start: int, data: bytes) -> None:
        if not data:
            return
        stored = self._store.fetch(self._store.blob_key(self._id), f"bytes={start}-{start + len(data) - 1}")
        if stored is None or stored.read() != data:
            raise Conflict("these bytes differ from the ones this upload already completed with")
