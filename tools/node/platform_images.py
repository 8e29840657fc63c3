"""The platform's own images for the node, built without Docker or a registry: a Debian bookworm
root filesystem made by `debootstrap` (from Debian's mirror, the one the machine reaches), the
runtime's Python dependencies installed into it by the host's pip as wheels for the image's Python
(both CPython 3.11), and the result written as an OCI archive that `ctr images import` reads.

- `agent-platform.local/agent-runtime:0.1.0`: `python3 -m agent_runtime` (the gateway, backup,
  restore, drill and alerts commands) with pg_dump/pg_restore and restic, as runtime/Dockerfile
  builds it for a registry;
- `agent-platform.local/reference-agent:0.1.0`: the same files, started as `agent`;
- `agent-platform.local/postgres:15`: Debian's PostgreSQL 15 with an entry point that initialises
  an empty data directory from the `POSTGRES_*` environment, like the official image's.

Each archive lives in the cache under a key that hashes every input (package lists, this file,
the runtime's sources), so it is rebuilt only when one of them changes. Root file systems run as
uid 10001 (the platform's pods' runAsUser).

`python -m tools.node.platform_images` builds them and prints `name<TAB>archive` lines.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

from tools.node.controlplane import cache_dir

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "runtime"
MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"
UID = 10001
RUNTIME_IMAGE = "agent-platform.local/agent-runtime:0.1.0"
AGENT_IMAGE = "agent-platform.local/reference-agent:0.1.0"
POSTGRES_IMAGE = "agent-platform.local/postgres:15"
PYTHON_PACKAGES = ("python3", "ca-certificates", "postgresql-client-15", "restic")
POSTGRES_PACKAGES = ("postgresql-15",)
SITE = "/opt/agent-runtime/site-packages"

POSTGRES_ENTRYPOINT = """\
#!/bin/sh
# Initialises an empty PGDATA from POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB (as the
# official image does), then runs PostgreSQL in the foreground, listening on every address.
set -eu
: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
bin=/usr/lib/postgresql/15/bin
# POSTGRES_HOST_AUTH_METHOD=trust (a scratch server reachable only inside its pod, as the restore
# drill's sidecar is) may go without a password, as with the official image; nothing else may.
auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "POSTGRES_PASSWORD is empty: refusing to initialise a database without a password" >&2
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  if [ -n "${POSTGRES_PASSWORD:-}" ]; then
    pwfile="$(mktemp)"
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth="$auth" \
      --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
  else
    "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  echo "host all all 0.0.0.0/0 $auth" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  if [ "$POSTGRES_DB" != "postgres" ]; then
    PGPASSWORD="${POSTGRES_PASSWORD:-}" psql -h /var/run/postgresql -U "$POSTGRES_USER" -d postgres \
      -v ON_ERROR_STOP=1 -q -c "CREATE DATABASE \\"$POSTGRES_DB\\""
  fi
  "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- root file systems ----------------------------------------------------------------------


