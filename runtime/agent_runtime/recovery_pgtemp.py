"""A throwaway PostgreSQL server in a temporary directory, for tests, benchmarks and local drills.

`initdb` refuses to run as root, so as root the cluster is created and run as the `postgres`
system user (which Debian's `postgresql` package creates) through `runuser`. The server listens
on 127.0.0.1 only, on a free port, with password (SCRAM) authentication, so the code under test
takes the same path as against a real server: host, port, user and PGPASSWORD.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["TempPostgres", "find_pg_bin"]


def find_pg_bin(tool: str) -> str:
    """Path of a PostgreSQL program: PATH first, then Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(tool)
    if found:
        return found
    for candidate in sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), reverse=True):
        return candidate
    raise FileNotFoundError(
        f"`{tool}` not found: install the Debian package `postgresql` (listed in tools/apt-packages.txt)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    def __init__(
        self,
        *,
        fsync: bool = False,
        base_dir: str | None = None,
        settings: dict[str, str] | None = None,
        password: str | None = None,
    ):
        self.fsync = fsync
        self.settings = settings or {}
        self.dir = Path(tempfile.mkdtemp(prefix="agent-pg-", dir=base_dir))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.password = password or secrets.token_hex(16)
        self._run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root and there is no `postgres` user to run the server as: "
                    "install the Debian package `postgresql`"
                ) from None
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._run_as = [shutil.which("runuser") or "/sbin/runuser", "-u", "postgres", "--"]

    @property
    def env(self) -> dict[str, str]:
        """Environment for client programs (psql, pg_dump, the code under test)."""
        return {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}

    def _server(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self._run_as, *args], capture_output=True, text=True, **kwargs)

    def start(self) -> TempPostgres:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._run_as:
            shutil.chown(pwfile, "postgres", "postgres")
        result = self._server(
            find_pg_bin("initdb"),
            "-D", str(self.data),
            "-U", self.user,
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout}{result.stderr}")
        opts = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.dir}",
            f"-c fsync={'on' if self.fsync else 'off'}",
            "-c full_page_writes=off" if not self.fsync else "",
            "-c synchronous_commit=off" if not self.fsync else "",
            *(f"-c {k}={v}" for k, v in self.settings.items()),
        ]
        result = self._server(
            find_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "server.log"),
            "-o", " ".join(o for o in opts if o), "-w", "-t", "60", "start",
            timeout=90,
        )
        if result.returncode != 0:
            log = (self.dir / "server.log").read_text() if (self.dir / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{log[-2000:]}")
        return self

    def stop(self) -> None:
        if self.data.exists():
            self._server(find_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def psql(self, sql: str, database: str = "postgres", *, check: bool = True) -> str:
        """Run SQL, return unaligned tuples-only output."""
        result = subprocess.run(
            [
                find_pg_bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql,
            ],
            capture_output=True, text=True, env=self.env, timeout=600,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()
