"""The service's API over one reused httpx connection pool: typed calls, the API's errors as
ApiError, and patience: 423, 429 and 503 are retried after their Retry-After, broken connections
after a growing pause."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx

RETRY_STATUSES = (423, 429, 503)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, offset: int | None = None):
        super().__init__(f"{message} ({status} {code})")
        self.status, self.code, self.message, self.offset = status, code, message, offset


class Api:
    def __init__(self, url: str, token: str | None, retries: int = 8, timeout: float = 60.0):
        headers = {"User-Agent": "files-client/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url, self.retries = url.rstrip("/"), retries
        self.http = httpx.Client(base_url=self.url, headers=headers, follow_redirects=True,
                                 timeout=httpx.Timeout(timeout, connect=10.0),
                                 limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))

    def close(self) -> None:
        self.http.close()

    # --- the calls -----------------------------------------------------------------------------
    def buckets(self) -> list[dict]:
        return self.call("GET", "/v1/files").json()["data"]

    def create_bucket(self, bucket: str) -> dict:
        return self.call("PUT", f"/v1/files/{quote(bucket)}").json()

    def delete_bucket(self, bucket: str) -> None:
        self.call("DELETE", f"/v1/files/{quote(bucket)}")

    def list(self, bucket: str, prefix: str = "", delimiter: str | None = None) -> Iterator[dict]:
        """Every file under `prefix` (and, with a delimiter, each folder once as {"prefix": ...}),
        page after page."""
        params = {"prefix": prefix, "limit": "1000"}
        if delimiter:
            params["delimiter"] = delimiter
        while True:
            page = self.call("GET", f"/v1/files/{quote(bucket)}", params=params).json()
            for folder in page.get("prefixes", ()):
                yield {"prefix": folder}
            yield from page["data"]
            if not page["has_more"]:
                return
            params["cursor"] = page["next_cursor"]

    def info(self, bucket: str, key: str) -> dict:
        return self.call("GET", file_path(bucket, key)).json()

    def delete(self, bucket: str, key: str) -> dict:
        return self.call("DELETE", file_path(bucket, key)).json()

    def count_folder(self, bucket: str, prefix: str) -> dict:
        """{files, bytes, until}: what deleting the folder (`prefix` ends in "/") would delete now."""
        return self.call("GET", folder_path(bucket, prefix)).json()

    def delete_folder(self, bucket: str, prefix: str, until: int | None = None) -> dict:
        """{deleted, deletion}: the files a count saw (`until`), or every one there now; `deletion`
        (None when the service keeps no trash) names them all in the trash."""
        params = {"until": str(until)} if until is not None else {}
        return self.call("DELETE", folder_path(bucket, prefix), params=params).json()

    # --- what is kept: a bucket's trash, a key's versions ----------------------------------------
    def trash(self, bucket: str, prefix: str = "", limit: int = 1000) -> Iterator[dict]:
        """The bucket's trash under `prefix`, newest first, page after page."""
        params = {"prefix": prefix, "limit": str(limit)}
        while True:
            page = self.call("GET", f"/v1/trash/{quote(bucket)}", params=params).json()
            yield from page["data"]
            if not page["has_more"]:
                return
            params["cursor"] = page["next_cursor"]

    def restore(self, bucket: str, selection: dict, on_conflict: str = "fail") -> dict:
        """{restored: [{id, key, restored_as}], skipped: [{id, key, reason}]} for `selection`, one of
        {"ids": [...]}, {"prefix": ...}, {"deletion": ...}. Sent again after a lost answer, it
        restores nothing twice (what came back is no longer in the trash)."""
        return self.call("POST", f"/v1/trash/{quote(bucket)}/restore",
                         json={**selection, "on_conflict": on_conflict}).json()

    def purge(self, bucket: str, ids: list[int] | None = None) -> int:
        """Delete for good the trash entries `ids`, or (None) the whole trash; how many went."""
        body = {"json": {"ids": ids}} if ids is not None else {}
        return self.call("DELETE", f"/v1/trash/{quote(bucket)}", **body).json()["purged"]

    def versions(self, bucket: str, key: str) -> list[dict]:
        """The kept versions of a key, newest first (not the current file)."""
        return self.call("GET", version_path(bucket, key)).json()["data"]

    def restore_version(self, bucket: str, key: str, version_id: int) -> dict:
        """The version becomes the file (its JSON); the file it replaces becomes a version."""
        return self.call("POST", version_path(bucket, key), json={"version": version_id}).json()

    def share(self, fields: dict) -> dict:
        return self.call("POST", "/v1/shares", json=fields).json()

    def shares(self) -> list[dict]:
        return self.call("GET", "/v1/shares").json()["data"]

    def revoke_share(self, share_id: str) -> dict:
        return self.call("DELETE", f"/v1/shares/{quote(share_id, safe='')}").json()

    def account(self) -> dict:
        return self.call("GET", "/v1/account").json()

    def tokens(self) -> list[dict]:
        return self.call("GET", "/v1/tokens").json()["data"]

    def create_token(self, fields: dict) -> dict:
        # Sent once, never retried: a retry after a lost answer would make a second token whose
        # secret nobody ever sees.
        return self.checked(self.http.post("/v1/tokens", json=fields)).json()

    def revoke_token(self, token_id: int) -> dict:
        return self.call("DELETE", f"/v1/tokens/{int(token_id)}").json()

    # --- the plumbing --------------------------------------------------------------------------
    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs) -> httpx.Response:
        """One request, retried while the service asks to wait or the network breaks. Only for
        requests that may be sent twice (reads, deletes, whole small bodies)."""
        return self.patiently(lambda: self.checked(self.http.request(method, path, **kwargs), ok))

    def patiently(self, attempt: Callable[[], httpx.Response], on_retry: Callable[[], None] | None = None):
        """Run `attempt` until it succeeds: after a 423, 429 or 503 wait as Retry-After says; after a
        broken connection (the server restarting) wait 0.5 s, 1 s, 2 s ... up to 30 s."""
        for tries in range(self.retries + 1):
            try:
                return attempt()
            except ApiError as error:
                if error.status not in RETRY_STATUSES or tries == self.retries:
                    raise
                pause = getattr(error, "retry_after", None) or backoff(tries)
            except httpx.TransportError:
                if tries == self.retries:
                    raise
                pause = backoff(tries)
            time.sleep(pause)  # the server said (or the network needs) to wait
            if on_retry:
                on_retry()
        raise AssertionError("unreachable")

    @staticmethod
    def checked(response: httpx.Response, ok: tuple[int, ...] = ()) -> httpx.Response:
        if response.status_code < 400 or response.status_code in ok:
            return response
        response.read()
        try:
            error = response.json()["error"]
            code, message = error.get("code", "error"), error.get("message", response.reason_phrase)
        except (ValueError, KeyError, TypeError):
            code, message = "error", response.text[:200] or response.reason_phrase
        offset = response.headers.get("Upload-Offset")
        failure = ApiError(response.status_code, code, message, int(offset) if offset and offset.isdigit() else None)
        retry_after = response.headers.get("Retry-After", "")
        failure.retry_after = min(float(retry_after), 60.0) if retry_after.replace(".", "", 1).isdigit() else None
        raise failure


def file_path(bucket: str, key: str) -> str:
    return f"/v1/files/{quote(bucket)}/{quote(key)}"


def folder_path(bucket: str, prefix: str) -> str:
    return f"/v1/folders/{quote(bucket)}/{quote(prefix)}"


def version_path(bucket: str, key: str) -> str:
    return f"/v1/versions/{quote(bucket)}/{quote(key)}"


def content_path(bucket: str, key: str) -> str:
    return f"/v1/content/{quote(bucket)}/{quote(key)}"


def backoff(tries: int) -> float:
    return min(30.0, 0.5 * 2 ** tries) * random.uniform(0.8, 1.2)
