"""Point-in-time restore of a PostgreSQL source: a base backup plus the archived WAL, replayed by
PostgreSQL itself to a chosen time or to the end of the archive; and its commands:

    python -m agent_runtime basebackup   --config C --source S [--target-dir D]
    python -m agent_runtime wal-receive  --config C --source S --wal-dir W
    python -m agent_runtime pitr-restore --config C --source S --data-dir NEW [--wal-dir W]
                                         [--target-time 2026-12-02T07:12:00Z] [--no-replay]
    python -m agent_runtime pitr-restore --config C --source S --drill [--wal-dir W] [--target-time T]

pitr-restore picks the newest base backup finished at or before the target time (or the newest),
checks it (SHA-256 against our manifest, then every file with PostgreSQL's `pg_verifybackup`),
extracts it into `--data-dir` (which must not exist or be empty: nothing is overwritten), stages
the WAL (from `--wal-dir`, the receiver's volume, or else the s3 repository), writes the
recovery settings (`restore_command`, `recovery_target_time`, `recovery_target_action =
promote`) and, unless `--no-replay`, starts a server on the directory, waits until it has
replayed and promoted, stops it cleanly and removes the recovery settings again: the directory
is then a data directory any PostgreSQL of the same major version starts from. It prints one JSON
report: the base backup, the recovery point reached (the last transaction replayed), RTO and RPO
(the age of that transaction). `--drill` does the same into a scratch directory that it deletes
afterwards, and holds RTO and RPO to `backup.drill`'s targets (exit 1 when missed).

Exit codes as for `restore` (agent_runtime.recovery): 0 ok, 1 failed, 2 usage, 3 backup invalid,
4 the data directory is not empty.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import BackupConfig, BackupSource, ConfigError
from .recovery_files import UnsafeArchive
from .recovery_pgserver import PgServer, find_pg_bin
from .recovery_s3 import ResticRepository
from .recovery_sources import PgConn, RecoveryError, TargetNotEmpty
from .recovery_store import Backup, BackupStore
from .recovery_wal import BASE_FILES, BASE_KIND, BASE_TAG, WAL_TAG, WalReceiver, base_backup, wal_files, wal_repository

__all__ = ["BaseBackupInvalid", "PitrResult", "choose_base", "parse_target_time", "prepare_data_dir", "register", "replay", "stage_wal"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INVALID, EXIT_NOT_EMPTY = 0, 1, 2, 3, 4
BASE_DIR = ".base"
_SETTINGS_BEGIN = "# agent-platform point-in-time recovery: begin"
_SETTINGS_END = "# agent-platform point-in-time recovery: end"
_LAST_TX = re.compile(r"last completed transaction was at log time (\S+ \S+)")
_STOPPED = re.compile(r"recovery stopping (?:before|after) commit of transaction \d+, time (\S+ \S+)")


class BaseBackupInvalid(RecoveryError):
    """pg_verifybackup found the base backup damaged: it must not be replayed."""


def parse_target_time(text: str) -> float:
    """An ISO 8601 time with its zone (`...Z` or `+02:00`), or Unix seconds; a time without a zone
    is refused, since the server and the operator may not share one."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--target-time {text!r} is not an ISO 8601 time (2026-12-02T07:12:00Z)") from None
    if stamp.tzinfo is None:
        raise ConfigError(f"--target-time {text!r} has no time zone: add Z or an offset such as +00:00")
    return stamp.timestamp()


def _pg_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _epoch_of_log_time(text: str) -> float:
    # PostgreSQL logs "2026-12-02 07:12:01.123456+00"
    stamp = text if re.search(r"[+-]\d\d(:?\d\d)?$", text) else text + "+00"
    stamp = re.sub(r"([+-]\d\d)$", r"\1:00", stamp)
    return datetime.fromisoformat(stamp).timestamp()


