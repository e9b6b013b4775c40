"""JSON blueprint for the seed's Files API (/v1/files...) and content downloads (/v1/content...)."""

from flask import Blueprint

# Stalled clients are cut off by the server on every route (files_app/serving.py), not here.
bp = Blueprint("api", __name__, url_prefix="/v1")

from . import content, files, openapi, sessions  # noqa: E402,F401  (routes register on bp)
