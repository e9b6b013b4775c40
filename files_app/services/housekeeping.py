"""Garbage collection: expired sessions, and bytes that no row refers to."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, or_, select

from ..models import KeptFile, SessionKind, SessionState, StoredObject, UploadSession, db, transaction
from ..storage import BlobStore
from .leases import LEASE_FREE


def collect_garbage(store: BlobStore, now: float, grace: float = 3600.0) -> dict[str, int]:
    """Delete expired sessions and their bytes, then bytes that no row refers to.

    `grace` spares files younger than that many seconds: a blob is renamed into place a moment
    before its row commits, and must not be swept in between.
    """
    with transaction():
        expired = db.session.execute(
            select(UploadSession.id, UploadSession.store_state).where(UploadSession.expires_at < now, LEASE_FREE),
            {"now": now},
        ).all()
        for batch in batches(expired):
            db.session.execute(delete(UploadSession).where(UploadSession.id.in_([row.id for row in batch])))
    for session_id, store_state in expired:
        store.discard_partial(session_id, store_state)
    # Only an active session needs its private bytes: a completed one's are in its blob, and what a
    # killed writer left (a second multipart upload, a tail never committed) is nobody's then.
    orphan_partials = _unreferenced(store.partial_ids(now - grace), UploadSession.id,
                                    UploadSession.state == SessionState.ACTIVE)
    for session_id in orphan_partials:
        store.discard_partial(session_id, None)
    orphan_blobs = orphan_blob_ids(store, now - grace)
    for blob_id in orphan_blobs:
        store.delete_blob(blob_id)
    return {"expired_sessions": len(expired), "orphan_partials": len(orphan_partials),
            "orphan_blobs": len(orphan_blobs)}


def orphan_blob_ids(store: BlobStore, older_than: float) -> list[str]:
    """Blobs older than that which no row refers to. A blob is named after the session that made it
    until its object's row commits (spare those of active sessions), and a complete tus partial's
    blob waits for its final upload; files in the trash and kept versions keep theirs."""
    return _unreferenced(_unreferenced(_unreferenced(store.blob_ids(older_than), StoredObject.blob_id),
                                       KeptFile.blob_id),
                         UploadSession.id, or_(UploadSession.state == SessionState.ACTIVE,
                                               UploadSession.kind == SessionKind.PARTIAL))


def _unreferenced(ids: Iterable[str], column, *conditions) -> list[str]:
    orphans = []
    for batch in batches(list(ids)):
        with transaction():
            known = set(db.session.scalars(select(column).where(column.in_(batch), *conditions)).all())
        orphans.extend(i for i in batch if i not in known)
    return orphans


def batches(items: list, size: int = 500) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]

