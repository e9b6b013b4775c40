"""What the service keeps of deleted and replaced files: `files trash ls|restore|empty` (a bucket's
trash, where a delete moves files for FILES_TRASH_DAYS) and `files versions ls|get|restore` (what
an upload replaced); and, for `files rm`, where the files it deleted went and how to get them back."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from pathlib import Path, PurePosixPath

import click

from .api import Api, ApiError, version_path
from .common import Remote, columns, connect, fail_on_api_errors, files, when
from .progress import human

MAX_IDS = 1000  # entries the service takes in one restore or purge
CONFLICTS = {"fail": "fail", "keep-both": "keep_both", "replace": "replace"}


# --- where `files rm` put them --------------------------------------------------------------------
def where_they_went(api: Api, bucket: str, *, deletion: str | None = None, folder: str | None = None,
                    deleted: dict | None = None, undo: str | None = None) -> str:
    """What follows "deleted ...": the trash, for how long and the command that undoes the delete, or
    "for good". A folder delete answered its `deletion` (None: the service keeps no trash); for one
    file (`deleted`, the delete's answer) the trash is asked for its entry. `undo` instead of the
    deletion's own command (files deleted one by one have a deletion each)."""
    if folder is not None:
        if deletion is None:
            return " for good (the service keeps no trash)"
        days = _trash_days(api, bucket, folder)
    else:
        try:
            entry = _entry_of(api, bucket, deleted)
        except ApiError:  # (the delete itself was done: say what is known)
            return f"; it may be in the trash of bucket {bucket}: files trash ls {bucket}"
        if entry is None:
            return " for good (the service keeps no trash)"
        deletion, days = entry["deletion"], _days(entry)
    kept = f" (kept {days} days)" if days is not None else ""
    return (f": moved to the trash of bucket {bucket}{kept}; "
            f"undo: {undo or f'files trash restore {bucket} --deletion {deletion}'}")


def _entry_of(api: Api, bucket: str, deleted: dict) -> dict | None:
    """The trash entry a delete just made of `deleted` (the same upload: key, sha256 and creation
    time), among the newest 100 under its key; None if there is none (no trash)."""
    for entry in itertools.islice(api.trash(bucket, deleted["key"], limit=100), 100):  # one page
        if all(entry[name] == deleted[name] for name in ("key", "sha256", "created_at")):
            return entry
    return None


def _trash_days(api: Api, bucket: str, prefix: str) -> int | None:
    """How long the trash keeps a file (any entry tells: it is one setting for all of them)."""
    try:
        newest = next(api.trash(bucket, prefix, limit=1), None)
    except ApiError:
        return None
    return _days(newest) if newest else None


def _days(entry: dict) -> int:
    return round((entry["purge_at"] - entry["deleted_at"]) / 86400)


# --- files trash ----------------------------------------------------------------------------------
@click.group("trash")
def trash_group() -> None:
    """A bucket's deleted files, kept a while: ls, restore, empty.

    A delete moves files into their bucket's trash for the service's FILES_TRASH_DAYS (unless it is 0:
    then a delete is for good)."""


@trash_group.command("ls")
@click.argument("bucket")
@click.option("--prefix", default="", help="Only files whose key starts with this.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@fail_on_api_errors
def list_trash(bucket: str, prefix: str, as_json: bool) -> None:
    """The files in BUCKET's trash, newest first: the id to restore or purge one by, key, size, when
    and by whom it was deleted, the delete it was part of (to restore them together) and when it goes
    for good."""
    entries = connect().trash(bucket, prefix)
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry))
        return
    rows = [[str(e["id"]), e["key"], human(e["bytes"]), when(e["deleted_at"]), e["deleted_by"] or "-",
             e["deletion"] or "-", when(e["purge_at"])[:10]] for e in entries]
    if not rows:
        click.echo(f"nothing in the trash of bucket {bucket}{f' under {prefix!r}' if prefix else ''}", err=True)
        return
    columns(["ID", "KEY", "SIZE", "DELETED", "BY", "DELETION", "PURGED ON"], rows)


