"""The `files` command: log in, list, make and remove buckets, copy and sync files both ways, share
links, and one's own API tokens; the trash and versions commands are in kept.py.

Remote paths are written `bucket` or `bucket/key` (`bucket/prefix/` for a folder). In `cp` and
`sync`, the side that exists on this machine is the local one.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import click
import httpx

from . import __version__
from .api import Api, ApiError, content_path
from .common import Remote, columns, connect, fail_on_api_errors, files, when
from .config import save_login
from .interrupts import Interrupted, exit_code, handled
from .kept import trash_group, versions_group, where_they_went
from .progress import Reporter, human, reporter
from .transfer import STOP, Stopped, TransferFailed, download_file, upload_file, whole_sha256

MIB = 1024 * 1024


class FilesCommand(click.Group):
    """The `files` group, with the client's own SIGINT and SIGTERM handlers installed first (see
    interrupts.py): a signal stops any command with 130 or 143, a transfer at its next chunk."""

    def main(self, *args, **kwargs):
        with handled():
            return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Interrupted as interruption:  # outside a transfer (which exits by itself, see _run)
            click.echo("Aborted!", err=True)
            raise click.exceptions.Exit(interruption.exit_code) from None


@click.group(cls=FilesCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="files")
def main() -> None:
    """The files service from the command line: resumable, parallel uploads and downloads with
    progress bars, sha256-checked.

    Remote paths are `bucket` or `bucket/key` (`bucket/folder/` for a folder). FILES_URL and
    FILES_TOKEN override what `files login` saved."""


@main.command()
@click.argument("url")
@click.option("--token", help="An API token (`flask files token create`); asked for if not given on a terminal.")
def login(url: str, token: str | None) -> None:
    """Save the service's URL and a token (in the user's config dir, readable by you alone)."""
    if token is None and sys.stdin.isatty():
        token = click.prompt("Token (empty for an open service)", default="", hide_input=True,
                             show_default=False) or None
    api = Api(url, token, retries=1)
    try:
        api.buckets()
    except ApiError as error:
        raise click.ClickException(f"the service refused: {error.message} ({error.status})") from None
    except httpx.TransportError as error:
        raise click.ClickException(f"cannot reach {url}: {error}") from None
    finally:
        api.close()
    click.echo(f"Logged in to {url.rstrip('/')}; saved in {save_login(url, token)}")


@main.command("ls")
@click.argument("path", required=False)
@click.option("-r", "--recursive", is_flag=True, help="Every file under the folder, not one level.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@fail_on_api_errors
def list_command(path: str | None, recursive: bool, as_json: bool) -> None:
    """List buckets, or a bucket's (or folder's) files and folders."""
    api = connect()
    if not path:
        for bucket in api.buckets():
            if as_json:
                click.echo(json.dumps(bucket))
            else:
                click.echo(f"{when(bucket.get('updated_at') or bucket['created_at'])}  "
                           f"{bucket.get('files', 0):>9} files  {human(bucket.get('bytes', 0)):>10}  {bucket['name']}/")
        return
    remote = Remote(path)
    for entry in api.list(remote.bucket, remote.path, None if recursive else "/"):
        if as_json:
            click.echo(json.dumps(entry))
        elif "prefix" in entry:
            click.echo(f"{'':16}  {'PRE':>10}  {entry['prefix']}")
        else:
            click.echo(f"{when(entry['created_at'])}  {human(entry['bytes']):>10}  {entry['key']}")


@main.command("mb")
@click.argument("bucket")
@fail_on_api_errors
def make_bucket(bucket: str) -> None:
    """Make an empty bucket (admin token)."""
    connect().create_bucket(bucket)
    click.echo(f"made {bucket}/")


@main.command("rb")
@click.argument("bucket")
@fail_on_api_errors
def remove_bucket(bucket: str) -> None:
    """Remove an empty bucket (admin token)."""
    connect().delete_bucket(bucket)
    click.echo(f"removed {bucket}/")


@main.command("rm")
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="Every file under a folder (asks first, with the count).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.option("--parallel", default=8, show_default=True, help="Deletes at once (of a whole bucket's files).")
@fail_on_api_errors
def remove(path: str, recursive: bool, yes: bool, parallel: int) -> None:
    """Delete a file, or with -r every file under a folder. Says where they went: into the bucket's
    trash (with the command that brings them back), or for good if the service keeps no trash."""
    api, remote = connect(), Remote(path)
    if not recursive:
        deleted = api.delete(remote.bucket, remote.path)
        click.echo(f"deleted {remote}{where_they_went(api, remote.bucket, deleted=deleted)}")
        return
    prefix = remote.path if not remote.path or remote.path.endswith("/") else remote.path + "/"
    if not prefix:
        _remove_every_file(api, remote.bucket, yes, parallel)
        return
    until = None
    if not yes:  # the count shown is what goes: files placed after it stay
        counted = api.count_folder(remote.bucket, prefix)
        if not counted["files"]:
            click.echo(f"nothing under {remote.bucket}/{prefix}")
            return
        _confirm(counted["files"], counted["bytes"], f"under {remote.bucket}/{prefix}")
        until = counted["until"]
    answer = api.delete_folder(remote.bucket, prefix, until)
    if not answer["deleted"]:
        click.echo(f"nothing under {remote.bucket}/{prefix}")
        return
    click.echo(f"deleted {files(answer['deleted'])} under {remote.bucket}/{prefix}"
               f"{where_they_went(api, remote.bucket, deletion=answer['deletion'], folder=prefix)}")


def _confirm(count: int, size: int, where: str) -> None:
    if not sys.stdin.isatty():
        raise click.ClickException(f"{count} files would be deleted ({human(size)} {where}); "
                                   "pass --yes to do it without asking")
    click.confirm(f"Delete {files(count)} ({human(size)}) {where}?", abort=True)


def _remove_every_file(api: Api, bucket: str, yes: bool, parallel: int) -> None:
    """A whole bucket's files, one delete each (a folder delete takes a folder, not a bucket's top)."""
    listed = list(api.list(bucket))
    if not listed:
        click.echo(f"nothing in {bucket}/")
        return
    if not yes:
        _confirm(len(listed), sum(entry["bytes"] for entry in listed), f"in {bucket}/")
    failures, deleted = [], []

    def delete(key: str) -> None:
        try:
            deleted.append(api.delete(bucket, key))
        except ApiError as error:
            if error.status != 404:  # gone already is what was asked
                failures.append(f"{key}: {error.message}")

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(delete, [entry["key"] for entry in listed]))
    for failure in failures:
        click.echo(f"files: {failure}", err=True)
    went = where_they_went(api, bucket, deleted=deleted[-1], undo=f"files trash restore {bucket} --prefix '' "
                           "(everything in its trash, deleted now or before)") if deleted else ""
    click.echo(f"deleted {files(len(deleted))} in {bucket}/{went}")
    if failures:
        sys.exit(1)


@main.command("cat")
@click.argument("path")
@fail_on_api_errors
def cat(path: str) -> None:
    """Write a file's bytes to standard output."""
    api, remote = connect(), Remote(path)
    out = click.get_binary_stream("stdout")
    with api.http.stream("GET", content_path(remote.bucket, remote.path)) as response:
        api.checked(response)
        for data in response.iter_bytes(MIB):
            out.write(data)
    out.flush()


