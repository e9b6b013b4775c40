"""The API's two blueprints, and the hooks of the tus dialect, which apply to every /v1/files URL.

`files_bp` routes everything under /v1/files: buckets, files and upload sessions, for both dialects
(the seed's JSON and tus): its views hand a request to the seed's or the tus handler. `api_bp`
serves downloads (/v1/content) and the API's description.
"""

from __future__ import annotations

from flask import Blueprint

from ..tus import handler as tus

api_bp = Blueprint("api", __name__, url_prefix="/v1")
files_bp = Blueprint("files", __name__, url_prefix="/v1/files")

files_bp.before_request(tus.refuse_other_versions)
files_bp.before_request(tus.answer_options)
files_bp.after_request(tus.mark_resumable)
api_bp.before_request(tus.answer_options)  # (without tus headers: /v1/content is no upload URL)
