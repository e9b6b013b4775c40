"""`flask files verify`: the operator's scrub of the stored bytes (services/scrub.py)."""

from __future__ import annotations

import click
from flask import current_app

from .cli import _operator, files_cli


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
