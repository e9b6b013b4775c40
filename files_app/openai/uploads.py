"""Uploads: a large file in parts (sent in parallel), joined in the order the client names."""

from __future__ import annotations

from flask import request

from .. import auth, validation
from ..access import access
from ..errors import InvalidInput
from ..multipart import MultipartReader
from ..request_io import RequestBody, read_json_object
from .blueprint import openai_bp, part_json, service, upload_json


@openai_bp.post("/uploads")
@access("write")
def create_upload():
    fields = read_json_object(request.stream)
    for name in ("filename", "purpose", "bytes", "mime_type"):
        if name not in fields:
            raise InvalidInput(f"missing field {name!r}", "missing_field", param=name)
    expires = fields.get("expires_after")
    if expires is not None and not isinstance(expires, dict):
        raise InvalidInput("expires_after must be an object {anchor, seconds}", "invalid_expires_after",
                           param="expires_after")
    expires_after = validation.openai_expiry(*((expires.get("anchor"), expires.get("seconds")) if expires
                                               else (None, None)))
    info = service().create_upload(filename=fields["filename"], purpose=fields["purpose"], size=fields["bytes"],
                                   mime_type=fields["mime_type"], expires_after=expires_after,
                                   owner=auth.current().owner)
    return upload_json(info)


@openai_bp.post("/uploads/<upload_id>/parts")
@access("write")
def add_part(upload_id: str):
    """The `data` part streams into the upload's storage as it arrives (64 MiB at most)."""
    form = MultipartReader(RequestBody(request.stream), request.headers.get("Content-Type"))
    while (part := form.next_part()) is not None:
        if part.name == "data":
            info = service().add_part(upload_id, part, auth.current().owner)
            while form.next_part() is not None:  # read what follows, so that the client reads the answer
                pass
            return part_json(info)
    raise InvalidInput("missing the 'data' part (multipart/form-data)", "missing_data", param="data")


@openai_bp.post("/uploads/<upload_id>/complete")
@access("write")
def complete_upload(upload_id: str):
    fields = read_json_object(request.stream)
    if "part_ids" not in fields:
        raise InvalidInput("missing field 'part_ids'", "missing_field", param="part_ids")
    return upload_json(service().complete_upload(upload_id, part_ids=fields["part_ids"], md5=fields.get("md5"),
                                                 owner=auth.current().owner, person=auth.person()))


@openai_bp.post("/uploads/<upload_id>/cancel")
@access("write")
def cancel_upload(upload_id: str):
    return upload_json(service().cancel_upload(upload_id, auth.current().owner))
