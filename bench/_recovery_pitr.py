"""The point-in-time phase of `python -m bench recovery` (issue 12, item 7).

RPO under load: writers commit single rows as fast as they can while a bulk writer produces
`wal_mb` MB of WAL; a base backup (and, as the baseline, a dump: what the stack had before WAL
archiving) is taken at the start; then the server is lost (immediate stop, files deleted). Rows
lost = rows whose commit the writers saw acknowledged and the restore does not hold; RPO = the
loss time minus the acknowledgement time of the oldest lost row. With WAL archiving the restore
is `pitr_restore` to the end of the archive; with only periodic dumps, the newest dump.

PITR RTO: `pitr_restore` (verify the base with pg_verifybackup, extract, stage the WAL, replay,
promote, clean stop) against the same steps done by hand with PostgreSQL's own tools in the same
run (tar -x of base and pg_wal, `mv X.partial X`, restore_command, recovery.signal,
`pg_ctl -w start` with hot_standby off, which returns once replay ended, then `pg_ctl stop`).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from agent_runtime.config import BackupSource
from agent_runtime.recovery import backup_source
from agent_runtime.recovery_pgserver import PgServer, find_pg_bin
from agent_runtime.recovery_pitr import pitr_restore
from agent_runtime.recovery_sources import PgConn, PsqlSession, RecoveryError
from agent_runtime.recovery_store import BackupStore
from agent_runtime.recovery_wal import WalReceiver, base_backup, wal_files
from tests.pgtemp import TempPostgres

MB = 1024 * 1024


def _writer(
    conn: PgConn, ids: itertools.count, acked: dict[int, float], stop: threading.Event, deadline: float
) -> None:
    session = PsqlSession(conn)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            i = next(ids)
            session.query(f"INSERT INTO events (id, payload) VALUES ({i}, repeat('x', 200))")
            acked[i] = time.time()
    except RecoveryError:
        pass  # the server was lost
    finally:
        session.close()


def _bulk(conn: PgConn, stop: threading.Event, deadline: float, wal_mb: int, start_lsn: str) -> None:
    session = PsqlSession(conn)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            ((written,),) = session.query(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}')")
            if float(written) >= wal_mb * MB:
                return
            session.query("INSERT INTO bulk SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g")
    except RecoveryError:
        pass
    finally:
        session.close()


def _ids(data_dir: Path, work: Path, password: str) -> set[int]:
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    server = PgServer(data_dir, run_dir=run_dir)
    server.hand_over(run_dir)
    server.start()
    try:
        out = subprocess.run(
            [find_pg_bin("psql"), "-X", "-A", "-t", "-h", server.host, "-p", str(server.port), "-U", "postgres",
             "-d", "bench_pitr", "-c", "SELECT id FROM events"],
            capture_output=True, text=True, env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"}, check=True,
        ).stdout
    finally:
        server.stop()
    return {int(x) for x in out.split()}


def _by_hand(base_dir: Path, wal_dir: Path, data_dir: Path, run_dir: Path) -> float:
    """pg_basebackup's tar output restored and replayed with PostgreSQL's own tools only."""
    t0 = time.monotonic()
    server = PgServer(data_dir, run_dir=run_dir)
    data_dir.mkdir(mode=0o700)
    subprocess.run(["tar", "-xzf", str(base_dir / "base.tar.gz"), "-C", str(data_dir)], check=True)
    subprocess.run(["tar", "-xzf", str(base_dir / "pg_wal.tar.gz"), "-C", str(data_dir / "pg_wal")], check=True)
    archive = run_dir / "archive"
    shutil.copytree(wal_dir, archive)
    for partial in archive.glob("*.partial"):  # what the pg_receivewal docs say to do with it
        if not partial.with_suffix("").exists():
            partial.rename(partial.with_suffix(""))
    with open(data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write(f"\nrestore_command = 'cp {archive}/%f %p'\nrecovery_target_action = 'promote'\n")
    (data_dir / "recovery.signal").touch()
    server.hand_over(run_dir)  # chown -R postgres: what an operator does as root
    server.hand_over(data_dir)
    server.start({"hot_standby": "off", "archive_mode": "off"}, wait=False)
    # With hot_standby off the server accepts connections only once replay ended and it promoted.
    while subprocess.run([find_pg_bin("pg_isready"), "-q", "-h", server.host, "-p", str(server.port)]).returncode != 0:
        time.sleep(0.1)
    server.stop("fast")
    return time.monotonic() - t0


def run_pitr_phase(tmp: Path, *, fsync: bool, wal_mb: int, load_seconds: float, writers: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-pitr-"))  # not under tmp (mode 700): postgres must pass
    work.chmod(0o711)  # the postgres user that replays passes through it
    pg = TempPostgres(fsync=fsync).start()
    import os

    os.environ["PGPASSWORD"] = pg.password
    stop = threading.Event()
    receiver_thread = None
    try:
        pg.psql("CREATE DATABASE bench_pitr")
        pg.psql("CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp(), payload text);"
                "CREATE TABLE bulk (id bigint, payload text)", "bench_pitr")
        conn = PgConn(pg.host, pg.port, pg.user, "bench_pitr")
        wal_dir = work / "receiver" / "wal"
        receiver = WalReceiver(conn, wal_dir, "bench-pitr")
        receiver_stop = threading.Event()
        receiver_thread = threading.Thread(target=receiver.run, args=(receiver_stop,), daemon=True)
        receiver_thread.start()
        bases = BackupStore(work / "backups" / ".base")
        dumps = BackupStore(work / "backups")
        ids = itertools.count(1)
        acked: dict[int, float] = {}
        deadline = time.monotonic() + load_seconds
        threads = [threading.Thread(target=_writer, args=(conn, ids, acked, stop, deadline)) for _ in range(writers)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        base = base_backup(conn, bases, "bench-pitr", compression_level=1)
        source = BackupSource(name="bench-pitr", kind="postgres", host=pg.host, port=pg.port, database="bench_pitr",
                              user=pg.user, table_checksums=False)
        dump = backup_source(dumps, source, compression_level=1)
        start_lsn = base.manifest["pitr"]["end_lsn"]
        bulk = threading.Thread(target=_bulk, args=(conn, stop, deadline, wal_mb, start_lsn))
        bulk.start()
        bulk.join()
        time.sleep(2.0)  # the loss comes under load
        wal_bytes = float(pg.psql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{start_lsn}')"))
        rate_window = (time.time() - min(acked.values()), len(acked))
        lost_at = time.time()
        pg.crash()
        shutil.rmtree(pg.data)
        stop.set()
        for t in threads:
            t.join(30)
        receiver_stop.set()
        receiver_thread.join(60)

        archived_files = len(wal_files(wal_dir))
        t0 = time.monotonic()
        result = pitr_restore(base, [wal_dir], work / "restored", target_time=None, scratch=work)
        ours_s = time.monotonic() - t0
        restored = _ids(work / "restored", work, pg.password)
        lost_ids = [i for i in acked if i not in restored]
        lost_wal = len(lost_ids)
        rpo_wal = lost_at - min((acked[i] for i in lost_ids), default=lost_at)

        dump_rows = dump.manifest["postgres"]["tables"]["public.events"]["rows"]
        lost_dump = max(0, len(acked) - dump_rows)
        rpo_dump = lost_at - dump.snapshot_at

        (work / "by-hand-run").mkdir()
        hand_s = _by_hand(base.path, wal_dir, work / "by-hand", work / "by-hand-run")
        hand = _ids(work / "by-hand", work, pg.password)
    finally:
        stop.set()
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    rows_per_s = rate_window[1] / rate_window[0]
    print(
        f"pitr: load {rows_per_s:.0f} commits/s from {writers} writers + {wal_bytes / MB:.0f} MB of WAL "
        "after the base; "
        f"lost with WAL archiving {lost_wal} rows (RPO {rpo_wal:.2f} s); with only the periodic dump {lost_dump} rows "
        f"(RPO {rpo_dump:.1f} s since the dump; at prod's hourly schedule, up to "
        f"{rows_per_s * 3600:.0f} rows / 3600 s)",
        flush=True,
    )
    print(
        f"pitr RTO: ours {ours_s:.2f} s (prepare+verify {result.prepare_seconds:.2f} s, "
        f"replay {result.replay_seconds:.2f} s) "
        f"vs by hand with PostgreSQL's tools {hand_s:.2f} s (ratio {ours_s / hand_s:.2f}); "
        f"{wal_bytes / MB:.0f} MB of WAL, {archived_files} archived files; "
        f"rows restored ours {len(restored)} / by hand {len(hand)}",
        flush=True,
    )
    assert hand == restored, "our restore and the one by hand must agree"
    return {
        "pitr_commits_per_second": round(rows_per_s),
        "pitr_writers": writers,
        "pitr_wal_mb_replayed": round(wal_bytes / MB, 1),
        "pitr_rows_lost_wal_archiving": lost_wal,
        "pitr_rpo_seconds_wal_archiving": round(rpo_wal, 3),
        "pitr_rows_lost_dump_only": lost_dump,
        "pitr_rpo_seconds_dump_only": round(rpo_dump, 1),
        "pitr_rto_seconds": round(ours_s, 2),
        "pitr_prepare_seconds": round(result.prepare_seconds, 2),
        "pitr_replay_seconds": round(result.replay_seconds, 2),
        "baseline_pitr_by_hand_seconds": round(hand_s, 2),
        "pitr_rto_vs_by_hand": round(ours_s / hand_s, 2),
    }
