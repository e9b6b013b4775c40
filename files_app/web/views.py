"""The pages: buckets, a bucket's folders and files, a file; the forms that create and delete."""

from __future__ import annotations

import csv
from urllib.parse import urlsplit

from flask import (
    current_app,
    flash,
    redirect,
    render_template,
    request,
    send_from_directory,
    session,
    url_for,
)
from markupsafe import Markup

from .. import auth, validation
from ..access import access
from ..errors import AccountDisabled, FilesError
from ..request_io import folders, objects, trash, uploader_name, zip_response
from ..services import archive
from ..services.kept import new_deletion
from . import markdown
from .pages import bp, csrf_token, folder_url
from .trash import flash_deleted

PAGE_SIZE = 100
MAX_ZIP_SELECTION = 10_000  # files in one "download selected"
CSV_PREVIEW_ROWS = 100  # rows of a CSV file shown as a table
PREVIEW_TEXT_BYTES = 256 * 1024
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-ndjson",
               "application/yaml", "application/x-yaml", "application/toml", "application/x-sh")
_TEXT_EXTENSIONS = {"log", "txt", "yaml", "yml", "toml", "ini", "cfg", "conf", "env", "properties", "csv", "tsv",
                    "rs", "go", "java", "c", "h", "cpp", "hpp", "rb", "sql", "jsonl", "ndjson", "lock", "gradle"}


@bp.get("/")
@access("authenticated")
def buckets():
    return render_template("buckets.html", buckets=objects().list_buckets(**auth.bucket_filter()))


@bp.post("/buckets")
@access("write")
def create_bucket():
    name = request.form.get("name", "").strip()
    try:
        auth.require_bucket(name, "write")
        objects().create_bucket(name)
    except FilesError as error:
        flash(error.message, "error")
        return redirect(url_for("web.buckets"))
    flash(f"Bucket {name} created. Drop files here to upload them.", "ok")
    return redirect(url_for("web.folder", bucket=name, path=""))


@bp.post("/b/<bucket>/delete-bucket")
@access("manage", bucket="bucket")
def delete_bucket(bucket: str):
    try:
        objects().delete_bucket(bucket)
    except FilesError as error:
        flash(error.message, "error")
        return redirect(url_for("web.folder", bucket=bucket, path=""))
    flash(f"Bucket {bucket} deleted.", "ok")
    return redirect(url_for("web.buckets"))


@bp.get("/b/<bucket>/", defaults={"path": ""}, endpoint="folder")
@bp.get("/b/<bucket>/<path:path>")
@access("read", bucket="bucket")
def folder_or_file(bucket: str, path: str):
    """Keys never end in '/', so a path that does (or none) is a folder, anything else a file."""
    if path == "" or path.endswith("/"):
        return _folder(bucket, path)
    return _file(bucket, path)


def _folder(bucket: str, prefix: str):
    info = objects().get_bucket(bucket)
    limit = validation.list_limit(request.args.get("limit"), default=PAGE_SIZE)
    q = request.args.get("q")
    if q:  # the whole bucket (or folder) searched, from the index: files only, by key
        page = objects().search(bucket, q, prefix=validation.list_prefix(prefix), limit=limit,
                                cursor=request.args.get("cursor"))
        previous = "" if request.args.get("cursor") else None  # back to the first results only
        last = position = None
    else:
        where = dict(prefix=validation.list_prefix(prefix), delimiter="/", limit=limit,
                     cursor=request.args.get("cursor"))
        page = objects().list(bucket, **where)
        previous = objects().previous_cursor(bucket, **where)  # None on the first page, "" for it
        del where["cursor"]
        last = objects().last_cursor(bucket, **where) if page.next_cursor else None
        shown = len(page.objects) + len(page.prefixes)
        here = objects().position(bucket, prefix=where["prefix"], delimiter="/", cursor=request.args.get("cursor"))
        position = _position_text(here, shown)
    return render_template("bucket.html", bucket=info, prefix=prefix, page=page, crumbs=folder_crumbs(prefix),
                           limit=request.args.get("limit"), previous=previous, q=q or None,
                           last=last, position=position)


def _position_text(position, shown: int) -> str | None:
    """"101–200 of 12,345"; a count that reached its cap shows as a lower bound ("100,000+")."""
    if not shown:
        return None
    total = f"{position.total:,}{'' if position.total_exact else '+'}"
    if not position.before_exact:
        return f"{shown:,} after the first {position.before:,}, of {total}"
    return f"{position.before + 1:,}–{position.before + shown:,} of {total}"



def _file(bucket: str, key: str):
    info = objects().get(bucket, key)
    bucket_root = url_for("api.content", bucket=bucket, key="x")[:-1]
    context = preview_context(info, bucket_root, key.rpartition("/")[0] + "/" if "/" in key else "")
    folder = key.rpartition("/")[0]
    return render_template("file.html", **context, uploaded_by=uploader_name(context["file"].owner),
                           crumbs=folder_crumbs(folder + "/" if folder else ""), name=key.rpartition("/")[2],
                           folder=folder + "/" if folder else "", versions=trash().versions(bucket, key),
                           keeps_versions=trash().retention.versions)


