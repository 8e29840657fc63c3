"""Backup, verify, restore and restore drills: `python -m agent_runtime backup|verify|restore|drill`.

- backup: each source (PostgreSQL via pg_dump custom format, or a directory as tar.gz) into the
  target directory (the backup PVC), atomically (`agent_runtime.recovery_store`), with a manifest
  of sizes, SHA-256 checksums, source and timestamps; then retention keeps the newest
  `retention_count` complete backups. Writes `agent_backup_last_success_timestamp_seconds`.
- verify: checksums and sizes against the manifest, then a full read of every byte (pg_restore
  decodes the whole dump; every tar member is held to the manifest). A corrupted, truncated or
  hostile backup fails here, and restore and drill verify first, so it is never restored.
- restore: into a target database (or directory); refuses an unverified backup, and refuses a
  target that already holds data unless `--replace <target>` repeats its name for that run.
  A restore that fails leaves the target as it was.
- drill: restores the newest backup of each source into a scratch database (directory) that it
  creates, marks and later drops itself (never one it did not create), checks
  row counts and content checksums (file checksums) against the manifest, measures RTO (time to
  restored and checked) and RPO (age of the newest restorable point), compares them with the
  targets, writes `agent_restore_drill_*` metrics to a textfile or a Pushgateway, and exits
  non-zero when anything was missed.

Exit codes (restore, verify, drill, backup):
  0 ok
  1 failed (a restore that failed changed nothing), or the drill missed its targets
  2 bad usage or config
  3 backup invalid, damaged or unsafe (a `../` or absolute member, an escaping symlink, a
    hardlink, a FIFO or device): refused, nothing written
  4 restore target not empty: refused, nothing written; the message names what it holds
The database password comes from PGPASSWORD (a Kubernetes Secret), never from the config.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import BackupConfig, BackupSource, ConfigError, load_json_config
from .metrics_signals import BACKUP_LAST_SUCCESS, DRILL_LAST_SUCCESS, DRILL_RPO, DRILL_RTO
from .recovery_files import (
    FILES_ARCHIVE,
    UnsafeArchive,
    backup_files,
    restore_files,
    tree_checksums,
    verify_files_archive,
)
from .recovery_sources import (
    DUMP_FILE,
    CreatedDatabase,
    PgConn,
    PsqlSession,
    RecoveryError,
    TargetNotEmpty,
    check_identifier,
    create_scratch_database,
    drop_created_database,
    dump_postgres,
    restore_postgres,
    table_stats,
    verify_dump,
)
from .recovery_s3 import ResticRepository
from .recovery_store import Backup, BackupStore, VerifyResult, atomic_write

__all__ = [
    "BackupInvalid",
    "DrillReport",
    "backup_source",
    "drill",
    "load_backup_config",
    "main",
    "register",
    "restore_backup",
    "verify_backup",
    "write_metrics",
]

log = logging.getLogger("agent_runtime.recovery")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INVALID, EXIT_NOT_EMPTY = 0, 1, 2, 3, 4


class BackupInvalid(RecoveryError):
    """The backup failed verification: it must not be restored."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(f"backup {result.backup_id} failed verification: " + "; ".join(result.problems))
        self.result = result


