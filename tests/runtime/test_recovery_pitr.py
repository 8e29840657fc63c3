"""Point-in-time recovery against a real PostgreSQL (issue 12, item 7).

A writer commits one row at a time while the commands run as an operator runs them
(`wal-receive`, `basebackup`, `pitr-restore` in subprocesses); then the source server is lost
(stopped without a checkpoint, its directory deleted) and restored from the base backup and the
archived WAL, to the end of the archive and to a chosen commit time. Rows lost are counted
against what the writer saw acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent_runtime.recovery_pgserver import PgServer, find_pg_bin
from agent_runtime.recovery_pitr import stage_wal
from agent_runtime.recovery_sources import PgConn, PsqlSession, RecoveryError
from agent_runtime.recovery_store import BackupStore
from agent_runtime.recovery_wal import segment_of
from tests.pgtemp import TempPostgres

RUNTIME = [sys.executable, "-m", "agent_runtime"]
# Commit timestamps let the test name an exact recovery target and know which rows precede it.
SOURCE_SETTINGS = {"track_commit_timestamp": "on"}
EVENTS_TABLE = "CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz DEFAULT clock_timestamp(), payload text)"


@pytest.fixture
def source() -> Iterator[TempPostgres]:
    """A server of the test's own: the test destroys it."""
    server = TempPostgres(settings=SOURCE_SETTINGS)
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    server.psql("CREATE DATABASE app")
    server.psql(EVENTS_TABLE, "app")
    yield server
    server.stop()


@pytest.fixture
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pytest's own tmp_path lies under /tmp/pytest-of-root (mode 700), which the postgres user
    that replays a restore cannot enter; this one it can (and the test still owns it)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="pitr-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class _Conn(PgConn):
    """This server's password, whatever PGPASSWORD the test process holds."""

    password: str = ""

    def env(self) -> dict[str, str]:
        return {**super().env(), "PGPASSWORD": self.password}


@dataclass
class Writer:
    """Commits one row per transaction until stopped (or for at most `limit` rows / `seconds`)."""

    pg: TempPostgres
    pause: float = 0.01
    limit: int = 20000
    seconds: float = 120.0
    acked: dict[int, float] = field(default_factory=dict)  # id -> when the commit was acknowledged
    error: str | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = PsqlSession(_Conn(self.pg.host, self.pg.port, self.pg.user, "app", self.pg.password))
        deadline = time.monotonic() + self.seconds
        try:
            for i in range(1, self.limit + 1):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                session.query(f"INSERT INTO events (id, payload) VALUES ({i}, repeat('x', 200))")
                self.acked[i] = time.time()
                time.sleep(self.pause)
        except RecoveryError as exc:  # the server went away: expected when the test crashes it
            self.error = str(exc)
        finally:
            session.close()

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def write_config(tmp: Path, pg: TempPostgres, target: dict | None = None, drill: dict | None = None,
                 name: str = "backup.json", **wal: object) -> Path:
    config = {
        "enabled": True,
        **({"drill": drill} if drill else {}),
        "sources": [{
            "name": "app", "kind": "postgres", "host": pg.host, "port": pg.port, "database": "app", "user": pg.user,
            "password_secret": "app-db", "wal_archiving": {"enabled": True, **wal},
        }],
        "target": target or {"kind": "pvc", "mount_path": str(tmp / "backups")},
    }
    path = tmp / name
    path.write_text(json.dumps(config))
    return path


def run(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNTIME, *args], capture_output=True, text=True, env=env, timeout=timeout)


