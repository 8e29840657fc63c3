"""Continuous WAL archiving and base backups of PostgreSQL: what a point-in-time restore replays.

Why streaming with `pg_receivewal` rather than an `archive_command` on the database server:
- it needs only a role with REPLICATION and network access, not our program installed on the
  server nor a change to its `archive_command` (often a managed or another team's server);
- the segment being filled is streamed as it is written (`<segment>.partial`, flushed at once with
  `--synchronous`), so the RPO is seconds, not "until a 16 MB segment fills" nor
  `archive_timeout` (which, set to 60 s, would ship a mostly empty 16 MB segment every minute from
  an idle database);
- a replication slot makes the server keep WAL until the receiver has it, so a receiver restart
  leaves no gap. The price: while the receiver is down WAL piles up on the server, so the server
  should bound it (`max_slot_wal_keep_size`; DATABASE_SETTINGS lists what it needs).

Off the cluster (an s3 target), the received WAL is pushed every `push_interval_seconds` as a
restic snapshot, in a repository of its own per source (`<prefix>-wal/<source>`: the pusher's
`forget` then never locks the dumps' repository). The same client-side encryption and key as the
dumps; restic's content-defined chunking means each push uploads only what changed in the segment
being filled. A push works on hard links taken at one instant (`.push/` beside the WAL directory),
so a segment renamed from `.partial` mid-push cannot fail it; a `.partial` still being appended to
reads as a prefix of the WAL, which replay ends at cleanly.

Base backups: `pg_basebackup --format=tar --gzip --wal-method=stream --manifest-checksums=SHA256`,
kept with the same manifest and atomic layout as dumps (`recovery_store`) under `<target>/.base/`,
or for s3 in the main repository as snapshots tagged BASE_TAG. Each is self-contained (its own WAL),
and PostgreSQL's `pg_verifybackup` checks every file of it against its backup_manifest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .recovery_pgserver import find_pg_bin
from .recovery_s3 import ResticRepository
from .recovery_sources import PgConn, RecoveryError
from .recovery_store import Backup, BackupStore

__all__ = [
    "BASE_KIND",
    "BASE_TAG",
    "DATABASE_SETTINGS",
    "WAL_TAG",
    "WalReceiver",
    "base_backup",
    "prune_wal",
    "segment_of",
    "slot_name",
    "wal_files",
    "wal_repository",
]

log = logging.getLogger("agent_runtime.recovery_wal")

BASE_KIND = "postgres-base"
BASE_TAG = "agent-platform-base"
WAL_TAG = "agent-platform-wal"
BASE_FILES = ("base.tar.gz", "pg_wal.tar.gz", "backup_manifest")
# What the database server needs for this (PostgreSQL >= 13; most are the defaults).
DATABASE_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    # A receiver that stays down must not fill the server's disk: past this the slot is dropped
    # (the archive then has a gap, and the next base backup starts a new chain).
    "max_slot_wal_keep_size": "20GB",
}
_WAL_NAME = re.compile(r"^([0-9A-F]{24})(\.partial)?$|^[0-9A-F]{8}\.history$")
WAL_SNAPSHOTS_KEPT = 3
PRUNE_EVERY_SECONDS = 3600.0


def slot_name(source: str) -> str:
    """The replication slot of a source's receiver (slot names: [a-z0-9_], at most 63 bytes)."""
    return ("agent_wal_" + source.replace("-", "_"))[:63]


def segment_of(timeline: int, lsn: str, segment_bytes: int = 16 << 20) -> str:
    """The WAL segment file name holding `lsn` ("X/Y") on `timeline`."""
    hi, lo = (int(part, 16) for part in lsn.split("/"))
    per_xlogid = 0x100000000 // segment_bytes
    segno = (hi * 0x100000000 + lo) // segment_bytes
    return f"{timeline:08X}{segno // per_xlogid:08X}{segno % per_xlogid:08X}"


