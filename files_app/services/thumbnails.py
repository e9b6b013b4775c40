"""Thumbnails of image files: made once by Pillow, kept in the `thumbnails` table (gone with their
file, made again for a replaced one).

Uploaded images are untrusted: only files up to MAX_SOURCE bytes are read, only the raster formats
below are opened, an image of more than MAX_PIXELS pixels (a decompression bomb) is refused before
it is decoded, JPEGs are decoded at a reduced scale, and at most DECODERS decode at once per process.
What cannot be made is remembered as such (an empty row), so a bad file is read once.

Memory is bounded by design: a request takes a decoder slot before it opens the source, so however
many ask at once (thirty first-time thumbnails, or anyone holding a share link), at most DECODERS
sources are read and decoded at a time, each at most MAX_SOURCE bytes and MAX_PIXELS pixels; the
others wait holding nothing but their request. The decoding runs on DECODERS threads of its own
(glibc keeps freed memory in the arena of the thread that used it). A blob that is a file on this
host is not read into memory at all: Pillow reads it from the file as it decodes. A request that
waited finds the thumbnail another one made meanwhile, and does not make it again.
"""

from __future__ import annotations

import io
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError
from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from ..errors import InvalidInput, NotFound
from ..models import Thumbnail, db, transaction
from .objects import ObjectService

SIZES = (128, 256, 512)
MAX_SOURCE = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000
DECODERS = threading.BoundedSemaphore(2)
# Decoding happens on these threads, never on a request's own: each thread's allocations come from its
# own malloc arena, and arenas keep what they freed. Thirty requests decoding in turn on thirty threads
# took a worker from 78 to 1,160 MiB (each arena kept one decode's memory); on two threads, ~+170 MiB.
_DECODER_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="thumbnail-decoder")
_FORMATS = ["PNG", "JPEG", "GIF", "WEBP", "BMP"]
_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
_thumbs = Thumbnail.__table__
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # past twice this Pillow refuses outright; past it, it warns (an error here)


def _placeholder() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (1, 1), (0, 0, 0, 0)).save(out, "WEBP")
    return out.getvalue()


PLACEHOLDER = _placeholder()  # a transparent pixel, where a page asked not to be told "none"


def can_have_one(mime_type: str) -> bool:
    return mime_type.split(";")[0].strip().lower() in _TYPES


class ThumbnailService:
    def __init__(self, objects: ObjectService):
        self.objects = objects

    def get(self, bucket: str, key: str, size: int) -> tuple[bytes, str]:
        """(the WebP thumbnail, the source's sha256); 404 when the file is no image we read."""
        if size not in SIZES:
            raise InvalidInput(f"size must be one of {', '.join(map(str, SIZES))}", "invalid_size")
        row = self.objects.row(bucket, key)
        if not can_have_one(row.mime_type):
            raise NotFound(f"{key!r} is not an image with a thumbnail")
        data = self._kept(row.id, size, row.sha256)
        if data is None:
            if row.size > MAX_SOURCE:
                data = b""
                self._keep(row.id, size, row.sha256, data)
            else:
                with DECODERS:  # before a byte of the source is read: memory is bounded by the slots
                    data = self._kept(row.id, size, row.sha256)  # made by a request that held a slot first
                    if data is None:
                        data = self._make(bucket, key, size)
                        self._keep(row.id, size, row.sha256, data)
        if not data:
            raise NotFound(f"no thumbnail can be made of {key!r}")
        return data, row.sha256

    @staticmethod
    def _kept(object_id: int, size: int, sha256: str) -> bytes | None:
        """The thumbnail kept for this file's current content (b"" for "none can be made"), or None."""
        with transaction():
            kept = db.session.execute(select(_thumbs.c.data, _thumbs.c.source_sha256).where(
                _thumbs.c.object_id == object_id, _thumbs.c.size == size)).first()
        return kept.data if kept is not None and kept.source_sha256 == sha256 else None

    def _make(self, bucket: str, key: str, size: int) -> bytes:
        """Called holding a decoder slot: the source is opened and read only now."""
        _, stream = self.objects.open(bucket, key)
        with stream:
            # A file on this host is decoded from the file itself; other bytes (an object store's,
            # a small file's inline copy) are read first, at most MAX_SOURCE of them.
            source = stream if stream.can_sendfile else io.BytesIO(stream.read(MAX_SOURCE + 1))
            try:
                return _DECODER_THREADS.submit(_thumbnail, source, size).result()
            except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning, OSError,
                    ValueError, SyntaxError, EOFError):
                return b""  # not an image Pillow reads safely: remembered, never retried

    @staticmethod
    def _keep(object_id: int, size: int, sha256: str, data: bytes) -> None:
        try:
            with transaction():
                db.session.execute(delete(_thumbs).where(_thumbs.c.object_id == object_id, _thumbs.c.size == size))
                db.session.execute(insert(_thumbs), dict(object_id=object_id, size=size, source_sha256=sha256,
                                                         data=data))
        except IntegrityError:
            pass  # made by another request at once, or the file deleted meanwhile: nothing to keep


def _thumbnail(source: BinaryIO, size: int) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(source, formats=_FORMATS) as image:  # reads the header only
            if image.width * image.height > MAX_PIXELS:
                raise Image.DecompressionBombError("too many pixels")
            image.draft("RGB", (size, size))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
            image.thumbnail((size, size))
            out = io.BytesIO()
            image.convert("RGBA" if "A" in image.getbands() else "RGB").save(out, "WEBP", quality=80)
            return out.getvalue()
