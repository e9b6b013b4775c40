"""`flask files verify`: the operator's scrub of the stored bytes (services/scrub.py); `flask files backup`
(and `--verify`) and `flask files restore` (services/backup.py)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import InterfaceError, OperationalError

from .cli import _keep_data_dir, _operator, _where, files_cli
from .errors import FilesError


@files_cli.command("verify")
@click.option("--bucket", default=None, help="Only this bucket's files (orphan blobs are looked for only without it).")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, metavar="MB/S",
              help="Read at most this many megabytes a second (default: as fast as the store goes).")
@click.option("--quarantine", is_flag=True, help="Move orphan blobs aside (quarantine/ in the data dir or bucket).")
@click.option("--grace", default=3600.0, show_default=True,
              help="Orphans younger than this many seconds may be an upload finishing: left alone.")
@_operator
def verify(bucket: str | None, rate: float | None, quarantine: bool, grace: float) -> None:
    """Re-read every stored file (current, in the trash, versions), check its size and sha256, and look
    for blobs no row refers to. A damaged file is marked: downloads refuse it (409 file_damaged) and offer
    its newest intact version. Exit status 1 when anything is corrupt, missing or orphaned."""
    from .services.scrub import scrub

    report = scrub(current_app.extensions["files"].store, bucket=bucket, rate=rate * 1e6 if rate else None,
                   quarantine=quarantine, grace=grace)
    for finding in report.findings:
        click.echo(str(finding))
    speed = report.bytes / report.seconds / 1e6 if report.seconds else 0.0
    click.echo(f"checked {report.files} files, {report.bytes} bytes in {report.seconds:.1f} s ({speed:.0f} MB/s): "
               f"{sum(f.kind == 'corrupt' for f in report.findings)} corrupt, "
               f"{sum(f.kind == 'missing' for f in report.findings)} missing, "
               f"{sum(f.kind == 'orphan' for f in report.findings)} orphaned"
               + (f" ({report.quarantined} moved to quarantine)" if report.quarantined else "")
               + (f"; {report.repaired} found whole again" if report.repaired else ""))
    if not report.ok:
        raise SystemExit(1)


# --- backup and restore (services/backup.py) ------------------------------------------------------
def _megabytes(rate: float | None) -> float | None:
    return rate * 1e6 if rate else None


@files_cli.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--verify", "verify_only", is_flag=True,
              help="Take no backup: re-hash the one in DEST against its manifest (exit status 1 on any difference).")
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, metavar="MB/S",
              help="Read at most this many megabytes a second (default: as fast as the store goes).")
@with_appcontext
def backup(dest: Path, verify_only: bool, rate: float | None) -> None:
    """Back up the service into DEST while it serves: every table in one snapshot, and every blob its rows
    refer to, with a manifest of sizes and sha256s. Into the same DEST again, only blobs it lacks are
    copied (and those no file needs any more removed). Exit status 1 when the service's own files were
    found damaged or missing on the way (the backup is complete: they are listed)."""
    from .services import backup as backups

    if verify_only:
        try:
            report = backups.verify(dest, rate=_megabytes(rate))
        except backups.BackupError as error:
            raise click.ClickException(error.message) from None
        for finding in report.findings:
            click.echo(finding)
        click.echo(f"backup {report.backup}: {report.rows} rows, {report.blobs} blobs, {report.bytes} bytes "
                   f"checked: " + (f"{len(report.findings)} difference(s) from the manifest" if report.findings
                                    else "all match the manifest")
                   + (f" ({report.unlisted} blobs not in the manifest, left by a run that did not finish)"
                      if report.unlisted else ""))
        if not report.ok:
            raise SystemExit(1)
        return
    _take_backup(dest=dest, rate=rate)


@_operator
def _take_backup(dest: Path, rate: float | None) -> None:
    from .services import backup as backups

    report = backups.take(current_app.extensions["files"].store, dest, rate=_megabytes(rate), say=click.echo)
    click.echo(f"blobs: copied {report.copied} ({report.copied_bytes} bytes), {report.held} already in the backup"
               + (f", {report.removed} no longer needed removed" if report.removed else ""))
    for blob_id, where in sorted(report.gone.items(), key=lambda item: item[1]):
        click.echo(f"gone: {where}: purged after the snapshot began (blob {blob_id}); a restore leaves it out")
    if report.active_sessions:
        click.echo(f"uploads in progress: {report.active_sessions}; their bytes are not in a backup (a restore "
                   "starts them again at offset 0)")
    for problem in report.problems:
        click.echo(problem)
    click.echo(f"backup {report.backup} complete in {dest} ({report.seconds:.1f} s)"
               + (f"; {len(report.problems)} file(s) of the service were damaged or missing (above)"
                  if report.problems else ""))
    if not report.ok:
        raise SystemExit(1)


@files_cli.command("restore")
@click.argument("src", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--rate", type=click.FloatRange(min=0.1), default=None, metavar="MB/S",
              help="Write blobs at most this many megabytes a second.")
@with_appcontext
def restore(src: Path, rate: float | None) -> None:
    """Restore the backup in SRC into this EMPTY service (either database, either blob store). Refused
    when the service holds any row; a restore that was interrupted is run again and goes on."""
    from .services import backup as backups
    from .services.backup_restore import restore as restore_backup

    app = current_app._get_current_object()
    click.echo(_where(app), err=True)
    _keep_data_dir(app)
    try:
        manifest = backups.load_manifest(src)
        click.echo(f"restoring backup {manifest['backup']} (schema {manifest['revision']}, from "
                   f"{manifest['source']['database']} and {manifest['source']['store']})")
        report = restore_backup(app.extensions["files"].store, src, rate=_megabytes(rate), say=click.echo)
    except FilesError as error:
        raise click.ClickException(error.message) from None
    except (OperationalError, InterfaceError) as error:
        raise click.ClickException(f"the database failed: {str(error.orig or error).strip()}") from None
    click.echo(f"rows: {report.rows} in {report.tables} tables"
               + (f"; {report.sessions_reset} upload(s) in progress start again at offset 0"
                  if report.sessions_reset else ""))
    for where in report.left_out:
        click.echo(f"left out: {where}: purged after the backup's snapshot began (its bytes are not in it)")
    for problem in manifest.get("problems", ()):
        click.echo(f"restored as it was backed up: {problem}")
    for drift in report.mended:
        click.echo(f"recounted: {drift}")
    click.echo(f"restore of {report.backup} complete ({report.seconds:.1f} s)")
