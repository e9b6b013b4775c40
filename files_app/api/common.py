"""The JSON shapes of the API's buckets, files and sessions."""

from __future__ import annotations

from typing import Any

from flask import url_for

from ..services import BucketInfo, ObjectInfo, SessionInfo


def session_json(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "url": url_for("files.session", session_id=info.id, _external=True),
        "offset": info.offset,
        "size": info.size,
    }


def bucket_json(info: BucketInfo) -> dict[str, Any]:
    quota = None if info.max_bytes is None and info.max_files is None else {
        "max_bytes": info.max_bytes, "max_files": info.max_files}
    return {"name": info.name, "created_at": info.created_at, "files": info.object_count,
            "bytes": info.total_bytes, "updated_at": info.updated_at, "quota": quota}


def file_json(info: ObjectInfo) -> dict[str, Any]:
    return {
        "key": info.key,
        "bucket": info.bucket,
        "mime_type": info.mime_type,
        "bytes": info.size,
        "created_at": info.created_at,
        "sha256": info.sha256,
        "url": url_for("api.content", bucket=info.bucket, key=info.key, _external=True),
    }