def choose_base(bases: list[Backup], target_time: float | None) -> Backup:
    """The newest base backup that finished at or before `target_time` (any, for latest)."""
    usable = [b for b in bases if target_time is None or b.snapshot_at <= target_time]
    if not usable:
        if not bases:
            raise LookupError("no base backup")
        oldest = min(b.snapshot_at for b in bases)
        raise LookupError(f"no base backup finished before {_pg_time(target_time or 0)} (the oldest finished {_pg_time(oldest)})")
    return max(usable, key=lambda b: b.snapshot_at)


def _extract(archive: Path, dest: Path) -> None:
    """Regular files and directories only, inside `dest` (a base backup holds nothing else)."""
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            if not (m.isfile() or m.isdir()) or m.name.startswith("/") or ".." in Path(m.name).parts:
                raise UnsafeArchive(f"{archive.name}: refusing member {m.name!r} (not a plain file or directory inside)")
        tar.extractall(dest, members=members, filter="data")


def prepare_data_dir(base: Backup, data_dir: Path, server: PgServer) -> None:
    """Extract a base backup into a new (or empty) data directory and check it with pg_verifybackup."""
    if data_dir.exists() and any(data_dir.iterdir()):
        held = sorted(p.name for p in data_dir.iterdir())
        raise TargetNotEmpty(
            f"data directory {data_dir} is not empty ({len(held)} entries: {', '.join(held[:8])}"
            f"{', ...' if len(held) > 8 else ''}). Nothing was changed: restore into a new directory"
        )
    blocked = server.unreachable(data_dir)
    if blocked is not None:
        raise RecoveryError(
            f"the postgres user cannot reach {data_dir}: {blocked} is not searchable by it (mode "
            f"{blocked.stat().st_mode & 0o777:o}); restore somewhere it can reach, or chmod o+x {blocked}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        _extract(base.file("base.tar.gz"), data_dir)
        (data_dir / "pg_wal").mkdir(exist_ok=True)
        _extract(base.file("pg_wal.tar.gz"), data_dir / "pg_wal")
        shutil.copyfile(base.file("backup_manifest"), data_dir / "backup_manifest")
        data_dir.chmod(0o700)
        server.hand_over(data_dir)
        result = server.run(find_pg_bin("pg_verifybackup"), "--quiet", str(data_dir), timeout=3600)
        if result.returncode != 0:
            raise BaseBackupInvalid(f"pg_verifybackup of base backup {base.id}: {(result.stdout + result.stderr).strip()[-1000:]}")
    except BaseException:
        # Only what this call wrote: the directory was empty or absent.
        for child in data_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise


def stage_wal(sources: list[Path], dest: Path) -> int:
    """Copy the archived WAL into `dest`, later sources winning; the segment pg_receivewal was
    filling (`.partial`) is used under its full name unless the complete segment exists."""
    dest.mkdir(parents=True, exist_ok=True)
    complete = {f.name for d in sources for f in wal_files(d) if not f.name.endswith(".partial")}
    for source in sources:
        for f in wal_files(source):
            name = f.name.removesuffix(".partial")
            if name != f.name and name in complete:
                continue
            shutil.copyfile(f, dest / name)
    return len(wal_files(dest))


def _write_recovery_settings(data_dir: Path, wal_dir: Path, target_time: float | None) -> None:
    lines = [
        _SETTINGS_BEGIN,
        f"restore_command = 'cp \"{wal_dir}/%f\" \"%p\"'",
        "recovery_target_timeline = 'latest'",
        "recovery_target_action = 'promote'",
    ]
    if target_time is not None:
        lines += [f"recovery_target_time = '{_pg_time(target_time)}'", "recovery_target_inclusive = on"]
    lines.append(_SETTINGS_END)
    auto = data_dir / "postgresql.auto.conf"
    text = auto.read_text() if auto.exists() else ""
    auto.write_text(text + ("\n" if text and not text.endswith("\n") else "") + "\n".join(lines) + "\n")
    (data_dir / "recovery.signal").touch()


def _remove_recovery_settings(data_dir: Path) -> None:
    auto = data_dir / "postgresql.auto.conf"
    text = auto.read_text()
    auto.write_text(re.sub(rf"{re.escape(_SETTINGS_BEGIN)}.*?{re.escape(_SETTINGS_END)}\n", "", text, flags=re.S))


def _cluster_state(server: PgServer) -> str:
    out = server.run(find_pg_bin("pg_controldata"), str(server.data)).stdout
    found = re.search(r"Database cluster state:\s+(.+)", out)
    return found.group(1).strip() if found else ""


@dataclass
class PitrResult:
    base: str
    target_time: float | None
    recovered_to: float | None = None  # commit time of the last transaction replayed
    wal_files: int = 0
    prepare_seconds: float = 0.0
    replay_seconds: float = 0.0
    rto_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "base_backup": self.base,
            "target_time": _pg_time(self.target_time) if self.target_time is not None else "latest",
            "recovered_to": _pg_time(self.recovered_to) if self.recovered_to is not None else None,
            "wal_files": self.wal_files,
            "prepare_seconds": round(self.prepare_seconds, 3),
            "replay_seconds": round(self.replay_seconds, 3),
            "rto_seconds": round(self.rto_seconds, 3),
            "problems": self.problems,
        }


