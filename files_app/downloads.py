"""Downloads as every view serves them: streamed, conditional (ETag, Last-Modified), single Range, HEAD;
and thumbnails, cached by the browser.

A suffix Range longer than the file is the whole file (RFC 9110 14.1.3), not a 416; several ranges,
other units or a Range that does not parse are answered with the whole file (200). A share link
counts its downloads through `count`, called exactly when the answer is going to carry the whole
file or its first byte, whatever Range and If-Range said; HEAD, 304 and errors never call it.

Under gunicorn the body is its `wsgi.file_wrapper`, which uses sendfile(); for a Range the
file is positioned at the range's start and Content-Length bounds it, so sendfile still
applies (Werkzeug's own Range support would wrap the file in a Python iterator). Uploaded content
is untrusted: nosniff, a sandboxing CSP, and inline only for types a browser shows without running
anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

from flask import Response, request
from werkzeug.http import http_date

from . import validation
from .errors import NotFound, PreconditionFailed
from .request_io import filename_params, objects, thumbnails
from .services.objects import ObjectInfo
from .services.thumbnails import PLACEHOLDER

READ_SIZE = 1024 * 1024
# Shown inline only when a browser can display them without running anything.
_INLINE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp",
                 "application/pdf", "text/plain", "application/json")
_CONTENT_CSP = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'"


def send_object(bucket: str, key: str, *, filename: str | None = None, attachment: bool = False,
                check: Callable[[ObjectInfo], None] | None = None,
                count: Callable[[], None] | None = None,
                opened: tuple[ObjectInfo, BinaryIO] | None = None) -> Response:
    """The object's bytes as a response: conditional, ranged, HEAD, sendfile or a presigned
    redirect where the store allows. `filename`: the name to save it as (else the key's last
    segment); `attachment`: never shown inline. `check`: called with the file that was opened,
    before anything is sent (it raises to refuse these bytes); `count`: called once the answer is
    known to carry the whole file or its first byte (it raises to refuse the download). `opened`:
    another file to send than the key's current one (a version), already open."""
    info, stream = opened or objects().open(bucket, key)
    try:
        if check is not None:
            check(info)
        etag = info.sha256
        content_type = validation.header_safe_mime(info.mime_type)
        headers = {
            "ETag": f'"{etag}"',
            "Last-Modified": http_date(info.created_at),
            "Accept-Ranges": "bytes",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": _CONTENT_CSP,
            "Content-Disposition": _disposition(filename or info.key.rsplit("/", 1)[-1], content_type, attachment),
        }
        if not _preconditions_hold(etag, info.created_at):
            stream.close()
            raise PreconditionFailed("the file is not the one If-Match or If-Unmodified-Since names: it changed")
        if _not_modified(etag, info.created_at):
            stream.close()
            return Response(status=304, headers=headers)
        start, length, status = 0, info.size, 200
        byte_range = request.range if _if_range_holds(etag, info.created_at) else None
        if byte_range is not None and byte_range.units == "bytes" and len(byte_range.ranges) == 1 and (
                info.size or byte_range.ranges[0][0] >= 0):  # an empty file's suffix: the (empty) file
            bounds = _bounds(byte_range.ranges[0], info.size)
            if bounds is None:
                stream.close()
                return Response(status=416, headers={**headers, "Content-Range": f"bytes */{info.size}"})
            start, stop = bounds
            length, status = stop - start, 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{info.size}"
        headers["Content-Length"] = str(length)
        if count is not None and request.method != "HEAD" and start == 0:
            count()  # the whole file, or a range from its first byte: a download
        if request.method == "HEAD":
            stream.close()
            body = b""
        elif status == 200 and (url := _direct_url(stream, content_type, headers["Content-Disposition"])):
            stream.close()  # FILES_S3_PRESIGN: the object store sends the bytes itself
            return Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
        else:
            stream.seek(start)
            body = _file_body(stream, length, start)
        response = Response(body, status=status, headers=headers, mimetype=None, direct_passthrough=True)
        response.headers["Content-Type"] = content_type
        response.headers["Content-Length"] = str(length)
        return response
    except BaseException:
        stream.close()
        raise


def _bounds(byte_range: tuple[int, int | None], size: int) -> tuple[int, int] | None:
    """[start, stop) of one parsed range in a file of `size` bytes, or None if it is unsatisfiable.
    A suffix longer than the file is the whole file (RFC 9110 14.1.3; Werkzeug says 416)."""
    start, stop = byte_range
    if start < 0:
        start, stop = max(size + start, 0), size
    else:
        stop = size if stop is None else min(stop, size)
    return (start, stop) if start < stop else None


def _preconditions_hold(etag: str, modified: int) -> bool:
    """If-Match (a strong match, or `*`), else If-Unmodified-Since (RFC 9110 13.2.2): false means
    412, checked before the conditions that answer 304, and never a download counted."""
    if "If-Match" in request.headers:
        return request.if_match.is_strong(etag) or request.if_match.star_tag
    since = request.if_unmodified_since
    return since is None or modified <= int(since.timestamp())


def _not_modified(etag: str, modified: int) -> bool:
    if request.if_none_match:
        return request.if_none_match.contains_weak(etag)
    since = request.if_modified_since
    return since is not None and int(since.timestamp()) >= modified


def _if_range_holds(etag: str, modified: int) -> bool:
    """If-Range needs a strong match (RFC 9110 13.1.5): the exact strong ETag, or exactly the
    Last-Modified date. A weak ETag or any other date means: send the whole file."""
    raw = request.headers.get("If-Range", "").strip()
    if not raw:
        return True
    if raw.startswith(("W/", "w/")):
        return False
    if_range = request.if_range
    if if_range.etag is not None:
        return if_range.etag == etag
    if if_range.date is not None:
        return int(if_range.date.timestamp()) == modified
    return False


def _direct_url(stream, content_type: str, disposition: str) -> str | None:
    return stream.direct_url(content_type=content_type, disposition=disposition)


def _file_body(stream, length: int, start: int):
    server_wrapper = request.environ.get("wsgi.file_wrapper")
    # gunicorn's wrapper sends `Content-Length` bytes from the current position with
    # sendfile(). Other servers' wrappers read to EOF, which would overrun a Range. A file kept
    # inline is bytes in memory: no descriptor to send from.
    sendfile = stream.can_sendfile and server_wrapper is not None
    if sendfile and server_wrapper.__module__.startswith("gunicorn."):
        return server_wrapper(stream, READ_SIZE)
    stream.bound(start + length)  # an object store's stream asks for the range's bytes only
    return _bounded_chunks(stream, length)


def _bounded_chunks(stream, length: int):
    try:
        while length > 0:
            data = stream.read(min(READ_SIZE, length))
            if not data:
                break
            length -= len(data)
            yield data
    finally:
        stream.close()


def _disposition(filename: str, mime_type: str, attachment: bool) -> str:
    base = mime_type.split(";")[0].strip().lower()
    inline = not attachment and (base in _INLINE_TYPES or base.startswith(("audio/", "video/")))
    return f"{'inline' if inline else 'attachment'}; {filename_params(filename)}"


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
