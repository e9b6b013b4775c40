"""Moving and copying files and folders, and counting and deleting folders."""

from __future__ import annotations

import functools

from flask import request

from .. import auth, validation
from ..access import access
from ..errors import InvalidInput
from ..request_io import folders, read_json_object
from ..services.kept import new_deletion
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
    """What deleting the folder would delete: its files and bytes now, and the `until` to pass to
    delete exactly those."""
    counted = folders().count(bucket, prefix)
    return {"bucket": bucket, "prefix": prefix, "files": counted.files, "bytes": counted.bytes,
            "until": counted.until}


@api_bp.delete("/folders/<bucket>/<path:prefix>")
@access("write", bucket="bucket")
def delete_folder(bucket: str, prefix: str):
    """The files a count saw (`until` from GET), or every file there now; in batches."""
    if "before" in request.args:
        # Older clients sent the count's time: a creation time, which a move keeps, cannot tell a
        # file moved in after the count from one it saw. Refused rather than deleting what was not counted.
        raise InvalidInput("`before` is no longer accepted: it cannot tell a file moved into the folder after "
                           "the count from one the count saw; count the folder again (GET) and send its `until`",
                           "until_required")
    deletion = new_deletion()
    deleted = folders().delete_folder(bucket, prefix, until=_counter_arg("until"), deletion=deletion)
    # The trash's Undo for exactly these files: POST /v1/trash/{bucket}/restore {"deletion": ...}.
    return {"deleted": deleted, "deletion": deletion if deleted and folders().objects.retention.trash else None}


def _counter_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) < 19):
        raise InvalidInput(f"{name} must be a non-negative integer (from the folder's count)", f"invalid_{name}")
    return int(value)


def _text(fields: dict, name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", f"invalid_{name}")
    return value