def wal_files(wal_dir: Path) -> list[Path]:
    """WAL segments (complete or `.partial`) and timeline history files, in name order."""
    if not wal_dir.is_dir():
        return []
    return sorted(p for p in wal_dir.iterdir() if _WAL_NAME.match(p.name) and p.is_file())


def prune_wal(wal_dir: Path, oldest_needed: str) -> list[str]:
    """Delete segments before `oldest_needed` (a segment name), on any timeline; history files,
    which a restore needs to follow timelines, are kept."""
    removed = []
    for f in wal_files(wal_dir):
        match = _WAL_NAME.match(f.name)
        if match and match.group(1) and match.group(1)[8:] < oldest_needed[8:]:
            f.unlink()
            removed.append(f.name)
    return removed


def wal_repository(remote_of: Callable[..., ResticRepository], prefix: str, source: str) -> ResticRepository:
    return remote_of(prefix=f"{prefix.strip('/')}-wal/{source}")


# ---------------------------------------------------------------------------------------------
# base backups


def base_backup(conn: PgConn, store: BackupStore, source: str, *, compression_level: int) -> Backup:
    """One pg_basebackup of the server, complete in `store` (or an exception and no leftovers)."""
    partial = store.begin(source)
    started = time.time()
    work = partial.dir / ".pg_basebackup"
    try:
        cmd = [
            find_pg_bin("pg_basebackup"),
            "-D", str(work),
            "--format=tar",
            f"--compress=client-gzip:{max(1, compression_level)}",
            "--wal-method=stream",
            "--manifest-checksums=SHA256",
            "--checkpoint=fast",
            "--label", f"agent-platform {source}",
            "-h", conn.host, "-p", str(conn.port), "-U", conn.user, "-w",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, env=conn.env())
        if result.returncode != 0:
            raise RecoveryError(f"pg_basebackup of {conn.host}:{conn.port} failed: {result.stderr.strip()[-1000:]}")
        present = sorted(p.name for p in work.iterdir())
        if present != sorted(BASE_FILES):
            # Another tablespace arrives as <oid>.tar.gz: a restore here could not place it.
            raise RecoveryError(
                f"pg_basebackup wrote {', '.join(present)}; only the default tablespace is supported"
            )
        manifest_doc = json.loads((work / "backup_manifest").read_text())
        ranges = manifest_doc.get("WAL-Ranges") or []
        if not ranges:
            raise RecoveryError("pg_basebackup's backup_manifest has no WAL-Ranges")
        for name in BASE_FILES:
            partial.adopt(work / name)
        work.rmdir()
        finished = time.time()
        first = ranges[0]
        backup = partial.commit({
            "source": {"name": source, "kind": BASE_KIND, "host": conn.host, "port": conn.port},
            "started_at": started,
            "finished_at": finished,
            # Consistent once replay passes end_lsn, which the server reached before pg_basebackup
            # returned: a target time at or after this can start from this base backup.
            "snapshot_at": finished,
            "compression_level": compression_level,
            "pitr": {
                "timeline": int(first["Timeline"]),
                "start_lsn": first["Start-LSN"],
                "end_lsn": ranges[-1]["End-LSN"],
                "start_segment": segment_of(int(first["Timeline"]), first["Start-LSN"]),
            },
        })
    except BaseException:
        partial.abort()
        raise
    return backup


# ---------------------------------------------------------------------------------------------
# the receiver