def _key(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(".pyc"):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def debootstrap(packages: tuple[str, ...]) -> Path:
    """A minimal bookworm root file system with `packages`, cached by the package list."""
    out = cache_dir() / f"rootfs-{SUITE}-{_key(MIRROR, SUITE, *packages)}"
    if (out / ".complete").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.monotonic()
    log(f"debootstrap {SUITE} with {', '.join(packages)} (about a minute)")
    subprocess.run(["nice", "-n", "10", "debootstrap", "--variant=minbase",
                    f"--include={','.join(packages)}", SUITE, str(tmp), MIRROR],
                   check=True, stdout=subprocess.DEVNULL)
    # What an image needs no copy of: package lists, caches, docs.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                "usr/share/locale"):
        shutil.rmtree(tmp / sub, ignore_errors=True)
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    with open(tmp / "etc/passwd", "a") as fh:
        fh.write(f"agent:x:{UID}:{UID}:agent:/home/agent:/usr/sbin/nologin\n")
    with open(tmp / "etc/group", "a") as fh:
        fh.write(f"agent:x:{UID}:\n")
    (tmp / "home/agent").mkdir(parents=True, exist_ok=True)
    os.chown(tmp / "home/agent", UID, UID)
    (tmp / ".complete").write_text(f"{time.monotonic() - started:.1f}\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"debootstrap done in {time.monotonic() - started:.0f}s")
    return out


def _runtime_site(key: str) -> Path:
    """The runtime and its dependencies as a site-packages directory for CPython 3.11 x86_64."""
    out = cache_dir() / f"runtime-site-{key}"
    if (out / ".complete").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    # Wheels only (pip cannot build for another interpreter); the runtime itself is pure Python
    # and copied as it is.
    requires = tomllib.loads((RUNTIME / "pyproject.toml").read_text())["project"]["dependencies"]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-compile", "--target", str(tmp), "--python-version", "3.11",
                    "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "--only-binary=:all:", *requires], check=True)
    shutil.copytree(RUNTIME / "agent_runtime", tmp / "agent_runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (tmp / ".complete").write_text("")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


# --- OCI archives -------------------------------------------------------------------------------


def _layer_from(sources: list[tuple[Path, str]], extra: dict[str, tuple[bytes, int]], out: Path) -> str:
    """Writes one gzipped tar layer of the `sources` trees (host dir, path in the image) plus
    `extra` files (path -> (content, mode)) to `out`; returns the uncompressed tar's digest."""
    class Hashing(io.RawIOBase):
        def __init__(self, sink) -> None:
            self.sink, self.h = sink, hashlib.sha256()

        def writable(self) -> bool:
            return True

        def write(self, data) -> int:
            self.h.update(data)
            self.sink.write(data)
            return len(data)

    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        sink = Hashing(gz)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
                if info.isdev() or info.name.endswith(".complete"):
                    return None
                info.mtime = 0
                info.uname = info.gname = ""
                return info

            for root, dest in sources:
                for child in sorted(root.iterdir()):
                    if child.name in ("proc", "sys", "dev") and dest == "":
                        tar.addfile(clean(tar.gettarinfo(str(child), child.name)))
                        continue
                    name = f"{dest}/{child.name}".lstrip("/")
                    tar.add(str(child), arcname=name, filter=clean)
            for name, (content, mode) in sorted(extra.items()):
                info = tarfile.TarInfo(name.lstrip("/"))
                info.size, info.mode, info.mtime = len(content), mode, 0
                tar.addfile(info, io.BytesIO(content))
    return "sha256:" + sink.h.hexdigest()


def _write_archive(out: Path, name: str, layer: Path, diff_id: str, config: dict) -> None:
    def digest_of(path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    config_bytes = json.dumps({"architecture": "amd64", "os": "linux", "config": config,
                               "rootfs": {"type": "layers", "diff_ids": [diff_id]}}, sort_keys=True).encode()
    layer_digest = digest_of(layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(), "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": f"sha256:{layer_digest}", "size": layer.stat().st_size}],
    }, sort_keys=True).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
                                       "size": len(manifest),
                                       "platform": {"architecture": "amd64", "os": "linux"},
                                       "annotations": {"io.containerd.image.name": name,
                                                       "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]},
                       sort_keys=True).encode()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        def add(member: str, data: bytes) -> None:
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add("index.json", index)
        add(f"blobs/sha256/{hashlib.sha256(manifest).hexdigest()}", manifest)
        add(f"blobs/sha256/{hashlib.sha256(config_bytes).hexdigest()}", config_bytes)
        tar.add(str(layer), arcname=f"blobs/sha256/{layer_digest}")
    tmp.replace(out)


def _image(name: str, key: str, sources: list[tuple[Path, str]], extra: dict[str, tuple[bytes, int]],
           config: dict) -> Path:
    out = cache_dir() / f"images-{key}" / (name.rsplit("/", 1)[1].replace(":", "-") + ".oci.tar")
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    layer = out.with_suffix(".layer.tmp")
    diff_id = _layer_from(sources, extra, layer)
    _write_archive(out, name, layer, diff_id, config)
    layer.unlink()
    log(f"{name}: {out.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.0f}s")
    return out


def build_all() -> dict[str, Path]:
    """Every platform image (name -> OCI archive), built when an input changed."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".platform-images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions build once
        this = Path(__file__).read_bytes()
        base = debootstrap(PYTHON_PACKAGES)
        runtime_key = _key(this, base.name, _tree_hash(RUNTIME))
        site = _runtime_site(runtime_key)
        env = [f"PYTHONPATH={SITE}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1",
               "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/agent"]
        common = {"Env": env, "User": f"{UID}:{UID}", "WorkingDir": "/home/agent",
                  "Entrypoint": ["python3", "-m", "agent_runtime"]}
        sources = [(base, ""), (site, SITE)]
        found = {
            RUNTIME_IMAGE: _image(RUNTIME_IMAGE, runtime_key, sources, {},
                                  {**common, "Cmd": ["gateway", "--config", "/etc/agent-runtime/runtime.json"]}),
            AGENT_IMAGE: _image(AGENT_IMAGE, runtime_key, sources, {},
                                {**common, "Cmd": ["agent"], "ExposedPorts": {"8080/tcp": {}}}),
        }
        pg_base = debootstrap(POSTGRES_PACKAGES)
        pg_key = _key(this, pg_base.name)
        found[POSTGRES_IMAGE] = _image(
            POSTGRES_IMAGE, pg_key, [(pg_base, "")],
            {"usr/local/bin/docker-entrypoint.sh": (POSTGRES_ENTRYPOINT.encode(), 0o755)},
            {"Env": ["PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin",
                     "PGDATA=/var/lib/postgresql/data/pgdata"],
             "User": f"{UID}:{UID}", "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
             "ExposedPorts": {"5432/tcp": {}}, "StopSignal": "SIGINT"})
    return found


if __name__ == "__main__":
    for image, archive in build_all().items():
        print(f"{image}\t{archive}")
