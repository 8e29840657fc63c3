"""Backups on a directory (the backup PersistentVolumeClaim's mount): layout, atomicity, retention.

Layout, one directory per backup:

    <root>/<source>/<id>/manifest.json     complete: written last, then the directory renamed
    <root>/<source>/<id>/<data files>
    <root>/<source>/.partial-<id>/         in progress (or interrupted): never read as a backup
    <root>/<source>/.deleting-<id>/        being removed by retention

A backup is written inside `.partial-<id>/`: data files are streamed with their SHA-256 computed
on the way, fsynced; then the manifest (sizes, checksums, source, timestamps) is written to a
temporary name, fsynced and renamed; then the directory is renamed to `<id>` and its parent
fsynced. So whatever instant a backup is interrupted at, nothing looks complete that is not:
a complete backup is exactly a directory named like an id that holds a manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "MANIFEST",
    "FORMAT",
    "Backup",
    "BackupStore",
    "PartialBackup",
    "VerifyResult",
    "atomic_write",
    "fsync_dir",
    "sha256_file",
]

MANIFEST = "manifest.json"
FORMAT = "agent-platform-backup/1"
PARTIAL_PREFIX = ".partial-"
DELETING_PREFIX = ".deleting-"
OWNER = "owner.json"
_ID = re.compile(r"^\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}$")
CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, rename over `path`, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def new_backup_id(now: float | None = None) -> str:
    ts = datetime.fromtimestamp(time.time() if now is None else now, timezone.utc)
    return ts.strftime("%Y%m%dT%H%M%S.%fZ") + "-" + secrets.token_hex(3)


class HashingWriter:
    """A file that hashes and counts what is written to it; fsynced on close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def entry(self) -> dict[str, Any]:
        return {"name": self.path.name, "size": self.size, "sha256": self.hash.hexdigest()}


