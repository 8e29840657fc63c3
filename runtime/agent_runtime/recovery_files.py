"""Files sources: a directory on a volume, backed up as a gzip-compressed tar.

Backup streams the tar straight to the backup volume and records, per path, what it holds: the
SHA-256 and size of a regular file, the target of a symlink, or a directory. What a restore could
not safely recreate (a FIFO, socket or device; an absolute symlink or one that points outside
the tree) is left out and listed in the manifest's `tree.skipped`, never dropped silently.

Verify reads every byte of the archive and holds every member to the manifest: a member that is
not listed, a hardlink, a special file, an absolute or `..` name, or a symlink that escapes is a
problem, and so the backup is never restored (restore verifies first). The extraction itself
checks each member again (`_check_member`), so an archive handed to `restore_files` directly
is refused the same way (`UnsafeArchive`) and nothing is written.

A restore extracts into a staging directory inside the target (one filesystem: the target is
often a volume's mount point, which cannot itself be replaced), then swaps: what the target held
is moved aside, the restored tree moved in, and what was moved aside is removed only once the
swap is complete; a failure at any point puts the old contents back.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from .recovery_sources import RecoveryError, TargetNotEmpty
from .recovery_store import CHUNK, PartialBackup

__all__ = [
    "FILES_ARCHIVE",
    "UnsafeArchive",
    "backup_files",
    "restore_files",
    "tree_checksums",
    "verify_files_archive",
]

FILES_ARCHIVE = "files.tar.gz"
_STAGING = ".restore-"


class UnsafeArchive(RecoveryError):
    """The archive holds a member that a restore must not write (nothing was written)."""


class _HashingReader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.hash.update(data)
        return data


def _link_escapes(name: str, target: str) -> bool:
    """True if symlink `name` -> `target` is absolute or resolves outside the tree's root."""
    if target.startswith("/") or not target:
        return True
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
    return resolved == ".." or resolved.startswith("../")


def _name_problem(name: str) -> str | None:
    if not name or name.startswith("/"):
        return "absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "`..` in its path"
    if "\x00" in name:
        return "NUL in its name"
    return None


def backup_files(root: Path, partial: PartialBackup, *, compression_level: int) -> dict[str, Any]:
    """Tar + gzip `root` into the partial backup, recording every entry (and what was skipped)."""
    if not root.is_dir():
        raise RecoveryError(f"files source {root} is not a directory")
    started = time.time()
    entries: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    total = 0
    writer = partial.open(FILES_ARCHIVE)
    # Stream mode ("w|") into gzip: nothing seeks, so the archive is written once, straight to
    # the volume, with its checksum computed on the way.
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=writer, compresslevel=compression_level)  # type: ignore[arg-type]
    with gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            base = Path(dirpath)
            for name in sorted(filenames) + [d for d in dirnames if (base / d).is_symlink()]:
                path = base / name
                rel = path.relative_to(root).as_posix()
                st = path.lstat()
                if stat.S_ISREG(st.st_mode):
                    info = tar.gettarinfo(str(path), arcname=rel)
                    # Each path is stored as its own regular file: a hardlinked pair comes back
                    # as two files with equal content, never as a link member.
                    info.type = tarfile.REGTYPE
                    info.linkname = ""
                    with open(path, "rb") as f:
                        reader = _HashingReader(f)
                        tar.addfile(info, reader)  # type: ignore[arg-type]
                    entries[rel] = {"size": info.size, "sha256": reader.hash.hexdigest()}
                    total += info.size
                elif stat.S_ISLNK(st.st_mode):
                    target = os.readlink(path)
                    if _link_escapes(rel, target):
                        skipped[rel] = f"symlink to {target!r} points outside the tree"
                        continue
                    tar.add(str(path), arcname=rel, recursive=False)
                    entries[rel] = {"link": target}
                else:
                    skipped[rel] = "not a regular file, directory or symlink"
            for d in dirnames:
                if not (base / d).is_symlink():
                    rel = (base / d).relative_to(root).as_posix()
                    tar.add(str(base / d), arcname=rel, recursive=False)
                    entries[rel] = {"dir": True}
    partial.add(writer)
    tree: dict[str, Any] = {"root": str(root), "entries": entries}
    if skipped:
        tree["skipped"] = skipped
    return {"snapshot_at": started, "source_bytes": total, "tree": tree}


