"""GET /v1/openapi.json: an OpenAPI 3.1 description of the whole API."""

from __future__ import annotations

from flask import request

from ..access import access
from ..openai import spec as openai_spec
from .blueprints import api_bp


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _relocation(summary: str, operation: str, counted: str, more_responses: dict | None = None) -> dict:
    """/v1/move and /v1/copy: the same body, a file or a folder's count back."""
    return {"post": {
        "summary": summary, "operationId": operation,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["bucket"],
            "properties": {"bucket": {"type": "string"}, "key": {"type": "string"}, "to_key": {"type": "string"},
                           "prefix": {"type": "string"}, "to_prefix": {"type": "string"},
                           "to_bucket": {"type": "string"}, "replace": {"type": "boolean"}}}}}},
        "responses": {"200": _json({"oneOf": [_ref("File"), {"type": "object", "required": [counted, "skipped"]}]},
                                   f"The file at its new name, or how many of the folder's files were {counted}"),
                      "404": _error("Unknown bucket or file"), "409": _error("Changed meanwhile"),
                      "412": _error("The new name is taken"), **(more_responses or {})},
    }}


def _quota_paths(parameters: list, whose: str, tag: str) -> dict:
    limits = {"type": "object", "properties": {"max_bytes": {"type": ["integer", "null"], "minimum": 0},
                                               "max_files": {"type": ["integer", "null"], "minimum": 0}}}
    answer = _json(_ref("Quota"), "The quota and the usage it counts")
    return {"parameters": parameters,
            "get": {"summary": f"A quota, {whose}, with its usage", "operationId": f"get{tag}Quota",
                    "responses": {"200": answer, "404": _error("No such user or token")}},
            "put": {"summary": f"Set a quota, {whose} (nulls remove it; admin)", "operationId": f"set{tag}Quota",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": limits}}},
                    "responses": {"200": answer, "404": _error("No such user or token")}}}


def _error(description: str) -> dict:
    return _json(_ref("Error"), description)


_SESSION_ID = {"name": "session_id", "in": "path", "required": True,
               "description": "32 hex digits, as the server made it; any other is unknown (404)",
               "schema": {"type": "string"}}
_BUCKET = {"name": "bucket", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,63}$"}}
_KEY = {"name": "key", "in": "path", "required": True, "description": "may contain '/'",
        "schema": {"type": "string"}}
_OFFSET_HEADER = {"name": "Upload-Offset", "in": "header", "required": False,
                  "schema": {"type": "integer", "minimum": 0}}
_TUS_RESUMABLE = {"name": "Tus-Resumable", "in": "header", "required": False,
                  "description": "tus requires it: without it, or with another version, the answer is 412",
                  "schema": {"type": "string"}}
_CHECKSUM_HEADER = {"name": "Upload-Checksum", "in": "header", "required": False,
                    "description": "'<sha256|sha1|md5> <base64 digest>' of this chunk",
                    "schema": {"type": "string"}}

