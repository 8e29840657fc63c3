"""PostgreSQL sources: what a backup reads and a restore writes.

`pg_dump --format=custom` (compressed by pg_dump itself) is taken inside an exported snapshot
that a psql session holds open, so the per-table row counts and content checksums written to the
manifest describe exactly the rows in the dump; a drill recomputes them on the restored copy.

Safety, in the order an operator meets it:
- Verify decodes the whole archive (`pg_restore --file=/dev/null`, every data block), not just
  its table of contents: a dump cut short fails here even when its manifest agrees with it.
- A restore into a database that holds tables is refused (`TargetNotEmpty`), naming the tables,
  their row counts and the newest timestamp found, unless the operator repeats the target's name
  in `replace` for that run (Velero's default of never overwriting what exists is the anchor).
- `pg_restore --single-transaction --exit-on-error`: all or nothing, so a failed restore leaves
  an existing target as it was; a database the restore created itself is dropped again.
- Only a database this process created is ever dropped (`CreatedDatabase`): creation is recorded
  in memory, and an owner marker (the database's comment, a random token) is checked before the
  `DROP`. A name is never trusted: PostgreSQL silently truncates identifiers to 63 bytes, so
  every name is checked against that limit first and scratch names are built to fit it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .recovery_pgserver import find_pg_bin
from .recovery_store import CHUNK, PartialBackup

__all__ = [
    "DUMP_FILE",
    "MAX_IDENTIFIER_BYTES",
    "CreatedDatabase",
    "PgConn",
    "PsqlSession",
    "RecoveryError",
    "TargetNotEmpty",
    "check_identifier",
    "create_database",
    "create_scratch_database",
    "drop_created_database",
    "dump_postgres",
    "restore_postgres",
    "table_stats",
    "verify_dump",
]

DUMP_FILE = "data.dump"
# NAMEDATALEN - 1: PostgreSQL truncates longer identifiers (with only a NOTICE).
MAX_IDENTIFIER_BYTES = 63
OWNER_MARKER_PREFIX = "agent-platform created "


class RecoveryError(RuntimeError):
    """A backup or restore step failed; the message says which and why."""


class TargetNotEmpty(RecoveryError):
    """The restore target already holds data and the run did not say to replace it."""


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
    """Decode the whole archive: its table of contents and every data block.

    `pg_restore --list` reads only the table of contents, so a dump cut at 60% passes it; writing
    the archive out as a script to /dev/null makes pg_restore read and decompress every byte.
    """
    pg_restore = find_pg_bin("pg_restore")
    listing = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True)
    if listing.returncode != 0:
        return [f"{path.name}: pg_restore --list failed: {listing.stderr.strip()[:300]}"]
    # An empty table of contents is an empty database (a new stack's first backup), not damage:
    # the read-through below and the manifest's checksum catch a cut or altered archive.
    full = subprocess.run([pg_restore, "--file=/dev/null", str(path)], capture_output=True, text=True)
    if full.returncode != 0:
        return [f"{path.name}: truncated or damaged (pg_restore could not read it through): {full.stderr.strip()[:300]}"]
    return []


def check_identifier(name: str, what: str) -> str:
    """A PostgreSQL identifier as given, or RecoveryError if PostgreSQL would alter it."""
    size = len(name.encode())
    if not name or "\x00" in name:
        raise RecoveryError(f"{what} {name!r} is not a valid database name")
    if size > MAX_IDENTIFIER_BYTES:
        raise RecoveryError(
            f"{what} {name!r} is {size} bytes; PostgreSQL names are at most {MAX_IDENTIFIER_BYTES} bytes "
            "and it would silently truncate this one, possibly to the name of another database"
        )
    return name


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _database_exists(conn: PgConn, database: str) -> bool:
    session = PsqlSession(conn, "postgres")
    try:
        rows = session.query(f"SELECT 1 FROM pg_database WHERE datname = {_quote_literal(database)}")
    finally:
        session.close()
    return bool(rows)


@dataclass(frozen=True)
class CreatedDatabase:
    """A database this process created, with the owner marker it wrote on it."""

    conn: PgConn
    name: str
    marker: str


def create_database(conn: PgConn, database: str, *, purpose: str) -> CreatedDatabase:
    """CREATE DATABASE (which fails if it exists) and mark it as ours."""
    check_identifier(database, "database")
    marker = f"{OWNER_MARKER_PREFIX}{purpose} {secrets.token_hex(8)}"
    session = PsqlSession(conn, "postgres")
    try:
        session.query(f"CREATE DATABASE {_quote_ident(database)}")
        created = CreatedDatabase(conn, database, marker)
        session.query(f"COMMENT ON DATABASE {_quote_ident(database)} IS {_quote_literal(marker)}")
    finally:
        session.close()
    return created


def scratch_name(base: str, started: float) -> str:
    """`<base>_drill_<utc time>_<random>`, the base cut (on a character boundary) to fit 63 bytes."""
    suffix = f"_drill_{time.strftime('%Y%m%d%H%M%S', time.gmtime(started))}_{secrets.token_hex(3)}"
    room = MAX_IDENTIFIER_BYTES - len(suffix)
    prefix = base.encode()[:room].decode(errors="ignore")
    return prefix + suffix


def create_scratch_database(conn: PgConn, base: str, started: float) -> CreatedDatabase:
    """A new, empty, marked database whose name differs from every existing one."""
    last: RecoveryError | None = None
    for _ in range(3):
        name = scratch_name(base, started)
        if name == base or _database_exists(conn, name):
            continue
        try:
            return create_database(conn, name, purpose="drill scratch")
        except RecoveryError as exc:  # lost a race for the name: pick another
            last = exc
    raise RecoveryError(f"could not create a scratch database for {base!r}: {last or 'every name was taken'}")


def drop_created_database(created: CreatedDatabase) -> None:
    """DROP a database this process created, after checking it still carries our marker."""
    session = PsqlSession(created.conn, "postgres")
    try:
        rows = session.query(
            # A leading column, since psql prints an empty comment as an empty line (which reads as no row).
            "SELECT 'db', coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
            f"WHERE datname = {_quote_literal(created.name)}"
        )
        if not rows:
            return
        found = rows[0][1] if len(rows[0]) > 1 else ""
        if found != created.marker:
            raise RecoveryError(
                f"not dropping database {created.name!r}: it does not carry the marker this run wrote "
                f"(found {found[:80]!r}), so it is not the one this run created"
            )
        session.query(f"DROP DATABASE {_quote_ident(created.name)} WITH (FORCE)")
    finally:
        session.close()


_TIME_COLUMNS = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       coalesce(string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
                FILTER (WHERE a.atttypid IN ('timestamptz'::regtype, 'timestamp'::regtype, 'date'::regtype)), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
GROUP BY 1 ORDER BY 1
"""