@main.command("info")
@click.argument("path")
@fail_on_api_errors
def info(path: str) -> None:
    """A file's metadata (size, type, sha256, dates) as JSON."""
    remote = Remote(path)
    click.echo(json.dumps(connect().info(remote.bucket, remote.path), indent=2))


_DURATIONS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SIZES = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB, "t": 1024 * 1024 * MIB}


def _amount(text: str, units: dict[str, int], what: str) -> int:
    value = text.strip().lower().removesuffix("ib").removesuffix("b") if units is _SIZES else text.strip().lower()
    number, unit = (value[:-1], value[-1]) if value[-1:] in units and value[-1:] else (value, "")
    if not number.isdigit() or unit not in units:
        raise click.BadParameter(f"{text!r} is not {what}")
    return int(number) * units[unit]


@main.command("share")
@click.argument("path")
@click.option("--expires", default="7d", show_default=True, help="How long the link works: 30m, 12h, 7d, 1y.")
@click.option("--password", is_flag=False, flag_value="", default=None,
              help="Ask for this password first (--password alone: type it, unseen).")
@click.option("--max-downloads", type=click.IntRange(1), default=None, help="Then the link stops working.")
@click.option("--upload", is_flag=True, help="A file request: people with the link upload into the folder.")
@click.option("--upload-limit", default=None, help="With --upload: at most this much in all (e.g. 500M).")
@click.option("--json", "as_json", is_flag=True, help="The share as JSON.")
@fail_on_api_errors
def share(path: str, expires: str, password: str | None, max_downloads: int | None, upload: bool,
          upload_limit: str | None, as_json: bool) -> None:
    """Make a link to a file (bucket/key) or a folder (bucket/folder/ or bucket) that works
    without signing in, and print it: it is shown only now."""
    remote = Remote(path)
    fields: dict = {"bucket": remote.bucket, "expires_in": _amount(expires, _DURATIONS, "a duration such as 7d")}
    if remote.path and not remote.path.endswith("/"):
        fields["key"] = remote.path
    else:
        fields["prefix"] = remote.path
    if password == "":
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if password:
        fields["password"] = password
    if max_downloads:
        fields["max_downloads"] = max_downloads
    if upload:
        fields["allow_upload"] = True
    if upload_limit:
        fields["upload_max_bytes"] = _amount(upload_limit, _SIZES, "a size such as 500M")
    made = connect().share(fields)
    if as_json:
        click.echo(json.dumps(made, indent=2))
        return
    click.echo(f"{'file request into' if upload else 'link to'} {path}, until {when(made['expires_at'])}"
               f"{', with a password' if password else ''}{f', {max_downloads} downloads' if max_downloads else ''}:",
               err=True)
    click.echo(made["url"])  # the link alone on standard output