def replay(server: PgServer, *, timeout: float = 3600.0) -> float | None:
    """Start the server on the prepared directory, wait until recovery ended and it promoted, stop
    it cleanly (a checkpoint), remove the recovery settings; returns the last transaction's time."""
    server.start({"hot_standby": "off", "archive_mode": "off"}, wait=False)
    started = time.monotonic()
    deadline = started + timeout
    try:
        while True:
            state = _cluster_state(server)
            if state == "in production":
                break
            # (pg_ctl -W returns before the postmaster writes its pid file: give it a moment.)
            if not (server.data / "postmaster.pid").exists() and time.monotonic() - started > 2:
                raise RecoveryError(f"the server stopped during recovery: {server.log_tail(1500)}")
            if time.monotonic() > deadline:
                raise RecoveryError(f"recovery did not finish within {timeout:.0f} s (state {state!r})")
            time.sleep(0.1)
        # Promotion is written to the control file before the server accepts connections; wait for that.
        while "ready to accept connections" not in server.log_tail(4000) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop("fast")
    _remove_recovery_settings(server.data)
    text = server.log.read_text(errors="replace") if server.log.exists() else ""
    stamps = _STOPPED.findall(text) or _LAST_TX.findall(text)
    return _epoch_of_log_time(stamps[-1]) if stamps else None


def pitr_restore(
    base: Backup,
    wal_sources: list[Path],
    data_dir: Path,
    *,
    target_time: float | None,
    run_replay: bool = True,
    scratch: Path | None = None,
) -> PitrResult:
    """Prepare `data_dir` from `base` and the WAL, and (by default) replay it; see the module doc."""
    t0 = time.monotonic()
    result = PitrResult(base.id, target_time)
    work = Path(tempfile.mkdtemp(prefix="agent-pitr-", dir=scratch))
    server = PgServer(data_dir, run_dir=work)
    server.hand_over(work)
    prepare_data_dir(base, data_dir, server)
    staged = work / "wal"
    result.wal_files = stage_wal(wal_sources, staged)
    server.hand_over(staged)
    _write_recovery_settings(data_dir, staged, target_time)
    server.hand_over(data_dir)
    result.prepare_seconds = time.monotonic() - t0
    if not run_replay:
        result.rto_seconds = result.prepare_seconds
        return result
    t1 = time.monotonic()
    try:
        result.recovered_to = replay(server)
    finally:
        if server.log.exists():  # the server's own account of the replay, kept beside the directory
            shutil.copyfile(server.log, data_dir.parent / f"{data_dir.name}-recovery.log")
        shutil.rmtree(work, ignore_errors=True)
    result.replay_seconds = time.monotonic() - t1
    result.rto_seconds = time.monotonic() - t0
    return result


# ---------------------------------------------------------------------------------------------
# command line


