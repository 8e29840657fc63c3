"""Off-cluster backups in a real S3-compatible server, encrypted with restic (issue 12, items 5, 6, 8).

The server is versitygw (tools/build-s3-server.sh, cached in ~/.cache/agent-platform) with its
POSIX backend in a temporary directory, on a free port of 127.0.0.1, started per module. The
credentials and the repository password reach the commands only as environment variables, as
the Jobs get them from their Secrets.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.pgtemp import TempPostgres

from .test_recovery import fingerprint_db, make_app_db

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = [sys.executable, "-m", "agent_runtime"]


class S3Server:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.access_key = "agentbackup"
        self.secret_key = secrets.token_hex(16)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 API server (versitygw, POSIX backend) on loopback."""
    built = subprocess.run(["bash", str(ROOT / "tools" / "build-s3-server.sh")], capture_output=True, text=True)
    if built.returncode != 0:
        pytest.fail(f"tools/build-s3-server.sh failed: {built.stderr[-2000:]}", pytrace=False)
    binary = built.stdout.strip().splitlines()[-1]
    server = S3Server(tmp_path_factory.mktemp("s3-data"))
    log = open(server.data.parent / "versitygw.log", "wb")
    proc = subprocess.Popen(
        [binary, "--access", server.access_key, "--secret", server.secret_key,
         "--port", f"127.0.0.1:{server.port}", "posix", str(server.data)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                break
        except OSError:
            assert proc.poll() is None, (server.data.parent / "versitygw.log").read_text()
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("versitygw did not start listening")
    yield server
    proc.terminate()
    proc.wait(10)
    log.close()


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    server = TempPostgres()
    server.start()
    yield server
    server.stop()


def s3_config(tmp: Path, pg: TempPostgres, s3: S3Server, database: str, bucket: str, **extra: object) -> Path:
    config = {
        "enabled": True,
        "retention_count": 2,
        "sources": [{"name": "db", "kind": "postgres", "host": pg.host, "port": pg.port, "database": database,
                     "user": pg.user, "password_secret": "db"}],
        "target": {"kind": "s3", "endpoint": s3.endpoint, "bucket": bucket, "prefix": "agents/prod",
                   "credentials_secret": "backup-s3", "encryption_secret": "backup-key"},
        **extra,
    }
    path = tmp / f"{bucket}.json"
    path.write_text(json.dumps(config))
    return path


def secret_env(pg: TempPostgres, s3: S3Server, password: str) -> dict[str, str]:
    """What the Jobs get from their Secrets; nothing else (no RESTIC_*, no AWS_* from the host)."""
    env = {k: v for k, v in pg.env.items() if not k.startswith(("AWS_", "RESTIC_"))}
    return {
        **env,
        "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key,
        "RESTIC_PASSWORD": password,
        "RESTIC_CACHE_DIR": str(Path(env.get("TMPDIR", "/tmp")) / "restic-cache-tests"),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNTIME, *args], capture_output=True, text=True, env=env, timeout=300)


def test_backup_to_s3_is_encrypted_and_restores_on_another_server(
    pg: TempPostgres, s3: S3Server, tmp_path: Path
) -> None:
    make_app_db(pg, "s3app", rows=800)
    pg.psql(
        "INSERT INTO agents.conversations (id, owner, note) VALUES (999999, 'canary', 'plaintext-canary-7f3a')", "s3app"
    )
    config = s3_config(tmp_path, pg, s3, "s3app", "agent-backups")
    env = secret_env(pg, s3, "correct horse battery staple")
    result = run(env, "backup", "--config", str(config))
    assert result.returncode == 0, result.stderr

    # In the bucket: a restic repository, nothing readable (the dump holds the canary in clear).
    stored = [p for p in (s3.data / "agent-backups").rglob("*") if p.is_file()]
    assert any("/agents/prod/config" in str(p) for p in stored) and any("/data/" in str(p) for p in stored)
    assert not any(b"plaintext-canary-7f3a" in p.read_bytes() for p in stored)
    assert run(env, "verify", "--config", str(config)).returncode == 0

    # Cross-cluster: only the stack's backup config and the Secrets, a fresh server, nothing local.
    with TempPostgres(password=pg.password) as other:
        raw = json.loads(config.read_text())
        raw["sources"][0].update(host=other.host, port=other.port)
        other_config = tmp_path / "other.json"
        other_config.write_text(json.dumps(raw))
        result = run(env, "restore", "--config", str(other_config), "--target-database", "s3app", "--create")
        assert result.returncode == 0, result.stderr
        assert fingerprint_db(other, "s3app") == fingerprint_db(pg, "s3app")

    # The wrong key reads nothing, in one clear line.
    result = run(secret_env(pg, s3, "wrong"), "restore", "--config", str(config), "--target-database", "x", "--create")
    assert result.returncode == 1 and "wrong repository password" in result.stderr and "Traceback" not in result.stderr


def test_drill_from_s3_reports_rto_and_rpo(pg: TempPostgres, s3: S3Server, tmp_path: Path) -> None:
    make_app_db(pg, "s3drill", rows=300)
    config = s3_config(tmp_path, pg, s3, "s3drill", "drill-backups")
    env = secret_env(pg, s3, "drill-key")
    assert run(env, "backup", "--config", str(config)).returncode == 0
    before = set(pg.psql("SELECT datname FROM pg_database").splitlines())
    result = run(env, "drill", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["sources"][0]["matches_manifest"]
    assert report["rto_seconds"] > 0 and report["rpo_seconds"] < 600
    assert set(pg.psql("SELECT datname FROM pg_database").splitlines()) == before


def _snapshots(env: dict[str, str], config: Path) -> list[dict]:
    raw = json.loads(config.read_text())
    t = raw["target"]
    out = subprocess.run(
        ["restic", "snapshots", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "RESTIC_REPOSITORY": f"s3:{t['endpoint']}/{t['bucket']}/{t['prefix']}"},
    ).stdout
    return json.loads(out or "[]")


def test_retention_by_count_and_age_is_applied_in_the_store(pg: TempPostgres, s3: S3Server, tmp_path: Path) -> None:
    make_app_db(pg, "s3keep", rows=50)
    config = s3_config(tmp_path, pg, s3, "s3keep", "keep-backups", retention_max_age_days=7)
    raw = json.loads(config.read_text())
    raw["retention_count"] = 5
    config.write_text(json.dumps(raw))
    env = secret_env(pg, s3, "keep-key")
    assert run(env, "backup", "--config", str(config)).returncode == 0
    # An old snapshot of this source, 30 days back (restic --time), and one of another source.
    repo = {**env, "RESTIC_REPOSITORY": f"s3:{s3.endpoint}/keep-backups/agents/prod"}
    old = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text("{}")
    for tags in ("agent-platform,source=db,backup=old", "agent-platform,source=other,backup=old"):
        subprocess.run(
            ["restic", "backup", "--host", "agent-platform", "--time", old, "--tag", tags, "."],
            cwd=tmp_path / "old",
            env=repo,
            check=True,
            capture_output=True,
        )
    assert len(_snapshots(env, config)) == 3
    for _ in range(2):
        result = run(env, "backup", "--config", str(config))
        assert result.returncode == 0, result.stderr
    snaps = _snapshots(env, config)
    mine = [s for s in snaps if "source=db" in s["tags"]]
    assert len(mine) == 3 and not any("backup=old" in s["tags"] for s in mine)  # within the count, too old
    assert any("source=other" in s["tags"] for s in snaps)  # another source's backups are never touched
    # By count: keep 2 of the 4 after the next backup, the newest ones.
    raw["retention_count"] = 2
    config.write_text(json.dumps(raw))
    assert run(env, "backup", "--config", str(config)).returncode == 0
    after = [s for s in _snapshots(env, config) if "source=db" in s["tags"]]
    assert len(after) == 2 and max(s["time"] for s in after) > max(s["time"] for s in mine)


def test_s3_without_its_secrets_is_one_clear_usage_error(pg: TempPostgres, s3: S3Server, tmp_path: Path) -> None:
    config = s3_config(tmp_path, pg, s3, "nothing", "no-secrets")
    env = {k: v for k, v in secret_env(pg, s3, "k").items() if k != "RESTIC_PASSWORD"}
    result = run(env, "backup", "--config", str(config))
    assert result.returncode == 2 and "RESTIC_PASSWORD" in result.stderr and "encryption_secret" in result.stderr


def test_a_hostile_snapshot_tag_cannot_place_files_outside_staging(
    pg: TempPostgres, s3: S3Server, tmp_path: Path
) -> None:
    make_app_db(pg, "s3tag", rows=20)
    config = s3_config(tmp_path, pg, s3, "s3tag", "tag-backups")
    env = secret_env(pg, s3, "tag-key")
    assert run(env, "backup", "--config", str(config)).returncode == 0
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "manifest.json").write_text("{}")
    repo = {**env, "RESTIC_REPOSITORY": f"s3:{s3.endpoint}/tag-backups/agents/prod"}
    subprocess.run(
        [
            "restic",
            "backup",
            "--host",
            "agent-platform",
            "--tag",
            "agent-platform,source=db,backup=../../../escaped",
            ".",
        ],
        cwd=evil,
        env=repo,
        check=True,
        capture_output=True,
    )
    staging = tmp_path / "staging"
    staging.mkdir()
    result = run(
        env,
        "restore",
        "--config",
        str(config),
        "--target-dir",
        str(staging),
        "--target-database",
        "s3tag_copy",
        "--create",
    )
    assert result.returncode == 1 and "invalid backup tag" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "escaped").exists() and not (staging.parent / "escaped").exists()


