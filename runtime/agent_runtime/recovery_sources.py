"""What a backup reads and a restore writes: PostgreSQL databases and directories of files.

PostgreSQL: `pg_dump --format=custom` (compressed by pg_dump itself) taken inside an exported
snapshot that a psql session holds open, so the per-table row counts and content checksums
written to the manifest describe exactly the rows in the dump; a drill recomputes them on the
restored copy. Restores use `pg_restore --single-transaction --exit-on-error`: all or nothing.

Files: a gzip-compressed tar streamed straight to the backup volume, with the SHA-256 of every
regular file recorded in the manifest and checked again when verifying and after a restore.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .recovery_pgtemp import find_pg_bin
from .recovery_store import CHUNK, PartialBackup

__all__ = [
    "DUMP_FILE",
    "FILES_ARCHIVE",
    "PgConn",
    "PsqlSession",
    "RecoveryError",
    "backup_files",
    "dump_postgres",
    "restore_files",
    "restore_postgres",
    "table_stats",
    "tree_checksums",
    "verify_dump",
    "verify_files_archive",
]

DUMP_FILE = "data.dump"
FILES_ARCHIVE = "files.tar.gz"


class RecoveryError(RuntimeError):
    """A backup or restore step failed; the message says which and why."""


@dataclass(frozen=True)
class PgConn:
    """Where a database is; the password comes from PGPASSWORD (a Kubernetes Secret), never config."""

    host: str
    port: int
    user: str
    database: str

    def args(self, database: str | None = None) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database or self.database, "-w"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PGCONNECT_TIMEOUT", "30")
        return env


class PsqlSession:
    """A psql process kept open, so several queries share one transaction (and its snapshot)."""

    _END = "__agent_platform_end__"

    def __init__(self, conn: PgConn, database: str | None = None) -> None:
        self.proc = subprocess.Popen(
            [find_pg_bin("psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", *conn.args(database)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=conn.env(),
        )

    def query(self, sql: str) -> list[list[str]]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo " + self._END + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        rows = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise RecoveryError(f"psql failed: {err.strip() or 'connection closed'}")
            line = line.rstrip("\n")
            if line == self._END:
                return rows
            if line:
                rows.append(line.split("\t"))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin
                self.proc.stdin.write("COMMIT;\n\\q\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


_TABLES = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
ORDER BY 1
"""


def table_stats(session: PsqlSession, *, checksums: bool = True) -> dict[str, dict[str, Any]]:
    """Row count and an order-independent content checksum of every user table."""
    out: dict[str, dict[str, Any]] = {}
    for (table,) in session.query(_TABLES):
        if checksums:
            # Sum of the first 64 bits of each row's md5: independent of row order, so a restored
            # copy (whose physical order differs) gives the same value.
            (rows, checksum), = session.query(
                f"SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint), 0) "
                f"FROM ONLY {table} AS t"
            )
            out[table] = {"rows": int(rows), "checksum": checksum}
        else:
            (rows,), = session.query(f"SELECT count(*) FROM ONLY {table}")
            out[table] = {"rows": int(rows)}
    return out


def _stream(proc: subprocess.Popen, out: BinaryIO) -> None:
    assert proc.stdout
    while chunk := proc.stdout.read(CHUNK):
        out.write(chunk)


