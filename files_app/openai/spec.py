"""The OpenAPI description of the OpenAI-compatible routes (merged into /v1/openapi.json)."""

from __future__ import annotations

from ..validation import OPENAI_EXPIRY_SECONDS, OPENAI_PURPOSES

P = "/v1/openai/v1"
_PURPOSE = {"type": "string", "enum": list(OPENAI_PURPOSES)}
_SECONDS = {"type": "integer", "minimum": OPENAI_EXPIRY_SECONDS[0], "maximum": OPENAI_EXPIRY_SECONDS[1]}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict:
    return _json(_ref("OpenAIError"), description)


SCHEMAS = {
    "OpenAIError": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "param", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                           "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
        }},
    },
    "OpenAIFile": {
        "type": "object",
        "required": ["id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status"],
        "properties": {"id": {"type": "string", "pattern": "^file-[0-9a-f]{32}$"}, "object": {"const": "file"},
                       "bytes": {"type": "integer", "minimum": 0}, "created_at": {"type": "integer"},
                       "expires_at": {"type": ["integer", "null"]}, "filename": {"type": "string"},
                       "purpose": _PURPOSE, "status": {"const": "processed"}, "status_details": {"type": "null"}},
    },
    "OpenAIFileList": {
        "type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("OpenAIFile")},
                       "first_id": {"type": ["string", "null"]}, "last_id": {"type": ["string", "null"]},
                       "has_more": {"type": "boolean"}},
    },
    "OpenAIUpload": {
        "type": "object",
        "required": ["id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status", "file"],
        "properties": {"id": {"type": "string"}, "object": {"const": "upload"}, "bytes": {"type": "integer"},
                       "created_at": {"type": "integer"}, "expires_at": {"type": "integer"},
                       "filename": {"type": "string"}, "purpose": _PURPOSE,
                       "status": {"enum": ["pending", "completed", "cancelled", "expired"]},
                       "file": {"oneOf": [_ref("OpenAIFile"), {"type": "null"}]}},
    },
    "OpenAIUploadCreate": {
        "type": "object", "required": ["filename", "purpose", "bytes", "mime_type"],
        "properties": {"filename": {"type": "string", "minLength": 1}, "purpose": _PURPOSE,
                       "bytes": {"type": "integer", "minimum": 0}, "mime_type": {"type": "string"},
                       "expires_after": {"type": "object", "required": ["anchor", "seconds"],
                                         "properties": {"anchor": {"const": "created_at"}, "seconds": _SECONDS}}},
    },
}

_FILE_ID = {"name": "file_id", "in": "path", "required": True, "schema": {"type": "string"}}
_UPLOAD_ID = {"name": "upload_id", "in": "path", "required": True, "schema": {"type": "string"}}
_BINARY = {"type": "string", "format": "binary"}

PATHS = {
    f"{P}/files": {
        "post": {
            "summary": "OpenAI: upload a file (multipart, streamed to storage)", "operationId": "openaiCreateFile",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file", "purpose"],
                "properties": {"file": _BINARY, "purpose": _PURPOSE,
                               "expires_after[anchor]": {"const": "created_at"}, "expires_after[seconds]": _SECONDS},
            }}}},
            "responses": {"200": _json(_ref("OpenAIFile"), "The file"), "413": _error("Above the maximum size"),
                          "415": _error("Not multipart/form-data")},
        },
        "get": {
            "summary": "OpenAI: list files, newest first (keyset pages: after=<last_id>)",
            "operationId": "openaiListFiles",
            "parameters": [
                {"name": "after", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"]}},
                {"name": "purpose", "in": "query", "schema": _PURPOSE},
            ],
            "responses": {"200": _json(_ref("OpenAIFileList"), "One page of files")},
        },
    },
    f"{P}/files/{{file_id}}": {
        "parameters": [_FILE_ID],
        "get": {"summary": "OpenAI: a file", "operationId": "openaiRetrieveFile",
                "responses": {"200": _json(_ref("OpenAIFile"), "The file"), "404": _error("Unknown or expired")}},
        "delete": {"summary": "OpenAI: delete a file", "operationId": "openaiDeleteFile",
                   "responses": {"200": _json({"type": "object", "required": ["id", "object", "deleted"]}, "Deleted"),
                                 "404": _error("Unknown or expired"), "409": _error("Changed while deleted")}},
    },
    f"{P}/files/{{file_id}}/content": {
        "parameters": [_FILE_ID],
        "get": {"summary": "OpenAI: a file's bytes (Range, conditional GET)", "operationId": "openaiFileContent",
                "parameters": [{"name": "Range", "in": "header", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The content"}, "206": {"description": "A range"},
                              "304": {"description": "Not modified"}, "404": _error("Unknown or expired"),
                              "416": {"description": "Range not satisfiable"}}},
    },
    f"{P}/uploads": {
        "post": {"summary": "OpenAI: start an Upload (parts within an hour)", "operationId": "openaiCreateUpload",
                 "requestBody": {"required": True,
                                 "content": {"application/json": {"schema": _ref("OpenAIUploadCreate")}}},
                 "responses": {"200": _json(_ref("OpenAIUpload"), "The upload, pending"),
                               "413": _error("Above the maximum size")}},
    },
    f"{P}/uploads/{{upload_id}}/parts": {
        "parameters": [_UPLOAD_ID],
        "post": {"summary": "OpenAI: add a part (64 MiB at most; parts may be sent in parallel)",
                 "operationId": "openaiAddPart",
                 "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                     "type": "object", "required": ["data"], "properties": {"data": _BINARY}}}}},
                 "responses": {"200": _json({"type": "object", "required": ["id", "object", "created_at",
                                                                            "upload_id"]}, "The part"),
                               "404": _error("Unknown upload"), "409": _error("Completed or cancelled meanwhile"),
                               "413": _error("Above 64 MiB"), "415": _error("Not multipart/form-data")}},
    },
    f"{P}/uploads/{{upload_id}}/complete": {
        "parameters": [_UPLOAD_ID],
        "post": {"summary": "OpenAI: join the parts, in this order, into a file",
                 "operationId": "openaiCompleteUpload",
                 "requestBody": {"required": True, "content": {"application/json": {"schema": {
                     "type": "object", "required": ["part_ids"],
                     "properties": {"part_ids": {"type": "array", "items": {"type": "string"}},
                                    "md5": {"type": "string"}}}}}},
                 "responses": {"200": _json(_ref("OpenAIUpload"), "The upload, completed, with its file"),
                               "404": _error("Unknown upload"), "409": _error("Being completed or cancelled")}},
    },
    f"{P}/uploads/{{upload_id}}/cancel": {
        "parameters": [_UPLOAD_ID],
        "post": {"summary": "OpenAI: cancel an Upload and free its parts", "operationId": "openaiCancelUpload",
                 "responses": {"200": _json(_ref("OpenAIUpload"), "The upload, cancelled"),
                               "404": _error("Unknown upload"), "409": _error("Being completed")}},
    },
}

# Every route can meet bad input, a missing or weak token, a cross-site request, a database or an
# object store out of reach, and (where bytes are written) a full disk.
for _operations in PATHS.values():
    for _method, _operation in _operations.items():
        if _method == "parameters":
            continue
        for _status, _why in (("400", "Invalid request"), ("401", "No valid token"),
                              ("403", "Not allowed for this token, or from another site"),
                              ("503", "The database or the object store is out of reach; retry")):
            _operation["responses"].setdefault(_status, _error(_why))
        if _method == "post":
            _operation["responses"].setdefault("507", _error("Storage full"))