def preview_context(info, images_root: str | None, folder: str) -> dict:
    """What _preview.html shows of a file: its kind and, for the previews the page holds itself,
    its first 256 KiB as text, Markdown rendered (relative images from `images_root` + `folder`;
    none when `images_root` is None), or a CSV's first rows."""
    preview, text, truncated, rendered = preview_kind(info.mime_type, info.key), None, False, None
    if info.damaged_at is not None:
        preview = "damaged"  # its bytes are never served: nothing to show
    if preview in ("text", "markdown"):  # the others load from the content URL
        info, raw = objects().read_head(info.bucket, info.key, PREVIEW_TEXT_BYTES + 1)
        text = raw[:PREVIEW_TEXT_BYTES].decode("utf-8", "replace")
        truncated = len(raw) > PREVIEW_TEXT_BYTES
    if preview == "markdown":
        rendered = Markup(markdown.render(text, images_root, folder))
    table, table_cut = (_csv_rows(text, truncated) if preview == "text" and _base_type(info.mime_type) == "text/csv"
                        else (None, False))
    return dict(file=info, preview=preview, text=text, truncated=truncated, table=table, rendered=rendered,
                table_cut=table_cut)


@bp.post("/b/<bucket>/zip")
@access("read", bucket="bucket")
def zip_selected(bucket: str):
    """The files selected on a page, as one zip (a form POST: a selection does not fit in a URL)."""
    keys = list(dict.fromkeys(request.form.getlist("key")))[:MAX_ZIP_SELECTION]
    back = request.form.get("back", "")
    if not keys:
        flash("Select the files to download first.", "error")
        return redirect(folder_url(bucket, back))
    for key in keys:
        validation.object_key(key, new=False)
    objects().bucket_id(bucket)  # 404 before the first byte
    name = (back.rstrip("/").rpartition("/")[2] or bucket) + "-selection.zip"
    return zip_response(archive.zip_keys(objects(), bucket, keys, back), name)


@bp.post("/b/<bucket>/delete")
@access("write", bucket="bucket")
def delete_files(bucket: str):
    keys = request.form.getlist("key")
    back = request.form.get("back", "")
    deleted, failed, deletion = 0, [], new_deletion()  # one id for the whole selection: one Undo
    for key in keys:
        try:
            objects().delete(bucket, key, deletion=deletion)
            deleted += 1
        except FilesError as error:
            failed.append(f"{key}: {error.message}")
    if deleted:
        flash_deleted(bucket, deleted, deletion, back)
    for message in failed:
        flash(message, "error")
    return redirect(folder_url(bucket, back))


@bp.post("/b/<bucket>/move")
@access("write", bucket="bucket")
def move(bucket: str):
    """Rename or move (no bytes move) or, with action=copy, copy a file (`key` -> `to_key`) or a
    folder (`prefix` -> `to_prefix`)."""
    form = request.form
    copying = form.get("action") == "copy"
    verb = "Copied" if copying else "Moved"
    try:
        if form.get("key"):
            to_key = form.get("to_key", "").strip()
            if copying:
                done = folders().copy(bucket, form["key"], bucket, to_key, owner=auth.current().owner)
            else:
                done = folders().move(bucket, form["key"], bucket, to_key)
            flash(f"{verb} to {done.key}.", "ok")
            return redirect(folder_url(bucket, done.key))
        to_prefix = form.get("to_prefix", "").strip().strip("/") + "/"
        each = folders().copy_folder if copying else folders().move_folder
        extra = {"owner": auth.current().owner} if copying else {}
        result = each(bucket, form.get("prefix", ""), bucket, to_prefix, **extra)
    except FilesError as error:
        flash(error.message, "error")
        return redirect(folder_url(bucket, form.get("key") or form.get("prefix", "")))
    flash(f"{verb} {result.moved} file{'s' if result.moved != 1 else ''} to {to_prefix}.", "ok")
    if result.skipped:
        flash(f"{len(result.skipped)} {'were not copied' if copying else 'stayed'}: a file of the same name is "
              f"already there ({', '.join(result.skipped[:3])}{'…' if len(result.skipped) > 3 else ''}).", "error")
    return redirect(folder_url(bucket, to_prefix))


@bp.get("/b/<bucket>/new-folder")
@access("write", bucket="bucket")
def new_folder(bucket: str):
    """A folder is the keys that share a prefix: a new one is a page to upload into (it lists once a
    file is in it)."""
    prefix, name = request.args.get("prefix", ""), request.args.get("name", "").strip().strip("/")
    try:
        folder = validation.list_prefix(prefix) + name + "/"
        validation.object_key(folder + "x")  # its names must make keys
        objects().bucket_id(bucket)
    except FilesError as error:
        flash(f"That folder name cannot be used: {error.message}", "error")
        return redirect(folder_url(bucket, prefix))
    flash(f"New folder {name}/: drop files here to fill it (it lists once it holds a file).", "ok")
    return redirect(folder_url(bucket, folder))