def _log(msg: str, **fields: Any) -> None:
    print(json.dumps({"ts": round(time.time(), 3), "msg": msg, **fields}), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# operations


def pg_conn(source: BackupSource, database: str | None = None) -> PgConn:
    assert source.host and source.user and source.database
    return PgConn(source.host, source.port, source.user, database or source.database)


def files_root(source: BackupSource, override: str | None = None) -> Path:
    mount = Path(override or source.mount_path or f"/sources/{source.name}")
    return mount / source.path.lstrip("/")


def backup_source(
    store: BackupStore, source: BackupSource, *, compression_level: int = 6, files_root_override: str | None = None
) -> Backup:
    """One complete backup of one source, or an exception and no complete-looking leftovers."""
    partial = store.begin(source.name)
    started = time.time()
    try:
        if source.kind == "postgres":
            part = dump_postgres(
                pg_conn(source), partial, compression_level=compression_level, checksums=source.table_checksums
            )
            origin = {"host": source.host, "port": source.port, "database": source.database}
        else:
            root = files_root(source, files_root_override)
            part = backup_files(root, partial, compression_level=compression_level)
            origin = {"claim_name": source.claim_name, "path": source.path}
        manifest = {
            "source": {"name": source.name, "kind": source.kind, **origin},
            "started_at": started,
            "finished_at": time.time(),
            "compression_level": compression_level,
            **part,
        }
        backup = partial.commit(manifest)
    except BaseException:
        partial.abort()
        raise
    return backup


def verify_backup(store: BackupStore, backup: Backup) -> VerifyResult:
    """Sizes and checksums, then a structural read: pg_restore --list, or the whole tar."""
    result = store.verify_files(backup)
    if not result.ok:
        return result
    kind = backup.manifest["source"]["kind"]
    if kind == "postgres":
        result.problems += verify_dump(backup.file(DUMP_FILE))
    else:
        result.problems += verify_files_archive(backup.file(FILES_ARCHIVE), backup.manifest["tree"]["entries"])
    return result


def restore_backup(
    store: BackupStore,
    backup: Backup,
    *,
    conn: PgConn | None = None,
    target_dir: Path | None = None,
    create: bool = False,
    replace: str | None = None,
) -> VerifyResult:
    """Verify, then restore; raises BackupInvalid (and restores nothing) if verification fails.

    A target that holds data raises TargetNotEmpty unless `replace` repeats its name (the
    database name, or the directory as given).
    """
    result = verify_backup(store, backup)
    if not result.ok:
        raise BackupInvalid(result)
    kind = backup.manifest["source"]["kind"]
    if kind == "postgres":
        if conn is None:
            raise RecoveryError("a postgres backup needs a target database")
        restore_postgres(conn, backup.file(DUMP_FILE), create=create, replace=replace, recovery_point=backup.snapshot_at)
    else:
        if target_dir is None:
            raise RecoveryError("a files backup needs a target directory")
        restore_files(backup.file(FILES_ARCHIVE), target_dir, replace=replace)
    return result


@dataclass
class SourceDrill:
    source: str
    backup_id: str | None = None
    restored: bool = False
    matches: bool = False
    rpo_seconds: float = math.inf
    problems: list[str] = field(default_factory=list)


@dataclass
class DrillReport:
    """What a drill measured and whether it met the targets."""

    started_at: float
    rto_seconds: float
    rpo_seconds: float
    rto_target_seconds: float
    rpo_target_seconds: float
    sources: list[SourceDrill]

    @property
    def restored(self) -> bool:
        return all(s.restored and s.matches for s in self.sources)

    @property
    def ok(self) -> bool:
        return self.restored and self.rto_seconds <= self.rto_target_seconds and self.rpo_seconds <= self.rpo_target_seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rto_seconds": round(self.rto_seconds, 3),
            "rpo_seconds": round(self.rpo_seconds, 3) if math.isfinite(self.rpo_seconds) else None,
            "rto_target_seconds": self.rto_target_seconds,
            "rpo_target_seconds": self.rpo_target_seconds,
            "sources": [
                {
                    "source": s.source,
                    "backup": s.backup_id,
                    "restored": s.restored,
                    "matches_manifest": s.matches,
                    "problems": s.problems,
                }
                for s in self.sources
            ],
        }


