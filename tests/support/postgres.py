"""A private PostgreSQL server on a free loopback port (tests and benchmarks).

initdb runs as the ``postgres`` user when we are root (PostgreSQL refuses to run as root),
into a temp dir that user owns; the server listens on 127.0.0.1 only (no Unix socket),
with ``fsync=off`` (throwaway data), and is stopped by PID.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

from simulators.broker import free_tcp_port


class PostgresError(RuntimeError):
    """PostgreSQL could not be found or did not start."""


def find_pg_bin() -> Path | None:
    """Directory holding initdb and postgres (newest Debian version first), or None."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "postgres").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    return Path(found).parent if found and (Path(found).parent / "postgres").exists() else None


class PostgresServer:
    """One postgres process with its own data directory; ``new_url()`` gives a fresh schema."""

    def __init__(
        self, host: str = "127.0.0.1", start_timeout: float = 30.0, durable: bool = False
    ) -> None:
        self.host = host
        self.durable = durable
        self.port = 0
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._names = itertools.count(1)
        self._user: dict[str, Any] = {}

    @property
    def url(self) -> str:
        """URL of the server's ``postgres`` database."""
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """PID of the postmaster while it runs."""
        return None if self._proc is None else self._proc.pid

    def start(self, attempts: int = 3) -> PostgresServer:
        """initdb, start on a free port, wait until it accepts connections."""
        bindir = find_pg_bin()
        if bindir is None:
            raise PostgresError(
                "PostgreSQL server not found: install the Debian package 'postgresql'"
            )
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresError(
                    "running as root but there is no 'postgres' user: install the Debian "
                    "package 'postgresql'"
                ) from None
            self._user = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        self._dir = tempfile.mkdtemp(prefix="provgate-postgres-")
        data = Path(self._dir) / "data"
        if self._user:
            os.chown(self._dir, self._user["user"], self._user["group"])
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            capture_output=True,
            check=False,
            **self._user,
        )
        if init.returncode != 0:
            raise PostgresError(f"initdb failed: {init.stderr.decode(errors='replace')[-500:]}")
        last_error = ""
        for _ in range(attempts):
            self.port = free_tcp_port(self.host)
            log_path = Path(self._dir) / "postgres.log"
            with log_path.open("ab") as log:
                self._proc = subprocess.Popen(
                    [
                        str(bindir / "postgres"),
                        "-D",
                        str(data),
                        "-p",
                        str(self.port),
                        "-c",
                        f"listen_addresses={self.host}",
                        "-c",
                        "unix_socket_directories=",
                        *self._durability_flags(),
                        "-c",
                        "max_connections=50",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    **self._user,
                )
            if self._wait_until_ready():
                return self
            last_error = log_path.read_text(errors="replace")[-500:]
            self.stop()
        raise PostgresError(f"postgres did not start: {last_error.strip()}")

    def _durability_flags(self) -> list[str]:
        """Tests throw the data away (fsync off); benchmarks of durable appends keep it on."""
        if self.durable:
            return ["-c", "fsync=on", "-c", "synchronous_commit=on"]
        return ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def _wait_until_ready(self) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self.url, connect_timeout=1):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def new_url(self, prefix: str = "t") -> str:
        """URL of a fresh, empty schema (cheaper than CREATE DATABASE) on this server."""
        name = f"{prefix}{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL after 10 s."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