@trash_group.command("restore")
@click.argument("bucket")
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@click.option("--prefix", default=None, help="Every file in the trash under this prefix ('' for all).")
@click.option("--deletion", default=None, help="The files of one delete (the del_... `files rm` printed).")
@click.option("--id", "ids", type=int, multiple=True, help="A trash entry (as `files trash ls` shows); repeatable.")
@click.option("--on-conflict", type=click.Choice(list(CONFLICTS)), default="fail", show_default=True,
              help="When a file of the name exists: leave it in the trash, restore it as 'name (1).ext', "
                   "or replace the file (which is kept as a version).")
@fail_on_api_errors
def restore_trash(bucket: str, keys: tuple[str, ...], prefix: str | None, deletion: str | None,
                  ids: tuple[int, ...], on_conflict: str) -> None:
    """Put files back from BUCKET's trash at their keys: KEY... (the newest deleted file of each key),
    or those under --prefix, of one --deletion, or by --id. Prints each file restored; one left in
    the trash (its name taken) makes the exit code 1."""
    chosen = [name for name, value in (("KEY", keys), ("--prefix", prefix is not None), ("--deletion", deletion),
                                       ("--id", ids)) if value]
    if len(chosen) != 1:
        raise click.UsageError("name what to restore: KEY..., --prefix, --deletion or --id (one of them)")
    api = connect()
    if keys:
        ids = tuple(_newest_entry(api, bucket, key)["id"] for key in keys)
    if ids:
        selections = [{"ids": list(ids[start:start + MAX_IDS])} for start in range(0, len(ids), MAX_IDS)]
    else:
        selections = [{"prefix": prefix} if prefix is not None else {"deletion": deletion}]
    restored, skipped = [], []
    for selection in selections:
        answer = api.restore(bucket, selection, CONFLICTS[on_conflict])
        restored += answer["restored"]
        skipped += answer["skipped"]
    for item in restored:
        renamed = f" as {bucket}/{item['restored_as']}" if item["restored_as"] != item["key"] else ""
        click.echo(f"restored {bucket}/{item['key']}{renamed}")
    for item in skipped:
        if item["reason"] == "not_in_trash":
            click.echo(f"files: no entry {item['id']} in the trash of bucket {bucket} (restored or purged already)",
                       err=True)
            continue
        why = ("a file of that name exists (--on-conflict keep-both or replace)" if item["reason"] == "exists"
               else item["reason"])
        click.echo(f"files: {bucket}/{item['key']} (trash entry {item['id']}) not restored: {why}", err=True)
    missing = sorted(set(ids) - {item["id"] for item in restored + skipped})
    for entry_id in missing:
        click.echo(f"files: no entry {entry_id} in the trash of bucket {bucket} (restored or purged already)",
                   err=True)
    if not (restored or skipped or missing):
        if deletion is not None:
            raise click.ClickException(f"nothing of {deletion} is in the trash of bucket {bucket}")
        click.echo(f"nothing in the trash of bucket {bucket}{f' under {prefix!r}' if prefix else ''}", err=True)
    if skipped or missing:
        sys.exit(1)


def _newest_entry(api: Api, bucket: str, key: str) -> dict:
    for entry in api.trash(bucket, key):
        if entry["key"] == key:
            return entry
    raise click.ClickException(f"{bucket}/{key} is not in the trash of bucket {bucket}")