def _check_member(member: tarfile.TarInfo) -> str | None:
    """Why this member must not be restored, or None."""
    problem = _name_problem(member.name)
    if problem:
        return problem
    if member.islnk():
        return "a hardlink"
    if member.issym():
        return "a symlink pointing outside the tree" if _link_escapes(member.name, member.linkname) else None
    if member.isfile() or member.isdir():
        return None
    return "a special file (FIFO or device)"


def verify_files_archive(path: Path, entries: dict[str, dict[str, Any]]) -> list[str]:
    """Read the whole archive (gzip CRCs included) and hold every member to the manifest."""
    problems: list[str] = []
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                name = member.name.rstrip("/") if member.isdir() else member.name
                unsafe = _check_member(member)
                if unsafe:
                    problems.append(f"{member.name}: {unsafe}; refusing the archive")
                    continue
                if name in seen:
                    problems.append(f"{name}: appears twice in the archive")
                seen.add(name)
                want = entries.get(name)
                if want is None:
                    problems.append(f"{name}: in the archive but not in the manifest")
                elif member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None
                    h = hashlib.sha256()
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                    if want.get("sha256") != h.hexdigest():
                        problems.append(f"{name}: content differs from the manifest")
                elif member.issym() and want.get("link") != member.linkname:
                    problems.append(f"{name}: symlink to {member.linkname!r}, the manifest says {want.get('link')!r}")
                elif member.isdir() and not want.get("dir"):
                    problems.append(f"{name}: a directory, the manifest says otherwise")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        return [f"{path.name}: unreadable archive: {exc}"]
    missing = sorted(set(entries) - seen)
    if missing:
        problems.append(f"{len(missing)} entr(ies) in the manifest missing from the archive: {', '.join(missing[:5])}")
    return problems


def tree_checksums(root: Path) -> dict[str, dict[str, Any]]:
    """The same per-path entries `backup_files` records, computed on a directory."""
    out: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in filenames + dirnames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = {"link": os.readlink(path)}
            elif path.is_dir():
                out[rel] = {"dir": True}
            elif path.is_file():
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                out[rel] = {"size": path.stat().st_size, "sha256": h.hexdigest()}
    return out


def describe_tree(target: Path) -> str:
    """What a non-empty target holds, for the refusal message."""
    files = 0
    newest = 0.0
    for dirpath, dirnames, filenames in os.walk(target):
        dirnames[:] = [d for d in dirnames if not (dirpath == str(target) and d.startswith(_STAGING))]
        for name in filenames:
            files += 1
            try:
                newest = max(newest, (Path(dirpath) / name).lstat().st_mtime)
            except FileNotFoundError:
                pass
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest)) if files else "none"
    return f"{files} file(s), newest modified {when}"


def _extract(archive: Path, staging: Path) -> None:
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                unsafe = _check_member(member)
                if unsafe:
                    raise UnsafeArchive(f"{archive.name}: member {member.name!r} is {unsafe}; nothing was restored")
                # The "data" filter is the second line: it also strips setuid bits and ownership.
                tar.extract(member, staging, filter="data")
    except UnsafeArchive:
        raise
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise UnsafeArchive(f"{archive.name}: unreadable or unsafe archive ({exc}); nothing was restored") from None


def restore_files(archive: Path, target: Path, *, replace: str | None = None) -> None:
    """Restore the archive into `target`; a non-empty target needs `replace == str(target)`."""
    target.mkdir(parents=True, exist_ok=True)
    existing = [p for p in target.iterdir() if not p.name.startswith(_STAGING)]
    if existing and (replace is None or os.path.normpath(replace) != os.path.normpath(str(target))):
        raise TargetNotEmpty(
            f"{target} is not empty ({describe_tree(target)}); nothing was changed. To replace its "
            f"contents with the backup, run again with --replace {target}"
        )
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=target))
    aside = None
    try:
        _extract(archive, staging / "new")
        aside = staging / "old"
        aside.mkdir()
        moved: list[str] = []
        try:
            for p in existing:
                os.rename(p, aside / p.name)
                moved.append(p.name)
            new = staging / "new"
            placed: list[str] = []
            try:
                for child in (new.iterdir() if new.exists() else []):
                    os.rename(child, target / child.name)
                    placed.append(child.name)
            except OSError:
                for name in placed:
                    os.rename(target / name, new / name)
                raise
        except OSError:
            for name in moved:
                os.rename(aside / name, target / name)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