def start_receiver(env: dict[str, str], config: Path, wal_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*RUNTIME, "wal-receive", "--config", str(config), "--source", "app", "--wal-dir", str(wal_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group, so a test can kill it as a pod dies: all at once
    )


def wait_for(predicate, timeout: float, what: str, writer: Writer | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert writer is None or writer.error is None, f"the writer failed: {writer.error}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def restored_ids(data_dir: Path, password: str) -> list[int]:
    """Start a server on a restored directory (as the source's users, from its own pg_hba) and read it."""
    import shutil
    import tempfile

    run_dir = Path(tempfile.mkdtemp(prefix="pitr-run-"))
    server = PgServer(data_dir, run_dir=run_dir)
    server.hand_over(run_dir)
    server.start()
    try:
        out = subprocess.run(
            [find_pg_bin("psql"), "-X", "-A", "-t", "-h", server.host, "-p", str(server.port), "-U", "postgres",
             "-d", "app", "-c", "SELECT id FROM events ORDER BY id"],
            capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password}, check=True,
        ).stdout
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    return [int(x) for x in out.split()]


def commit_times(pg: TempPostgres) -> dict[int, float]:
    out = pg.psql("SELECT id, extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM events ORDER BY id", "app")
    return {int(i): float(t) for i, t in (line.split("|") for line in out.splitlines())}


def lose(pg: TempPostgres) -> float:
    """The server is gone: stopped without a checkpoint, its files deleted."""
    lost_at = time.time()
    pg.crash()
    import shutil

    shutil.rmtree(pg.data)
    return lost_at


def assert_no_gap(restored: list[int], acked: dict[int, float]) -> None:
    newest = max(restored)
    missing = [i for i in acked if i <= newest and i not in set(restored)]
    assert not missing, f"rows lost inside the archived WAL: {missing[:10]}"


def test_pitr_to_latest_and_to_a_commit_time_after_losing_the_server(source: TempPostgres, tmp_path: Path) -> None:
    env = {**os.environ, "PGPASSWORD": source.password}
    config = write_config(tmp_path, source)
    wal_dir = tmp_path / "wal"
    receiver = start_receiver(env, config, wal_dir)
    writer = Writer(source).start()
    try:
        wait_for(lambda: len(writer.acked) > 50, 30, "the writer", writer)
        base = run(env, "basebackup", "--config", str(config), "--source", "app")
        assert base.returncode == 0, base.stderr
        after_base = len(writer.acked)
        wait_for(lambda: len(writer.acked) > after_base + 150, 60, "writes after the base backup", writer)
        # A recovery target among the rows written after the base backup: an exact commit time.
        commits = commit_times(source)
        later = sorted(i for i in commits if i > after_base)
        target_id = later[len(later) // 2]
        target_time = commits[target_id]
        wait_for(lambda: len(writer.acked) > max(commits) + 200, 60, "more writes", writer)
        lost_at = lose(source)
        writer.stop()
    finally:
        writer.stop()
        receiver.send_signal(signal.SIGTERM)
        _, err = receiver.communicate(timeout=60)
    assert receiver.returncode == 0, err
    assert writer.error, "the writer should have seen the server go away"

    # To the end of the archive.
    latest = run(env, "pitr-restore", "--config", str(config), "--source", "app",
                 "--data-dir", str(tmp_path / "latest"), "--wal-dir", str(wal_dir))
    assert latest.returncode == 0, latest.stderr
    report = json.loads(latest.stdout)
    assert report["ok"] and report["target_time"] == "latest" and report["recovered_to"]
    ids = restored_ids(tmp_path / "latest", source.password)
    assert_no_gap(ids, writer.acked)
    lost = sorted(set(writer.acked) - set(ids))
    rpo = lost_at - min((writer.acked[i] for i in lost), default=lost_at)
    # Streaming: only what the server had not yet sent when it died (its WAL writer's last ~200 ms).
    assert rpo < 5.0, f"{len(lost)} acknowledged rows lost, the oldest acknowledged {rpo:.2f} s before the loss"
    assert ids[-1] > max(commits) + 100, "latest must hold what was written after the target was chosen"
    print(f"PITR latest: {len(writer.acked)} acknowledged, {len(lost)} lost (RPO {rpo:.2f} s), "
          f"RTO {report['rto_seconds']} s")

    # To a chosen time: exactly the rows committed at or before it.
    at = run(env, "pitr-restore", "--config", str(config), "--source", "app", "--data-dir", str(tmp_path / "at"),
             "--wal-dir", str(wal_dir), "--target-time", repr(target_time))
    assert at.returncode == 0, at.stderr
    ids = restored_ids(tmp_path / "at", source.password)
    assert ids == [i for i in sorted(commits) if commits[i] <= target_time]
    assert ids[-1] == target_id

    # A drill: the same restore into scratch space, measured against the targets, then removed.
    drill = run(env, "pitr-restore", "--config", str(config), "--source", "app", "--drill", "--wal-dir", str(wal_dir))
    assert drill.returncode == 0, drill.stderr
    measured = json.loads(drill.stdout)
    assert measured["drill"] and measured["ok"] and measured["rto_seconds"] <= measured["rto_target_seconds"]
    assert 0 <= measured["rpo_seconds"] < 600 and measured["recovered_to"] == report["recovered_to"]
    tight = write_config(tmp_path, source, drill={"rto_target_seconds": 0.001}, name="tight.json")
    missed = run(env, "pitr-restore", "--config", str(tight), "--source", "app", "--drill", "--wal-dir", str(wal_dir))
    assert missed.returncode == 1 and json.loads(missed.stdout)["ok"] is False

    # The restored directory is now a database: restoring over it is refused, and it is left alone.
    again = run(env, "pitr-restore", "--config", str(config), "--source", "app",
                "--data-dir", str(tmp_path / "at"), "--wal-dir", str(wal_dir))
    assert again.returncode == 4, again.stderr
    assert "is not empty" in again.stderr and "Nothing was changed" in again.stderr
    assert restored_ids(tmp_path / "at", source.password)[-1] == target_id


def test_a_damaged_base_backup_is_refused_and_nothing_is_written(source: TempPostgres, tmp_path: Path) -> None:
    env = {**os.environ, "PGPASSWORD": source.password}
    config = write_config(tmp_path, source)
    assert run(env, "basebackup", "--config", str(config), "--source", "app").returncode == 0
    (base,) = BackupStore(tmp_path / "backups" / ".base").backups("app")
    archive = base.file("base.tar.gz")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    result = run(env, "pitr-restore", "--config", str(config), "--source", "app",
                 "--data-dir", str(tmp_path / "restored"), "--wal-dir", str(tmp_path / "wal"))
    assert result.returncode == 3, result.stderr
    assert "sha256" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "restored").exists()


def test_a_target_time_before_every_base_backup_is_refused(source: TempPostgres, tmp_path: Path) -> None:
    env = {**os.environ, "PGPASSWORD": source.password}
    config = write_config(tmp_path, source)
    assert run(env, "basebackup", "--config", str(config), "--source", "app").returncode == 0
    result = run(env, "pitr-restore", "--config", str(config), "--source", "app", "--data-dir",
                 str(tmp_path / "r"), "--wal-dir", str(tmp_path / "wal"), "--target-time", "2020-01-01T00:00:00Z")
    assert result.returncode == 3 and "no base backup finished before 2020-01-01" in result.stderr
    naive = run(env, "pitr-restore", "--config", str(config), "--source", "app", "--data-dir",
                str(tmp_path / "r"), "--target-time", "2026-12-02 07:00:00")
    assert naive.returncode == 2 and "has no time zone" in naive.stderr


def test_wal_archiving_on_a_files_source_is_one_clear_config_error(tmp_path: Path) -> None:
    path = tmp_path / "backup.json"
    path.write_text(json.dumps({"enabled": True, "sources": [
        {"name": "docs", "kind": "files", "claim_name": "docs", "wal_archiving": {"enabled": True}}]}))
    result = run(dict(os.environ), "basebackup", "--config", str(path), "--source", "docs")
    assert result.returncode == 2
    assert "wal_archiving is for postgres sources only" in result.stderr and "Traceback" not in result.stderr


def test_the_partial_segment_is_replayed_unless_the_complete_one_exists(tmp_path: Path) -> None:
    a, b, dest = tmp_path / "a", tmp_path / "b", tmp_path / "dest"
    a.mkdir()
    b.mkdir()
    (a / "000000010000000000000003").write_bytes(b"complete-3")
    (b / "000000010000000000000003.partial").write_bytes(b"partial-3")
    (b / "000000010000000000000004.partial").write_bytes(b"partial-4")
    (b / "00000002.history").write_bytes(b"1\t0/3000000\tno recovery target specified\n")
    (b / "not-wal.txt").write_bytes(b"x")
    assert stage_wal([a, b], dest) == 3
    assert (dest / "000000010000000000000003").read_bytes() == b"complete-3"
    assert (dest / "000000010000000000000004").read_bytes() == b"partial-4"
    assert not (dest / "not-wal.txt").exists()


@pytest.mark.parametrize(
    ("timeline", "lsn", "segment"),
    [(1, "0/2000028", "000000010000000000000002"), (3, "1/FF000000", "0000000300000001000000FF"),
     (1, "A/0", "000000010000000A00000000")],
)
def test_segment_names_follow_postgres(timeline: int, lsn: str, segment: str) -> None:
    assert segment_of(timeline, lsn) == segment


def test_wal_that_no_kept_base_backup_needs_is_pruned_and_history_kept(tmp_path: Path) -> None:
    from agent_runtime.recovery_wal import prune_wal

    names = ["000000010000000000000001", "000000010000000000000002", "000000020000000000000003",
             "000000020000000000000004.partial", "00000002.history", "000000010000000100000000"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = prune_wal(tmp_path, "000000020000000000000003")
    assert removed == ["000000010000000000000001", "000000010000000000000002"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names) - set(removed))


def test_a_receiver_killed_and_restarted_leaves_no_gap(source: TempPostgres, tmp_path: Path) -> None:
    """The slot keeps the WAL written while no receiver ran, through segment switches and
    checkpoints that would otherwise recycle it; the next receiver picks up where the volume ends
    (a pod killed and rescheduled onto the same volume)."""
    env = {**os.environ, "PGPASSWORD": source.password}
    config = write_config(tmp_path, source)
    wal_dir = tmp_path / "wal"
    writer = Writer(source).start()
    receiver = start_receiver(env, config, wal_dir)
    try:
        wait_for(lambda: len(writer.acked) > 50, 30, "the writer", writer)
        assert run(env, "basebackup", "--config", str(config), "--source", "app").returncode == 0
        wait_for(lambda: len(writer.acked) > 200, 60, "writes", writer)
        os.killpg(receiver.pid, signal.SIGKILL)
        receiver.communicate(timeout=30)
        during_outage = len(writer.acked)
        wait_for(lambda: len(writer.acked) > during_outage + 150, 60, "writes while no receiver runs", writer)
        for _ in range(3):  # without the slot, the server would now remove what no receiver has yet
            source.psql("SELECT pg_switch_wal()")
            source.psql("CHECKPOINT")
        receiver = start_receiver(env, config, wal_dir)
        after_restart = len(writer.acked)
        wait_for(lambda: len(writer.acked) > after_restart + 150, 60, "writes after the restart", writer)
        lose(source)
    finally:
        writer.stop()
        receiver.send_signal(signal.SIGTERM)
        receiver.communicate(timeout=60)
    result = run(env, "pitr-restore", "--config", str(config), "--source", "app",
                 "--data-dir", str(tmp_path / "restored"), "--wal-dir", str(wal_dir))
    assert result.returncode == 0, result.stderr
    ids = restored_ids(tmp_path / "restored", source.password)
    assert_no_gap(ids, writer.acked)
    assert ids[-1] > after_restart + 100, "the rows written while no receiver ran, and after, came back"
