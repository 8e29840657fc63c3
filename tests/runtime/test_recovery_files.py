"""Files sources (a directory on a volume, as tar.gz) and the store's atomicity and retention."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from agent_runtime.config import BackupSource
from agent_runtime.recovery import BackupInvalid, backup_source, drill, restore_backup, verify_backup
from agent_runtime.recovery_files import UnsafeArchive, restore_files, tree_checksums
from agent_runtime.recovery_sources import RecoveryError, TargetNotEmpty
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
    (target / "model.bin").write_bytes(b"changed")
    (target / "stray").write_text("x")
    before = tree_checksums(target)
    with pytest.raises(TargetNotEmpty, match=r"not empty \(5[0-9] file\(s\), newest modified .*--replace"):
        restore_backup(store, backup, target_dir=target)
    assert tree_checksums(target) == before
    with pytest.raises(TargetNotEmpty):  # confirming some other path is no confirmation
        restore_backup(store, backup, target_dir=target, replace=str(tmp_path))
    restore_backup(store, backup, target_dir=target, replace=str(target))
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
    assert set(backups[0].manifest["tree"]["entries"]) == {"2026"} | {f"2026/c{i}.json" for i in range(50)}
    assert 'agent_backup_last_success_timestamp_seconds{source="docs"}' in prom.read_text()


# --- hostile or damaged archives (issue 12, items 3 and 4) -----------------------------------


def _reseal(backup_dir: Path, archive: bytes, extra_entries: dict[str, dict] | None = None) -> None:
    """Swap in another archive and make the manifest's checksum agree (an attacker can do both)."""
    (backup_dir / "files.tar.gz").write_bytes(archive)
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["files"] = [
        {"name": "files.tar.gz", "size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()}
    ]
    manifest["tree"]["entries"].update(extra_entries or {})
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))


def _archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    return info


HOSTILE = {
    "dotdot": (_member("../escaped.txt"), b"owned"),
    "absolute": (_member("/tmp/agent-platform-absolute.txt"), b"owned"),
    "absolute-symlink": (_member("passwd", tarfile.SYMTYPE, "/etc/passwd"), None),
    "escaping-symlink": (_member("sub/up", tarfile.SYMTYPE, "../../outside"), None),
    "hardlink": (_member("hard", tarfile.LNKTYPE, "model.bin"), None),
    "fifo": (_member("pipe", tarfile.FIFOTYPE), None),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_archive_is_one_clear_refusal_and_writes_nothing(tmp_path: Path, kind: str) -> None:
    root = make_tree(tmp_path / "volume")
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({"backup": {
        "enabled": True,
        "sources": [{"name": "docs", "kind": "files", "claim_name": "docs-pvc"}],
        "target": {"mount_path": str(tmp_path / "backups")},
    }}))
    store = BackupStore(tmp_path / "backups")
    backup = backup_source(store, files_source(root), compression_level=1)
    info, data = HOSTILE[kind]
    name = info.name
    _reseal(backup.path, _archive((_member("ok.txt"), b"fine"), (info, data)),
            {"ok.txt": {"size": 4, "sha256": hashlib.sha256(b"fine").hexdigest()}, name: {"size": 5}})
    target = tmp_path / "restore" / "here"
    cmd = [sys.executable, "-m", "agent_runtime", "restore", "--config", str(config), "--source", "docs",
           "--target-path", str(target)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert json.loads(line)["msg"] == "restore refused" and name in line
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "restore" / "escaped.txt").exists()
    assert not Path("/tmp/agent-platform-absolute.txt").exists()
    verify = subprocess.run([*cmd[:3], "verify", *cmd[4:8]], capture_output=True, text=True, timeout=120)
    assert verify.returncode == 3 and "Traceback" not in verify.stderr

    # Handed to the extractor directly (no verify first), it is refused the same way.
    with pytest.raises(UnsafeArchive, match="nothing was restored"):
        restore_files(backup.file("files.tar.gz"), target)
    assert list(target.iterdir()) == []


def test_verify_fails_a_symlink_that_is_not_in_the_manifest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "volume")
    store = BackupStore(tmp_path / "backups")
    backup = backup_source(store, files_source(root), compression_level=1)
    with tarfile.open(backup.file("files.tar.gz"), "r:gz") as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    _reseal(backup.path, _archive(*members, (_member("sneaky", tarfile.SYMTYPE, "model.bin"), None)))
    result = verify_backup(store, store.get("docs"))
    assert result.problems == ["sneaky: in the archive but not in the manifest"]


def test_what_a_restore_cannot_recreate_is_listed_not_lost_silently(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "volume")
    os.mkfifo(root / "pipe")
    (root / "abs").symlink_to("/etc/hostname")
    (root / "conversations" / "out").symlink_to("../../elsewhere")
    store = BackupStore(tmp_path / "backups")
    backup = backup_source(store, files_source(root), compression_level=1)
    assert set(backup.manifest["tree"]["skipped"]) == {"pipe", "abs", "conversations/out"}
    assert verify_backup(store, backup).ok
    target = tmp_path / "restored"
    restore_backup(store, backup, target_dir=target)
    assert (target / "latest").is_symlink() and not (target / "abs").exists() and not (target / "pipe").exists()