@main.command("shares")
@click.option("--json", "as_json", is_flag=True)
@fail_on_api_errors
def list_shares(as_json: bool) -> None:
    """Your share links: id, state, downloads, what they open, until when."""
    shares = connect().shares()
    if as_json:
        click.echo(json.dumps(shares, indent=2))
        return
    for item in shares:
        what = f"{item['bucket']}/{item['key'] if item['key'] is not None else item['prefix']}"
        limit = f"/{item['max_downloads']}" if item["max_downloads"] else ""
        kind = "request" if item["allow_upload"] else "file" if item["key"] is not None else "folder"
        click.echo(f"{item['id']}  {item['state']:<9} {kind:<7} {item['downloads']}{limit:<6} "
                   f"{when(item['expires_at'])}  {what}")


@main.command("unshare")
@click.argument("share_id")
@fail_on_api_errors
def unshare(share_id: str) -> None:
    """Revoke a share link (by the id `files shares` shows): it answers 410 from now on."""
    revoked = connect().revoke_share(share_id)
    click.echo(f"{revoked['id']} revoked", err=True)


@main.command("whoami")
@click.option("--json", "as_json", is_flag=True, help="The account as JSON.")
@fail_on_api_errors
def whoami(as_json: bool) -> None:
    """Who the service takes you for: your name and role, and what this token may do."""
    api = connect()
    me = api.account()
    if as_json:
        click.echo(json.dumps(me, indent=2))
    elif not me["owner"]:
        click.echo(f"nobody in particular: {api.url} is open (it has no token and no user yet)")
    else:
        kind = (("an admin" if me["role"] == "admin" else "a member") if me["user_id"] is not None
                else "an operator's token")
        click.echo(f"{me['name']} on {api.url}: {kind}; may {me['scope']}"
                   f"{' in bucket ' + me['bucket'] + ' only' if me['bucket'] else ''}")


@main.group("token")
def token_group() -> None:
    """Your API tokens (an admin's: everyone's): list, create, revoke."""


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="The tokens as JSON.")
@fail_on_api_errors
def list_tokens(as_json: bool) -> None:
    """Your tokens, newest first (an admin sees everyone's): what each may do, whose it is, when it was
    made and last used (and from where), until when it works, and its state."""
    tokens = connect().tokens()
    if as_json:
        click.echo(json.dumps(tokens, indent=2))
        return
    columns(["ID", "NAME", "SCOPE", "BUCKET", "OWNER", "CREATED", "LAST USED", "FROM", "EXPIRES", "STATE"],
             [[str(item["id"]), item["name"], item["scope"], item["bucket"] or "-", item["user"] or "-",
               when(item["created_at"]), when(item["last_used_at"]) if item["last_used_at"] else "-",
               item["last_used_from"] or "-", when(item["expires_at"]) if item["expires_at"] else "never",
               item["state"]] for item in tokens])


@token_group.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write", "manage", "admin"]), default="read", show_default=True,
              help="What it may do: never more than you may (admin: an admin's only).")
@click.option("--bucket", default=None, help="Confine it to this bucket.")
@click.option("--expires-in", "days", type=click.IntRange(1, 3650), default=None, metavar="DAYS",
              help="It stops working after this many days (default: never).")