def dump_postgres(conn: PgConn, partial: PartialBackup, *, compression_level: int, checksums: bool) -> dict[str, Any]:
    """pg_dump into the partial backup; returns the manifest's `postgres` section and snapshot time."""
    session = PsqlSession(conn)
    try:
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        (snapshot, snapshot_at, version, size), = session.query(
            "SELECT pg_export_snapshot(), extract(epoch from clock_timestamp()), "
            "current_setting('server_version'), pg_database_size(current_database())"
        )
        writer = partial.open(DUMP_FILE)
        proc = subprocess.Popen(
            [
                find_pg_bin("pg_dump"),
                "--format=custom",
                f"--compress={compression_level}",
                f"--snapshot={snapshot}",
                *conn.args(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=conn.env(),
        )
        try:
            _stream(proc, writer)
        finally:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            rc = proc.wait()
        if rc != 0:
            writer.close()
            raise RecoveryError(f"pg_dump of {conn.database} failed (exit {rc}): {err.strip()}")
        partial.add(writer)
        tables = table_stats(session, checksums=checksums)
    finally:
        session.close()
    return {
        "snapshot_at": float(snapshot_at),
        "source_bytes": int(size),
        "postgres": {
            "database": conn.database,
            "server_version": version,
            "format": "pg_dump custom",
            "compression_level": compression_level,
            "tables": tables,
        },
    }


def verify_dump(path: Path) -> list[str]:
    """`pg_restore --list`: the archive's table of contents must read to the end."""
    result = subprocess.run([find_pg_bin("pg_restore"), "--list", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        return [f"{path.name}: pg_restore --list failed: {result.stderr.strip()[:300]}"]
    entries = [ln for ln in result.stdout.splitlines() if ln and not ln.startswith(";")]
    if not entries:
        return [f"{path.name}: pg_restore --list shows no entries"]
    return []


def _database_exists(conn: PgConn, database: str) -> bool:
    session = PsqlSession(conn, "postgres")
    try:
        rows = session.query(f"SELECT 1 FROM pg_database WHERE datname = '{database.replace(chr(39), chr(39) * 2)}'")
    finally:
        session.close()
    return bool(rows)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_database(conn: PgConn, database: str) -> None:
    session = PsqlSession(conn, "postgres")
    try:
        session.query(f"CREATE DATABASE {_quote_ident(database)}")
    finally:
        session.close()


def drop_database(conn: PgConn, database: str) -> None:
    session = PsqlSession(conn, "postgres")
    try:
        session.query(f"DROP DATABASE IF EXISTS {_quote_ident(database)} WITH (FORCE)")
    finally:
        session.close()


def restore_postgres(conn: PgConn, dump: Path, *, create: bool = False, clean: bool = False) -> None:
    """pg_restore into `conn.database` in one transaction; refuses a non-empty database unless clean."""
    exists = _database_exists(conn, conn.database)
    if not exists:
        if not create:
            raise RecoveryError(f"database {conn.database!r} does not exist (pass --create to create it)")
        create_database(conn, conn.database)
    else:
        session = PsqlSession(conn)
        try:
            tables = session.query(_TABLES)
        finally:
            session.close()
        if tables and not clean:
            raise RecoveryError(
                f"database {conn.database!r} already has {len(tables)} table(s); pass --clean to replace them"
            )
    cmd = [
        find_pg_bin("pg_restore"),
        "--exit-on-error",
        "--single-transaction",
        "--no-owner",
        "--no-privileges",
        *(["--clean", "--if-exists"] if clean else []),
        *conn.args(),
        str(dump),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=conn.env())
    if result.returncode != 0:
        raise RecoveryError(f"pg_restore into {conn.database} failed: {result.stderr.strip()[:1000]}")


# ---------------------------------------------------------------------------------------------
# files


class _HashingReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        return data


def backup_files(root: Path, partial: PartialBackup, *, compression_level: int) -> dict[str, Any]:
    """Tar + gzip `root` into the partial backup, recording every regular file's SHA-256."""
    if not root.is_dir():
        raise RecoveryError(f"files source {root} is not a directory")
    started = time.time()
    entries: dict[str, dict[str, Any]] = {}
    total = 0
    writer = partial.open(FILES_ARCHIVE)
    # Stream mode ("w|") into gzip: nothing seeks, so the archive is written once, straight to
    # the volume, with its checksum computed on the way.
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=writer, compresslevel=compression_level)  # type: ignore[arg-type]
    with gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            base = Path(dirpath)
            for name in sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]:
                path = base / name
                rel = path.relative_to(root).as_posix()
                st = path.lstat()
                if stat.S_ISREG(st.st_mode):
                    info = tar.gettarinfo(str(path), arcname=rel)
                    with open(path, "rb") as f:
                        reader = _HashingReader(f)
                        tar.addfile(info, reader)  # type: ignore[arg-type]
                    entries[rel] = {"size": info.size, "sha256": reader.hash.hexdigest()}
                    total += info.size
                elif stat.S_ISLNK(st.st_mode):
                    tar.add(str(path), arcname=rel, recursive=False)
                    entries[rel] = {"link": os.readlink(path)}
            for d in dirnames:
                if not (base / d).is_symlink():
                    tar.add(str(base / d), arcname=(base / d).relative_to(root).as_posix(), recursive=False)
    partial.add(writer)
    return {"snapshot_at": started, "source_bytes": total, "tree": {"root": str(root), "entries": entries}}


def verify_files_archive(path: Path, entries: dict[str, dict[str, Any]]) -> list[str]:
    """Read the whole archive (gzip CRCs included) and check each file against the manifest."""
    problems = []
    seen = set()
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                if member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    h = hashlib.sha256()
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                    want = entries.get(member.name)
                    if want is None or want.get("sha256") != h.hexdigest():
                        problems.append(f"{member.name}: content differs from the manifest")
                seen.add(member.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        return [f"{path.name}: unreadable archive: {exc}"]
    missing = sorted(set(entries) - seen)
    if missing:
        problems.append(f"{len(missing)} file(s) in the manifest missing from the archive: {', '.join(missing[:5])}")
    return problems


def tree_checksums(root: Path) -> dict[str, dict[str, Any]]:
    """The same per-file entries `backup_files` records, computed on a directory."""
    out: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = {"link": os.readlink(path)}
            elif path.is_file():
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                out[rel] = {"size": path.stat().st_size, "sha256": h.hexdigest()}
    return out


def restore_files(archive: Path, target: Path, *, clean: bool = False) -> None:
    """Extract into a staging directory inside `target`, then move the files into place.

    Staging inside the target keeps one filesystem (the target is often a volume's mount point,
    which cannot itself be replaced); a failed extraction leaves the target as it was.
    Refuses a non-empty target unless `clean`.
    """
    target.mkdir(parents=True, exist_ok=True)
    existing = [p for p in target.iterdir() if not p.name.startswith(".restore-")]
    if existing and not clean:
        raise RecoveryError(f"{target} is not empty; pass --clean to replace its contents")
    staging = Path(tempfile.mkdtemp(prefix=".restore-", dir=target))
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, nothing escapes the target
        for p in existing:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        for child in staging.iterdir():
            os.rename(child, target / child.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
