"""The domain: plain values in, plain values or domain errors out. No HTTP here."""

from .objects import BucketInfo, ObjectInfo, ObjectPage, ObjectService
from .uploads import SessionInfo, UploadService, WriteResult

__all__ = ["BucketInfo", "ObjectInfo", "ObjectPage", "ObjectService", "SessionInfo", "UploadService",
           "WriteResult"]
