"""`GET /v1/audit`: who did what. Admins see everything; a bucket's managers see that bucket's
entries; anyone else, nothing."""

from __future__ import annotations

from typing import Any

from flask import request

from .. import auth, validation
from ..access import access
from ..errors import InvalidInput
from ..request_io import people
from ..services import audit
from .blueprints import api_bp


def entry_json(info: audit.AuditInfo) -> dict[str, Any]:
    return {"id": info.id, "at": info.at, "actor": info.actor, "actor_name": info.actor_name,
            "address": info.address, "user_agent": info.user_agent, "action": info.action, "bucket": info.bucket,
            "key": info.key, "bytes": info.bytes, "detail": info.detail, "outcome": info.outcome}


def _time(name: str) -> float | None:
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(f"{name} is Unix seconds", f"invalid_{name}") from None


@api_bp.get("/audit")
@access("authenticated")
def list_audit():
    """?user=&bucket=&action=&since=&until=&limit=&cursor=, newest first."""
    buckets = people().audit_scope(auth.current(), auth.sees_everything())
    filters = audit.AuditFilter(actor=request.args.get("user"), bucket=request.args.get("bucket"),
                                action=request.args.get("action"), since=_time("since"), until=_time("until"))
    page = audit.page(filters, buckets=buckets, cursor=request.args.get("cursor"),
                      limit=validation.list_limit(request.args.get("limit"), default=100, maximum=1000))
    return {"data": [entry_json(info) for info in page.entries], "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor}
