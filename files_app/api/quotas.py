"""Quotas: `GET|PUT /v1/quotas/{bucket}`, `/v1/quotas/users/{name}`, `/v1/quotas/tokens/{id}`
(not under /v1/files/{bucket}/..., where every path may be a key). Admins set them; a bucket's is
readable by whoever may read the bucket."""

from __future__ import annotations

from typing import Any

from flask import request

from .. import auth
from ..access import access
from ..errors import Forbidden
from ..request_io import quotas, read_json_object
from ..services.quotas import QuotaInfo
from .blueprints import api_bp


def quota_json(info: QuotaInfo) -> dict[str, Any]:
    kind = info.subject.partition(":")[0]
    return {"subject": kind, "name": info.name, "max_bytes": info.max_bytes, "max_files": info.max_files,
            "used_bytes": info.usage.bytes, "used_files": info.usage.files,
            "promised_bytes": info.usage.promised_bytes, "promised_files": info.usage.promised_files,
            "kept_bytes": info.usage.kept_bytes, "kept_files": info.usage.kept_files}


@api_bp.get("/quotas/<bucket>")
@access("read", bucket="bucket")
def bucket_quota(bucket: str):
    return quota_json(quotas().get(quotas().subject("bucket", bucket)))


@api_bp.put("/quotas/<bucket>")
@access("admin", bucket="bucket")
def set_bucket_quota(bucket: str):
    fields = read_json_object(request.stream)
    return quota_json(quotas().set(quotas().subject("bucket", bucket), fields.get("max_bytes"),
                                   fields.get("max_files")))


@api_bp.route("/quotas/<any(users, tokens):kind>/<name>", methods=["GET", "PUT"])
@access("admin")
def owner_quota(kind: str, name: str):
    """A user's (by name) or a token's (by id) byte quota, over all buckets."""
    if auth.current().bucket:
        raise Forbidden("a token confined to a bucket cannot see or set a user's or token's quota")
    subject = quotas().subject(kind.removesuffix("s"), name)
    if request.method == "GET":
        info = quotas().get(subject)
    else:
        fields = read_json_object(request.stream)
        info = quotas().set(subject, fields.get("max_bytes"), fields.get("max_files"))
    return quota_json(info) | {"name": name}  # a user's subject names its id: answer with the name asked for
