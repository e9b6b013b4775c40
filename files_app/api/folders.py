"""Moving and copying files and folders, and counting and deleting folders."""

from __future__ import annotations

import functools
import time

from flask import request

from .. import auth, validation
from ..access import access
from ..errors import InvalidInput
from ..request_io import folders, read_json_object
from .blueprints import api_bp
from .common import file_json


@api_bp.post("/move")
@access("write")
def move():
    """{bucket, key, to_key} or {bucket, prefix, to_prefix}, with `to_bucket` (default: the same)
    and `replace` (default false: a taken name is 412 for a file, skipped in a folder)."""
    return _file_or_folder(folders().move, folders().move_folder, "moved", source_level="write")


@api_bp.post("/copy")
@access("write")
def copy():
    """As /move, but the source stays: its bytes are written again under the new name, uploaded by
    the caller."""
    owner = auth.current().owner
    return _file_or_folder(functools.partial(folders().copy, owner=owner),
                           functools.partial(folders().copy_folder, owner=owner), "copied", source_level="read")


def _file_or_folder(one_file, folder, done: str, source_level: str):
    fields = read_json_object(request.stream)
    bucket = validation.bucket_name(fields.get("bucket"))
    to_bucket = fields.get("to_bucket", bucket)
    replace = fields.get("replace", False)
    if not isinstance(replace, bool):
        raise InvalidInput("replace must be true or false", "invalid_replace")
    auth.require_bucket(bucket, source_level)
    auth.require_bucket(to_bucket, "write")
    if "key" in fields:
        return file_json(one_file(bucket, validation.object_key(fields["key"], new=False), to_bucket,
                                  fields.get("to_key"), replace=replace))
    if "prefix" in fields:
        result = folder(bucket, _text(fields, "prefix"), to_bucket, _text(fields, "to_prefix"), replace=replace)
        return {done: result.moved, "skipped": result.skipped}
    raise InvalidInput("give key and to_key (a file) or prefix and to_prefix (a folder)", "missing_field")


@api_bp.get("/folders/<bucket>/<path:prefix>")
@access("read", bucket="bucket")
def count_folder(bucket: str, prefix: str):
    """What deleting the folder would delete: its files and bytes now, and the time to pass as `before`."""
    now = int(time.time())
    files, size = folders().count(bucket, prefix)
    return {"bucket": bucket, "prefix": prefix, "files": files, "bytes": size, "counted_at": now}


@api_bp.delete("/folders/<bucket>/<path:prefix>")
@access("write", bucket="bucket")
def delete_folder(bucket: str, prefix: str):
    """Every file under the folder made at or before `before` (Unix seconds; default now), in batches."""
    before = request.args.get("before")
    if before is not None and not (before.isascii() and before.isdigit() and len(before) < 12):
        raise InvalidInput("before must be Unix seconds", "invalid_before")
    return {"deleted": folders().delete_folder(bucket, prefix, int(before) if before else int(time.time()))}


def _text(fields: dict, name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", f"invalid_{name}")
    return value
