"""JSON blueprint for the seed's Files API (/v1/files...) and content downloads (/v1/content...)."""

from flask import Blueprint, current_app, request

bp = Blueprint("api", __name__, url_prefix="/v1")


@bp.before_request
def cut_off_stalled_clients():
    """A client that stops sending mid-body would hold a worker thread for ever: after
    FILES_CLIENT_TIMEOUT seconds of silence the read fails, and what arrived is kept."""
    sock = request.environ.get("gunicorn.socket")
    if sock is not None and request.method in ("POST", "PATCH"):
        sock.settimeout(current_app.config["FILES_CLIENT_TIMEOUT"] or None)

from . import content, files, openapi, sessions  # noqa: E402,F401  (routes register on bp)
