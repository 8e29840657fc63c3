"""Backups off the cluster: a restic repository in an S3-compatible bucket, encrypted client-side.

Why restic (over pgBackRest and WAL-G): its repository format is documented and versioned, every
blob is encrypted and authenticated on the client (AES-256-CTR + Poly1305-AES, the key wrapped
by scrypt from a password), it talks to any S3-compatible store, deduplicates consecutive dumps,
and `forget`/`prune` apply retention in the store itself; it is a Debian package and a single
static binary in the runtime image. pgBackRest is PostgreSQL-only and wants its own config and
stanza per server; WAL-G is not packaged here. Both stay candidates for WAL archiving (PITR).

A backup is made exactly as for a volume (`recovery_store`, with its manifest and checksums) in
a local staging directory, verified there, then stored as one restic snapshot tagged
`agent-platform`, `source=<name>` and `backup=<id>`. Verify, restore and drill fetch a snapshot
back into staging and run the same verification, so a backup in S3 is held to the same standard.

Reads (listing, downloading) take no lock (`--no-lock`): a pod that died mid-backup leaves its
lock behind for 30 minutes (restic calls a lock stale only then, or when its PID is gone on the
same host), and a restore after a disaster must not wait for that. The repository is
append-only apart from `forget --prune`, which a concurrent read can at worst fail against.

Secrets never appear in config: the bucket's credentials come from the Secret named by
`target.credentials_secret` (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the repository
password from `target.encryption_secret` (key RESTIC_PASSWORD), both as environment variables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .config import BackupTarget
from .recovery_sources import RecoveryError
from .recovery_store import MANIFEST, Backup, BackupStore

__all__ = ["REQUIRED_ENV", "ResticRepository", "Snapshot"]

TAG = "agent-platform"
REQUIRED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RESTIC_PASSWORD")


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: str
    source: str
    backup_id: str
    tags: dict[str, str] | None = None


def _restic() -> str:
    found = shutil.which("restic")
    if not found:
        raise RecoveryError("`restic` not found: install the Debian package `restic` (tools/apt-packages.txt)")
    return found


class ResticRepository:
    """The restic repository at `s3:<endpoint>/<bucket>/<prefix>`."""

    def __init__(self, target: BackupTarget, env: dict[str, str] | None = None, *, prefix: str | None = None) -> None:
        assert target.endpoint and target.bucket
        path = (prefix or target.prefix).strip("/")
        self.url = f"s3:{target.endpoint.rstrip('/')}/{target.bucket}/{path}"
        base = dict(os.environ if env is None else env)
        missing = [k for k in REQUIRED_ENV if not base.get(k)]
        if missing:
            raise RecoveryError(
                f"S3 target needs {', '.join(missing)} in the environment (from the Secrets named by "
                "backup.target.credentials_secret and backup.target.encryption_secret)"
            )
        self.env = {**base, "RESTIC_REPOSITORY": self.url, "RESTIC_CACHE_DIR": base.get("RESTIC_CACHE_DIR", "/tmp/restic-cache")}
        if target.region:
            self.env["AWS_DEFAULT_REGION"] = target.region

    def _run(self, *args: str, cwd: Path | None = None, what: str) -> str:
        result = subprocess.run([_restic(), *args], capture_output=True, text=True, env=self.env, cwd=cwd)
        if result.returncode != 0:
            err = result.stderr.strip()
            if "wrong password" in err:
                err = "wrong repository password (RESTIC_PASSWORD from backup.target.encryption_secret)"
            else:  # restic never prints the password; this is a second line of defence
                err = err.replace(self.env["RESTIC_PASSWORD"], "***")
            raise RecoveryError(f"{what} in {self.url} failed: {err[-800:]}")
        return result.stdout

    def ensure(self) -> None:
        """Initialise the repository (and, through restic, the bucket) on first use."""
        probe = subprocess.run([_restic(), "cat", "config"], capture_output=True, text=True, env=self.env)
        if probe.returncode == 0:
            return
        if "wrong password" in probe.stderr:
            raise RecoveryError(f"{self.url}: wrong repository password (backup.target.encryption_secret)")
        self._run("init", what="creating the repository")

    def snapshots(self, source: str, tag: str = TAG) -> list[Snapshot]:
        """Snapshots of one source carrying `tag` (dumps: TAG), newest first."""
        out = json.loads(self._run("--no-lock", "snapshots", "--json", "--tag", f"{tag},source={source}", what="listing") or "[]")
        snaps = []
        for s in out or []:
            tags = dict(t.split("=", 1) for t in s.get("tags", []) if "=" in t)
            snaps.append(Snapshot(s["id"], s["time"], tags.get("source", ""), tags.get("backup", ""), tags))
        snaps.sort(key=lambda s: (s.time, s.backup_id), reverse=True)
        return snaps

    def push(self, backup: Backup, tag: str = TAG, extra_tags: dict[str, str] | None = None) -> None:
        """Store a complete local backup as one snapshot (files relative to its directory)."""
        extra = "".join(f",{k}={v}" for k, v in (extra_tags or {}).items())
        self._run(
            "backup", "--host", TAG, "--tag", f"{tag},source={backup.source},backup={backup.id}{extra}", ".",
            cwd=backup.path, what=f"uploading backup {backup.id}",
        )

    def push_dir(self, path: Path, source: str, tag: str) -> None:
        """Store a directory's files (relative paths) as one snapshot tagged `tag` and `source`."""
        self._run("backup", "--host", TAG, "--tag", f"{tag},source={source}", ".", cwd=path,
                  what=f"uploading {tag} of {source}")

    def restore_latest(self, source: str, tag: str, dest: Path) -> Snapshot | None:
        """Download the newest `tag` snapshot of `source` into `dest`; None if there is none."""
        snaps = self.snapshots(source, tag)
        if not snaps:
            return None
        self._run("--no-lock", "restore", snaps[0].id, "--target", str(dest), what=f"downloading {tag} of {source}")
        return snaps[0]

    def keep_last(self, source: str, tag: str, keep: int, *, prune: bool) -> int:
        """Forget all but the newest `keep` `tag` snapshots of `source` (pruning the data if asked)."""
        doomed = self.snapshots(source, tag)[keep:]
        if doomed:
            self._run("forget", *(["--prune"] if prune else []), *[s.id for s in doomed], what="forgetting")
        return len(doomed)

    def fetch(self, source: str, backup_id: str, staging: BackupStore, tag: str = TAG) -> Backup:
        """Download one backup (`latest` or an id) into `staging` and return it there."""
        snaps = self.snapshots(source, tag)
        if not snaps:
            raise LookupError(f"no backup of {source!r} in {self.url}")
        snap = snaps[0] if backup_id == "latest" else next((s for s in snaps if s.backup_id == backup_id), None)
        if snap is None:
            raise LookupError(f"no backup {backup_id!r} of {source!r} in {self.url}")
        # The tag names a directory here: a hostile repository must not place it anywhere else.
        if not re.fullmatch(r"[0-9A-Za-z][0-9A-Za-z.\-]{0,80}", snap.backup_id):
            raise RecoveryError(f"snapshot {snap.id[:8]} of {source!r} has an invalid backup tag {snap.backup_id!r}")
        partial = staging.begin(source)
        download = partial.dir / ".download"
        try:
            self._run("--no-lock", "restore", snap.id, "--target", str(download), what=f"downloading backup {snap.backup_id}")
            manifests = list(download.rglob(MANIFEST))
            if len(manifests) != 1:
                raise RecoveryError(f"snapshot {snap.id} of {source!r} holds {len(manifests)} manifests, not one")
            final = staging.source_dir(source) / snap.backup_id
            os.rename(manifests[0].parent, final)
        finally:
            partial.abort()
        return Backup(final, json.loads((final / MANIFEST).read_text()))

    def apply_retention(
        self, source: str, keep: int, max_age_days: float | None, *, now: float | None = None, tag: str = TAG
    ) -> list[str]:
        """Forget all but the newest `keep` snapshots, and any older than `max_age_days` (never
        the newest); then prune, so the data is gone from the bucket, not just unlisted."""
        snaps = self.snapshots(source, tag)
        doomed = snaps[keep:]
        if max_age_days is not None:
            cutoff = (time.time() if now is None else now) - max_age_days * 86400
            doomed += [s for s in snaps[1:keep] if _epoch(s.time) < cutoff]
        if not doomed:
            return []
        self._run("forget", "--prune", *[s.id for s in doomed], what="applying retention")
        return [s.backup_id for s in doomed]


def _epoch(stamp: str) -> float:
    """restic's RFC 3339 times carry nanoseconds, which datetime.fromisoformat refuses."""
    from datetime import datetime

    plain = re.sub(r"\.\d+", "", stamp.strip())
    if plain.endswith("Z"):
        plain = plain[:-1] + "+00:00"
    return datetime.fromisoformat(plain).timestamp()
