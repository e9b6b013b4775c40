"""The domain: plain values in, plain values or domain errors out. No HTTP here."""

from .objects import BucketInfo, ObjectInfo, ObjectPage, ObjectService
from .records import ChunkRequest, SessionInfo
from .uploads import UploadService, WriteResult

__all__ = ["BucketInfo", "ChunkRequest", "ObjectInfo", "ObjectPage", "ObjectService", "SessionInfo", "UploadService",
           "WriteResult"]
