"""tus 1.0 over the same upload sessions as the seed's API.

The upload URL of every session is its seed URL, /v1/files/session:<id>: tus adds HEAD, PATCH
and OPTIONS there, and a POST to /v1/files that carries Tus-Resumable is a tus creation.
"""

from __future__ import annotations

from flask import Blueprint, Flask, request

from ..errors import NotFound, PreconditionFailed
from . import protocol

bp = Blueprint("tus", __name__, url_prefix="/v1")

# Endpoints that exist only in the tus dialect: a request without Tus-Resumable is refused.
_TUS_ONLY = {("HEAD", "api.session"), ("PATCH", "tus.patch_upload")}


def init_app(app: Flask) -> None:
    from . import views  # noqa: F401  (routes register on bp)

    app.register_blueprint(bp)
    app.wsgi_app = MethodOverride(app.wsgi_app)

    @app.before_request
    def check_version():
        if request.method == "OPTIONS" or not request.path.startswith("/v1/files"):
            return None
        if request.method == "PATCH" and request.endpoint != "tus.patch_upload":
            # tus: a PATCH to what is not an upload URL is about an upload that does not exist.
            raise NotFound(f"no upload at {request.path}")
        version = request.headers.get("Tus-Resumable")
        if version is None and (request.method, request.endpoint) not in _TUS_ONLY and not _tus_creation():
            return None
        if version != protocol.VERSION:
            # The protocol: answer 412 with the versions we speak, and do nothing else.
            raise PreconditionFailed(f"tus version {version!r} is not supported; use {protocol.VERSION}",
                                     tus_version=protocol.VERSION)
        return None

    @app.before_request
    def options():
        # OPTIONS tells what the server speaks (and answers CORS preflights, see cors.py).
        if request.method == "OPTIONS" and request.path.startswith("/v1/") and request.url_rule is not None:
            # 200, as tusd answers (clients accept 200 and 204 alike).
            return views.empty(200, views.options_headers() if request.path.startswith("/v1/files") else {})
        return None

    @app.after_request
    def tus_resumable(response):
        if request.path.startswith("/v1/files") and request.method != "OPTIONS":
            response.headers["Tus-Resumable"] = protocol.VERSION
        return response


def _tus_creation() -> bool:
    """A POST that announces a tus upload (a length, and no JSON body of the seed's) but forgot
    Tus-Resumable: the protocol says 412 with the versions we speak."""
    announces = "Upload-Length" in request.headers or "Upload-Defer-Length" in request.headers
    seed_body = bool(request.content_length) and request.mimetype != protocol.UPLOAD_CONTENT_TYPE
    return request.method == "POST" and request.endpoint == "api.create_session" and announces and not seed_body


class MethodOverride:
    """X-HTTP-Method-Override names the method, for clients that cannot send PATCH or DELETE."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE", "").strip().upper()
        if override.isalpha() and override.isascii():
            environ["REQUEST_METHOD"] = override
        return self.wsgi_app(environ, start_response)
