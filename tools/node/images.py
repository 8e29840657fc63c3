"""Images without a registry: OCI image archives written directly (an index, a manifest, a
config and one gzipped layer, all reproducible), imported with `ctr -n k8s.io images import`.

The node's own images (pause, CoreDNS, metrics-server and a busybox for tests) come from
binaries already on the machine, in a directory keyed by the hash of every input
(`node-images-<key>` in the cache), so they are rebuilt only when an input changes.
`import_archives` is the hook for anyone else's archives (the runtime, agent and PostgreSQL
images): it imports them under the names the manifests ask for.
"""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from pathlib import Path

from tools.node.controlplane import cache_dir

HERE = Path(__file__).resolve().parent
COREDNS_VERSION = "v1.15.0"
METRICS_SERVER_VERSION = "v0.8.0"
REGISTRY = "agent-platform.node"  # a name no registry serves: nothing is ever pulled


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str  # the reference (repository:tag) pods use
    files: tuple[tuple[str, Path, int], ...]  # (path in the image, source, mode)
    dirs: tuple[tuple[str, int], ...] = ()
    entrypoint: tuple[str, ...] = ()
    user: str = "65534:65534"

    @property
    def archive(self) -> str:
        return self.name.split("/")[-1].replace(":", "-") + ".oci.tar"


def _busybox() -> Path:
    found = shutil.which("busybox")
    if not found:
        raise FileNotFoundError("busybox not found: install Debian's busybox-static (make system-deps)")
    return Path(found)


def node_specs(pause: Path) -> list[Spec]:
    bins = cache_dir()
    tmp = (("tmp", 0o1777),)
    return [
        Spec(f"{REGISTRY}/pause:1", (("pause", pause, 0o755),), entrypoint=("/pause",)),
        Spec(f"{REGISTRY}/coredns:{COREDNS_VERSION}",
             (("coredns", bins / f"coredns-{COREDNS_VERSION}/bin/coredns", 0o755),),
             entrypoint=("/coredns",)),
        Spec(f"{REGISTRY}/metrics-server:{METRICS_SERVER_VERSION}",
             (("metrics-server",
               bins / f"metrics-server-{METRICS_SERVER_VERSION}/bin/metrics-server", 0o755),),
             dirs=tmp, entrypoint=("/metrics-server",)),
        Spec(f"{REGISTRY}/busybox:1", (("bin/busybox", _busybox(), 0o755),), dirs=tmp,
             entrypoint=("/bin/busybox", "sh")),
    ]


PAUSE_IMAGE = f"{REGISTRY}/pause:1"
COREDNS_IMAGE = f"{REGISTRY}/coredns:{COREDNS_VERSION}"
METRICS_SERVER_IMAGE = f"{REGISTRY}/metrics-server:{METRICS_SERVER_VERSION}"
BUSYBOX_IMAGE = f"{REGISTRY}/busybox:1"


def _layer(spec: Spec) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add_dir(name: str, mode: int) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)

        parents = sorted({str(Path(dest).parent) for dest, _, _ in spec.files} - {"."})
        for name in parents:
            add_dir(name, 0o755)
        for name, mode in spec.dirs:
            add_dir(name, mode)
        for dest, src, mode in spec.files:
            info = tarfile.TarInfo(dest)
            info.size, info.mode, info.mtime = src.stat().st_size, mode, 0
            with open(src, "rb") as fh:
                tar.addfile(info, fh)
            if dest == "bin/busybox":  # the applets the tests use, as links to busybox
                for applet in ("sh", "nc", "wget", "nslookup", "sleep", "cat", "echo", "ls", "sed", "tail", "grep"):
                    link = tarfile.TarInfo(f"bin/{applet}")
                    link.type, link.linkname, link.mode, link.mtime = (
                        tarfile.SYMTYPE, "busybox", 0o777, 0)
                    tar.addfile(link)
    return raw.getvalue()


def write_archive(spec: Spec, out: Path) -> None:
    """One OCI image layout, as a tar that `ctr images import` reads."""
    layer = _layer(spec)
    gz = gzip.compress(layer, compresslevel=6, mtime=0)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": list(spec.entrypoint), "Env": ["PATH=/bin"],
                   "User": spec.user, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }, sort_keys=True).encode()
    blobs = {}

    def blob(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": f"sha256:{digest}", "size": len(data)}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(gz)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": spec.name,
                            "org.opencontainers.image.ref.name": spec.name.rsplit(":", 1)[1]},
        }],
    }, sort_keys=True).encode()
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", index)
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest}", data)
    tmp.replace(out)


def _hash_file(path: Path, h: hashlib._Hash) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def node_images() -> dict[str, Path]:
    """The node's images (name -> archive), built when their inputs changed."""
    inputs = [HERE / "pause.c", Path(__file__), _busybox(),
              cache_dir() / f"coredns-{COREDNS_VERSION}/bin/coredns",
              cache_dir() / f"metrics-server-{METRICS_SERVER_VERSION}/bin/metrics-server"]
    h = hashlib.sha256()
    for path in inputs:
        _hash_file(path, h)
    out = cache_dir() / f"node-images-{h.hexdigest()[:16]}"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions build once
        pause = out / "pause"
        if not pause.exists():
            subprocess.run(["gcc", "-static", "-Os", "-s", "-o", f"{pause}.tmp", str(HERE / "pause.c")],
                           check=True)
            os.replace(f"{pause}.tmp", pause)
        found = {}
        for spec in node_specs(pause):
            archive = out / spec.archive
            if not archive.exists():
                write_archive(spec, archive)
            found[spec.name] = archive
    return found


def archive_names(archive: Path) -> list[str]:
    """The image names an OCI archive's index carries."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    return [m.get("annotations", {}).get("io.containerd.image.name", "")
            for m in index.get("manifests", [])]


def import_archives(ctr: list[str], archives: Iterable[tuple[str, Path]]) -> None:
    """Imports each (name, archive) into containerd's k8s.io namespace (the CRI's), then tags it
    `name` if the archive carries another name. `ctr`: the ctr command with its --address."""
    for name, archive in archives:
        subprocess.run([*ctr, "-n", "k8s.io", "images", "import", str(archive)],
                       check=True, capture_output=True)
        names = [n for n in archive_names(Path(archive)) if n]
        if name not in names:
            if not names:
                raise ValueError(f"{archive} names no image (io.containerd.image.name)")
            subprocess.run([*ctr, "-n", "k8s.io", "images", "tag", "--force", names[0], name],
                           check=True, capture_output=True)


if __name__ == "__main__":  # build them (tools/build-node.sh)
    for image, path in node_images().items():
        print(f"{image}\t{path}")