_SCHEMAS = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["status", "code", "message"],
            "properties": {"status": {"type": "integer"}, "code": {"type": "string"},
                           "message": {"type": "string"}},
            "additionalProperties": True,
        }},
    },
    "SessionCreate": {
        "type": "object", "required": ["bucket", "key", "size"],
        "properties": {
            "bucket": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,63}$"},
            "key": {"type": "string", "minLength": 1},
            "mime_type": {"type": ["string", "null"], "description": "null or absent: guessed from the key"},
            "size": {"type": "integer", "minimum": 0},
            "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-fA-F]{64}$"},
        },
    },
    "Session": {
        "type": "object", "required": ["id", "url", "offset", "size"],
        "properties": {"id": {"type": "string"}, "url": {"type": "string", "format": "uri"},
                       "offset": {"type": "integer"},
                       "size": {"type": ["integer", "null"], "description": "null while tus defers the length"}},
    },
    "File": {
        "type": "object", "required": ["key", "bucket", "mime_type", "bytes", "created_at", "url", "sha256"],
        "properties": {"key": {"type": "string"}, "bucket": {"type": "string"},
                       "mime_type": {"type": "string"}, "bytes": {"type": "integer"},
                       "created_at": {"type": "integer", "description": "Unix seconds"},
                       "url": {"type": "string", "format": "uri"}, "sha256": {"type": "string"},
                       "uploaded_by": {"type": ["string", "null"],
                                       "description": "a user's name or \"token <name>\"; only in GET of one file"}},
    },
    "Bucket": {
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "created_at": {"type": "integer"},
                       "files": {"type": "integer"}, "bytes": {"type": "integer"}, "updated_at": {"type": "integer"},
                       "quota": {"type": ["object", "null"], "description": "its quota's max_bytes and max_files"}},
    },
    "Share": {
        "type": "object", "required": ["id", "bucket", "state", "expires_at", "downloads"],
        "properties": {"id": {"type": "string"}, "url": {"type": "string", "format": "uri",
                                                          "description": "only when it is made"},
                       "bucket": {"type": "string"}, "key": {"type": ["string", "null"]},
                       "prefix": {"type": ["string", "null"]}, "created_at": {"type": "integer"},
                       "expires_at": {"type": "integer"},
                       "state": {"enum": ["active", "expired", "revoked", "exhausted", "file_gone"]},
                       "password": {"type": "boolean"}, "max_downloads": {"type": ["integer", "null"]},
                       "downloads": {"type": "integer"}, "allow_upload": {"type": "boolean"},
                       "upload_max_bytes": {"type": ["integer", "null"]}, "uploaded_bytes": {"type": "integer"},
                       "listing": {"type": "boolean"}},
    },
    "Quota": {
        "type": "object",
        "required": ["subject", "name", "max_bytes", "max_files", "used_bytes", "used_files", "promised_bytes",
                     "promised_files"],
        "properties": {"subject": {"enum": ["bucket", "user", "token"]}, "name": {"type": "string"},
                       "max_bytes": {"type": ["integer", "null"]}, "max_files": {"type": ["integer", "null"]},
                       "used_bytes": {"type": "integer", "description": "held by stored files"},
                       "used_files": {"type": "integer"},
                       "promised_bytes": {"type": "integer", "description": "declared by uploads still open"},
                       "promised_files": {"type": "integer"}},
    },
    "BucketList": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Bucket"}}},
    },
    "FileList": {
        "type": "object", "required": ["data", "has_more", "next_cursor"],
        "properties": {"data": {"type": "array", "items": _ref("File")},
                       "has_more": {"type": "boolean"},
                       "next_cursor": {"type": ["string", "null"]},
                       "prefixes": {"type": "array", "items": {"type": "string"}}},
    },
}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "Files API", "version": "1.0.0",
             "description": "Buckets of files written through resumable upload sessions."},
    "paths": {
        "/v1/files": {
            "get": {"summary": "List buckets", "operationId": "listBuckets",
                    "responses": {"200": _json(_ref("BucketList"), "The buckets")}},
            "options": {"summary": "tus: what the server supports", "operationId": "tusOptions",
                        "responses": {"200": {"description": "Tus-Version, Tus-Extension, Tus-Max-Size"}}},
            "post": {
                "summary": "Create an upload session (JSON; with Tus-Resumable, a tus creation)",
                "operationId": "createSession",
                "parameters": [{"name": "If-None-Match", "in": "header", "required": False,
                                "description": "'*': fail with 412 if the key exists",
                                "schema": {"type": "string", "enum": ["*"]}}],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("SessionCreate")}}},
                "responses": {"201": _json(_ref("Session"), "The new session (tus: Location header, no body)"),
                              "400": _error("Invalid field"), "412": _error("The key exists"),
                              "413": _error("Above the maximum object size"),
                              "415": _error("tus: upload bytes without application/offset+octet-stream"),
                              "422": _error("size 0 and a sha256 that is not the empty file's")},
            },
        },
        "/v1/files/session:{session_id}": {
            "parameters": [_SESSION_ID],
            "get": {"summary": "Read an upload session", "operationId": "getSession",
                    "responses": {"200": _json(_ref("Session"), "The session"),
                                  "404": _error("Unknown session"), "410": _error("Expired")}},
            "post": {
                "summary": "Send content (the whole file or the next chunk)", "operationId": "uploadContent",
                "parameters": [_OFFSET_HEADER, _CHECKSUM_HEADER,
                               {"name": "X-Checksum-Sha256", "in": "header", "required": False,
                                "schema": {"type": "string"},
                                "description": "the whole file's sha256 (hex or base64), checked if this chunk "
                                               "completes the upload: 422 and nothing stored if it differs"}],
                "requestBody": {"required": True, "content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "responses": {
                    "200": _json({"oneOf": [_ref("Session"), _ref("File")]},
                                 "The session while incomplete; the file once complete"),
                    "400": _error("Bad header or broken body"), "404": _error("Unknown session"),
                    "409": _error("Offset mismatch"), "410": _error("Expired"),
                    "413": _error("Runs past the session's size"), "422": _error("sha256 mismatch"),
                    "423": _error("Another request is writing"), "460": _error("Chunk checksum mismatch"),
                },
            },
            "delete": {"summary": "Abort an upload session (also tus termination)", "operationId": "abortSession",
                       "responses": {"204": {"description": "Aborted"}, "404": _error("Unknown session")}},
            "head": {"summary": "tus: the upload's offset and length", "operationId": "tusHead",
                     "parameters": [_TUS_RESUMABLE],
                     "responses": {"200": {"description": "Upload-Offset, Upload-Length, Upload-Metadata headers"},
                                   "404": {"description": "Unknown upload"}, "410": {"description": "Expired"},
                                   "412": {"description": "Unsupported tus version"}}},
            "patch": {
                "summary": "tus: append bytes at Upload-Offset", "operationId": "tusPatch",
                "parameters": [_TUS_RESUMABLE, {**_OFFSET_HEADER, "required": True}, _CHECKSUM_HEADER,
                               {"name": "Upload-Length", "in": "header", "required": False,
                                "schema": {"type": "integer", "minimum": 0}}],
                "requestBody": {"required": True, "content": {"application/offset+octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}},
                "responses": {"204": {"description": "Accepted; Upload-Offset is the new offset"},
                              "400": _error("Bad header"), "403": _error("A final upload"),
                              "404": _error("Unknown upload"), "409": _error("Offset mismatch"),
                              "410": _error("Expired"), "412": _error("Unsupported tus version"),
                              "413": _error("Past the length"), "415": _error("Wrong Content-Type"),
                              "423": _error("Another request is writing"), "460": _error("Checksum mismatch")},
            },
            "options": {"summary": "tus: what the server supports", "operationId": "tusOptionsUpload",
                        "responses": {"200": {"description": "Tus-Version, Tus-Extension, Tus-Max-Size"}}},
        },
        "/v1/files/{bucket}": {
            "parameters": [_BUCKET],
            "get": {
                "summary": "List a bucket's files", "operationId": "listFiles",
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {"name": "prefix", "in": "query", "schema": {"type": "string"}},
                    {"name": "delimiter", "in": "query", "schema": {"type": "string"}},
                    {"name": "q", "in": "query", "schema": {"type": "string"},
                     "description": "search: files whose key holds this fragment (any case), from an index"},
                ],
                "responses": {"200": _json(_ref("FileList"), "One page of files"),
                              "400": _error("Bad query"), "404": _error("Unknown bucket")},
            },
            "put": {"summary": "Create an empty bucket (admin)", "operationId": "createBucket",
                    "responses": {"201": _json(_ref("Bucket"), "The new bucket"), "409": _error("It exists")}},
            "delete": {"summary": "Delete an empty bucket", "operationId": "deleteBucket",
                       "responses": {"204": {"description": "Deleted"}, "404": _error("Unknown bucket"),
                                     "409": _error("Not empty")}},
        },
        "/v1/files/{bucket}/{key}": {
            "parameters": [_BUCKET, _KEY],
            "get": {"summary": "Read a file's metadata", "operationId": "getFile",
                    "responses": {"200": _json(_ref("File"), "The file"), "404": _error("Unknown file")}},
            "put": {
                "summary": "Upload a whole file in one request (replaces the key's file)", "operationId": "putFile",
                "parameters": [
                    {"name": "If-None-Match", "in": "header", "schema": {"type": "string", "enum": ["*"]},
                     "description": "`*`: 412 if the key exists"},
                    {"name": "X-Checksum-Sha256", "in": "header", "schema": {"type": "string"},
                     "description": "the file's sha256, hex or base64: 422 and nothing stored if it differs"}],
                "requestBody": {"required": False, "description": "the file's bytes (none: an empty file)",
                                "content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                    "format": "binary"}}}},
                "responses": {"200": _json(_ref("File"), "The stored file"), "404": _error("A malformed key path"),
                              "411": _error("No Content-Length"),
                              "412": _error("The key exists"), "413": _error("Too large"),
                              "422": _error("sha256 mismatch")},
            },
            "delete": {"summary": "Delete a file", "operationId": "deleteFile",
                       "responses": {"200": _json(_ref("File"), "The deleted file"),
                                     "404": _error("Unknown file")}},
        },
        "/v1/content/{bucket}/{key}": {
            "parameters": [_BUCKET, _KEY],
            "get": {
                "summary": "Download a file's content (Range, conditional GET)", "operationId": "getContent",
                "parameters": [{"name": "Range", "in": "header", "schema": {"type": "string"}},
                               {"name": "download", "in": "query", "schema": {"type": "string"},
                                "description": "any value: Content-Disposition attachment"}],
                "responses": {"200": {"description": "The content"}, "206": {"description": "A range"},
                              "304": {"description": "Not modified"}, "404": _error("Unknown file"),
                              "416": {"description": "Range not satisfiable"}},
            },
            "head": {"summary": "A file's content headers", "operationId": "headContent",
                     "responses": {"200": {"description": "Headers only"}, "404": {"description": "Unknown"}}},
        },
        "/v1/thumbnails/{bucket}/{key}": {
            "parameters": [_BUCKET, _KEY],
            "get": {"summary": "An image file's thumbnail (WebP), made once", "operationId": "getThumbnail",
                    "parameters": [{"name": "size", "in": "query",
                                    "schema": {"type": "integer", "enum": [128, 256, 512]}},
                                   {"name": "fallback", "in": "query", "schema": {"type": "string"},
                                    "description": "any value: a transparent pixel instead of a 404"}],
                    "responses": {"200": {"description": "image/webp"}, "304": {"description": "Not modified"},
                                  "400": _error("Bad size"),
                                  "404": _error("No such file, or no image a thumbnail can be made of")}},
        },
        "/v1/quotas/{bucket}": _quota_paths([_BUCKET], "a bucket's: bytes and files", "Bucket"),
        "/v1/quotas/{kind}/{name}": _quota_paths(
            [{"name": "kind", "in": "path", "required": True, "schema": {"enum": ["users", "tokens"]}},
             {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "a user's name or a token's id"}], "a user's or token's: bytes (admin)", "Owner"),
        "/v1/shares": {
            "post": {"summary": "Make a share link for a file (key) or a folder (prefix); its url is shown only now",
                     "operationId": "createShare",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": {
                         "type": "object", "required": ["bucket"],
                         "properties": {"bucket": {"type": "string"}, "key": {"type": "string"},
                                        "prefix": {"type": "string"},
                                        "expires_in": {"type": "integer", "minimum": 60},
                                        "expires_at": {"type": "integer"}, "password": {"type": "string"},
                                        "max_downloads": {"type": "integer", "minimum": 1},
                                        "allow_upload": {"type": "boolean"},
                                        "upload_max_bytes": {"type": "integer", "minimum": 1},
                                        "listing": {"type": "boolean"}}}}}},
                     "responses": {"201": _json(_ref("Share"), "The share, with its url"),
                                   "404": _error("No such bucket or file")}},
            "get": {"summary": "The caller's share links (an admin's: everyone's)", "operationId": "listShares",
                    "responses": {"200": _json({"type": "object", "required": ["data"], "properties": {
                        "data": {"type": "array", "items": _ref("Share")}}}, "The shares")}},
        },
        "/v1/shares/{share_id}": {
            "parameters": [{"name": "share_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": {"summary": "A share link's state and use", "operationId": "getShare",
                    "responses": {"200": _json(_ref("Share"), "The share"), "404": _error("No such share")}},
            "delete": {"summary": "Revoke a share link (it answers 410 from now on)", "operationId": "revokeShare",
                       "responses": {"200": _json(_ref("Share"), "The revoked share"),
                                     "404": _error("No such share")}},
        },
        "/v1/zip/{bucket}": {
            "parameters": [_BUCKET],
            "get": {
                "summary": "Every file under a prefix (or the whole bucket) as one zip, streamed",
                "operationId": "zipFolder",
                "parameters": [{"name": "prefix", "in": "query", "schema": {"type": "string"},
                                "description": "the folder; names in the zip are relative to it"}],
                "responses": {"200": {"description": "application/zip (stored, zip64 where needed)"},
                              "400": _error("Bad prefix"), "404": _error("Unknown bucket")},
            },
        },
        "/v1/move": _relocation("Rename or move a file ({bucket, key, to_key}) or a folder ({bucket, prefix, "
                                "to_prefix}); no bytes are copied", "move", "moved"),
        "/v1/copy": _relocation("Copy a file ({bucket, key, to_key}) or a folder ({bucket, prefix, to_prefix}): "
                                "the bytes are written again, checked against the source's sha256", "copy", "copied",
                                {"507": _error("Not enough space for the copy")}),
        "/v1/folders/{bucket}/{prefix}": {
            "parameters": [_BUCKET, {"name": "prefix", "in": "path", "required": True,
                                     "description": "a folder: ends in '/'", "schema": {"type": "string"}}],
            "get": {"summary": "Count a folder's files and bytes (what a delete would take)",
                    "operationId": "countFolder",
                    "responses": {"200": _json({"type": "object",
                                                "required": ["files", "bytes", "until"]}, "The count"),
                                  "404": _error("Unknown bucket")}},
            "delete": {"summary": "Delete the folder's files a count saw (`until`), in batches",
                       "operationId": "deleteFolder",
                       "parameters": [{"name": "until", "in": "query", "schema": {"type": "integer", "minimum": 0},
                                       "description": "the count's `until`: files placed later stay"}],
                       "responses": {"200": _json({"type": "object", "required": ["deleted"]}, "How many went"),
                                     "404": _error("Unknown bucket")}},
        },
        "/v1/openapi.json": {"get": {"summary": "This description", "operationId": "openapi",
                                     "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    },
    "components": {"schemas": _SCHEMAS},
}


# tus: a PATCH on anything under /v1/files that is not an upload URL is about an upload that does not exist.
for _path in ("/v1/files", "/v1/files/{bucket}", "/v1/files/{bucket}/{key}"):
    SPEC["paths"][_path]["patch"] = {"summary": "tus: not an upload URL", "operationId": "patch" + str(len(_path)),
                                     "responses": {"404": _error("No upload here")}}

# Any operation can meet a malformed name, header or parameter (or a Host not allowed: `invalid_host`).
for _operations in SPEC["paths"].values():
    for _method, _operation in _operations.items():
        if _method != "parameters":
            _operation["responses"].setdefault("400", _error("Malformed request"))
            _operation["responses"].setdefault("503", _error(
                "The database (`unavailable`) or the object store (`storage_unavailable`) is out of reach; retry"))
            if _method in ("post", "patch"):
                _operation["responses"].setdefault("507", _error("Storage full; the durable offset is kept"))
            if _method in ("post", "patch", "delete"):
                _operation["responses"].setdefault("403", _error(
                    "From another site's page (`cross_site`: no bearer token, no same-origin `Origin`), or a "
                    "cookie without the page's CSRF token (`csrf_failed`), or not allowed for this token"))


# The OpenAI-compatible routes, in their own error shape.
SPEC["paths"].update(openai_spec.PATHS)
SPEC["components"]["schemas"].update(openai_spec.SCHEMAS)


@api_bp.get("/openapi.json")
@access("public")
def openapi():
    return {**SPEC, "servers": [{"url": request.host_url.rstrip("/")}]}
