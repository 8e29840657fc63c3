"""Recovery never destroys what it did not create, against a real PostgreSQL (issue 12, items 1, 2, 4).

The hurried operator's path: a drill on the live server with a 63-byte database name, a restore
over a database that holds newer rows, a dump cut short whose manifest agrees with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_runtime.recovery_sources import (
    PgConn,
    RecoveryError,
    create_database,
    drop_created_database,
    restore_postgres,
    scratch_name,
)
from agent_runtime.recovery_store import BackupStore
from tests.pgtemp import TempPostgres

from .test_recovery import fingerprint_db, make_app_db, run, write_config


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    """One real server per module (about a second to start)."""
    server = TempPostgres()
    try:
        server.start()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    os.environ["PGPASSWORD"] = server.password  # for the library calls made in-process
    yield server
    server.stop()


def databases(pg: TempPostgres) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database").splitlines())


def test_drill_on_the_live_server_with_a_63_byte_name_never_touches_the_source(
    pg: TempPostgres, tmp_path: Path
) -> None:
    name = "agents_" + "x" * 56
    assert len(name) == 63
    make_app_db(pg, name, rows=300)
    before = fingerprint_db(pg, name)
    config = write_config(tmp_path, pg, name)
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    existing = databases(pg)

    result = run(pg, "drill", "--config", str(config))  # no --scratch-host: scratch on the live server
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["sources"][0]["matches_manifest"]
    assert fingerprint_db(pg, name) == before
    assert databases(pg) == existing  # the scratch database is gone, nothing else is

    # Kept on request: its name fits in 63 bytes, differs from the source's, and carries the marker.
    result = run(pg, "drill", "--config", str(config), "--keep-scratch")
    assert result.returncode == 0, result.stderr
    [scratch] = databases(pg) - existing
    assert scratch != name and len(scratch.encode()) <= 63 and "_drill_" in scratch
    comment = pg.psql(f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{scratch}'")
    assert comment.startswith("agent-platform created drill scratch ")
    pg.psql(f'DROP DATABASE "{scratch}"')


def test_scratch_names_fit_63_bytes_on_a_character_boundary() -> None:
    base = "é" * 40  # 80 bytes of UTF-8
    name = scratch_name(base, 1_800_000_000.0)
    assert len(name.encode()) <= 63 and name.encode().decode() == name and not name.startswith(base)
    assert scratch_name(base, 1_800_000_000.0) != name  # a random part: two drills never share one


def test_only_a_database_carrying_our_marker_is_dropped(pg: TempPostgres) -> None:
    server = PgConn(pg.host, pg.port, pg.user, "postgres")
    created = create_database(server, "marked_db", purpose="test")
    # Someone drops it and creates a database of the same name: it is not ours any more.
    pg.psql("DROP DATABASE marked_db")
    pg.psql("CREATE DATABASE marked_db")
    with pytest.raises(RecoveryError, match="does not carry the marker"):
        drop_created_database(created)
    assert "marked_db" in databases(pg)
    pg.psql(f"COMMENT ON DATABASE marked_db IS '{created.marker}'")
    drop_created_database(created)
    assert "marked_db" not in databases(pg)


def test_names_over_63_bytes_are_refused_before_postgres_truncates_them(pg: TempPostgres, tmp_path: Path) -> None:
    make_app_db(pg, "short_db", rows=50)
    config = write_config(tmp_path, pg, "short_db")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    result = run(pg, "restore", "--config", str(config), "--target-database", "y" * 64, "--create")
    assert result.returncode == 2 and "64 bytes" in result.stderr and "Traceback" not in result.stderr
    assert not any(d.startswith("y" * 63) for d in databases(pg))
    raw = json.loads(config.read_text())
    raw["sources"][0]["database"] = "z" * 64
    config.write_text(json.dumps(raw))
    result = run(pg, "verify", "--config", str(config))
    assert result.returncode == 2 and "sources[0]" in result.stderr and "63" in result.stderr


def test_restore_over_newer_rows_is_refused_and_names_what_it_found(pg: TempPostgres, tmp_path: Path) -> None:
    make_app_db(pg, "live", rows=400)
    config = write_config(tmp_path, pg, "live")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    # After the backup, the live database takes a newer row.
    pg.psql("INSERT INTO agents.conversations (id, owner, created) VALUES (100000, 'late', now())", "live")
    before = fingerprint_db(pg, "live")

    result = run(pg, "restore", "--config", str(config), "--target-database", "live")
    assert result.returncode == 4, result.stderr
    message = result.stderr
    assert "3 table(s), 1201 row(s)" in message
    assert "agents.conversations: 401 row(s), newest " in message and "public.empty_table: 0 row(s)" in message
    assert "newer than the backup's recovery point" in message and "--replace live" in message
    assert fingerprint_db(pg, "live") == before

    # Confirming another name is no confirmation; the old --clean explains what replaced it.
    assert (
        run(pg, "restore", "--config", str(config), "--target-database", "live", "--replace", "other").returncode == 4
    )
    result = run(pg, "restore", "--config", str(config), "--target-database", "live", "--clean")
    assert result.returncode == 2 and "--replace" in result.stderr
    assert fingerprint_db(pg, "live") == before

    result = run(pg, "restore", "--config", str(config), "--target-database", "live", "--replace", "live")
    assert result.returncode == 0, result.stderr
    assert pg.psql("SELECT count(*) FROM agents.conversations", "live") == "400"


def _cut_and_reseal(backup_dir: Path, fraction: float) -> None:
    """Cut the dump and rewrite the manifest to agree, as a dump interrupted before sealing would."""
    dump = backup_dir / "data.dump"
    data = dump.read_bytes()[: int(dump.stat().st_size * fraction)]
    dump.write_bytes(data)
    manifest = json.loads((backup_dir / "manifest.json").read_text())
    manifest["files"] = [{"name": "data.dump", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}]
    (backup_dir / "manifest.json").write_text(json.dumps(manifest))


def test_verify_reads_every_byte_of_a_dump_cut_at_60_percent(pg: TempPostgres, tmp_path: Path) -> None:
    make_app_db(pg, "cut", rows=3000)
    config = write_config(tmp_path, pg, "cut")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    [backup] = BackupStore(tmp_path / "backups").backups("db")
    _cut_and_reseal(backup.path, 0.6)
    result = run(pg, "verify", "--config", str(config))
    assert result.returncode == 3 and "truncated or damaged" in result.stderr
    result = run(pg, "restore", "--config", str(config), "--target-database", "cut_copy", "--create")
    assert result.returncode == 3 and "cut_copy" not in databases(pg)


def test_a_restore_that_fails_leaves_the_target_as_it_was(pg: TempPostgres, tmp_path: Path) -> None:
    """pg_restore itself fails (the dump is cut), past any verify: nothing changes."""
    make_app_db(pg, "keep", rows=2000)
    config = write_config(tmp_path, pg, "keep")
    assert run(pg, "backup", "--config", str(config)).returncode == 0
    [backup] = BackupStore(tmp_path / "backups").backups("db")
    _cut_and_reseal(backup.path, 0.6)
    pg.psql("UPDATE agents.conversations SET owner = 'changed' WHERE id < 100", "keep")
    before = fingerprint_db(pg, "keep")
    conn = PgConn(pg.host, pg.port, pg.user, "keep")
    with pytest.raises(RecoveryError, match="is as it was"):
        restore_postgres(conn, backup.file("data.dump"), replace="keep")
    assert fingerprint_db(pg, "keep") == before
    # Into a database the restore creates: it is dropped again, so a retry starts from nothing.
    fresh = PgConn(pg.host, pg.port, pg.user, "keep_fresh")
    with pytest.raises(RecoveryError, match="dropped again"):
        restore_postgres(fresh, backup.file("data.dump"), create=True)
    assert "keep_fresh" not in databases(pg)