def register(subparsers: Any) -> None:
    """Add `basebackup`, `wal-receive` and `pitr-restore` to `python -m agent_runtime`."""
    from .recovery import _cli, _common

    p = subparsers.add_parser("basebackup", help="pg_basebackup of a source with wal_archiving, then retention")
    _common(p)
    p.set_defaults(func=_cli(_cmd_basebackup))

    p = subparsers.add_parser("wal-receive", help="stream a source's WAL (pg_receivewal) until SIGTERM")
    _common(p)
    p.add_argument("--wal-dir", required=True, help="where the WAL is received (the receiver's volume)")
    p.add_argument("--heartbeat", help="file touched each second while streaming (a liveness probe reads it)")
    p.set_defaults(func=_cli(_cmd_wal_receive))

    p = subparsers.add_parser("pitr-restore", help="base backup + WAL, replayed to a time or to the end")
    _common(p)
    p.add_argument("--data-dir", help="new (or empty) data directory to restore into")
    p.add_argument("--drill", action="store_true",
                   help="restore into a scratch directory, replay, report RTO/RPO against backup.drill's "
                   "targets (exit 1 if missed), then delete it")
    p.add_argument("--wal-dir", action="append", default=[],
                   help="archived WAL to replay (repeatable; default: the s3 repository of the source)")
    p.add_argument("--target-time", help="ISO 8601 with a zone, or Unix seconds (default: the end of the archive)")
    p.add_argument("--no-replay", action="store_true", help="prepare the directory only; the server replays on start")
    p.set_defaults(func=_cli(_cmd_pitr_restore))


def _setup(args: argparse.Namespace) -> tuple[BackupConfig, BackupSource, BackupStore, ResticRepository | None]:
    from .recovery import _setup as setup_common

    config, store, sources, remote = setup_common(args)
    if len(sources) != 1:
        raise ConfigError(f"{args.command} needs exactly one --source")
    source = sources[0]
    if source.kind != "postgres" or not source.wal_archiving.enabled:
        raise ConfigError(f"{args.config}: source {source.name!r} does not have wal_archiving.enabled")
    return config, source, BackupStore(store.root / BASE_DIR), remote


def _log(msg: str, **fields: Any) -> None:
    from .recovery import _log as log_line

    log_line(msg, **fields)


def _conn(source: BackupSource) -> PgConn:
    assert source.host and source.user and source.database
    return PgConn(source.host, source.port, source.user, source.database)


def _cmd_basebackup(args: argparse.Namespace) -> int:
    config, source, bases, remote = _setup(args)
    try:
        backup = base_backup(_conn(source), bases, source.name, compression_level=config.compression_level)
        keep = source.wal_archiving.base_retention_count
        if remote is not None:
            remote.ensure()
            # The receiver reads which WAL the oldest kept base backup still needs from this tag.
            remote.push(backup, tag=BASE_TAG, extra_tags={"start": backup.manifest["pitr"]["start_segment"]})
            removed = remote.apply_retention(source.name, keep, None, tag=BASE_TAG)
        else:
            removed = bases.apply_retention(source.name, keep)
    except (RecoveryError, OSError) as exc:
        _log("base backup failed", source=source.name, error=str(exc))
        return EXIT_FAILED
    _log("base backup complete", source=source.name, backup=backup.id, removed=removed,
         bytes=sum(f["size"] for f in backup.manifest["files"]), **backup.manifest["pitr"])
    return EXIT_OK


