"""What the API views share: the JSON shapes, and reading a small JSON body."""

from __future__ import annotations

import json
from typing import Any

from flask import url_for

from ..errors import InvalidInput
from ..request_io import RequestBody
from ..services import BucketInfo, ObjectInfo, SessionInfo

MAX_JSON_BYTES = 64 * 1024
MAX_DRAIN_BYTES = 1024 * 1024  # read past a refused JSON body this far, so that the 400 reaches the client


def session_json(info: SessionInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "url": url_for("files.session", session_id=info.id, _external=True),
        "offset": info.offset,
        "size": info.size,
    }


def bucket_json(info: BucketInfo) -> dict[str, Any]:
    return {"name": info.name, "created_at": info.created_at, "files": info.object_count,
            "bytes": info.total_bytes, "updated_at": info.updated_at}


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


def read_json_object(stream) -> dict[str, Any]:
    """Parse a small JSON object from the raw body, whatever Content-Type claims: the seed's
    curl examples send JSON as application/x-www-form-urlencoded."""
    body = RequestBody(stream)
    raw = body.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        body.drain(MAX_DRAIN_BYTES)
        raise InvalidInput(f"the JSON body must be at most {MAX_JSON_BYTES} bytes", "body_too_large")
    try:
        value = json.loads(raw)
    except RecursionError:  # "[[[[..." nested past Python's stack: hostile, not a server fault
        raise InvalidInput("the JSON body is nested too deeply", "invalid_json") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"the body is not valid JSON: {error}", "invalid_json") from None
    if not isinstance(value, dict):
        raise InvalidInput("the body must be a JSON object", "invalid_json")
    return value
