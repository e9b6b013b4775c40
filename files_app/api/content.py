"""Content downloads (/v1/content, as downloads.py serves every file) and folder zips (/v1/zip)."""

from __future__ import annotations

from flask import request

from .. import validation
from ..access import access
from ..downloads import send_object, send_thumbnail
from ..request_io import objects, zip_response
from ..services import archive
from .blueprints import api_bp


@api_bp.route("/content/<bucket>/<path:key>", methods=["GET", "HEAD"])
@access("read", bucket="bucket")
def content(bucket: str, key: str):
    return send_object(bucket, key, attachment=bool(request.args.get("download")))


@api_bp.get("/thumbnails/<bucket>/<path:key>")
@access("read", bucket="bucket")
def thumbnail(bucket: str, key: str):
    """An image file's thumbnail (WebP, at most `size` pixels a side: 128, 256 or 512), made once."""
    return send_thumbnail(bucket, key)


@api_bp.get("/zip/<bucket>")
@access("read", bucket="bucket")
def zip_folder(bucket: str):
    """Every file under `prefix` (or the whole bucket) as one zip, streamed as it is made."""
    prefix = validation.list_prefix(request.args.get("prefix"))
    objects().bucket_id(bucket)  # 404 before the first byte, not inside a 200
    name = (prefix.rstrip("/").rpartition("/")[2] or bucket) + ".zip"
    return zip_response(archive.zip_folder(objects(), bucket, prefix), name)