@fail_on_api_errors
def create_token(name: str, scope: str, bucket: str | None, days: int | None) -> None:
    """Make a token for NAME (what it is for: a laptop, a CI job) and print it: it is shown only now,
    alone on the last line."""
    fields: dict = {"name": name, "scope": scope}
    if bucket:
        fields["bucket"] = bucket
    if days:
        fields["expires_in"] = days * 86400
    made = connect().create_token(fields)
    click.echo(f"token {made['id']} {made['name']!r} ({made['scope']}"
               f"{', bucket ' + made['bucket'] if made['bucket'] else ''}, "
               f"{'until ' + when(made['expires_at']) if made['expires_at'] else 'no expiry'}); "
               "it is shown only now:", err=True)
    click.echo(made["token"])  # the secret alone on the last line


@token_group.command("revoke")
@click.argument("token_id", type=int)
@fail_on_api_errors
def revoke_token(token_id: int) -> None:
    """Revoke a token (by the id `files token list` shows): the next request with it is 401."""
    api = connect()
    mine = api.account()["owner"] == f"token:{token_id}"
    revoked = api.revoke_token(token_id)
    click.echo(f"token {revoked['id']} {revoked['name']!r} revoked", err=True)
    if mine:
        click.echo("it was the token this client uses: `files login` with another one", err=True)


main.add_command(trash_group)
main.add_command(versions_group)


def transfer_options(function):
    for option in reversed([
        click.option("--parallel", default=4, show_default=True, help="Files in flight at once."),
        click.option("--chunk-size", default=8, show_default=True, help="MiB per request of an upload; files "
                     "up to this size go in one request."),
        click.option("--if-not-exists", is_flag=True, help="Never replace a file that exists (it fails with 412)."),
        click.option("--json", "json_events", is_flag=True, help="JSON events on stdout instead of progress bars."),
    ]):
        function = option(function)
    return function


@main.command("cp")
@click.argument("source")
@click.argument("target")
@click.option("-r", "--recursive", is_flag=True, help="A directory (or a remote folder) and everything in it.")
@transfer_options
@fail_on_api_errors
def copy(source: str, target: str, recursive: bool, parallel: int, chunk_size: int, if_not_exists: bool,
         json_events: bool) -> None:
    """Copy files up (SOURCE exists here) or down (SOURCE is bucket/key).

    Run the same command again after Ctrl-C, a crash or a broken network: unfinished uploads carry on
    from the server's durable offset, downloads from the bytes already on disk."""
    api, local = connect(), Path(source)
    if not local.exists() and source.startswith(("/", "./", "../", "~")):
        raise click.ClickException(f"{source}: no such file or directory")
    if local.exists():
        jobs = _upload_jobs(local, Remote(target), recursive)
    else:
        jobs = _download_jobs(api, Remote(source), Path(target), recursive)
    _run(api, jobs, parallel, chunk_size * MIB, if_not_exists, json_events)


@main.command("sync")
@click.argument("source")
@click.argument("target")
@click.option("--delete", is_flag=True, help="Also remove what is not in SOURCE.")
@click.option("-n", "--dry-run", is_flag=True, help="Say what would be done, do nothing.")
@transfer_options
@fail_on_api_errors
def sync(source: str, target: str, delete: bool, dry_run: bool, parallel: int, chunk_size: int,
         if_not_exists: bool, json_events: bool) -> None:
    """Make TARGET hold what SOURCE holds: a directory up to bucket/prefix, or down from it.
    Only what is new or changed (size, then sha256) is sent."""
    api, local = connect(), Path(source)
    up = local.is_dir()
    remote = Remote(target if up else source)
    folder = local if up else Path(target)
    prefix = remote.path if not remote.path or remote.path.endswith("/") else remote.path + "/"
    remote_files = {entry["key"][len(prefix):]: entry for entry in api.list(remote.bucket, prefix)}
    local_files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*")) if path.is_file()} \
        if folder.is_dir() else {}
    changed = [name for name in (local_files if up else remote_files)
               if not _same(local_files.get(name), remote_files.get(name))]
    extra = sorted(set(remote_files) - set(local_files)) if up else sorted(set(local_files) - set(remote_files))
    if up:
        jobs = [Job("up", local_files[name], remote.bucket, prefix + name) for name in changed]
    else:
        jobs = [Job("down", folder / _safe(name), remote.bucket, prefix + name, remote_files[name]["bytes"])
                for name in changed]
    if dry_run:
        for job in jobs:
            click.echo(f"would {'upload' if up else 'download'} {job.label}")
        for name in extra if delete else ():
            click.echo(f"would delete {remote.bucket}/{prefix}{name}" if up else f"would delete {folder / name}")
        return
    failed = _run(api, jobs, parallel, chunk_size * MIB, if_not_exists, json_events, exit_on_failure=False)
    if delete:
        for name in extra:
            if up:
                api.delete(remote.bucket, prefix + name)
            else:
                (folder / name).unlink()
    if failed:
        sys.exit(1)


