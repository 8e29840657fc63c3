"""Files sources (a directory on a volume, as tar.gz) and the store's atomicity and retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_runtime.config import BackupSource
from agent_runtime.recovery import BackupInvalid, backup_source, drill, restore_backup, verify_backup
from agent_runtime.recovery_sources import RecoveryError, tree_checksums
from agent_runtime.recovery_store import BackupStore


def make_tree(root: Path) -> Path:
    (root / "conversations" / "2026").mkdir(parents=True)
    for i in range(50):
        (root / "conversations" / "2026" / f"c{i}.json").write_text(json.dumps({"i": i, "text": "hello " * i}))
    (root / "model.bin").write_bytes(os.urandom(300_000))
    (root / "empty").write_bytes(b"")
    (root / "latest").symlink_to("conversations/2026/c49.json")
    (root / "emptydir").mkdir()
    return root


def files_source(root: Path) -> BackupSource:
    return BackupSource(name="docs", kind="files", claim_name="docs-pvc", mount_path=str(root))


def test_files_backup_restore_and_drill(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "volume")
    store = BackupStore(tmp_path / "backups")
    backup = backup_source(store, files_source(root), compression_level=6)
    entries = backup.manifest["tree"]["entries"]
    assert entries["model.bin"]["size"] == 300_000
    assert entries["latest"] == {"link": "conversations/2026/c49.json"}
    assert entries == tree_checksums(root)
    assert verify_backup(store, backup).ok

    target = tmp_path / "restore-here"
    restore_backup(store, backup, target_dir=target)
    assert tree_checksums(target) == tree_checksums(root)
    assert (target / "emptydir").is_dir()
    with pytest.raises(RecoveryError, match="not empty"):
        restore_backup(store, backup, target_dir=target)
    (target / "model.bin").write_bytes(b"changed")
    (target / "stray").write_text("x")
    restore_backup(store, backup, target_dir=target, clean=True)
    assert tree_checksums(target) == tree_checksums(root)

    report = drill(store, [files_source(root)], rto_target_seconds=60, rpo_target_seconds=3600)
    assert report.ok, report.as_dict()


def test_corrupted_archive_is_refused(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "volume")
    store = BackupStore(tmp_path / "backups")
    backup = backup_source(store, files_source(root), compression_level=1)
    archive = backup.file("files.tar.gz")
    data = bytearray(archive.read_bytes())
    data[len(data) // 3] ^= 0x01
    archive.write_bytes(bytes(data))
    result = verify_backup(store, backup)
    assert not result.ok and "corrupted" in result.problems[0]
    target = tmp_path / "target"
    with pytest.raises(BackupInvalid):
        restore_backup(store, backup, target_dir=target)
    assert not target.exists()


def test_retention_keeps_the_newest_complete_and_others_in_progress(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "volume")
    store = BackupStore(tmp_path / "backups")
    source = files_source(root)
    ids = [backup_source(store, source, compression_level=1).id for _ in range(5)]
    # Another process's backup in progress (fresh heartbeat), and an interrupted one long dead.
    running = store.begin("docs")
    dead = store.begin("docs")
    dead._stop.set()  # its process died: no more heartbeats, the directory stays as it was
    old = time.time() - 3 * 86400
    for p in (dead.dir, *dead.dir.iterdir()):
        os.utime(p, (old, old))
    removed = store.apply_retention("docs", keep=3)
    assert sorted(removed) == sorted(ids[:2] + [dead.dir.name])
    assert [b.id for b in store.backups("docs")] == ids[:1:-1]  # newest first
    assert store.partials("docs") == [running.dir]
    # keep=1 never deletes the newest; keep=0 is refused.
    store.apply_retention("docs", keep=1)
    assert [b.id for b in store.backups("docs")] == [ids[-1]]
    with pytest.raises(ValueError):
        store.apply_retention("docs", keep=0)
    # The running backup completes later and becomes the newest.
    assert running.dir.exists()
    running.abort()


def test_a_failed_backup_leaves_nothing(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "backups")
    with pytest.raises(RecoveryError):
        backup_source(store, files_source(tmp_path / "missing"))
    assert store.backups("docs") == [] and store.partials("docs") == []


def test_only_a_renamed_directory_with_a_manifest_counts(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "volume")
    store = BackupStore(tmp_path / "backups")
    backup = backup_source(store, files_source(root), compression_level=1)
    # A directory named like a backup but without its manifest (as if copied half-way) is ignored.
    fake = backup.path.with_name("20990101T000000.000000Z-abcdef")
    fake.mkdir()
    (fake / "files.tar.gz").write_bytes(backup.file("files.tar.gz").read_bytes())
    assert [b.id for b in store.backups("docs")] == [backup.id]
    with pytest.raises(LookupError, match="not complete"):
        store.get("docs", fake.name)


def test_cli_backup_of_files_source_with_textfile(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "volume")
    config = tmp_path / "backup.json"
    config.write_text(
        json.dumps(
            {
                "backup": {
                    "enabled": True,
                    "retention_count": 2,
                    "sources": [{"name": "docs", "kind": "files", "claim_name": "docs-pvc", "path": "/conversations"}],
                    "target": {"mount_path": str(tmp_path / "backups")},
                }
            }
        )
    )
    prom = tmp_path / "backup.prom"
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, "-m", "agent_runtime.recovery", "backup", "--config", str(config),
             "--files-root", str(root), "--textfile", str(prom)],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
    backups = BackupStore(tmp_path / "backups").backups("docs")
    assert len(backups) == 2
    assert set(backups[0].manifest["tree"]["entries"]) == {f"2026/c{i}.json" for i in range(50)}
    assert 'agent_backup_last_success_timestamp_seconds{source="docs"}' in prom.read_text()
