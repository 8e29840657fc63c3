"""Backup throughput and restore time (RTO) for a PostgreSQL database of at least 100 MB.

    python -m bench recovery [--size-mb 120] [--compression 6] [--no-fsync] [--budget 900]
                             [--phases dump,s3,pitr] [--wal-mb 256] [--pitr-writers 4]

Starts a throwaway PostgreSQL (tests/pgtemp.py), fills it with generate_series
rows until pg_database_size reaches --size-mb, then times the real commands' code paths:
backup (pg_dump custom format inside an exported snapshot + per-table checksums, written
atomically with its manifest), verify (SHA-256 + pg_restore --list), and a restore drill
(verify, restore into a scratch database, recompute and compare row counts and checksums); then
the S3 path (push to a restic repository on a real S3 server, fetch back) against restic's own
CLI streaming pg_dump, each into a fresh repository. Then point-in-time recovery
(bench/_recovery_pitr.py): rows and seconds lost under a steady write load with WAL archiving
against only periodic dumps, and the RTO of base + replay of --wal-mb MB of WAL against the same
restore done by hand with PostgreSQL's own tools.
Prints MB/s of database per second of backup and the drill's RTO; one JSON line at the end.
Bounded: gives up (exit 1) when --budget seconds are spent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent_runtime.config import BackupSource
from agent_runtime.recovery import backup_source, drill, verify_backup
from agent_runtime.recovery_pgserver import find_pg_bin
from agent_runtime.recovery_store import BackupStore
from tests.pgtemp import TempPostgres

MB = 1024 * 1024


def _fill(pg: TempPostgres, database: str, size_mb: int, deadline: float) -> tuple[int, int]:
    pg.psql(f"CREATE DATABASE {database}")
    pg.psql(
        "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, agent text, payload text, score int);"
        "CREATE TABLE conversations (id bigint PRIMARY KEY, owner text, summary text)",
        database,
    )
    batch, start = 250_000, 1
    while True:
        size = int(pg.psql("SELECT pg_database_size(current_database())", database))
        if size >= size_mb * MB:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("budget spent while generating data")
        end = start + batch - 1
        pg.psql(
            f"INSERT INTO events SELECT g, timestamptz '2026-01-01' + g * interval '1 second', "
            f"'agent-' || (g % 50), md5(g::text) || md5((g * 31)::text), (g * 7919) % 1000 "
            f"FROM generate_series({start}::bigint, {end}) g;"
            f"INSERT INTO conversations SELECT g, 'user-' || (g % 1000), repeat(md5(g::text), 2) "
            f"FROM generate_series({start}::bigint, {start + batch // 10 - 1}) g",
            database,
        )
        start = end + 1
    pg.psql("VACUUM ANALYZE", database)
    rows = int(pg.psql("SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM conversations)", database))
    return int(pg.psql("SELECT pg_database_size(current_database())", database)), rows


def _s3_phase(pg: TempPostgres, tmp: Path, backup, store: BackupStore, compression: int) -> dict:
    """Our S3 path (verified local backup -> restic snapshot; fetch back) against restic's own CLI
    streaming pg_dump (`restic backup --stdin`, `restic dump`), each into a fresh repository on a
    real S3 server (versitygw from tools/build-s3-server.sh) on 127.0.0.1."""
    import secrets
    import socket

    from agent_runtime.config import BackupTarget
    from agent_runtime.recovery_s3 import ResticRepository

    built = subprocess.run(["bash", str(Path(__file__).resolve().parents[1] / "tools" / "build-s3-server.sh")],
                           capture_output=True, text=True)
    if built.returncode != 0:
        print(f"s3 phase skipped: tools/build-s3-server.sh failed: {built.stderr[-300:]}", flush=True)
        return {}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    access, secret = "bench", secrets.token_hex(16)
    (tmp / "s3").mkdir()
    proc = subprocess.Popen([built.stdout.strip().splitlines()[-1], "--access", access, "--secret", secret,
                             "--port", f"127.0.0.1:{port}", "posix", str(tmp / "s3")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update(AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret, RESTIC_PASSWORD="bench-key",
                          RESTIC_CACHE_DIR=str(tmp / "restic-cache"))
        target = BackupTarget(kind="s3", endpoint=endpoint, bucket="bench", prefix="ours",
                              credentials_secret="s3", encryption_secret="key")
        repo = ResticRepository(target)
        repo.ensure()
        t0 = time.monotonic()
        repo.push(backup)
        push_s = time.monotonic() - t0
        staging = BackupStore(tmp / "staging")
        t0 = time.monotonic()
        fetched = repo.fetch("bench", "latest", staging)
        fetch_s = time.monotonic() - t0
        t0 = time.monotonic()
        assert verify_backup(staging, fetched).ok
        verify_s = time.monotonic() - t0

        cli_env = {**os.environ, "RESTIC_REPOSITORY": f"s3:{endpoint}/bench/cli"}
        restic = subprocess.run(["which", "restic"], capture_output=True, text=True).stdout.strip()
        subprocess.run([restic, "init"], env=cli_env, check=True, capture_output=True)
        t0 = time.monotonic()
        dump = subprocess.Popen([find_pg_bin("pg_dump"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-Fc",
                                 f"--compress={compression}", "bench"], stdout=subprocess.PIPE, env=pg.env)
        subprocess.run([restic, "backup", "--stdin", "--stdin-filename", "bench.dump"], stdin=dump.stdout,
                       env=cli_env, check=True, capture_output=True)
        assert dump.wait() == 0
        cli_backup_s = time.monotonic() - t0
        t0 = time.monotonic()
        with open(tmp / "cli.dump", "wb") as out:
            subprocess.run([restic, "dump", "latest", "bench.dump"], stdout=out, env=cli_env, check=True)
        cli_dump_s = time.monotonic() - t0
    finally:
        proc.terminate()
        proc.wait(10)
    ours_backup = backup.manifest["finished_at"] - backup.manifest["started_at"] + push_s
    print(
        f"s3 (restic on versitygw): push {push_s:.2f} s, backup+push {ours_backup:.2f} s vs restic CLI "
        f"pg_dump|restic backup --stdin {cli_backup_s:.2f} s (ratio {ours_backup / cli_backup_s:.2f}); "
        f"fetch {fetch_s:.2f} s + verify {verify_s:.2f} s vs restic dump {cli_dump_s:.2f} s "
        f"(fetch ratio {fetch_s / cli_dump_s:.2f})",
        flush=True,
    )
    return {
        "s3_push_seconds": round(push_s, 2),
        "s3_backup_and_push_seconds": round(ours_backup, 2),
        "baseline_restic_stdin_backup_seconds": round(cli_backup_s, 2),
        "s3_backup_vs_restic_cli": round(ours_backup / cli_backup_s, 2),
        "s3_fetch_seconds": round(fetch_s, 2),
        "s3_fetch_verify_seconds": round(verify_s, 2),
        "baseline_restic_dump_seconds": round(cli_dump_s, 2),
        "s3_fetch_vs_restic_dump": round(fetch_s / cli_dump_s, 2),
    }


def _dump_phase(args: argparse.Namespace, tmp: str, deadline: float, phases: set[str]) -> dict:
    """Dumps: backup, verify and drill against bare pg_dump/pg_restore; then the S3 path."""
    with TempPostgres(fsync=not args.no_fsync) as pg:
        os.environ["PGPASSWORD"] = pg.password
        t0 = time.monotonic()
        db_bytes, rows = _fill(pg, "bench", args.size_mb, deadline)
        print(f"generated {db_bytes / MB:.1f} MB ({rows} rows) in {time.monotonic() - t0:.1f} s", flush=True)

        source = BackupSource(name="bench", kind="postgres", host=pg.host, port=pg.port, database="bench", user=pg.user)
        store = BackupStore(Path(tmp) / "backups")
        t0 = time.monotonic()
        backup = backup_source(store, source, compression_level=args.compression)
        backup_s = time.monotonic() - t0
        dump_bytes = sum(f["size"] for f in backup.manifest["files"])
        print(
            f"backup: {backup_s:.2f} s, {db_bytes / MB / backup_s:.1f} MB/s of database, "
            f"dump {dump_bytes / MB:.1f} MB ({dump_bytes / db_bytes:.0%}, level {args.compression})",
            flush=True,
        )
        t0 = time.monotonic()
        backup_source(store, source.model_copy(update={"table_checksums": False}), compression_level=args.compression)
        dump_only_s = time.monotonic() - t0
        print(
            f"backup without table checksums: {dump_only_s:.2f} s, {db_bytes / MB / dump_only_s:.1f} MB/s",
            flush=True,
        )
        # Baselines: what bare pg_dump / pg_restore take for the same database, same level.
        raw = Path(tmp) / "raw.dump"
        t0 = time.monotonic()
        subprocess.run([find_pg_bin("pg_dump"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-Fc",
                        f"--compress={args.compression}", "-f", str(raw), "bench"], check=True, env=pg.env)
        raw_dump_s = time.monotonic() - t0
        subprocess.run([find_pg_bin("createdb"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "raw_restore"],
                       check=True, env=pg.env)
        t0 = time.monotonic()
        subprocess.run([find_pg_bin("pg_restore"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
                        "-d", "raw_restore", str(raw)], check=True, env=pg.env)
        raw_restore_s = time.monotonic() - t0
        print(f"baseline pg_dump -Fc: {raw_dump_s:.2f} s; ours / pg_dump = {backup_s / raw_dump_s:.2f} "
              f"(without checksums {dump_only_s / raw_dump_s:.2f})", flush=True)
        t0 = time.monotonic()
        result = verify_backup(store, backup)
        verify_s = time.monotonic() - t0
        assert result.ok, result.problems
        print(f"verify: {verify_s:.2f} s ({dump_bytes / MB / verify_s:.1f} MB/s of backup)", flush=True)

        report = drill(store, [source], rto_target_seconds=900, rpo_target_seconds=3600)
        assert report.ok, report.as_dict()
        print(
            f"drill: RTO {report.rto_seconds:.2f} s (verify + restore + row/checksum comparison), "
            f"RPO {report.rpo_seconds:.1f} s; baseline pg_restore {raw_restore_s:.2f} s, "
            f"RTO / pg_restore = {report.rto_seconds / raw_restore_s:.2f}",
            flush=True,
        )
        s3 = _s3_phase(pg, Path(tmp), backup, store, args.compression) if "s3" in phases else {}
        return (
                {
                    **s3,
                    "database_mb": round(db_bytes / MB, 1),
                    "rows": rows,
                    "compression_level": args.compression,
                    "fsync": not args.no_fsync,
                    "backup_seconds": round(backup_s, 2),
                    "backup_mb_per_s": round(db_bytes / MB / backup_s, 1),
                    "backup_without_checksums_mb_per_s": round(db_bytes / MB / dump_only_s, 1),
                    "dump_mb": round(dump_bytes / MB, 1),
                    "verify_seconds": round(verify_s, 2),
                    "rto_seconds": round(report.rto_seconds, 2),
                    "rpo_seconds": round(report.rpo_seconds, 1),
                    "baseline_pg_dump_seconds": round(raw_dump_s, 2),
                    "baseline_pg_restore_seconds": round(raw_restore_s, 2),
                    "backup_vs_pg_dump": round(backup_s / raw_dump_s, 2),
                    "rto_vs_pg_restore": round(report.rto_seconds / raw_restore_s, 2),
                }
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench recovery", description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=120, help="database size to generate (>= 100)")
    parser.add_argument("--compression", type=int, default=6, help="pg_dump --compress level (0-9)")
    parser.add_argument("--no-fsync", action="store_true", help="run the scratch server with fsync=off")
    parser.add_argument("--budget", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--phases", default="dump,s3,pitr",
                        help="comma-separated: dump (and s3, which needs it), pitr (default: all)")
    parser.add_argument("--wal-mb", type=int, default=256, help="pitr: MB of WAL to write after the base backup")
    parser.add_argument("--pitr-writers", type=int, default=4, help="pitr: concurrent single-row committers")
    args = parser.parse_args(argv)
    if args.size_mb < 100:
        parser.error("--size-mb must be at least 100")
    deadline = time.monotonic() + args.budget
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("budget spent")))
    signal.alarm(int(args.budget) + 1)

    phases = set(args.phases.split(","))
    unknown = phases - {"dump", "s3", "pitr"}
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    if "s3" in phases:
        phases.add("dump")
    results: dict = {"bench": "recovery", "phases": sorted(phases)}
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        if "dump" in phases:
            results.update(_dump_phase(args, tmp, deadline, phases))
        if "pitr" in phases:
            from bench._recovery_pitr import run_pitr_phase

            results.update(run_pitr_phase(Path(tmp), fsync=not args.no_fsync, wal_mb=args.wal_mb,
                                          load_seconds=max(30.0, deadline - time.monotonic() - 120),
                                          writers=args.pitr_writers))
    signal.alarm(0)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