@dataclass
class Backup:
    """A complete backup: its directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def source(self) -> str:
        return self.manifest["source"]["name"]

    @property
    def snapshot_at(self) -> float:
        """The instant the data is consistent as of: the recovery point."""
        return float(self.manifest["snapshot_at"])

    def file(self, name: str) -> Path:
        return self.path / name


@dataclass
class VerifyResult:
    backup_id: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class PartialBackup:
    """A backup being written. `commit(manifest)` makes it complete; `abort()` removes it."""

    def __init__(self, store: BackupStore, source: str, backup_id: str, heartbeat_seconds: float = 30.0) -> None:
        self.store = store
        self.source = source
        self.id = backup_id
        self.dir = store.source_dir(source) / f"{PARTIAL_PREFIX}{backup_id}"
        self.dir.mkdir(parents=True)
        self._owner = self.dir / OWNER
        self._owner.write_text(
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started_at": time.time()})
        )
        self.files: list[dict[str, Any]] = []
        self._stop = threading.Event()
        # The heartbeat (owner.json's mtime) tells retention this partial is alive, not abandoned.
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_seconds,), daemon=True)
        self._beat.start()

    def _heartbeat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self._owner)
            except FileNotFoundError:
                return

    def open(self, name: str) -> HashingWriter:
        if "/" in name or name in (MANIFEST, OWNER) or name.startswith("."):
            raise ValueError(f"bad backup file name {name!r}")
        return HashingWriter(self.dir / name)

    def add(self, writer: HashingWriter) -> None:
        writer.close()
        self.files.append(writer.entry())

    def adopt(self, path: Path) -> None:
        """Move a finished file (written by another program) into the backup, hashed and fsynced."""
        writer = self.open(path.name)
        writer.file.close()
        os.replace(path, writer.path)
        digest, size = sha256_file(writer.path)
        with open(writer.path, "rb") as f:
            os.fsync(f.fileno())
        self.files.append({"name": writer.path.name, "size": size, "sha256": digest})

    def commit(self, manifest: dict[str, Any]) -> Backup:
        self._stop.set()
        manifest = {"format": FORMAT, "id": self.id, **manifest, "files": self.files}
        self._owner.unlink(missing_ok=True)
        atomic_write(self.dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        final = self.store.source_dir(self.source) / self.id
        os.rename(self.dir, final)
        fsync_dir(final.parent)
        return Backup(final, manifest)

    def abort(self) -> None:
        self._stop.set()
        shutil.rmtree(self.dir, ignore_errors=True)


class BackupStore:
    """Backups of every source under one root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def source_dir(self, source: str) -> Path:
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", source):
            raise ValueError(f"bad source name {source!r}")
        return self.root / source

    def begin(self, source: str, *, now: float | None = None) -> PartialBackup:
        self.source_dir(source).mkdir(parents=True, exist_ok=True)
        return PartialBackup(self, source, new_backup_id(now))

    def backups(self, source: str) -> list[Backup]:
        """Complete backups of a source, newest first (by recovery point, then id)."""
        d = self.source_dir(source)
        out = []
        if not d.is_dir():
            return out
        for child in d.iterdir():
            if not _ID.match(child.name) or not child.is_dir():
                continue
            try:
                manifest = json.loads((child / MANIFEST).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue  # not complete; verify reports it if asked by id
            out.append(Backup(child, manifest))
        out.sort(key=lambda b: (b.manifest.get("snapshot_at", 0), b.id), reverse=True)
        return out

    def partials(self, source: str) -> list[Path]:
        d = self.source_dir(source)
        return sorted(p for p in d.iterdir() if p.name.startswith(PARTIAL_PREFIX)) if d.is_dir() else []

    def get(self, source: str, backup_id: str = "latest") -> Backup:
        backups = self.backups(source)
        if backup_id == "latest":
            if not backups:
                raise LookupError(f"no complete backup of {source!r} in {self.source_dir(source)}")
            return backups[0]
        for b in backups:
            if b.id == backup_id:
                return b
        path = self.source_dir(source) / backup_id
        if path.is_dir():
            raise LookupError(f"backup {backup_id} of {source!r} is not complete (no readable {MANIFEST})")
        raise LookupError(f"no backup {backup_id!r} of {source!r}")

    def verify_files(self, backup: Backup) -> VerifyResult:
        """Checksums and sizes of every file against the manifest."""
        result = VerifyResult(backup.id)
        m = backup.manifest
        if m.get("format") != FORMAT:
            result.problems.append(f"unknown manifest format {m.get('format')!r}")
            return result
        if not m.get("files"):
            result.problems.append("manifest lists no files")
        for entry in m.get("files", []):
            path = backup.file(entry["name"])
            if not path.is_file():
                result.problems.append(f"{entry['name']}: missing")
                continue
            digest, size = sha256_file(path)
            if size != entry["size"]:
                result.problems.append(f"{entry['name']}: size {size} != {entry['size']} in the manifest (truncated?)")
            elif digest != entry["sha256"]:
                result.problems.append(f"{entry['name']}: sha256 {digest[:12]}... != manifest (corrupted)")
        return result

    def apply_retention(self, source: str, keep: int, *, stale_partial_seconds: float = 86400.0) -> list[str]:
        """Delete all but the newest `keep` complete backups, and abandoned partials.

        A partial whose heartbeat is younger than `stale_partial_seconds` belongs to a backup
        that may still be running (here or in another pod): it is never touched.
        """
        if keep < 1:
            raise ValueError("retention must keep at least one backup")
        removed = []
        for b in self.backups(source)[keep:]:
            self._remove(b.path)
            removed.append(b.id)
        now = time.time()
        for p in self.partials(source):
            try:
                beat = max((p / OWNER).stat().st_mtime, p.stat().st_mtime)
            except FileNotFoundError:
                beat = p.stat().st_mtime if p.exists() else now
            if now - beat > stale_partial_seconds:
                self._remove(p)
                removed.append(p.name)
        return removed

    def _remove(self, path: Path) -> None:
        # Renamed first, so a deletion cut short never leaves something that looks complete.
        name = path.name.removeprefix(PARTIAL_PREFIX)
        doomed = path.with_name(f"{DELETING_PREFIX}{name}")
        os.rename(path, doomed)
        fsync_dir(path.parent)
        shutil.rmtree(doomed)

    def iter_sources(self) -> Iterator[str]:
        if self.root.is_dir():
            for p in sorted(self.root.iterdir()):
                if p.is_dir() and not p.name.startswith("."):
                    yield p.name