# --- the engine ------------------------------------------------------------------------------
class Job:
    def __init__(self, direction: str, local: Path, bucket: str, key: str, size: int | None = None):
        self.direction, self.local, self.bucket, self.key = direction, local, bucket, key
        self.size = local.stat().st_size if size is None else size

    @property
    def label(self) -> str:
        remote = f"{self.bucket}/{self.key}"
        return f"{self.local} -> {remote}" if self.direction == "up" else f"{remote} -> {self.local}"


def _upload_jobs(local: Path, remote: Remote, recursive: bool) -> list[Job]:
    if local.is_dir():
        if not recursive:
            raise click.UsageError(f"{local} is a directory: use -r")
        prefix = remote.path if not remote.path or remote.path.endswith("/") else remote.path + "/"
        return [Job("up", path, remote.bucket, prefix + path.relative_to(local).as_posix())
                for path in sorted(local.rglob("*")) if path.is_file()]
    key = remote.path + local.name if not remote.path or remote.path.endswith("/") else remote.path
    return [Job("up", local, remote.bucket, key)]


def _download_jobs(api: Api, remote: Remote, target: Path, recursive: bool) -> list[Job]:
    if recursive:
        prefix = remote.path if not remote.path or remote.path.endswith("/") else remote.path + "/"
        return [Job("down", target / _safe(entry["key"][len(prefix):]), remote.bucket, entry["key"], entry["bytes"])
                for entry in api.list(remote.bucket, prefix)]
    size = api.info(remote.bucket, remote.path)["bytes"]
    local = target / PurePosixPath(remote.path).name if target.is_dir() else target
    return [Job("down", local, remote.bucket, remote.path, size)]


def _run(api: Api, jobs: list[Job], parallel: int, chunk_size: int, if_not_exists: bool, json_events: bool,
         exit_on_failure: bool = True) -> bool:
    """Every job, `parallel` at a time, with progress and a summary; exit code 1 if any failed."""
    show = reporter(json_events)
    with show:
        for job in jobs:
            show.add_total(job.size)
        pool = ThreadPoolExecutor(max(1, parallel))
        try:
            futures = [pool.submit(_one, api, job, show, chunk_size, if_not_exists) for job in jobs]
            for future in futures:
                future.result()
        except KeyboardInterrupt as interruption:  # Ctrl-C or SIGTERM
            STOP.set()  # each transfer stops at its next chunk; what is durable stays for the next run
            pool.shutdown(wait=True, cancel_futures=True)
            show.finish()
            sys.exit(exit_code(interruption))
        pool.shutdown()
        show.finish()
    failed = bool(show.summary.failures)
    if failed and exit_on_failure:
        sys.exit(1)
    return failed


def _one(api: Api, job: Job, show: Reporter, chunk_size: int, if_not_exists: bool) -> None:
    handle = show.start(job.label, job.size)
    try:
        if job.direction == "up":
            done = upload_file(api, job.local, job.bucket, job.key, chunk_size=chunk_size, if_not_exists=if_not_exists,
                               progress=lambda n: show.advance(handle, n),
                               on_resume=lambda offset: show.resumed(handle, offset))
        else:
            done = download_file(api, job.bucket, job.key, job.local, progress=lambda n: show.advance(handle, n),
                                 on_resume=lambda offset: show.resumed(handle, offset))
        show.done(handle, job.label, done.bytes)
    except ApiError as error:
        show.failed(handle, job.label, f"{error.message} ({error.status} {error.code})")
    except (TransferFailed, Stopped, OSError, httpx.HTTPError) as error:
        show.failed(handle, job.label, str(error) or error.__class__.__name__)


def _same(local: Path | None, remote: dict | None) -> bool:
    if local is None or remote is None or local.stat().st_size != remote["bytes"]:
        return False
    return whole_sha256(local) == remote["sha256"]


def _safe(relative: str) -> Path:
    """A key as a path under the target directory: never outside it."""
    parts = PurePosixPath(relative).parts
    if not parts or any(part in ("", ".", "..") for part in parts) or relative.startswith("/"):
        raise click.ClickException(f"refusing to write {relative!r} outside the target directory")
    return Path(*parts)

