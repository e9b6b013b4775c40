"""The OpenAI-compatible Files and Uploads API under /v1/openai/v1, on the same services as the
seed's API: `OpenAI(base_url="http://HOST:8321/v1/openai/v1", api_key=TOKEN)` works unchanged."""

from __future__ import annotations

from flask import Flask

from . import files, uploads  # noqa: F401  (routes register on the blueprint)
from .blueprint import error_response, openai_bp, speaks_openai

__all__ = ["error_response", "init_app", "speaks_openai"]


def init_app(app: Flask) -> None:
    app.register_blueprint(openai_bp)