def _compare(kind: str, want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = []
    for key in sorted(set(want) | set(got)):
        if key not in got:
            problems.append(f"{kind} {key}: in the manifest, missing after restore")
        elif key not in want:
            problems.append(f"{kind} {key}: restored but not in the manifest")
        elif want[key] != got[key]:
            problems.append(f"{kind} {key}: manifest {want[key]} != restored {got[key]}")
    return problems


def drill(
    store: BackupStore,
    sources: Sequence[BackupSource],
    *,
    rto_target_seconds: float,
    rpo_target_seconds: float,
    keep_scratch: bool = False,
    scratch_server: tuple[str, int, str] | None = None,
    clock: Any = time.time,
) -> DrillReport:
    """Restore the newest backup of each source into scratch space and check it; measure RTO/RPO.

    PostgreSQL backups go into a new scratch database on `scratch_server` (host, port, user),
    such as a throwaway server beside the drill Job, or else on the source's own server.
    """
    started = clock()
    t0 = time.monotonic()
    results = []
    for source in sources:
        sd = SourceDrill(source.name)
        results.append(sd)
        try:
            backup = store.get(source.name)
        except LookupError as exc:
            sd.problems.append(str(exc))
            continue
        sd.backup_id = backup.id
        sd.rpo_seconds = max(0.0, started - backup.snapshot_at)
        scratch_dir: Path | None = None
        scratch_db: CreatedDatabase | None = None
        try:
            if source.kind == "postgres":
                server = scratch_server or (source.host, source.port, source.user)
                admin = PgConn(server[0], server[1], server[2], "postgres")
                # Verified before anything is created, so a bad backup leaves no scratch behind.
                verified = verify_backup(store, backup)
                if not verified.ok:
                    raise BackupInvalid(verified)
                scratch_db = create_scratch_database(admin, source.database or source.name, started)
                conn = PgConn(server[0], server[1], server[2], scratch_db.name)
                restore_backup(store, backup, conn=conn)
                session = PsqlSession(conn)
                try:
                    want = backup.manifest["postgres"]["tables"]
                    got = table_stats(session, checksums=any("checksum" in t for t in want.values()))
                finally:
                    session.close()
                sd.restored = True
                sd.problems += _compare("table", want, got)
            else:
                scratch_dir = Path(tempfile.mkdtemp(prefix=f"drill-{source.name}-"))
                restore_backup(store, backup, target_dir=scratch_dir / "restored")
                sd.restored = True
                sd.problems += _compare(
                    "file", backup.manifest["tree"]["entries"], tree_checksums(scratch_dir / "restored")
                )
            sd.matches = not sd.problems
        except (RecoveryError, OSError) as exc:
            sd.problems.append(str(exc))
        finally:
            if not keep_scratch:
                if scratch_db is not None:
                    try:
                        drop_created_database(scratch_db)
                    except RecoveryError as exc:
                        log.warning("could not drop scratch database %s: %s", scratch_db.name, exc)
                        sd.problems.append(f"scratch database {scratch_db.name} left behind: {exc}")
                if scratch_dir is not None:
                    shutil.rmtree(scratch_dir, ignore_errors=True)
            elif scratch_db is not None:
                _log("scratch database kept", source=source.name, database=scratch_db.name)
    rto = time.monotonic() - t0
    rpo = max((s.rpo_seconds for s in results), default=math.inf)
    return DrillReport(started, rto, rpo, rto_target_seconds, rpo_target_seconds, results)


# ---------------------------------------------------------------------------------------------
# metrics: a textfile for node-exporter's textfile collector, or a Pushgateway

_HELP = {
    BACKUP_LAST_SUCCESS: "Unix time of the newest complete backup of a source.",
    "agent_backup_size_bytes": "Size of the newest complete backup of a source.",
    "agent_backup_duration_seconds": "How long the newest complete backup of a source took.",
    DRILL_LAST_SUCCESS: "Unix time of the last restore drill that restored, verified and met its targets.",
    DRILL_RTO: "Time to restore and verify in the last restore drill.",
    DRILL_RPO: "Age of the newest restorable point in the last restore drill.",
    "agent_restore_drill_success": "1 if the last restore drill met its targets, else 0.",
    "agent_restore_drill_last_run_timestamp_seconds": "Unix time of the last restore drill, successful or not.",
}
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _format_labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"'.replace("\n", "\\n") for k, v in labels)
    return "{" + inner + "}"


def _read_textfile(path: Path) -> Series:
    from prometheus_client.parser import text_string_to_metric_families

    out: Series = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return out
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def write_metrics(
    series: Series, *, textfile: str | None = None, pushgateway: str | None = None, job: str = "agent-recovery",
    grouping_key: dict[str, str] | None = None,
) -> None:
    """Merge `series` into a textfile (atomically; other series kept) and/or push them (POST)."""
    if textfile:
        path = Path(textfile)
        merged = _read_textfile(path)
        merged.update(series)
        lines = []
        for name in sorted({n for n, _ in merged}):
            lines.append(f"# HELP {name} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {name} gauge")
            for (n, labels), value in sorted(merged.items()):
                if n == name:
                    lines.append(f"{name}{_format_labels(labels)} {value!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, ("\n".join(lines) + "\n").encode())
    if pushgateway:
        from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

        registry = CollectorRegistry()
        gauges: dict[str, Gauge] = {}
        for (name, labels), value in series.items():
            names = tuple(k for k, _ in labels)
            g = gauges.get(name) or gauges.setdefault(name, Gauge(name, _HELP.get(name, name), names, registry=registry))
            (g.labels(*[v for _, v in labels]) if names else g).set(value)
        # POST (pushadd): replaces only these metric names in the group, so a failed drill does
        # not erase the last success timestamp that an earlier drill pushed.
        pushadd_to_gateway(pushgateway, job=job, registry=registry, grouping_key=grouping_key or {}, timeout=30)


# ---------------------------------------------------------------------------------------------
# command line


def _backup_section(raw: Any) -> Any:
    # A BackupConfig on its own, or any document with it under "backup".
    return raw["backup"] if isinstance(raw, dict) and isinstance(raw.get("backup"), dict) else raw


def load_backup_config(path: str) -> BackupConfig:
    return load_json_config(path, BackupConfig, _backup_section)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="JSON file holding the BackupConfig (or a document with `backup`)")
    p.add_argument("--target-dir", help="where backups live (default: target.mount_path from the config)")
    p.add_argument("--source", action="append", default=[], help="source name (repeatable; default: all)")


def _metrics_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--textfile", help="write metrics to this Prometheus textfile (merged, atomic)")
    p.add_argument("--pushgateway", help="push metrics to this Pushgateway URL")


def register(subparsers: Any) -> None:
    """Add `backup`, `verify`, `restore` and `drill` to `python -m agent_runtime`."""
    p = subparsers.add_parser("backup", help="back up the configured sources, then apply retention")
    _common(p)
    _metrics_args(p)
    p.add_argument("--files-root", help="where a files source is mounted (default: its mount_path)")
    p.add_argument("--keep", type=int, help="complete backups to keep per source (default: retention_count)")
    p.set_defaults(func=_cli(_cmd_backup))

    p = subparsers.add_parser("verify", help="check backups against their manifests")
    _common(p)
    p.add_argument("--backup", default="latest", help="backup id, `latest` (default) or `all`")
    p.set_defaults(func=_cli(_cmd_verify))

    p = subparsers.add_parser("restore", help="verify a backup, then restore it")
    _common(p)
    p.add_argument("--backup", default="latest", help="backup id or `latest` (default)")
    p.add_argument("--target-database", help="postgres: database to restore into")
    p.add_argument("--target-host", help="postgres: server to restore into (default: the source's)")
    p.add_argument("--target-port", type=int)
    p.add_argument("--target-user")
    p.add_argument("--target-path", help="files: directory to restore into")
    p.add_argument("--create", action="store_true", help="create the target database if missing")
    p.add_argument(
        "--replace", metavar="TARGET",
        help="restore into a target that holds data: repeat the target database name (or --target-path) "
        "to confirm, for this run only; the objects in the backup are replaced",
    )
    # Gone: it replaced silently whatever the target held. Kept only to explain what replaces it.
    p.add_argument("--clean", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=_cli(_cmd_restore))

    p = subparsers.add_parser("drill", help="restore the newest backups into scratch space and measure RTO/RPO")
    _common(p)
    _metrics_args(p)
    p.add_argument("--rto-target", type=float, help="seconds (default: drill.rto_target_seconds)")
    p.add_argument("--rpo-target", type=float, help="seconds (default: drill.rpo_target_seconds)")
    p.add_argument("--keep-scratch", action="store_true", help="leave the scratch database/directory")
    p.add_argument("--scratch-host", help="postgres: restore into a scratch database on this server instead")
    p.add_argument("--scratch-port", type=int, default=5432)
    p.add_argument("--scratch-user", default="postgres")
    p.set_defaults(func=_cli(_cmd_drill))

    from .recovery_pitr import register as register_pitr

    register_pitr(subparsers)


def _cli(func: Any) -> Any:
    """A bad config or usage is exit 2 with one clear line, also under `python -m agent_runtime`."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE
        finally:
            staging = getattr(args, "_staging", None)
            if staging:
                shutil.rmtree(staging, ignore_errors=True)

    run.__name__ = func.__name__
    return run


def _setup(
    args: argparse.Namespace,
) -> tuple[BackupConfig, BackupStore, list[BackupSource], ResticRepository | None]:
    """The config, the local store (the volume, or a staging directory for s3), the sources, the remote."""
    config = load_backup_config(args.config)
    remote = None
    if config.target.kind == "s3":
        try:
            remote = ResticRepository(config.target)
        except RecoveryError as exc:
            raise ConfigError(f"{args.config}: {exc}") from None
        # Staging for one run only: made here, removed by _cli when the command ends.
        args._staging = tempfile.mkdtemp(prefix="agent-backup-staging-", dir=args.target_dir)
        store = BackupStore(args._staging)
    else:
        store = BackupStore(args.target_dir or config.target.mount_path)
    by_name = {s.name: s for s in config.sources}
    unknown = [n for n in args.source if n not in by_name]
    if unknown:
        raise ConfigError(f"{args.config}: no source named {', '.join(unknown)} (have: {', '.join(by_name) or 'none'})")
    sources = [by_name[n] for n in args.source] if args.source else list(config.sources)
    if not sources:
        raise ConfigError(f"{args.config}: backup.sources is empty")
    return config, store, sources, remote


def _get(store: BackupStore, remote: ResticRepository | None, source: str, backup_id: str = "latest") -> Backup:
    """A backup from the volume, or fetched from the repository into staging (LookupError if none)."""
    return remote.fetch(source, backup_id, store) if remote is not None else store.get(source, backup_id)


def _grouping(key: dict[str, str]) -> dict[str, str]:
    """The Pushgateway group: the namespace too (the downward API's POD_NAMESPACE), so two stacks
    sharing one Pushgateway never overwrite each other's series."""
    namespace = os.environ.get("POD_NAMESPACE")
    return {**({"namespace": namespace} if namespace else {}), **key}


def _export(series: Series, *, textfile: str | None, pushgateway: str | None, job: str,
            grouping_key: dict[str, str]) -> bool:
    """write_metrics, logged; False if the metrics could not be delivered (the alert would go blind)."""
    if not textfile and not pushgateway:
        _log("metrics not exported: neither --textfile nor --pushgateway (backup.pushgateway_url) is set", job=job)
        return True
    try:
        write_metrics(series, textfile=textfile, pushgateway=pushgateway, job=job, grouping_key=grouping_key)
    except OSError as exc:  # URLError and HTTPError are OSErrors
        _log("metrics export failed", job=job, textfile=textfile, pushgateway=pushgateway, error=str(exc))
        return False
    return True


def _cmd_backup(args: argparse.Namespace) -> int:
    config, store, sources, remote = _setup(args)
    keep = args.keep or config.retention_count
    failed = 0
    for source in sources:
        t0 = time.monotonic()
        try:
            backup = backup_source(
                store, source, compression_level=config.compression_level, files_root_override=args.files_root
            )
            if remote is not None:
                # Read back in full before it is sent, so the store never holds an unverified backup.
                verified = verify_backup(store, backup)
                if not verified.ok:
                    raise BackupInvalid(verified)
                remote.ensure()
                remote.push(backup)
                removed = remote.apply_retention(source.name, keep, config.retention_max_age_days)
            else:
                removed = store.apply_retention(source.name, keep)
        except (RecoveryError, OSError) as exc:
            failed += 1
            _log("backup failed", source=source.name, error=str(exc))
            continue
        size = sum(f["size"] for f in backup.manifest["files"])
        seconds = time.monotonic() - t0
        _log(
            "backup complete",
            source=source.name,
            backup=backup.id,
            bytes=size,
            source_bytes=backup.manifest.get("source_bytes"),
            seconds=round(seconds, 3),
            removed=removed,
        )
        labels = (("source", source.name),)
        pushed = _export(
            {
                (BACKUP_LAST_SUCCESS, labels): backup.manifest["finished_at"],
                ("agent_backup_size_bytes", labels): float(size),
                ("agent_backup_duration_seconds", labels): seconds,
            },
            textfile=args.textfile,
            pushgateway=args.pushgateway or config.pushgateway_url,
            job="agent-backup",
            grouping_key=_grouping({"source": source.name}),
        )
        failed += not pushed
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    _, store, sources, remote = _setup(args)
    bad = 0
    for source in sources:
        try:
            if args.backup != "all":
                backups = [_get(store, remote, source.name, args.backup)]
            elif remote is not None:
                backups = [remote.fetch(source.name, s.backup_id, store) for s in remote.snapshots(source.name)]
            else:
                backups = store.backups(source.name)
        except (LookupError, RecoveryError) as exc:
            _log("verify failed", source=source.name, error=str(exc))
            bad += 1
            continue
        if not backups:
            _log("verify failed", source=source.name, error="no complete backup")
            bad += 1
        for b in backups:
            result = verify_backup(store, b)
            _log("verified" if result.ok else "verify failed", source=source.name, backup=b.id, problems=result.problems)
            bad += not result.ok
    return EXIT_INVALID if bad else EXIT_OK


def _cmd_restore(args: argparse.Namespace) -> int:
    _, store, sources, remote = _setup(args)
    if len(sources) != 1:
        raise ConfigError("restore needs exactly one --source")
    source = sources[0]
    if args.clean:
        raise ConfigError(
            "--clean is gone: a restore into a target that holds data now needs --replace <target>, "
            "naming the target database (or --target-path) for this run"
        )
    try:
        backup = _get(store, remote, source.name, args.backup)
    except LookupError as exc:
        _log("restore refused", source=source.name, error=str(exc))
        return EXIT_INVALID
    except RecoveryError as exc:
        _log("restore failed", source=source.name, error=str(exc))
        return EXIT_FAILED
    conn = None
    target_dir = None
    if source.kind == "postgres":
        if not args.target_database:
            raise ConfigError("restore of a postgres source needs --target-database")
        try:
            check_identifier(args.target_database, "--target-database")
        except RecoveryError as exc:
            raise ConfigError(str(exc)) from None
        conn = PgConn(
            args.target_host or source.host or "",
            args.target_port or source.port,
            args.target_user or source.user or "",
            args.target_database,
        )
    else:
        if not args.target_path:
            raise ConfigError("restore of a files source needs --target-path")
        target_dir = Path(args.target_path)
    t0 = time.monotonic()
    try:
        restore_backup(store, backup, conn=conn, target_dir=target_dir, create=args.create, replace=args.replace)
    except BackupInvalid as exc:
        _log("restore refused", source=source.name, backup=backup.id, problems=exc.result.problems)
        return EXIT_INVALID
    except UnsafeArchive as exc:
        _log("restore refused", source=source.name, backup=backup.id, problems=[str(exc)])
        return EXIT_INVALID
    except TargetNotEmpty as exc:
        _log("restore refused", source=source.name, backup=backup.id, error=str(exc))
        return EXIT_NOT_EMPTY
    except (RecoveryError, OSError) as exc:
        _log("restore failed", source=source.name, backup=backup.id, error=str(exc))
        return EXIT_FAILED
    _log("restored", source=source.name, backup=backup.id, seconds=round(time.monotonic() - t0, 3))
    return EXIT_OK


def _cmd_drill(args: argparse.Namespace) -> int:
    config, store, sources, remote = _setup(args)
    fetch_started = time.monotonic()
    if remote is not None:
        # Fetched into staging first; a source whose fetch fails has no backup, and the drill says so.
        for source in sources:
            try:
                remote.fetch(source.name, "latest", store)
            except (LookupError, RecoveryError) as exc:
                _log("drill fetch failed", source=source.name, error=str(exc))
    rto_target = args.rto_target or config.drill.rto_target_seconds
    rpo_target = args.rpo_target or config.drill.rpo_target_seconds
    report = drill(
        store,
        sources,
        rto_target_seconds=rto_target,
        rpo_target_seconds=rpo_target,
        keep_scratch=args.keep_scratch,
        scratch_server=(args.scratch_host, args.scratch_port, args.scratch_user) if args.scratch_host else None,
    )
    if remote is not None:
        # The download from the store is part of the time to recover.
        report.rto_seconds = time.monotonic() - fetch_started
    series: Series = {
        (DRILL_RTO, ()): report.rto_seconds,
        (DRILL_RPO, ()): report.rpo_seconds if math.isfinite(report.rpo_seconds) else float("inf"),
        ("agent_restore_drill_success", ()): 1.0 if report.ok else 0.0,
        ("agent_restore_drill_last_run_timestamp_seconds", ()): report.started_at,
    }
    if report.ok:
        series[(DRILL_LAST_SUCCESS, ())] = time.time()
    pushed = _export(
        series,
        textfile=args.textfile,
        pushgateway=args.pushgateway or config.pushgateway_url,
        job="agent-restore-drill",
        grouping_key=_grouping({}),
    )
    print(json.dumps(report.as_dict()))
    if not pushed:
        return EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_runtime.recovery", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
