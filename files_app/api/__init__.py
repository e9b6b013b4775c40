"""The JSON API: the seed's Files API with tus on the same URLs (/v1/files...), downloads
(/v1/content...) and the API's description (/v1/openapi.json)."""

from __future__ import annotations

from flask import Flask

from ..tus.handler import MethodOverride
from . import audit, content, files, folders, hooks, openapi, people, quotas, sessions, trash  # noqa: F401  (routes register on the blueprints)
from .blueprints import api_bp, files_bp


def init_app(app: Flask) -> None:
    app.register_blueprint(api_bp)
    app.register_blueprint(files_bp)
    app.wsgi_app = MethodOverride(app.wsgi_app)