@trash_group.command("empty")
@click.argument("bucket")
@click.option("--id", "ids", type=int, multiple=True, help="Only this trash entry; repeatable.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@fail_on_api_errors
def empty_trash(bucket: str, ids: tuple[int, ...], yes: bool) -> None:
    """Delete for good what is in BUCKET's trash (or the entries --id): asks first, with the count.
    Asked, it deletes the files it counted; with --yes, whatever is there (manage access)."""
    api = connect()
    if not yes:
        chosen = list(ids) or [entry["id"] for entry in api.trash(bucket)]
        if not chosen:
            click.echo(f"the trash of bucket {bucket} is empty", err=True)
            return
        if not sys.stdin.isatty():
            raise click.ClickException(f"{files(len(chosen))} in the trash of bucket {bucket} would be deleted "
                                       "for good; pass --yes to do it without asking")
        click.confirm(f"Delete {files(len(chosen))} in the trash of bucket {bucket} for good?", abort=True)
        ids = tuple(chosen)
    if ids:
        purged = sum(api.purge(bucket, list(ids[start:start + MAX_IDS])) for start in range(0, len(ids), MAX_IDS))
    else:
        purged = api.purge(bucket)
    click.echo(f"purged {files(purged)} from the trash of bucket {bucket}")


# --- files versions -------------------------------------------------------------------------------
@click.group("versions")
def versions_group() -> None:
    """What uploads replaced, kept a while: ls, get, restore.

    The service keeps the last FILES_VERSIONS files each key's uploads replaced."""


def _file(path: str) -> Remote:
    remote = Remote(path)
    if not remote.path or remote.path.endswith("/"):
        raise click.BadParameter(f"{path!r} names no file (write bucket/key)")
    return remote


@versions_group.command("ls")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@fail_on_api_errors
def list_versions(path: str, as_json: bool) -> None:
    """The kept versions of the file PATH (bucket/key), newest first (not the current file)."""
    remote = _file(path)
    versions = connect().versions(remote.bucket, remote.path)
    if as_json:
        for version in versions:
            click.echo(json.dumps(version))
        return
    if not versions:
        click.echo(f"no versions of {remote} are kept", err=True)
        return
    columns(["ID", "SIZE", "UPLOADED", "BY", "REPLACED", "BY", "SHA256"],
            [[str(v["id"]), human(v["bytes"]), when(v["created_at"]), v["uploaded_by"] or "-",
              when(v["replaced_at"]), v["replaced_by"] or "-", v["sha256"][:12]] for v in versions])


@versions_group.command("get")
@click.argument("path")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@click.option("--id", "version_id", type=int, required=True, help="The version (as `files versions ls` shows).")
@fail_on_api_errors
def get_version(path: str, dest: Path | None, version_id: int) -> None:
    """Download a version of the file PATH (bucket/key) into DEST (a file, or a directory to put it in
    under the key's name), or to standard output without DEST; sha256-checked."""
    api, remote = connect(), _file(path)
    version = next((v for v in api.versions(remote.bucket, remote.path) if v["id"] == version_id), None)
    if version is None:
        raise click.ClickException(f"no version {version_id} of {remote} (see `files versions ls {remote}`)")
    if dest is None:
        out = click.get_binary_stream("stdout")
        digest = _download(api, remote, version_id, out)
        out.flush()
    else:
        target = dest / PurePosixPath(remote.path).name if dest.is_dir() else dest
        partial = target.with_name(target.name + ".part")
        try:
            with open(partial, "wb") as out:
                digest = _download(api, remote, version_id, out)
                out.flush()
                os.fsync(out.fileno())
            if digest == version["sha256"]:
                partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    if digest != version["sha256"]:
        raise click.ClickException(f"downloaded bytes have sha256 {digest}, not the version's {version['sha256']}")
    if dest is not None:
        click.echo(f"version {version_id} of {remote} ({human(version['bytes'])}) -> {target}", err=True)


def _download(api: Api, remote: Remote, version_id: int, out) -> str:
    hasher = hashlib.sha256()
    with api.http.stream("GET", version_path(remote.bucket, remote.path), params={"version": str(version_id)}) \
            as response:
        api.checked(response)
        for data in response.iter_bytes(1024 * 1024):
            hasher.update(data)
            out.write(data)
    return hasher.hexdigest()


@versions_group.command("restore")
@click.argument("path")
@click.option("--id", "version_id", type=int, required=True, help="The version (as `files versions ls` shows).")
@fail_on_api_errors
def restore_version(path: str, version_id: int) -> None:
    """Make a version of the file PATH (bucket/key) the file again; the file it replaces is kept as
    a version."""
    remote = _file(path)
    restored = connect().restore_version(remote.bucket, remote.path, version_id)
    click.echo(f"restored version {version_id} of {remote} ({human(restored['bytes'])}, "
               f"sha256 {restored['sha256'][:12]})")
