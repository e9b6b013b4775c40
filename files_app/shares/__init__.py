"""Share links, as the API manages them (/v1/shares) and as anyone with a link opens them (/s/...)."""

from __future__ import annotations

from flask import Flask

from . import api, public  # noqa: F401  (routes register on the blueprints)
from .public import bp


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
