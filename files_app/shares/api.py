"""`POST /v1/shares`, `GET /v1/shares`, `GET|DELETE /v1/shares/{id}`: make, list, read and revoke
share links. A share needs write access to its bucket (it lets others in); an admin sees and
revokes everyone's."""

from __future__ import annotations

from typing import Any

from flask import request, url_for

from .. import auth
from ..access import access
from ..api.blueprints import api_bp
from ..request_io import read_json_object, shares
from ..services.shares import ShareInfo


def share_json(share: ShareInfo, secret: str | None = None) -> dict[str, Any]:
    answer = {
        "id": share.id, "bucket": share.bucket, "key": share.key, "prefix": share.prefix,
        "created_at": share.created_at, "expires_at": share.expires_at, "state": share.state(shares().clock()),
        "password": share.password_hash is not None, "max_downloads": share.max_downloads,
        "downloads": share.downloads, "allow_upload": share.allow_upload,
        "upload_max_bytes": share.upload_max_bytes, "uploaded_bytes": share.uploaded_bytes,
        "listing": share.listing,
    }
    if secret is not None:  # shown once: only its hash is kept
        answer["url"] = url_for("shares.page", secret=secret, _external=True)
    return answer


@api_bp.post("/shares")
@access("write")
def create_share():
    fields = read_json_object(request.stream)
    auth.require_bucket(fields.get("bucket"), "write")  # sharing changes who may read
    share, secret = shares().create(fields, auth.current().owner)
    return share_json(share, secret), 201


@api_bp.get("/shares")
@access("authenticated")
def list_shares():
    return {"data": [share_json(share) for share in shares().list(auth.current().owner, auth.sees_everything())]}


@api_bp.get("/shares/<share_id>")
@access("authenticated")
def get_share(share_id: str):
    return share_json(shares().get(share_id, auth.current().owner, auth.sees_everything()))


@api_bp.delete("/shares/<share_id>")
@access("authenticated")
def revoke_share(share_id: str):
    return share_json(shares().revoke(share_id, auth.current().owner, auth.sees_everything()))
