"""Files: create (multipart, streamed), list, retrieve, delete, content."""

from __future__ import annotations

from flask import request

from .. import auth, validation
from ..access import access
from ..downloads import send_object
from ..errors import InvalidInput
from ..multipart import MultipartReader
from ..request_io import RequestBody
from .blueprint import file_json, openai_bp, service

_ANCHOR, _SECONDS = "expires_after[anchor]", "expires_after[seconds]"


@openai_bp.post("/files")
@access("write")
def create_file():
    """The file part streams into a session as it arrives. Fields sent before it are checked
    before a byte is stored; fields after it (curl -F puts them where they are written) once it
    has arrived, and a refusal then discards it."""
    form = MultipartReader(RequestBody(request.stream), request.headers.get("Content-Type"))
    fields: dict[str, str] = {}
    staged = None
    try:
        while (part := form.next_part()) is not None:
            if part.filename is None:
                fields[part.name] = part.text()
                continue
            if part.name != "file":
                continue  # a file under another name is no part of this API
            if staged is not None:
                raise InvalidInput("send one file per request", "invalid_file", param="file")
            _form_settings(fields, final=False)
            staged = service().stage_file(filename=part.filename, mime_type=part.content_type, body=part,
                                          owner=auth.current().owner, at_most=request.content_length)
        if staged is None:
            raise InvalidInput("missing the 'file' part (multipart/form-data)", "missing_file", param="file")
        purpose, expires_after = _form_settings(fields, final=True)
    except BaseException:
        if staged is not None:
            service().discard(staged)
        raise
    return file_json(service().commit_file(staged, purpose=purpose, expires_after=expires_after,
                                           person=auth.person()))


def _form_settings(fields: dict[str, str], final: bool) -> tuple[str | None, int | None]:
    """purpose and expires_after from the form; before the file, only what has come is checked."""
    purpose = fields.get("purpose")
    if purpose is not None or final:
        if purpose is None:
            raise InvalidInput("missing the 'purpose' field", "missing_purpose", param="purpose")
        validation.openai_purpose(purpose)
    expiry = None
    if final or (_ANCHOR in fields and _SECONDS in fields):
        expiry = validation.openai_expiry(fields.get(_ANCHOR), fields.get(_SECONDS))
    return purpose, expiry


@openai_bp.get("/files")
@access("read")
def list_files():
    args = request.args
    for name in ("after", "limit", "order", "purpose"):
        if len(args.getlist(name)) > 1:
            raise InvalidInput(f"give {name!r} once", f"invalid_{name}", param=name)
    limit = validation.list_limit(args.get("limit"), default=10000, maximum=10000)
    page = service().list_files(after=args.get("after"), limit=limit, order=args.get("order", "desc"),
                                purpose=args.get("purpose"), visible_to=auth.only_their_own())
    data = [file_json(info) for info in page.files]
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": page.has_more}


@openai_bp.get("/files/<file_id>")
@access("read")
def retrieve_file(file_id: str):
    return file_json(service().get_file(file_id, auth.only_their_own()))


@openai_bp.delete("/files/<file_id>")
@access("write")
def delete_file(file_id: str):
    info = service().delete_file(file_id, auth.only_their_own())
    return {"id": info.id, "object": "file", "deleted": True}


@openai_bp.route("/files/<file_id>/content", methods=["GET", "HEAD"])
@access("read")
def file_content(file_id: str):
    info = service().get_file(file_id, auth.only_their_own())
    # The name is shown back as given ("../evil.txt"); saved, it is only its base name ("evil.txt").
    return send_object(info.bucket, info.key, filename=validation.key_name(info.filename), attachment=True)
