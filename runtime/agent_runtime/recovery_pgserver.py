"""PostgreSQL's own programs, found and run: the client tools, and a server on a data directory.

A point-in-time restore ends with PostgreSQL itself replaying WAL on the restored data
directory (`agent_runtime.recovery_pitr`), so the runtime starts and stops a server here; the
tests' throwaway servers (tests/pgtemp.py) are built on the same class.

`postgres` refuses to run as root, so as root the server runs as the `postgres` system user
(which Debian's `postgresql` package and the official image create) through `runuser`, and the
data directory is handed to that user first.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

__all__ = ["PgServer", "find_pg_bin", "free_port"]


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A PostgreSQL server on `data`, listening on 127.0.0.1:`port` and a socket in `run_dir`."""

    def __init__(self, data: Path, *, port: int | None = None, run_dir: Path | None = None) -> None:
        self.data = Path(data)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.run_dir = Path(run_dir or self.data.parent)
        self.log = self.run_dir / f"server-{self.port}.log"
        self._run_as: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root and there is no `postgres` user to run the server as: "
                    "install the Debian package `postgresql`"
                ) from None
            self._owner = (pw.pw_uid, pw.pw_gid)
            self._run_as = [shutil.which("runuser") or "/sbin/runuser", "-u", "postgres", "--"]

    def hand_over(self, path: Path) -> None:
        """Give `path` (recursively) to the user the server runs as."""
        if self._owner is None:
            return
        uid, gid = self._owner
        os.chown(path, uid, gid)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)

    def unreachable(self, path: Path) -> Path | None:
        """The first directory above `path` that the server's user cannot pass through, if any."""
        if self._owner is None:
            return None
        uid, gid = self._owner
        for parent in Path(path).absolute().parents:
            st = parent.stat()
            if st.st_uid == uid and st.st_mode & 0o100 or st.st_gid == gid and st.st_mode & 0o010 or st.st_mode & 0o001:
                continue
            return parent
        return None

    def run(self, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        """A PostgreSQL server program (initdb, pg_ctl, ...) as the server's user."""
        return subprocess.run([*self._run_as, *args], capture_output=True, text=True, timeout=timeout, **kwargs)

    def start(self, settings: dict[str, str] | None = None, *, wait: bool = True, timeout: int = 60) -> None:
        opts = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.run_dir}",
            *(f"-c {k}={v}" for k, v in (settings or {}).items()),
        ]
        result = self.run(
            find_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", " ".join(opts),
            *(["-w", "-t", str(timeout)] if wait else ["-W"]), "start", timeout=timeout + 30,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(find_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", timeout=90)

    def running(self) -> bool:
        return self.run(find_pg_bin("pg_ctl"), "-D", str(self.data), "status").returncode == 0

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""
