"""Blob stores, chosen by configuration."""

from __future__ import annotations

from typing import Any

from .base import BlobStore, PartialWriter
from .local import LocalBlobStore

__all__ = ["BlobStore", "PartialWriter", "LocalBlobStore", "make_store"]


def make_store(settings: dict[str, Any]) -> BlobStore:
    return LocalBlobStore(settings["FILES_DATA_DIR"])
