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


from .client import MIN_PART_SIZE
from .store import S3BlobStore

__all__ = ["MIN_PART_SIZE", "S3BlobStore"]
