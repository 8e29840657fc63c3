"""Backup, verify, restore and drill against a real PostgreSQL started by the test.

The server (initdb + pg_ctl in a temp dir, on a free port of 127.0.0.1, SCRAM password auth,
run as the `postgres` user when the test runs as root) lives for the module. Commands run as a
user would run them: `python -m agent_runtime backup|verify|restore|drill` in a subprocess.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_runtime.recovery_store import BackupStore
from tests.pgtemp import TempPostgres

RUNTIME = [sys.executable, "-m", "agent_runtime"]


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    """One real server per module (about a second to start)."""
    server = TempPostgres()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


def make_app_db(pg: TempPostgres, name: str, rows: int = 5000) -> None:
    pg.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pg.psql(f"CREATE DATABASE {name}")
    pg.psql(
        f"""
        CREATE SCHEMA agents;
        CREATE TABLE agents.conversations (
            id bigint PRIMARY KEY, owner text NOT NULL, meta jsonb, created timestamptz, score numeric(12,4),
            blob bytea, note text
        );
        CREATE TABLE public.items (id serial PRIMARY KEY, conversation bigint REFERENCES agents.conversations(id),
                                   body text, tags text[]);
        CREATE TABLE public.empty_table (x int);
        INSERT INTO agents.conversations
            SELECT g, 'user-' || (g % 97), jsonb_build_object('n', g, 'even', g % 2 = 0),
                   timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute', g / 7.0,
                   decode(md5(g::text), 'hex'), CASE WHEN g % 10 = 0 THEN NULL ELSE 'note ''' || g || '''' END
            FROM generate_series(1, {rows}) g;
        INSERT INTO public.items (conversation, body, tags)
            SELECT 1 + g % {rows}, repeat(md5(g::text), 4), ARRAY['a' || g % 5, 'b']
            FROM generate_series(1, {rows * 2}) g;
        """,
        name,
    )


def fingerprint_db(pg: TempPostgres, name: str) -> dict[str, str]:
    """Row-for-row identity: md5 of every row's text, in primary-key order, per table."""
    out = {}
    for table, key in (("agents.conversations", "id"), ("public.items", "id"), ("public.empty_table", "x")):
        out[table] = pg.psql(
            f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY {key})), '') FROM {table} t", name
        )
    return out


def write_config(tmp: Path, pg: TempPostgres, database: str, **drill: object) -> Path:
    config = {
        "enabled": True,
        "retention_count": 3,
        "compression_level": 6,
        "sources": [
            {"name": "db", "kind": "postgres", "host": pg.host, "port": pg.port, "database": database, "user": pg.user}
        ],
        "target": {"kind": "pvc", "claim_name": "backups", "mount_path": str(tmp / "backups")},
        "drill": {"enabled": True, **drill},
    }
    path = tmp / "backup.json"
    path.write_text(json.dumps(config))
    return path


def run(pg: TempPostgres, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNTIME, *args], capture_output=True, text=True, env=pg.env, timeout=timeout)


def test_backup_then_restore_is_row_for_row_equal(pg: TempPostgres, tmp_path: Path) -> None:
    make_app_db(pg, "app1")
    config = write_config(tmp_path, pg, "app1")
    prom = tmp_path / "metrics" / "backup.prom"
    result = run(pg, "backup", "--config", str(config), "--textfile", str(prom))
    assert result.returncode == 0, result.stderr
    [backup] = BackupStore(tmp_path / "backups").backups("db")
    m = backup.manifest
    assert m["source"] == {"name": "db", "kind": "postgres", "host": pg.host, "port": pg.port, "database": "app1"}
    assert m["started_at"] <= m["snapshot_at"] <= m["finished_at"]
    assert m["postgres"]["tables"]["agents.conversations"]["rows"] == 5000
    assert m["postgres"]["tables"]["public.items"]["rows"] == 10000
    [entry] = m["files"]
    assert entry["name"] == "data.dump" and entry["size"] == backup.file("data.dump").stat().st_size
    assert f'agent_backup_last_success_timestamp_seconds{{source="db"}} {m["finished_at"]!r}' in prom.read_text()

    result = run(pg, "restore", "--config", str(config), "--target-database", "app1_restored", "--create")
    assert result.returncode == 0, result.stderr
    assert fingerprint_db(pg, "app1_restored") == fingerprint_db(pg, "app1")
    # Replacing what a database holds takes --replace naming it, for that run.
    pg.psql("DELETE FROM public.items WHERE id % 2 = 0", "app1_restored")
    result = run(
        pg, "restore", "--config", str(config), "--target-database", "app1_restored", "--replace", "app1_restored"
    )
    assert result.returncode == 0, result.stderr
    assert fingerprint_db(pg, "app1_restored") == fingerprint_db(pg, "app1")


def test_an_empty_database_backs_up_verifies_and_drills(pg: TempPostgres, tmp_path: Path) -> None:
    # A new stack's database has no tables yet; its first backup must not fail verification (the
    # node tier's restore drill did, so the backup alert would have fired on a healthy stack).
    pg.psql("CREATE DATABASE empty_app")
    config = write_config(tmp_path, pg, "empty_app")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    result = run(pg, "verify", "--config", str(config))
    assert result.returncode == 0, result.stderr
    result = run(pg, "drill", "--config", str(config))
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize("damage", ["corrupted", "truncated"])
def test_damaged_backup_is_detected_and_never_restored(pg: TempPostgres, tmp_path: Path, damage: str) -> None:
    make_app_db(pg, "app2", rows=2000)
    config = write_config(tmp_path, pg, "app2")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    assert run(pg, "verify", "--config", str(config)).returncode == 0
    [backup] = BackupStore(tmp_path / "backups").backups("db")
    dump = backup.file("data.dump")
    data = bytearray(dump.read_bytes())
    if damage == "corrupted":
        for i in range(len(data) // 2, len(data) // 2 + 64):
            data[i] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    dump.write_bytes(bytes(data))

    result = run(pg, "verify", "--config", str(config))
    assert result.returncode == 3
    assert damage in result.stderr
    target = f"app2_{damage}"
    result = run(pg, "restore", "--config", str(config), "--target-database", target, "--create")
    assert result.returncode == 3 and "restore refused" in result.stderr
    assert pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{target}'") == "0"
    # The drill verifies first too: nothing restored, the drill fails.
    result = run(pg, "drill", "--config", str(config))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["ok"] and not report["sources"][0]["restored"]


def test_interrupted_backup_leaves_nothing_complete(pg: TempPostgres, tmp_path: Path) -> None:
    pg.psql("DROP DATABASE IF EXISTS big WITH (FORCE)")
    pg.psql("CREATE DATABASE big")
    pg.psql(
        "CREATE TABLE blobs AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) || repeat('x', 200) AS body "
        "FROM generate_series(1, 400000) g",
        "big",
    )
    config = write_config(tmp_path, pg, "big")
    raw = json.loads(config.read_text())
    raw["compression_level"] = 9  # slow the dump down so the kill lands mid-write
    config.write_text(json.dumps(raw))
    store = BackupStore(tmp_path / "backups")
    proc = subprocess.Popen(
        [*RUNTIME, "backup", "--config", str(config)],
        env=pg.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes pg_dump down with it
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            partials = store.partials("db") if store.source_dir("db").exists() else []
            dumps = [p / "data.dump" for p in partials if (p / "data.dump").exists()]
            if dumps and dumps[0].stat().st_size > 256 * 1024:
                break
            assert proc.poll() is None, "the backup finished before it could be interrupted"
            time.sleep(0.02)
        else:
            pytest.fail("backup never got going")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert store.backups("db") == []
    [partial] = store.partials("db")
    assert partial.name.startswith(".partial-") and not (partial / "manifest.json").exists()
    assert run(pg, "verify", "--config", str(config)).returncode == 3
    result = run(pg, "restore", "--config", str(config), "--target-database", "never", "--create")
    assert result.returncode == 3

    # The next backup completes; retention leaves the (recent) partial alone: it might be alive.
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    assert len(store.backups("db")) == 1 and store.partials("db") == [partial]
    # Once its heartbeat is a day old it is abandoned, and retention removes it.
    old = time.time() - 2 * 86400
    for p in (partial, *partial.iterdir()):
        os.utime(p, (old, old))
    store.apply_retention("db", keep=3)
    assert store.partials("db") == [] and len(store.backups("db")) == 1


def test_drill_meets_targets_and_reports_metrics(pg: TempPostgres, tmp_path: Path) -> None:
    make_app_db(pg, "app3", rows=3000)
    config = write_config(tmp_path, pg, "app3", rto_target_seconds=120, rpo_target_seconds=3600)
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    prom = tmp_path / "drill.prom"
    result = run(pg, "drill", "--config", str(config), "--textfile", str(prom))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["sources"][0]["matches_manifest"]
    assert 0 < report["rto_seconds"] < 120 and 0 <= report["rpo_seconds"] < 3600
    text = prom.read_text()
    assert "agent_restore_drill_rto_seconds " in text and "agent_restore_drill_rpo_seconds " in text
    assert "agent_restore_drill_success 1.0" in text
    first_success = [ln for ln in text.splitlines() if ln.startswith("agent_restore_drill_last_success")][0]
    # The scratch database is gone.
    assert pg.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'app3_drill_%'") == "0"

    # An RPO target the backup cannot meet: non-zero exit, success 0, last success kept as it was.
    time.sleep(1.1)
    result = run(pg, "drill", "--config", str(config), "--textfile", str(prom), "--rpo-target", "1")
    assert result.returncode == 1
    assert json.loads(result.stdout)["rpo_seconds"] > 1
    text = prom.read_text()
    assert "agent_restore_drill_success 0.0" in text and first_success in text.splitlines()


def test_drill_detects_data_that_does_not_match_the_manifest(pg: TempPostgres, tmp_path: Path) -> None:
    make_app_db(pg, "app4", rows=500)
    config = write_config(tmp_path, pg, "app4")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    [backup] = BackupStore(tmp_path / "backups").backups("db")
    manifest = json.loads((backup.path / "manifest.json").read_text())
    manifest["postgres"]["tables"]["public.items"]["rows"] += 1
    (backup.path / "manifest.json").write_text(json.dumps(manifest))
    result = run(pg, "drill", "--config", str(config))
    assert result.returncode == 1
    [source] = json.loads(result.stdout)["sources"]
    assert source["restored"] and not source["matches_manifest"]
    assert any("public.items" in p for p in source["problems"])


def test_drill_pushes_to_a_pushgateway(pg: TempPostgres, tmp_path: Path) -> None:
    received: list[tuple[str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        make_app_db(pg, "app5", rows=200)
        config = write_config(tmp_path, pg, "app5")
        assert run(pg, "backup", "--config", str(config)).returncode == 0
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = run(pg, "drill", "--config", str(config), "--pushgateway", url)
        assert result.returncode == 0, result.stderr
    finally:
        server.shutdown()
    [(method, path, body)] = received
    assert method == "POST" and path == "/metrics/job/agent-restore-drill"
    assert b"agent_restore_drill_last_success_timestamp_seconds" in body
    assert b"agent_restore_drill_rto_seconds" in body


def test_bad_config_is_one_clear_line(pg: TempPostgres, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"sources": [{"name": "db", "kind": "postgres", "host": "h"}]}))
    result = run(pg, "verify", "--config", str(path))
    assert result.returncode == 2
    assert "sources[0]" in result.stderr and "database" in result.stderr and "Traceback" not in result.stderr


def test_drill_restores_into_a_separate_scratch_server(pg: TempPostgres, tmp_path: Path) -> None:
    """As in the drill Job: a throwaway server beside it, never a database on the live one."""
    make_app_db(pg, "app6", rows=300)
    config = write_config(tmp_path, pg, "app6")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    with TempPostgres(password=pg.password) as scratch:
        result = run(
            pg,
            "drill",
            "--config",
            str(config),
            "--scratch-host",
            scratch.host,
            "--scratch-port",
            str(scratch.port),
            "--scratch-user",
            scratch.user,
            "--keep-scratch",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert scratch.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'app6_drill_%'") == "1"
    assert pg.psql("SELECT count(*) FROM pg_database WHERE datname LIKE 'app6_drill_%'") == "0"


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's prometheus-pushgateway) on a free loopback port."""
    import shutil
    import socket
    import urllib.request

    binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway not installed (tools/apt-packages.txt)", pytrace=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("pushgateway did not become ready")
    yield url
    proc.terminate()
    proc.wait(10)


def test_backup_and_drill_metrics_land_in_a_real_pushgateway(
    pg: TempPostgres, tmp_path: Path, pushgateway: str
) -> None:
    """What the alert rules read: backup_age and drill RTO/RPO series, grouped per namespace and source."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    make_app_db(pg, "app7", rows=100)
    config = write_config(tmp_path, pg, "app7")
    raw = json.loads(config.read_text())
    raw["pushgateway_url"] = pushgateway  # from the config, as the stack sets it
    config.write_text(json.dumps(raw))
    env = {**pg.env, "POD_NAMESPACE": "agents-test"}
    for command in ("backup", "drill"):
        result = subprocess.run(
            [*RUNTIME, command, "--config", str(config)], capture_output=True, text=True, env=env, timeout=300
        )
        assert result.returncode == 0, result.stderr
    text = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    [backup] = BackupStore(tmp_path / "backups").backups("db")
    key = (
        "agent_backup_last_success_timestamp_seconds",
        (("instance", ""), ("job", "agent-backup"), ("namespace", "agents-test"), ("source", "db")),
    )
    assert samples[key] == pytest.approx(backup.manifest["finished_at"])
    drill_labels = (("instance", ""), ("job", "agent-restore-drill"), ("namespace", "agents-test"))
    assert samples[("agent_restore_drill_rto_seconds", drill_labels)] > 0
    assert ("agent_restore_drill_last_success_timestamp_seconds", drill_labels) in samples

    # The Pushgateway is gone: the backup is still made, but the job fails loudly, in one line.
    raw["pushgateway_url"] = "http://127.0.0.1:9"
    config.write_text(json.dumps(raw))
    result = subprocess.run(
        [*RUNTIME, "backup", "--config", str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert any(json.loads(ln)["msg"] == "metrics export failed" for ln in result.stderr.splitlines())
