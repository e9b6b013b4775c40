"""A throwaway PostgreSQL cluster (Debian's server binaries) on 127.0.0.1 and a free port, fsync
off, its files in memory (/dev/shm) where there is such a place. Started once per test process;
each test gets a database of its own."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid

import psycopg

from tests.live_server import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, "PostgreSQL's server is needed: `make test` installs Debian's postgresql"
    return found[-1]


def _as_postgres(command: list[str]) -> list[str]:
    # initdb refuses to run as root; Debian's package makes the postgres user.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _in_memory() -> str | None:
    """/dev/shm (tmpfs) when it can be written, else the usual temporary directory (None). Each
    scaled test copies the template database (8 MB) and drops it again: on a disk shared with
    other work, CREATE DATABASE took 0.15 to 1 s waiting for writes, in memory 0.05 to 0.09 s."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK) else None


class PostgresCluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="files-pg-", dir=_in_memory())
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = os.path.join(self.dir, "data")
        subprocess.run(_as_postgres([_bin("initdb"), "-D", data, "-A", "trust", "-U", "postgres",
                                     "--encoding", "UTF8", "--locale", "C"]), check=True, capture_output=True)
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", data, "-o", options, "-w", "-l",
                                     os.path.join(self.dir, "log"), "start"]), check=True, capture_output=True)
        self.data = data

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True)

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of `template` (another database's URL: nobody may be
        connected to it)."""
        name = "t_" + uuid.uuid4().hex[:12]
        copy = f' TEMPLATE "{template.rsplit("/", 1)[1]}"' if template else ""
        with self.admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}"{copy}')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with self.admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
