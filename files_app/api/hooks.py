"""Webhooks, for admins: `GET|POST /v1/hooks`, `GET|PATCH|DELETE /v1/hooks/{id}`, and a hook's
delivery log, `GET /v1/hooks/{id}/deliveries`. A hook's secret is in the answer that made it, and
never again. What is sent, and how: services/webhooks.py."""

from __future__ import annotations

from typing import Any

from flask import request

from .. import validation
from ..access import access
from ..errors import InvalidInput
from ..request_io import read_json_object
from ..services import webhooks
from .blueprints import api_bp


def hook_json(info: webhooks.HookInfo) -> dict[str, Any]:
    return {"id": info.id, "url": info.url, "actions": info.actions, "buckets": info.buckets, "enabled": info.enabled,
            "created_at": info.created_at, "created_by": info.created_by,
            "deliveries": {"pending": info.pending, "failed": info.failed}}


def delivery_json(info: webhooks.DeliveryInfo) -> dict[str, Any]:
    return {"id": info.id, "event": info.event, "action": info.action, "bucket": info.bucket, "key": info.key,
            "state": info.state, "attempts": info.attempts, "last_status": info.last_status,
            "last_error": info.last_error, "next_attempt_at": info.next_attempt_at, "delivered_at": info.delivered_at,
            "created_at": info.created_at}


@api_bp.get("/hooks")
@access("admin")
def list_hooks():
    return {"data": [hook_json(info) for info in webhooks.hooks()]}


@api_bp.post("/hooks")
@access("admin")
def create_hook():
    """{url, actions: [...] or ["*"], buckets?: [...] (all when absent or null), secret?: made when absent}."""
    fields = read_json_object(request.stream)
    unknown = set(fields) - {"url", "actions", "buckets", "secret"}
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))}", "invalid_field")
    if "url" not in fields or "actions" not in fields:
        raise InvalidInput("a hook needs a url and its actions", "invalid_request")
    info, secret = webhooks.create_hook(fields["url"], fields["actions"], fields.get("buckets"), fields.get("secret"))
    return {**hook_json(info), "secret": secret}, 201, {"Cache-Control": "no-store"}


@api_bp.get("/hooks/<int:hook_id>")
@access("admin")
def get_hook(hook_id: int):
    return hook_json(webhooks.hook(hook_id))


@api_bp.patch("/hooks/<int:hook_id>")
@access("admin")
def update_hook(hook_id: int):
    """Any of {url, actions, buckets (null: all), enabled, secret}."""
    return hook_json(webhooks.update_hook(hook_id, read_json_object(request.stream)))


@api_bp.delete("/hooks/<int:hook_id>")
@access("admin")
def delete_hook(hook_id: int):
    webhooks.delete_hook(hook_id)
    return "", 204


@api_bp.get("/hooks/<int:hook_id>/deliveries")
@access("admin")
def list_deliveries(hook_id: int):
    """?state=pending|delivered|failed&limit=&cursor=, newest first."""
    page = webhooks.deliveries(hook_id, state=request.args.get("state") or None,
                               cursor=request.args.get("cursor") or None,
                               limit=validation.list_limit(request.args.get("limit"), default=100, maximum=1000))
    return {"data": [delivery_json(info) for info in page.deliveries], "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor}
