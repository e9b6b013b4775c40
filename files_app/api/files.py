"""Buckets and file metadata: list, get, delete."""

from __future__ import annotations

from flask import request

from .. import auth, validation
from ..errors import InvalidInput
from . import bp
from .common import bucket_json, file_json, objects


@bp.get("/files")
def list_buckets():
    confined = auth.current().bucket
    return {"data": [bucket_json(bucket) for bucket in objects().list_buckets()
                     if confined is None or bucket.name == confined]}


@bp.get("/files/<bucket>")
def list_files(bucket: str):
    args = request.args
    for name in ("limit", "cursor", "prefix", "delimiter"):
        if len(args.getlist(name)) > 1:
            raise InvalidInput(f"give {name!r} once", f"invalid_{name}")
    delimiter = validation.list_delimiter(args.get("delimiter"))
    page = objects().list(
        bucket,
        prefix=validation.list_prefix(args.get("prefix")),
        delimiter=delimiter,
        limit=validation.list_limit(args.get("limit")),
        cursor=args.get("cursor"),
    )
    body = {
        "data": [file_json(info) for info in page.objects],
        "has_more": page.next_cursor is not None,
        "next_cursor": page.next_cursor,
    }
    if delimiter:
        body["prefixes"] = page.prefixes
    return body


@bp.delete("/files/<bucket>")
def delete_bucket(bucket: str):
    objects().delete_bucket(bucket)
    return "", 204


@bp.get("/files/<bucket>/<path:key>")
def file_info(bucket: str, key: str):
    return file_json(objects().get(bucket, key))


@bp.delete("/files/<bucket>/<path:key>")
def delete_file(bucket: str, key: str):
    return file_json(objects().delete(bucket, key))
