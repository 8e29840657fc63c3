"""A throwaway PostgreSQL server in a temporary directory, for tests and benchmarks.

Test infrastructure, not runtime: the runtime only ever runs a server on a data directory it
restored (agent_runtime.recovery_pgserver.PgServer, which this builds on). The server listens
on 127.0.0.1 only, on a free port, with password (SCRAM) authentication, so the code under test
takes the same path as against a real server: host, port, user and PGPASSWORD.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from agent_runtime.recovery_pgserver import PgServer, find_pg_bin

__all__ = ["TempPostgres", "find_pg_bin"]


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
        self.server = PgServer(self.data, run_dir=self.dir)
        self.port = self.server.port
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.password = password or secrets.token_hex(16)
        self.server.hand_over(self.dir)

    @property
    def env(self) -> dict[str, str]:
        """Environment for client programs (psql, pg_dump, the code under test)."""
        return {**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}

    @property
    def server_settings(self) -> dict[str, str]:
        fast = {} if self.fsync else {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
        return {**fast, **self.settings}

    def start(self) -> TempPostgres:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        self.server.hand_over(pwfile)
        result = self.server.run(
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
        self.server.start(self.server_settings)
        return self

    def crash(self) -> None:
        """Stop the server the way a lost node does (no checkpoint, no goodbye to clients)."""
        self.server.stop("immediate")

    def stop(self) -> None:
        if self.data.exists():
            self.server.stop("immediate")
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