def _cmd_wal_receive(args: argparse.Namespace) -> int:
    config, source, _, remote = _setup(args)
    wal_remote = None
    if remote is not None:
        wal_remote = wal_repository(lambda **kw: ResticRepository(config.target, **kw), config.target.prefix, source.name)
    receiver = WalReceiver(
        _conn(source), Path(args.wal_dir), source.name, remote=wal_remote, bases=remote,
        push_interval=source.wal_archiving.push_interval_seconds,
        on_push=lambda at: _log("WAL pushed", source=source.name, at=round(at, 3)),
        heartbeat=Path(args.heartbeat) if args.heartbeat else None,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        receiver.run(stop)
    except RecoveryError as exc:
        _log("WAL receiver failed", source=source.name, error=str(exc))
        return EXIT_FAILED
    return EXIT_OK


def _cmd_pitr_restore(args: argparse.Namespace) -> int:
    config, source, bases, remote = _setup(args)
    if bool(args.data_dir) == bool(args.drill):
        raise ConfigError("pitr-restore needs exactly one of --data-dir or --drill")
    if args.drill and args.no_replay:
        raise ConfigError("--drill replays; it cannot be combined with --no-replay")
    target_time = parse_target_time(args.target_time) if args.target_time else None
    t0 = time.monotonic()
    staging = Path(args._staging) if getattr(args, "_staging", None) else Path(tempfile.mkdtemp(prefix="agent-pitr-wal-"))
    # The server replaying the WAL (the postgres user) reads it from here: passable, not listable.
    staging.chmod(0o711)
    try:
        if remote is not None:
            snaps = remote.snapshots(source.name, BASE_TAG)
            choice = choose_base([_snapshot_as_backup(s) for s in snaps], target_time)
            base = remote.fetch(source.name, choice.id, bases, tag=BASE_TAG)
        else:
            base = choose_base(bases.backups(source.name), target_time)
        if base.manifest["source"].get("kind") != BASE_KIND or sorted(f["name"] for f in base.manifest["files"]) != sorted(BASE_FILES):
            raise RecoveryError(f"backup {base.id} is not a base backup")
        verified = bases.verify_files(base)
        if not verified.ok:
            _log("pitr restore refused", source=source.name, backup=base.id, problems=verified.problems)
            return EXIT_INVALID
        wal_sources = [Path(d) for d in args.wal_dir]
        if not wal_sources:
            if remote is None:
                raise ConfigError("pitr-restore of a pvc target needs --wal-dir (the receiver's volume)")
            fetched = staging / "wal-fetched"
            wal_remote = wal_repository(lambda **kw: ResticRepository(config.target, **kw), config.target.prefix, source.name)
            if wal_remote.restore_latest(source.name, WAL_TAG, fetched) is None:
                _log("pitr restore: no archived WAL in the store; replaying the base backup's own WAL only", source=source.name)
            wal_sources = [fetched]
        # A drill's scratch directory lives in staging, which goes when the command ends.
        data_dir = staging / "drill-data" if args.drill else Path(args.data_dir)
        result = pitr_restore(base, wal_sources, data_dir, target_time=target_time,
                              run_replay=not args.no_replay, scratch=staging)
    except LookupError as exc:
        _log("pitr restore refused", source=source.name, error=str(exc))
        return EXIT_INVALID
    except TargetNotEmpty as exc:
        _log("pitr restore refused", source=source.name, error=str(exc))
        return EXIT_NOT_EMPTY
    except (BaseBackupInvalid, UnsafeArchive) as exc:
        _log("pitr restore refused", source=source.name, error=str(exc))
        return EXIT_INVALID
    except (RecoveryError, OSError) as exc:
        _log("pitr restore failed", source=source.name, error=str(exc))
        return EXIT_FAILED
    finally:
        if not getattr(args, "_staging", None):
            shutil.rmtree(staging, ignore_errors=True)
    result.rto_seconds = time.monotonic() - t0  # the download from the store is part of the time to recover
    report = result.as_dict()
    # The age of the newest transaction restored (on an idle database, how long it has been idle).
    rpo = max(0.0, time.time() - result.recovered_to) if result.recovered_to is not None else None
    report["rpo_seconds"] = round(rpo, 3) if rpo is not None else None
    if not args.drill:
        print(json.dumps(report))
        return EXIT_OK
    rto_target, rpo_target = config.drill.rto_target_seconds, config.drill.rpo_target_seconds
    report.update(drill=True, rto_target_seconds=rto_target, rpo_target_seconds=rpo_target)
    report["ok"] = result.rto_seconds <= rto_target and rpo is not None and rpo <= rpo_target
    print(json.dumps(report))
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _snapshot_as_backup(snap: Any) -> Backup:
    """A base backup listed in the store, timed by its snapshot (taken right after it finished)."""
    from .recovery_s3 import _epoch

    return Backup(Path(snap.backup_id), {"snapshot_at": _epoch(snap.time), "source": {"kind": BASE_KIND}})
