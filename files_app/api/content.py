"""Content downloads (/v1/content, as downloads.py serves every file) and folder zips (/v1/zip)."""

from __future__ import annotations

from flask import Response, request

from .. import validation
from ..downloads import send_object
from ..errors import NotFound
from ..request_io import objects, thumbnails, zip_response
from ..services import archive
from ..services.thumbnails import PLACEHOLDER
from .blueprints import api_bp


@api_bp.route("/content/<bucket>/<path:key>", methods=["GET", "HEAD"])
def content(bucket: str, key: str):
    return send_object(bucket, key, attachment=bool(request.args.get("download")))


@api_bp.get("/thumbnails/<bucket>/<path:key>")
def thumbnail(bucket: str, key: str):
    """An image file's thumbnail (WebP, at most `size` pixels a side: 128, 256 or 512), made once."""
    return send_thumbnail(bucket, key)


def send_thumbnail(bucket: str, key: str) -> Response:
    """The thumbnail the request asks for (`size`, and `fallback`: an empty picture rather than a
    404, which a browser reports as an error), cached by the browser."""
    size = request.args.get("size", "256")
    pixels = int(size) if size.isascii() and size.isdigit() and len(size) < 6 else 0  # else refused as a size
    try:
        data, sha256 = thumbnails().get(bucket, key, pixels)
    except NotFound:
        if not request.args.get("fallback"):
            raise
        return Response(PLACEHOLDER, mimetype="image/webp", headers={"Cache-Control": "private, max-age=300",
                                                                     "X-Content-Type-Options": "nosniff"})
    etag = f"{sha256}-{size}"
    headers = {"ETag": f'"{etag}"', "Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff",
               "Content-Security-Policy": "sandbox; default-src 'none'"}
    if request.if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    return Response(data, mimetype="image/webp", headers=headers)


@api_bp.get("/zip/<bucket>")
def zip_folder(bucket: str):
    """Every file under `prefix` (or the whole bucket) as one zip, streamed as it is made."""
    prefix = validation.list_prefix(request.args.get("prefix"))
    objects().bucket_id(bucket)  # 404 before the first byte, not inside a 200
    name = (prefix.rstrip("/").rpartition("/")[2] or bucket) + ".zip"
    return zip_response(archive.zip_folder(objects(), bucket, prefix), name)


