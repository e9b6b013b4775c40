"""A bucket's Trash page (restore, delete for good, empty), the Undo of a page's delete, and putting
back a version of a file. The services decide; these views turn their answers into messages."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from .. import validation
from ..access import access
from ..errors import FilesError, InvalidInput
from ..request_io import objects, trash
from ..services.kept import on_conflict_arg
from ..services.trash import Restored
from .pages import bp, folder_url

PAGE_SIZE = 100
MAX_SHOWN_KEYS = 3  # names a message lists before "…"
# The Trash page's choice for a name that is taken now; "skip" leaves that file in the trash (the
# service's "fail", which a restore of many files reports per file).
ON_CONFLICT = {"keep_both": "keep_both", "replace": "replace", "skip": "fail"}


def plural(count: int, noun: str = "file") -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def flash_deleted(bucket: str, deleted: int, deletion: str, back: str, where: str = "") -> None:
    """"Deleted 3 files · Undo": the Undo (a form in the message) restores exactly this delete; with
    the trash off there is nothing to undo, and the message says nothing of it."""
    text = f"Deleted {plural(deleted)}{where}"
    if not trash().retention.trash:
        flash(f"{text}.", "ok")
        return
    flash({"text": text, "undo": {"bucket": bucket, "deletion": deletion, "back": back}}, "ok")


def _names(items: list[str]) -> str:
    return ", ".join(items[:MAX_SHOWN_KEYS]) + ("…" if len(items) > MAX_SHOWN_KEYS else "")


def flash_restored(bucket: str, result: Restored, nothing: str) -> None:
    """What came back (and under which name, where another took its place), and what stayed in the
    trash because its name is taken now."""
    came_back = result.restored
    if came_back:
        renamed = [f"{key} as {to_key}" for _, key, to_key in came_back if to_key != key]
        text = f"Restored {plural(len(came_back))}" + (f" ({_names(renamed)})" if renamed else "") + "."
        if len(came_back) == 1:
            flash({"text": text, "link": {"href": folder_url(bucket, came_back[0][2]), "label": "Open it"}}, "ok")
        else:
            flash(text, "ok")
    taken = [key for _, key, reason in result.skipped if reason == "exists"]
    gone = [kept_id for kept_id, _, reason in result.skipped if reason != "exists"]
    if gone and (came_back or taken):  # some restored or deleted for good by someone else meanwhile
        flash(f"{plural(len(gone))} no longer in the trash: restored or deleted meanwhile.", "error")
    if taken:
        flash({"text": f"{plural(len(taken))} stayed in the trash: a file of the same name is there now "
                       f"({_names(taken)}). Restore {'it' if len(taken) == 1 else 'them'} from the trash, "
                       "keeping both or replacing.",
               "link": {"href": url_for("web.trash_page", bucket=bucket), "label": "Open the trash"}}, "error")
    if not came_back and not taken:
        flash(nothing, "error")


@bp.post("/b/<bucket>/undo-delete")
@access("write", bucket="bucket")
def undo_delete(bucket: str):
    """The Undo of a delete on these pages: the files it took (its deletion id) go back to their names;
    one whose name is taken now stays in the trash."""
    back = request.form.get("back", "")
    try:
        result = trash().restore(bucket, deletion=request.form.get("deletion", ""), on_conflict="fail")
    except FilesError as error:
        flash(f"Nothing was restored: {error.message}.", "error")
    else:
        flash_restored(bucket, result, "Nothing to restore: those files left the trash meanwhile "
                                       "(restored, or deleted for good).")
    return redirect(folder_url(bucket, back))


@bp.get("/b/<bucket>/trash")
@access("write", bucket="bucket")
def trash_page(bucket: str):
    info = objects().get_bucket(bucket)
    cursor = request.args.get("cursor") or None
    limit = validation.list_limit(request.args.get("limit"), default=PAGE_SIZE)
    page = trash().list(bucket, limit=limit, cursor=cursor)
    return render_template("trash.html", bucket=info, page=page, cursor=cursor, limit=request.args.get("limit"),
                           days=trash().retention.trash_days)


def _chosen_ids() -> list[int] | None:
    """The entries ticked on the Trash page; None (and a message) if none."""
    values = request.form.getlist("id")
    ids = [int(value) for value in dict.fromkeys(values) if value.isascii() and value.isdigit() and len(value) < 19]
    if not ids:
        flash("Select the files first.", "error")
        return None
    return ids


@bp.post("/b/<bucket>/trash/restore")
@access("write", bucket="bucket")
def restore_trash(bucket: str):
    ids = _chosen_ids()
    if ids is not None:
        try:
            choice = ON_CONFLICT.get(request.form.get("on_conflict", "keep_both"))
            result = trash().restore(bucket, ids=ids, on_conflict=on_conflict_arg(choice or "unknown"))
        except FilesError as error:
            flash(f"Nothing was restored: {error.message}.", "error")
        else:
            flash_restored(bucket, result, "Nothing to restore: those files left the trash meanwhile.")
    return redirect(url_for("web.trash_page", bucket=bucket))


@bp.post("/b/<bucket>/trash/purge")
@access("manage", bucket="bucket")
def purge_trash(bucket: str):
    ids = _chosen_ids()
    if ids is not None:
        try:
            purged = trash().purge(bucket, ids)
        except FilesError as error:
            flash(f"Nothing was deleted: {error.message}.", "error")
        else:
            flash(f"Deleted {plural(purged)} for good.", "ok")
    return redirect(url_for("web.trash_page", bucket=bucket))


@bp.get("/b/<bucket>/trash/empty")
@access("manage", bucket="bucket")
def confirm_empty_trash(bucket: str):
    """Its own page, so that emptying asks first with JavaScript off too."""
    page = trash().list(bucket, limit=1)
    return render_template("empty_trash.html", bucket=bucket, empty=not page.entries)


@bp.post("/b/<bucket>/trash/empty")
@access("manage", bucket="bucket")
def empty_trash(bucket: str):
    purged = trash().purge(bucket)
    flash(f"Emptied the trash: {plural(purged)} deleted for good.", "ok")
    return redirect(url_for("web.trash_page", bucket=bucket))


@bp.post("/b/<bucket>/restore-version")
@access("write", bucket="bucket")
def restore_version(bucket: str):
    """A version (from the file page) becomes the file; the file it replaces becomes a version."""
    key, version = request.form.get("key", ""), request.form.get("version", "")
    try:
        if not (version.isascii() and version.isdigit() and 0 < len(version) < 19):
            raise InvalidInput("choose a version to restore", "invalid_version")
        trash().restore_version(bucket, key, int(version))
    except FilesError as error:
        flash(f"The version was not restored: {error.message}.", "error")
    else:
        kept = ("the file it replaced is the newest version now" if trash().retention.versions > 0
                else "the file it replaced was not kept (this service keeps no versions)")
        flash(f"Restored an earlier version: it is the current file; {kept}.", "ok")
    return redirect(folder_url(bucket, key) if key else url_for("web.folder", bucket=bucket, path=""))