def test_pitr_from_s3_alone_after_losing_server_and_receiver(s3: S3Server) -> None:
    """Issue 12 item 7 off the cluster: the server, the receiver and its volume are all lost;
    the base backup and the WAL pushed to the bucket bring back all but the last push interval."""
    import shutil
    import signal
    import tempfile

    from .test_recovery_pitr import (
        EVENTS_TABLE,
        SOURCE_SETTINGS,
        Writer,
        assert_no_gap,
        lose,
        restored_ids,
        start_receiver,
        wait_for,
    )

    work = Path(tempfile.mkdtemp(prefix="pitr-s3-"))
    work.chmod(0o711)  # the postgres user replaying the restore passes through it
    source = TempPostgres(settings=SOURCE_SETTINGS).start()
    try:
        source.psql("CREATE DATABASE app")
        source.psql(EVENTS_TABLE, "app")
        push_interval = 1.0
        config = s3_config(work, source, s3, "app", "agent-pitr")
        raw = json.loads(config.read_text())
        raw["sources"][0].update(name="app", wal_archiving={"enabled": True, "push_interval_seconds": push_interval})
        config.write_text(json.dumps(raw))
        env = secret_env(source, s3, "pitr key")
        wal_dir = work / "receiver-volume" / "wal"
        receiver = start_receiver(env, config, wal_dir)
        writer = Writer(source).start()
        try:
            wait_for(lambda: len(writer.acked) > 50, 30, "the writer", writer)
            base = run(env, "basebackup", "--config", str(config), "--source", "app")
            assert base.returncode == 0, base.stderr
            after_base = len(writer.acked)
            # Long enough for several pushes, so what is lost is set by the interval, not the window.
            wait_for(lambda: len(writer.acked) > after_base + 800, 60, "writes after the base backup", writer)
            lost_at = lose(source)
        finally:
            writer.stop()
            os.killpg(receiver.pid, signal.SIGKILL)  # the receiver's pod and volume go with the cluster
            _, receiver_log = receiver.communicate(timeout=30)
        shutil.rmtree(work / "receiver-volume")

        result = run(env, "pitr-restore", "--config", str(config), "--source", "app",
                     "--data-dir", str(work / "restored"))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        ids = restored_ids(work / "restored", source.password)
        assert_no_gap(ids, writer.acked)
        lost = sorted(set(writer.acked) - set(ids))
        rpo = lost_at - min((writer.acked[i] for i in lost), default=lost_at)
        # Bounded by the push interval plus one upload (restic, a second or two here), far under a minute.
        assert rpo < push_interval + 5.0, f"{len(lost)} rows lost, RPO {rpo:.2f} s; receiver: {receiver_log[-3000:]}"
        assert ids[-1] > after_base + 500
        assert '"msg": "WAL pushed"' in receiver_log
        print(f"PITR from S3: {len(writer.acked)} acknowledged, {len(lost)} lost (RPO {rpo:.2f} s, "
              f"push every {push_interval} s), RTO {report['rto_seconds']} s")
    finally:
        source.stop()
        shutil.rmtree(work, ignore_errors=True)