class WalReceiver:
    """pg_receivewal on a replication slot into `wal_dir`, restarted if it stops; for an s3
    target, what it received is pushed every `push_interval` seconds (and once more on stop)."""

    def __init__(
        self,
        conn: PgConn,
        wal_dir: Path,
        source: str,
        *,
        remote: ResticRepository | None = None,
        push_interval: float = 15.0,
        on_push: Callable[[float], None] | None = None,
        heartbeat: Path | None = None,
        bases: ResticRepository | None = None,
    ) -> None:
        self.conn = conn
        self.wal_dir = wal_dir
        self.source = source
        self.slot = slot_name(source)
        self.remote = remote
        self.push_interval = push_interval
        self.on_push = on_push
        # Touched each second while pg_receivewal runs: the pod's liveness probe reads its age.
        self.heartbeat = heartbeat
        # Where the base backups are listed (s3): WAL older than the oldest one kept is removed.
        self.bases = bases
        self.proc: subprocess.Popen | None = None
        self.last_push: float | None = None
        self._last_prune = 0.0
        self._remote_ready = False

    def _cmd(self, *extra: str) -> list[str]:
        return [
            find_pg_bin("pg_receivewal"), "--slot", self.slot, "-h", self.conn.host, "-p", str(self.conn.port),
            "-U", self.conn.user, "-w", *extra,
        ]

    def create_slot(self) -> None:
        result = subprocess.run(
            self._cmd("--create-slot", "--if-not-exists"), capture_output=True, text=True, env=self.conn.env()
        )
        if result.returncode != 0:
            raise RecoveryError(f"creating replication slot {self.slot} failed: {result.stderr.strip()[-800:]}")

    def _start(self) -> None:
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            self._cmd("-D", str(self.wal_dir), "--synchronous", "--no-loop", "--status-interval=1", "--verbose"),
            env=self.conn.env(),
        )

    def push(self) -> None:
        """One snapshot of what was received so far, from hard links taken at one instant."""
        if self.remote is None:
            return
        if not self._remote_ready:
            self.remote.ensure()
            self._remote_ready = True
        staging = self.wal_dir.parent / f".push-{self.wal_dir.name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for f in wal_files(self.wal_dir):
                try:
                    os.link(f, staging / f.name)
                except FileNotFoundError:  # renamed from .partial just now: its new name is listed next time
                    continue
            started = time.time()
            self.remote.push_dir(staging, self.source, WAL_TAG)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.last_push = started
        prune = time.monotonic() - self._last_prune > PRUNE_EVERY_SECONDS
        self.remote.keep_last(self.source, WAL_TAG, WAL_SNAPSHOTS_KEPT, prune=prune)
        if prune:
            self._last_prune = time.monotonic()
            self.prune_local()
        if self.on_push:
            self.on_push(started)

    def prune_local(self) -> list[str]:
        """Remove received WAL that no kept base backup needs (it is in the pushed snapshots
        until those are forgotten). Nothing is removed while no base backup is listed."""
        if self.bases is None:
            return []
        starts = [s.tags.get("start", "") for s in self.bases.snapshots(self.source, BASE_TAG) if s.tags]
        if not starts or not all(starts):
            return []
        return prune_wal(self.wal_dir, min(starts))

    def run(self, stop: threading.Event, *, restart_delay: float = 2.0) -> None:
        """Until `stop` is set: keep pg_receivewal running, push on schedule. Then stop it cleanly
        (SIGTERM: it flushes what it has) and push a last time."""
        self.create_slot()
        self._start()
        next_push = time.monotonic() + self.push_interval
        try:
            while not stop.is_set():
                stop.wait(min(1.0, max(0.0, next_push - time.monotonic())))
                assert self.proc is not None
                if self.heartbeat is not None and self.proc.poll() is None:
                    self.heartbeat.touch()
                if self.proc.poll() is not None and not stop.is_set():
                    log.warning("pg_receivewal exited with %s; restarting in %.0f s", self.proc.returncode, restart_delay)
                    if stop.wait(restart_delay):
                        break
                    try:  # the slot may be gone (dropped, or the server restored): make it again
                        self.create_slot()
                    except RecoveryError as exc:
                        log.warning("%s", exc)
                    self._start()
                if self.remote is not None and time.monotonic() >= next_push:
                    try:
                        self.push()
                    except RecoveryError as exc:  # the next push carries it; the WAL is still on the volume
                        log.warning("WAL push failed: %s", exc)
                    next_push = time.monotonic() + self.push_interval
        finally:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        if self.remote is not None:
            self.push()