@dataclass(frozen=True)
class TableContents:
    table: str
    rows: int
    newest: str | None  # newest timestamp/date value in the table, UTC, if it has such columns
    newest_epoch: float | None


def database_contents(conn: PgConn) -> list[TableContents]:
    """Every user table with its exact row count and newest timestamp."""
    session = PsqlSession(conn)
    out = []
    try:
        session.query("SET TimeZone = 'UTC'")
        for table, columns in session.query(_TIME_COLUMNS) or []:
            cols = [c for c in columns.split(",") if c]
            newest = (
                "greatest(" + ", ".join(f"max({c})::timestamptz" for c in cols) + ")" if cols else "NULL::timestamptz"
            )
            ((rows, text, epoch),) = session.query(
                f"SELECT count(*), coalesce(({newest})::text, ''), coalesce(extract(epoch FROM {newest})::text, '') "
                f"FROM ONLY {table}"
            )
            out.append(TableContents(table, int(rows), text or None, float(epoch) if epoch else None))
    finally:
        session.close()
    return out


def describe_contents(contents: list[TableContents], recovery_point: float | None) -> str:
    total = sum(t.rows for t in contents)
    stamps = [t for t in contents if t.newest_epoch is not None]
    newest = max(stamps, key=lambda t: t.newest_epoch or 0.0) if stamps else None
    parts = [f"{len(contents)} table(s), {total} row(s)"]
    if newest is not None:
        parts.append(f"newest timestamp {newest.newest} (in {newest.table})")
        if recovery_point is not None and (newest.newest_epoch or 0.0) > recovery_point:
            point = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(recovery_point))
            parts.append(f"which is newer than the backup's recovery point {point}: those rows would be lost")
    listed = "; ".join(
        f"{t.table}: {t.rows} row(s)" + (f", newest {t.newest}" if t.newest else "") for t in contents[:10]
    )
    more = f"; and {len(contents) - 10} more" if len(contents) > 10 else ""
    return ", ".join(parts) + f" [{listed}{more}]"


def restore_postgres(
    conn: PgConn,
    dump: Path,
    *,
    create: bool = False,
    replace: str | None = None,
    recovery_point: float | None = None,
) -> CreatedDatabase | None:
    """pg_restore into `conn.database` in one transaction; returns the database if it created it.

    A target holding tables is refused unless `replace` repeats its name; then the objects in
    the dump are dropped and recreated in the same transaction (objects the dump does not hold
    are left alone). On failure nothing is changed, and a database created here is dropped.
    """
    check_identifier(conn.database, "target database")
    created = None
    found: list[TableContents] = []
    if not _database_exists(conn, conn.database):
        if not create:
            raise RecoveryError(f"database {conn.database!r} does not exist (pass --create to create it)")
        created = create_database(conn, conn.database, purpose="restore")
    else:
        found = database_contents(conn)
        if found and replace != conn.database:
            raise TargetNotEmpty(
                f"database {conn.database!r} is not empty: {describe_contents(found, recovery_point)}. "
                f"Nothing was changed. To replace what the backup holds, run again with --replace {conn.database}"
            )
    cmd = [
        find_pg_bin("pg_restore"),
        "--exit-on-error",
        "--single-transaction",
        "--no-owner",
        "--no-privileges",
        *(["--clean", "--if-exists"] if found else []),
        *conn.args(),
        str(dump),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=conn.env())
    if result.returncode != 0:
        if created is not None:
            drop_created_database(created)
        left = "was dropped again" if created is not None else "is as it was (the transaction rolled back)"
        raise RecoveryError(
            f"pg_restore into {conn.database} failed, and the database {left}: {result.stderr.strip()[:1000]}"
        )
    return created
