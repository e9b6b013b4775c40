"""A bucket's trash (/v1/trash/{bucket}) and a key's versions (/v1/versions/{bucket}/{key}): never
under /v1/files, whose paths are the seed's."""

from __future__ import annotations

from typing import Any

from flask import request

from .. import validation
from ..access import access
from ..downloads import send_object
from ..errors import InvalidInput
from ..request_io import is_chunked, read_json_object, trash, uploader_name
from ..services.kept import on_conflict_arg
from ..services.trash import MAX_ID, KeptEntry, Restored
from .blueprints import api_bp
from .common import file_json


def trash_entry_json(entry: KeptEntry, trash_days: int) -> dict[str, Any]:
    return {"id": entry.id, "key": entry.key, "bytes": entry.size, "mime_type": entry.mime_type,
            "sha256": entry.sha256, "created_at": entry.created_at, "deleted_at": int(entry.kept_at),
            "deleted_by": entry.kept_by_name, "deletion": entry.deletion,
            "purge_at": int(entry.kept_at) + trash_days * 86400, "uploaded_by": uploader_name(entry.owner)}


def version_json(entry: KeptEntry) -> dict[str, Any]:
    return {"id": entry.id, "key": entry.key, "bytes": entry.size, "mime_type": entry.mime_type,
            "sha256": entry.sha256, "created_at": entry.created_at, "replaced_at": int(entry.kept_at),
            "replaced_by": entry.kept_by_name, "uploaded_by": uploader_name(entry.owner)}


def restored_json(result: Restored) -> dict[str, Any]:
    return {"restored": [{"id": kept_id, "key": key, "restored_as": to_key}
                         for kept_id, key, to_key in result.restored],
            "skipped": [{"id": kept_id, "key": key, "reason": reason} for kept_id, key, reason in result.skipped]}


@api_bp.get("/trash/<bucket>")
@access("write", bucket="bucket")
def list_trash(bucket: str):
    """Newest first: key, size, when and by whom each file was deleted, and when gc purges it."""
    args = request.args
    page = trash().list(bucket, prefix=validation.list_prefix(args.get("prefix")),
                        limit=validation.list_limit(args.get("limit")), cursor=args.get("cursor"))
    days = trash().retention.trash_days
    return {"data": [trash_entry_json(entry, days) for entry in page.entries], "has_more": page.next_cursor is not None,
            "next_cursor": page.next_cursor}


@api_bp.post("/trash/<bucket>/restore")
@access("write", bucket="bucket")
def restore_from_trash(bucket: str):
    """{ids | prefix | deletion, on_conflict: fail | keep_both | replace}: back to their keys."""
    fields = read_json_object(request.stream)
    _only(fields, {"ids", "prefix", "deletion", "on_conflict"})
    if not {name for name in ("ids", "prefix", "deletion") if fields.get(name) is not None}:
        # (a null selection is none: never "everything")
        raise InvalidInput("name what to restore: ids, prefix (\"\" for everything) or deletion", "missing_field")
    prefix = fields.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidInput("prefix must be a string", "invalid_prefix")
    result = trash().restore(bucket, ids=fields.get("ids"), prefix=prefix, deletion=fields.get("deletion"),
                             on_conflict=on_conflict_arg(fields.get("on_conflict")))
    return restored_json(result)


@api_bp.delete("/trash/<bucket>")
@access("manage", bucket="bucket")
def empty_trash(bucket: str):
    """Delete for good: {ids}, or (no body at all) the whole trash."""
    fields = _optional_json()
    if fields is None:
        return {"purged": trash().purge(bucket)}
    _only(fields, {"ids"})
    if fields.get("ids") is None:  # a body that names nothing empties nothing
        raise InvalidInput("give ids (a list of trash entry ids), or send no body to empty the whole trash",
                           "missing_field")
    return {"purged": trash().purge(bucket, fields["ids"])}


@api_bp.route("/versions/<bucket>/<path:key>", methods=["GET", "HEAD"])
@access("read", bucket="bucket")
def versions(bucket: str, key: str):
    """The kept versions of a key, newest first; with ?version=<id>, that version's bytes (Range,
    conditional requests and HEAD as any download)."""
    if "version" in request.args:
        version_id = _version_arg()
        return send_object(bucket, key, attachment=bool(request.args.get("download")),
                           opened=trash().open_version(bucket, key, version_id))
    return {"data": [version_json(entry) for entry in trash().versions(bucket, key)]}


@api_bp.post("/versions/<bucket>/<path:key>")
@access("write", bucket="bucket")
def restore_version(bucket: str, key: str):
    """{version: <id>}: that version becomes the file; the file it replaces becomes a version."""
    fields = read_json_object(request.stream)
    _only(fields, {"version"})
    version_id = fields.get("version")
    if isinstance(version_id, bool) or not isinstance(version_id, int) or not 0 < version_id <= MAX_ID:
        raise InvalidInput("version must be a version's id", "invalid_version")
    return file_json(trash().restore_version(bucket, key, version_id))


@api_bp.delete("/versions/<bucket>/<path:key>")
@access("manage", bucket="bucket")
def delete_version(bucket: str, key: str):
    trash().delete_version(bucket, key, _version_arg())
    return "", 204


def _version_arg() -> int:
    value = request.args.get("version", "")
    if (len(request.args.getlist("version")) != 1 or not (value.isascii() and value.isdigit() and len(value) < 11)
            or int(value) > MAX_ID):
        raise InvalidInput("version must be one version's id", "invalid_version")
    return int(value)


def _optional_json() -> dict[str, Any] | None:
    if not request.content_length and not is_chunked():
        return None
    return read_json_object(request.stream)


def _only(fields: dict[str, Any] | None, allowed: set[str]) -> None:
    unknown = sorted((fields or {}).keys() - allowed)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(allowed))}",
                           "unknown_field")

