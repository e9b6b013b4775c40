"""The blueprint, OpenAI's error shape, and the JSON shapes of files, uploads and parts."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, current_app, request

from .. import auth
from ..services import acting
from ..services.openai_files import OpenAIFileInfo, OpenAIService, PartInfo, UploadInfo

PREFIX = "/v1/openai/v1"
openai_bp = Blueprint("openai", __name__, url_prefix=PREFIX)
# What the SDK should not retry (it retries 408, 409, 429 and 5xx unless told): nothing a retry fixes.
_RETRY = {408: "true", 423: "true", 429: "true", 503: "true", 507: "false"}
_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


@openai_bp.before_request
def in_the_service_bucket():
    """Every route here works in one bucket of the service's own: a token confined to another may
    not use them, and a member writes there as the service does (each file is theirs by its row,
    the bucket is nobody's: members never browse it through the files API)."""
    auth.check_confinement(current_app.config["FILES_OPENAI_BUCKET"])
    acting.set_actor(dataclasses.replace(acting.current_actor(), user_id=None, every_bucket=True))


def service() -> OpenAIService:
    return current_app.extensions["files"].openai


def speaks_openai() -> bool:
    """Errors here take OpenAI's shape, even where no route matched (the SDK reads them)."""
    return request.blueprint == "openai" or request.path.startswith(PREFIX + "/")


def error_response(status: int, code: str, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None):
    """`{"error": {"message", "type", "param", "code"}}`, and whether a retry can help."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    headers = dict(headers or {})
    if should_retry := _RETRY.get(status, "false" if status < 500 else None):
        headers["x-should-retry"] = should_retry
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}, status, headers


def file_json(info: OpenAIFileInfo) -> dict[str, Any]:
    return {"id": info.id, "object": "file", "bytes": info.bytes, "created_at": info.created_at,
            "expires_at": info.expires_at, "filename": info.filename, "purpose": info.purpose,
            "status": "processed", "status_details": None}


def upload_json(info: UploadInfo) -> dict[str, Any]:
    return {"id": info.id, "object": "upload", "bytes": info.bytes, "created_at": info.created_at,
            "expires_at": info.expires_at, "filename": info.filename, "purpose": info.purpose,
            "status": info.status, "file": file_json(info.file) if info.file else None}


def part_json(info: PartInfo) -> dict[str, Any]:
    return {"id": info.id, "object": "upload.part", "created_at": info.created_at, "upload_id": info.upload_id}
