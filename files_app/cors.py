"""CORS for browser clients on other origins (FILES_CORS_ORIGINS), tus headers included."""

from __future__ import annotations

from flask import Flask, request

ALLOW_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = ", ".join([
    "Authorization", "Content-Type", "X-Requested-With", "X-Request-ID", "X-HTTP-Method-Override",
    "Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Defer-Length",
    "Upload-Concat", "Upload-Checksum", "If-None-Match", "If-Modified-Since", "If-Range", "Range",
])
EXPOSE_HEADERS = ", ".join([
    "Location", "Tus-Version", "Tus-Resumable", "Tus-Max-Size", "Tus-Extension", "Tus-Checksum-Algorithm",
    "Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Defer-Length", "Upload-Concat",
    "Upload-Expires", "Content-Range", "Content-Length", "Content-Disposition", "ETag", "Last-Modified",
    "Retry-After",
])


def parse_origins(raw: str) -> frozenset[str]:
    return frozenset(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())


def init_app(app: Flask) -> None:
    origins = parse_origins(app.config["FILES_CORS_ORIGINS"])
    if not origins:
        return

    @app.after_request
    def cors_headers(response):
        origin = request.headers.get("Origin")
        if not origin or not request.path.startswith("/v1/"):
            return response
        response.vary.add("Origin")
        if "*" not in origins and origin not in origins:
            return response
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            response.headers["Access-Control-Max-Age"] = "86400"
        return response
