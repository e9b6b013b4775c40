"""Where a request comes from: the Host allow-list and the same-origin proof for state changes.

An open service on loopback is reachable by every web page its user visits. A page cannot set
`Authorization`, cannot make the browser lie about `Origin` or `Sec-Fetch-Site`, and cannot read
a CSRF token; a rebinding DNS name cannot pass the Host allow-list. So every request that may
change something must carry a bearer token or come from our own origin (plus a matching CSRF
token where a cookie or a form is involved: see auth.py and web/__init__.py). Clients that are
not browsers (curl, SDKs) send neither `Origin` nor `Sec-Fetch-Site` and are not affected.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import Flask, request

from .cors import parse_origins
from .errors import BadHost, CrossSite

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_SAME_ORIGIN = ("same-origin", "none")  # none: the user typed or bookmarked it


def allowed_hosts(raw: str, files_host: str) -> frozenset[str]:
    """FILES_ALLOWED_HOSTS, or loopback names plus FILES_HOST. A wildcard bind address (0.0.0.0,
    ::) is no Host a client sends: it means any name, for a service that is closed anyway."""
    if raw.strip():
        return frozenset(host_name(name) for name in raw.split(",") if name.strip())
    host = host_name(files_host)
    if host in ("0.0.0.0", "::"):
        return frozenset({"*"})
    return frozenset({*LOOPBACK_NAMES, host})


def init_app(app: Flask) -> None:
    hosts = allowed_hosts(app.config["FILES_ALLOWED_HOSTS"], app.config["FILES_HOST"])
    cors_origins = parse_origins(app.config["FILES_CORS_ORIGINS"])

    @app.before_request
    def check_host():
        if "Host" not in request.headers:  # HTTP/1.1 requires one (RFC 9112 3.2)
            raise BadHost("a request needs a Host header")
        if "*" not in hosts and host_name(request.host) not in hosts:
            raise BadHost(f"Host {request.host!r} is not one this service answers to; see FILES_ALLOWED_HOSTS")

    @app.before_request
    def check_origin():
        if request.method in SAFE_METHODS or _bearer(request.headers.get("Authorization", "")):
            return
        origin = request.headers.get("Origin")
        if origin is not None:
            if origin == "null" or not (_same_origin(origin) or _cors_allowed(origin, cors_origins)):
                raise CrossSite(f"a request from {origin} may not change anything here")
            return
        if request.headers.get("Sec-Fetch-Site", "none") not in _SAME_ORIGIN:
            raise CrossSite("a request from another site may not change anything here")


def _bearer(authorization: str) -> bool:
    """A page cannot add this header cross-site without a CORS preflight (unlike Basic credentials,
    which a browser may attach by itself)."""
    return authorization[:7].lower() == "bearer " and bool(authorization[7:].strip())


def _same_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def _cors_allowed(origin: str, cors_origins: frozenset[str]) -> bool:
    return "*" in cors_origins or origin.rstrip("/") in cors_origins


def host_name(host: str) -> str:
    """'Example.org:8321' -> 'example.org'; '[::1]:8321' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
