"""What every command shares: remote paths, the connection, API errors as exit code 1, tables and dates."""

from __future__ import annotations

import functools
from datetime import datetime

import click
import httpx

from .api import Api, ApiError
from .config import load_login


class Remote:
    """`bucket[/key-or-prefix]`."""

    def __init__(self, text: str):
        bucket, _, rest = text.strip().partition("/")
        if not bucket:
            raise click.BadParameter(f"{text!r} names no bucket (write bucket/key)")
        self.bucket, self.path = bucket, rest

    def __str__(self) -> str:
        return f"{self.bucket}/{self.path}"


def connect() -> Api:
    login = load_login()
    if login is None:
        raise click.ClickException("not logged in: run `files login URL` (or set FILES_URL and FILES_TOKEN)")
    return Api(login.url, login.token)


def fail_on_api_errors(function):
    """An API error or an unreachable server is a one-line message and exit code 1, not a traceback."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ApiError as error:
            raise click.ClickException(error.message + f" ({error.status} {error.code})") from None
        except httpx.TransportError as error:
            raise click.ClickException(f"cannot reach the service: {error}") from None
    return run


def columns(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    for row in (headers, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def when(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"