@bp.get("/b/<bucket>/delete-folder")
@access("write", bucket="bucket")
def confirm_delete_folder(bucket: str):
    """The confirmation: what the folder holds now. The delete takes no file placed after this count."""
    prefix = request.args.get("prefix", "")
    counted = folders().count(bucket, prefix)
    return render_template("delete_folder.html", bucket=bucket, prefix=prefix, files=counted.files,
                           size=counted.bytes, until=counted.until, crumbs=folder_crumbs(prefix))


@bp.post("/b/<bucket>/delete-folder")
@access("write", bucket="bucket")
def delete_folder(bucket: str):
    """The folder's files that the confirmation counted (placed at or before `until`), and no others."""
    prefix, until = request.form.get("prefix", ""), request.form.get("until", "")
    if not (until.isascii() and until.isdigit() and len(until) < 19):
        flash("Count the folder's files first.", "error")
        return redirect(folder_url(bucket, prefix))
    deletion = new_deletion()
    deleted = folders().delete_folder(bucket, prefix, until=int(until), deletion=deletion)
    if deleted:  # (the Undo brings the folder back: its page is where it goes)
        flash_deleted(bucket, deleted, deletion, prefix, where=f" in {prefix}")
    else:
        flash(f"Deleted no file in {prefix}: it was empty by now.", "ok")
    return redirect(folder_url(bucket, prefix.rstrip("/").rpartition("/")[0] + "/" if "/" in prefix.rstrip("/")
                               else ""))


@bp.get("/favicon.ico")
@access("public")
def favicon():
    return send_from_directory(current_app.static_folder, "favicon.svg", mimetype="image/svg+xml")


def folder_crumbs(prefix: str) -> list[tuple[str, str]]:
    """[(label, prefix)] for each folder level of `prefix`."""
    crumbs, path = [], ""
    for part in [p for p in prefix.split("/") if p]:
        path += part + "/"
        crumbs.append((part, path))
    return crumbs


def _base_type(mime_type: str) -> str:
    return mime_type.split(";")[0].strip().lower()


def _csv_rows(text: str, truncated: bool, limit: int = CSV_PREVIEW_ROWS) -> tuple[list[list[str]] | None, bool]:
    """The first rows of a CSV file as a table (escaped by the template like any text), and whether
    there is more; None if it does not parse. A cut preview's last line may be partial: left out."""
    lines = text.splitlines()
    if truncated:
        lines = lines[:-1]
    try:
        rows = list(csv.reader(lines[:limit]))
    except csv.Error:
        return None, truncated
    return rows or None, truncated or len(lines) > limit


def preview_kind(mime_type: str, key: str = "") -> str | None:
    base = _base_type(mime_type)
    extension = key.rpartition(".")[2].lower() if "." in key.rpartition("/")[2] else ""
    if base == "text/markdown" or extension in ("md", "markdown"):
        return "markdown"
    if base == "application/octet-stream" and extension in _TEXT_EXTENSIONS:
        return "text"  # types no registry names (logs, YAML, TOML...): shown as text all the same
    if base == "image/svg+xml" or base.startswith("image/"):
        return "image"  # in <img>, even an SVG's script never runs
    if base.startswith(("audio/", "video/")):
        return base.split("/")[0]
    if base == "application/pdf":
        return "pdf"
    if base.startswith("text/") or base in _TEXT_TYPES or base.endswith(("+json", "+xml")):
        return "text"  # shown as escaped source, never rendered
    return None



@bp.route("/login", methods=["GET", "POST"])
@access("public")
def login():
    accounts = current_app.extensions["files"].accounts
    target = _same_site_path(request.values.get("next", "")) or url_for("web.buckets")
    if request.method == "POST":
        try:
            web_session = accounts.sign_in(request.form.get("username", ""), request.form.get("password", ""),
                                           request.remote_addr or "", request.headers.get("User-Agent", ""))
        except AccountDisabled as refusal:
            flash(f"{refusal.message[0].upper()}{refusal.message[1:]}.", "error")
            return render_template("login.html", next=target), 403
        if web_session is not None:
            session.clear()  # the old CSRF token goes too: a new one with every sign-in
            session["sid"] = web_session
            csrf_token()
            return redirect(target)
        flash("That user name and password do not match.", "error")
        return render_template("login.html", next=target), 401
    return render_template("login.html", next=target)


@bp.post("/logout")
@access("authenticated")
def logout():
    if isinstance(web_session := session.get("sid"), str):
        current_app.extensions["files"].accounts.sign_out(web_session)  # a copy of the cookie dies too
    session.clear()
    flash("Signed out.", "ok")
    return redirect(url_for("web.login"))


def _same_site_path(target: str) -> str | None:
    """`target` if it is a path on this site, else None. Browsers drop tabs and newlines from
    URLs and read a backslash as a slash, so those are refused before parsing, not after."""
    if not target or any(c in target for c in "\\\t\r\n") or not target.isprintable():
        return None
    try:
        parts = urlsplit(target)
    except ValueError:
        return None
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return target
