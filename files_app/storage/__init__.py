"""Blob stores, chosen by configuration (FILES_STORAGE)."""

from __future__ import annotations

from typing import Any

from .base import BlobReader, BlobStore, PartialWriter
from .local import LocalBlobStore

__all__ = ["BlobReader", "BlobStore", "PartialWriter", "LocalBlobStore", "make_store"]


def make_store(settings: dict[str, Any]) -> BlobStore:
    if settings["FILES_STORAGE"] == "s3":
        from .s3 import S3BlobStore  # boto3 is only imported by deployments that use it

        return S3BlobStore(
            endpoint=settings["FILES_S3_ENDPOINT"], bucket=settings["FILES_S3_BUCKET"],
            access_key=settings["FILES_S3_ACCESS_KEY"], secret_key=settings["FILES_S3_SECRET_KEY"],
            region=settings["FILES_S3_REGION"], part_size=settings["FILES_S3_PART_SIZE"],
            presign=bool(settings["FILES_S3_PRESIGN"]), pool_size=max(10, 4 * settings["FILES_THREADS"]))
    return LocalBlobStore(settings["FILES_DATA_DIR"])
