"""Buckets and files: list, get, delete, and a whole file in one PUT."""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import MethodNotAllowed

from .. import auth, validation
from ..access import access
from ..errors import InvalidInput, LengthRequired
from ..request_io import RequestBody, is_chunked, objects, uploader_name, uploads
from ..services.kept import new_deletion
from .blueprints import files_bp
from .common import bucket_json, file_json


@files_bp.get("")
@access("authenticated")
def list_buckets():
    return {"data": [bucket_json(bucket) for bucket in objects().list_buckets(**auth.bucket_filter())]}


@files_bp.get("/<bucket>")
@access("read", bucket="bucket")
def list_files(bucket: str):
    args = request.args
    for name in ("limit", "cursor", "prefix", "delimiter", "q"):
        if len(args.getlist(name)) > 1:
            raise InvalidInput(f"give {name!r} once", f"invalid_{name}")
    delimiter = validation.list_delimiter(args.get("delimiter"))
    if "q" in args:  # a search: every file under the prefix whose key holds q, flat (no folders)
        if delimiter:
            raise InvalidInput("a search (q) lists files, not folders: leave out delimiter", "invalid_delimiter")
        page = objects().search(bucket, args["q"], prefix=validation.list_prefix(args.get("prefix")),
                                limit=validation.list_limit(args.get("limit")), cursor=args.get("cursor"))
        return {"data": [file_json(info) for info in page.objects], "has_more": page.next_cursor is not None,
                "next_cursor": page.next_cursor}
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


@files_bp.put("/<bucket>")
@access("write")
def create_bucket(bucket: str):
    """An empty bucket (uploads make theirs as needed); 409 if it exists."""
    if bucket.startswith("session:"):  # a session's URL, which takes no PUT
        raise MethodNotAllowed(valid_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"])
    auth.require_bucket(bucket, "write")  # (one that exists and is not theirs: 404, as everywhere)
    return bucket_json(objects().create_bucket(bucket)), 201


@files_bp.delete("/<bucket>")
@access("manage", bucket="bucket")
def delete_bucket(bucket: str):
    objects().delete_bucket(bucket)
    return "", 204


@files_bp.get("/<bucket>/<path:key>")
@access("read", bucket="bucket")
def file_info(bucket: str, key: str):
    info = objects().get(bucket, key)
    return {**file_json(info), "uploaded_by": uploader_name(info.owner)}


@files_bp.put("/<bucket>/<path:key>")
@access("write", bucket="bucket")
def put_file(bucket: str, key: str):
    """The whole file in one request, as S3 clients and scripts send it (`curl -T file URL`)."""
    if request.content_length is None and is_chunked():
        raise LengthRequired("send Content-Length (a PUT is one whole file; use a session to stream without one)")
    create_only = validation.if_none_match(request.headers.get("If-None-Match"))
    obj = uploads().put(bucket=bucket, key=key, body=RequestBody(request.stream), length=request.content_length or 0,
                        mime_type=_declared_type(), create_only=create_only, owner=auth.current().owner,
                        sha256=validation.sha256_header(request.headers.get("X-Checksum-Sha256")))
    return file_json(obj), 200


def _declared_type() -> str | None:
    """The file's type from Content-Type; curl's form default says nothing about the file."""
    declared = request.headers.get("Content-Type", "").strip()
    if not declared or request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    return declared


@files_bp.delete("/<bucket>/<path:key>")
@access("write", bucket="bucket")
def delete_file(bucket: str, key: str):
    """The seed's answer (the deleted file); the header says under which deletion it is in the trash
    (restore {"deletion": ...} undoes it), and is absent when the trash is off."""
    deletion = new_deletion()
    answer = file_json(objects().delete(bucket, key, deletion=deletion))
    return answer, 200, {"Files-Deletion": deletion} if objects().retention.trash else {}
