"""components/backup.py: one backup per declared source, never overlapping; the drill restores elsewhere."""

from __future__ import annotations

import copy

import pytest

from tests.stacks import stack_values

CRON_JOB = "kubernetes:batch/v1:CronJob"


def _cron_jobs(mocks) -> dict[str, dict]:
    return {c.inputs["metadata"]["name"]: c.inputs for c in mocks.of_type(CRON_JOB)}


def test_each_source_gets_a_forbid_concurrency_backup_and_a_restore_template(run_stack):
    mocks = run_stack(stack_values("staging"), "staging")
    jobs = _cron_jobs(mocks)
    assert {"backup-agent-state", "backup-workspace", "restore-agent-state", "restore-workspace",
            "restore-drill"} == set(jobs)
    backup = jobs["backup-agent-state"]
    assert backup["spec"]["concurrencyPolicy"] == "Forbid"
    assert backup["spec"]["schedule"] == "0 */4 * * *"
    assert backup["metadata"]["annotations"]["agent-platform.io/backup-source"] == "agent-state"
    assert backup["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
    container = backup["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:1] == ["backup"] and "agent-state" in container["args"]
    assert container["env"][1:] == [{"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "agent-state-db", "key": "password"}}}]
    assert jobs["restore-agent-state"]["spec"]["suspend"] is True


def test_files_source_is_mounted_read_only_for_backup(run_stack):
    jobs = _cron_jobs(run_stack(stack_values("staging"), "staging"))
    pod = jobs["backup-workspace"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "source")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "source")
    assert volume["persistentVolumeClaim"]["claimName"] == "agent-workspace"


def test_drill_restores_into_a_scratch_postgres_sidecar(run_stack):
    jobs = _cron_jobs(run_stack(stack_values("prod"), "prod"))
    pod = jobs["restore-drill"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    sidecar = pod["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always", "a native sidecar stops when the drill ends"
    assert pod["containers"][0]["args"][0] == "drill"
    assert jobs["restore-drill"]["metadata"]["labels"]["app.kubernetes.io/component"] == "restore-drill"


def test_backup_volume_survives_stack_deletion(run_stack):
    mocks = run_stack(stack_values("dev"), "dev")
    claims = mocks.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert [c.inputs["spec"]["resources"]["requests"]["storage"] for c in claims] == ["20Gi"]


def test_no_backup_objects_when_disabled(run_stack):
    mocks = run_stack(stack_values("local"), "local")
    assert mocks.of_type(CRON_JOB) == []


def test_job_arguments_and_settings_are_what_the_runtime_accepts(run_stack, tmp_path):
    """The CronJobs speak agent_runtime's own command line and config file: no drift."""
    from agent_runtime.__main__ import build_parser
    from agent_runtime.recovery import load_backup_config

    mocks = run_stack(stack_values("staging"), "staging")
    settings = next(c for c in mocks.of_type("kubernetes:core/v1:ConfigMap") if "backup-settings" in c.name)
    (tmp_path / "backup.json").write_text(settings.inputs["data"]["backup.json"])
    loaded = load_backup_config(str(tmp_path / "backup.json"))
    assert [s.name for s in loaded.sources] == ["agent-state", "workspace"]
    parser = build_parser()
    for job in _cron_jobs(mocks).values():
        args = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        parsed = parser.parse_args(args)
        assert parsed.command == args[0] and parsed.config == "/etc/agent-backup/backup.json"


def test_s3_target_takes_its_credentials_and_key_from_secrets(run_stack):
    values = copy.deepcopy(stack_values("prod"))
    values["backup"]["target"] = {"kind": "s3", "endpoint": "https://s3.backup.example.com", "bucket": "agent-backups",
                                  "credentials_secret": "backup-s3", "encryption_secret": "backup-key", "size": "50Gi"}
    mocks = run_stack(values, "prod")
    assert mocks.of_type("kubernetes:core/v1:PersistentVolumeClaim") == []
    pod = _cron_jobs(mocks)["backup-agent-state"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "backup-s3", "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "backup-s3"
    assert env["RESTIC_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "backup-key", "key": "RESTIC_PASSWORD"}
    assert all("value" not in e for e in env.values())
    staging = next(v for v in pod["volumes"] if v["name"] == "target")
    assert staging == {"name": "target", "emptyDir": {"sizeLimit": "50Gi"}}


def test_restore_template_never_replaces_what_the_target_holds(run_stack):
    """`kubectl create job --from=cronjob/restore-<source>` refuses a non-empty target (exit 4)."""
    jobs = _cron_jobs(run_stack(stack_values("prod"), "prod"))
    restores = [j for name, j in jobs.items() if name.startswith("restore-") and name != "restore-drill"]
    assert restores
    for job in restores:
        args = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[0] == "restore"
        assert "--clean" not in args and "--replace" not in args


def test_backup_and_drill_jobs_push_their_metrics_where_the_stack_says(run_stack):
    values = stack_values("prod")
    url = values["backup"]["pushgateway_url"]
    jobs = _cron_jobs(run_stack(values, "prod"))
    for name in ("backup-agent-state", "backup-workspace", "restore-drill"):
        container = jobs[name]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        args = container["args"]
        assert args[args.index("--pushgateway") + 1] == url, name
        assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in container[
            "env"
        ]


def test_a_backup_for_a_stack_without_backups_is_refused_by_the_component(mocked_engine):
    from components.backup import Backup
    from components.config import validate_platform
    from components.errors import ResourceError

    config = validate_platform(stack_values("local"), "local")
    assert not config.backup.enabled
    with pytest.raises(ResourceError, match="^agent-platform:index:Backup b: backup.enabled is false"):
        Backup("b", config, namespace="agents-local", image="runtime:1")
    assert mocked_engine.of_type(CRON_JOB) == []


STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"


def _with_wal_archiving(env: str, **wal) -> dict:
    values = copy.deepcopy(stack_values(env))
    source = next(s for s in values["backup"]["sources"] if s["kind"] == "postgres")
    source["wal_archiving"] = {"enabled": True, **wal}
    return values


def test_wal_archiving_runs_one_receiver_with_a_kept_volume_and_scheduled_base_backups(run_stack):
    """Point-in-time recovery: a StatefulSet of one streams the WAL (one consumer per slot), its
    volume outlives the set, and base backups run on their own schedule; both speak the runtime's CLI."""
    from agent_runtime.__main__ import build_parser

    mocks = run_stack(_with_wal_archiving("prod", base_backup_schedule="0 1 * * *", volume_size="30Gi"), "prod")
    (receiver,) = [s.inputs for s in mocks.of_type(STATEFUL_SET)]
    assert receiver["metadata"]["name"] == "wal-agent-state"
    spec = receiver["spec"]
    assert spec["replicas"] == 1
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert spec["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "30Gi"
    assert set(spec["selector"]["matchLabels"].items()) <= set(spec["template"]["metadata"]["labels"].items())
    assert "max_slot_wal_keep_size" in receiver["metadata"]["annotations"]["agent-platform.io/database-settings"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    (container,) = pod["containers"]
    parsed = build_parser().parse_args(container["args"])
    assert (parsed.command, parsed.source, parsed.wal_dir) == ("wal-receive", ["agent-state"], "/wal/wal")
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["wal"] == "/wal"
    assert "livenessProbe" in container and container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "agent-state-db"

    base = _cron_jobs(mocks)["basebackup-agent-state"]
    assert base["spec"]["schedule"] == "0 1 * * *" and base["spec"]["concurrencyPolicy"] == "Forbid"
    base_container = base["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    parsed = build_parser().parse_args(base_container["args"])
    assert (parsed.command, parsed.source, parsed.target_dir) == ("basebackup", ["agent-state"], "/backups")


def test_no_receiver_without_wal_archiving(run_stack):
    mocks = run_stack(stack_values("staging"), "staging")
    assert mocks.of_type(STATEFUL_SET) == []
    assert not [n for n in _cron_jobs(mocks) if n.startswith("basebackup-")]
