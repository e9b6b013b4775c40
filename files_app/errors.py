"""Domain errors and the one JSON error shape of the API.

Services raise these; views and the error handlers turn them into
`{"error": {"status": 409, "code": "offset_mismatch", "message": "...", ...}}`.
Errors carry data (`offset`, `retry_after`, `challenge`, `tus_version`), never HTTP headers: the
HTTP layer alone makes those (files_app.error_headers).
"""

from __future__ import annotations

from typing import Any


class FilesError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, offset: int | None = None, retry_after: int | None = None,
                 challenge: str | None = None, tus_version: str | None = None, **extra: Any):
        super().__init__(message)
        self.message = message
        self.offset = offset  # where an upload stands (and may resume)
        self.retry_after = retry_after  # seconds until a retry may succeed
        self.challenge = challenge  # how to authenticate
        self.tus_version = tus_version  # the tus versions spoken, when the client's is not one
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        shown = {name: value for name, value in (("offset", self.offset), ("retry_after", self.retry_after))
                 if value is not None}
        return {"error": {"status": self.status, "code": self.code, "message": self.message, **shown, **self.extra}}


class InvalidInput(FilesError):
    """Malformed or out-of-range input; `code` names what was wrong."""

    def __init__(self, message: str, code: str = "invalid_request", **extra: Any):
        super().__init__(message, **extra)
        self.code = code


class Unauthorized(FilesError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, challenge='Bearer realm="files"')


class Forbidden(FilesError):
    status = 403
    code = "forbidden"


class AccountDisabled(Forbidden):
    code = "account_disabled"


class OpenService(Forbidden):
    """A request from a peer other than loopback while the service is open (no token, no user); its
    code stays "forbidden", as every refusal of this kind (the message says why)."""


class CrossSite(Forbidden):
    """A state change from another site's page: no bearer token and no same-origin proof."""

    code = "cross_site"


class CsrfFailed(Forbidden):
    """A signed-in request or a form that changes data without the page's CSRF token."""

    code = "csrf_failed"


class BadHost(FilesError):
    """A Host header not in FILES_ALLOWED_HOSTS (DNS rebinding, or a misconfigured proxy)."""

    status = 400
    code = "invalid_host"


class TooManyAttempts(FilesError):
    """Sign-in failures past the limit for this account or address."""

    status = 429
    code = "too_many_attempts"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message, retry_after=retry_after)


class FinalUploadImmutable(FilesError):
    """tus: a final (concatenated) upload takes no PATCH."""

    status = 403
    code = "final_upload"


class NotFound(FilesError):
    status = 404
    code = "not_found"


class Conflict(FilesError):
    status = 409
    code = "conflict"


class LastAdmin(Conflict):
    """A change that would leave no live admin (demote, disable, delete the last one)."""

    code = "last_admin"


class OwnsBuckets(Conflict):
    code = "owns_buckets"


class BucketNotEmpty(Conflict):
    code = "bucket_not_empty"


class OffsetMismatch(FilesError):
    status = 409
    code = "offset_mismatch"

    def __init__(self, expected: int, given: int):
        super().__init__(
            f"chunk starts at offset {given} but the session is at offset {expected}", offset=expected)


class SessionExpired(FilesError):
    status = 410
    code = "session_expired"


class PreconditionFailed(FilesError):
    status = 412
    code = "precondition_failed"


class LengthRequired(FilesError):
    status = 411
    code = "length_required"


class UnsupportedMediaType(FilesError):
    status = 415
    code = "unsupported_media_type"


class TooLarge(FilesError):
    status = 413
    code = "too_large"


class TooManySessions(FilesError):
    status = 429
    code = "too_many_sessions"


class SessionLocked(FilesError):
    status = 423
    code = "session_locked"

    def __init__(self, retry_after: int):
        super().__init__("another request is writing to this session; retry later", retry_after=retry_after)


class DigestMismatch(FilesError):
    """The whole file's sha256 is not the one the client announced."""

    status = 422
    code = "sha256_mismatch"


class ChecksumMismatch(FilesError):
    """A chunk's Upload-Checksum did not match; 460 is tus's status for it."""

    status = 460
    code = "checksum_mismatch"


class InsufficientStorage(FilesError):
    """The disk (or quota) is full. What was durable stays; the upload resumes once space is freed."""

    status = 507
    code = "insufficient_storage"


class QuotaExceeded(InsufficientStorage):
    """A quota (a bucket's, a user's, a token's) would be passed: refused before any byte is sent."""

    code = "quota_exceeded"


class FileDamaged(FilesError):
    """A file whose stored bytes a scrub found not to be those uploaded: never served as they are."""

    status = 409
    code = "file_damaged"


class ShareGone(FilesError):
    """A share link that no longer works: expired, revoked (or its creator's access gone), or used up."""

    status = 410

    def __init__(self, message: str, *, state: str):
        super().__init__(message, state=state)
        self.code = f"share_{state}"


class Unavailable(FilesError):
    """The database is unreachable or too busy: nothing was half done; retry shortly."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str):
        super().__init__(message, retry_after=1)


class StorageUnavailable(Unavailable):
    """The object store is unreachable or overloaded: what was durable stays; retry shortly."""

    code = "storage_unavailable"


class StorageError(FilesError):
    """The blob store lost or refused bytes it should have: a server fault, not the client's."""

    status = 500
    code = "storage_error"


class CommitNotDurable(StorageError):
    """A commit went through but the disk refused to sync it: what it published stays published
    (its bytes must not be freed), and the client is told the write failed."""


class BlobMissing(StorageError):
    """A blob is gone: a replace or delete freed it after its row was read (look the row up again)."""

    code = "blob_missing"


class IncompleteBody(FilesError):
    """The request body broke off (client gone, bad chunked encoding); durable bytes are kept."""

    status = 400
    code = "incomplete_body"


class LeaseLost(FilesError):
    """This writer stalled past its lease and another took the session over."""

    status = 409
    code = "lease_lost"
