"""Backup: scheduled backups of the declared state sources, restore Jobs and the restore drill.

Kubernetes schedules (CronJobs, concurrencyPolicy Forbid); `agent_runtime.recovery` does the
work inside the pods (dump, compress, checksum manifest, retention, verify, restore, drill).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from agent_runtime.config import BackupConfig, BackupSource, BackupTarget, RestoreDrillConfig
from components import labels as L
from components import workload
from components.config import PlatformConfig, Resources, ResourceSpec
from components.errors import ResourceError

CONFIG_DIR = "/etc/agent-backup"
CONFIG_FILE = "backup.json"
TARGET_DIR = "/backups"
SOURCE_DIR = "/source"
# The drill restores into a throwaway PostgreSQL beside it, never into a live database.
JOB_RESOURCES = ResourceSpec(requests=Resources(cpu="250m", memory="256Mi"),
                             limits=Resources(cpu="1", memory="1Gi"))
# A restore is never scheduled: this CronJob is suspended and used as a template with
# `kubectl create job --from=cronjob/restore-<source> restore-now`.
NEVER = "0 0 31 2 *"
# The components of every pod that reads or writes agent state. The NetworkPolicies
# (components/platform.py) let exactly these reach the databases, the target and the Pushgateway.
STATE_COMPONENTS = ("backup", "restore", "restore-drill", "wal-receiver")


def job_labels(component: str, source: str | None) -> dict[str, str]:
    """The labels of one backup, restore or drill Job's pods."""
    assert component in STATE_COMPONENTS
    name = component if source is None else f"{component}-{source}"
    return {**L.selector_labels(name, component), L.PART_OF_KEY: L.PART_OF}


def backup_args(command: str, source: BackupSource | None, pushgateway_url: str | None = None) -> list[str]:
    """`python -m agent_runtime <command>` arguments (see agent_runtime.recovery).

    For an s3 target, TARGET_DIR is a scratch volume: the staging directory of one run."""
    args = [command, "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--target-dir", TARGET_DIR]
    if command in ("backup", "drill") and pushgateway_url:
        # Where the alert rules read backup_age and the drill's RTO/RPO (metrics_signals).
        args += ["--pushgateway", pushgateway_url]
    if source is not None:
        args += ["--source", source.name]
    if command == "backup" and source is not None and source.kind == "files":
        args += ["--files-root", SOURCE_DIR]
    if command == "restore" and source is not None:
        # Run on purpose only (the CronJob is suspended). Never --replace: a target that holds data
        # is refused (exit 4, naming what it holds); replacing it is decided per run (README).
        if source.kind == "postgres":
            args += ["--target-database", source.database or ""]
        else:
            args += ["--target-path", SOURCE_DIR]
    if command == "drill":
        args += ["--scratch-host", "127.0.0.1", "--scratch-port", "5432", "--scratch-user", "postgres"]
    return args


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(source: BackupSource | None, target: BackupTarget) -> list[dict[str, Any]]:
    # The namespace goes into the Pushgateway grouping key, so stacks sharing one never collide.
    env: list[dict[str, Any]] = [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    ]
    if target.kind == "s3":
        assert target.credentials_secret and target.encryption_secret
        env += [
            _secret_env(key, target.credentials_secret, key) for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
        env.append(_secret_env("RESTIC_PASSWORD", target.encryption_secret, "RESTIC_PASSWORD"))
    if source is None or source.kind != "postgres" or not source.password_secret:
        return env
    return [*env, _secret_env("PGPASSWORD", source.password_secret, source.password_secret_key)]


class Backup(pulumi.ComponentResource):
    """Per source: a backup CronJob and a suspended restore CronJob (the Job template); per stack:
    the backup volume (when the target is a PVC) and the scheduled restore drill."""

    schedules: dict[str, str]

    def __init__(
        self,
        name: str,
        config: PlatformConfig,
        *,
        namespace: pulumi.Input[str],
        image: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        # That an enabled backup has sources, uniquely named, is the stack config's to check.
        backup = config.backup
        super().__init__("agent-platform:index:Backup", name, None, opts)
        if not backup.enabled:
            raise ResourceError("backup.enabled is false: build a Backup only for a stack that backs up", self)
        child = pulumi.ResourceOptions(parent=self)
        environment = config.environment
        await_annotations = {L.SKIP_AWAIT: "true"} if config.kubernetes.skip_await else {}

        def meta(resource_name: str, component: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
            return {
                "name": resource_name,
                "namespace": namespace,
                "labels": L.standard_labels(resource_name, component, environment),
                "annotations": {**(annotations or {}), **await_annotations},
            }

        settings = k8s.core.v1.ConfigMap(
            f"{name}-settings",
            metadata=meta("backup-settings", "backup"),
            data={CONFIG_FILE: backup.model_dump_json(indent=2)},
            opts=child,
        )
        target_volume = self._target_volume(name, backup, meta, child)

        def pod(
            command: str,
            source: BackupSource | None,
            extra_containers: list[dict] | None = None,
            init_containers: list[dict] | None = None,
        ) -> dict[str, Any]:
            mounts = [{"name": "settings", "mountPath": CONFIG_DIR, "readOnly": True}]
            volumes: list[dict[str, Any]] = [{"name": "settings", "configMap": {"name": settings.metadata["name"]}}]
            if target_volume is not None:
                mounts.append({"name": "target", "mountPath": TARGET_DIR})
                volumes.append({"name": "target", "persistentVolumeClaim": {"claimName": target_volume}})
            else:
                # s3: one run's staging (a dump is verified here before it is sent), bounded by target.size.
                mounts.append({"name": "target", "mountPath": TARGET_DIR})
                volumes.append({"name": "target", "emptyDir": {"sizeLimit": backup.target.size}})
            if source is not None and source.kind == "files":
                mounts.append({"name": "source", "mountPath": SOURCE_DIR, "readOnly": command == "backup"})
                volumes.append({"name": "source", "persistentVolumeClaim": {"claimName": source.claim_name}})
            container = workload.job_container(
                name=command,
                image=image,
                spec=JOB_RESOURCES,
                args=backup_args(command, source, backup.pushgateway_url),
                env=_env(source, backup.target),
                volume_mounts=mounts,
            )
            return workload.job_pod_spec([container, *(extra_containers or [])], volumes, init_containers)

        self.schedules = {}
        for source in backup.sources:
            annotations = {L.BACKUP_SOURCE: source.name, L.RETENTION: f"{backup.retention_count} backups"}
            k8s.batch.v1.CronJob(
                f"{name}-{source.name}",
                metadata=meta(f"backup-{source.name}", "backup", annotations),
                spec=workload.cron_job_spec(backup.schedule, pod("backup", source), job_labels("backup", source.name)),
                opts=child,
            )
            k8s.batch.v1.CronJob(
                f"{name}-restore-{source.name}",
                metadata=meta(f"restore-{source.name}", "restore", {L.BACKUP_SOURCE: source.name}),
                spec={**workload.cron_job_spec(NEVER, pod("restore", source), job_labels("restore", source.name)),
                      "suspend": True},
                opts=child,
            )
            self.schedules[source.name] = backup.schedule
            if source.wal_archiving.enabled:
                self.schedules[f"basebackup-{source.name}"] = wal_archiving(
                    name, source, backup, meta, settings.metadata["name"], target_volume, image, child)
        if backup.drill.enabled:
            k8s.batch.v1.CronJob(
                f"{name}-restore-drill",
                metadata=meta("restore-drill", "restore-drill"),
                spec=workload.cron_job_spec(
                    backup.drill.schedule,
                    pod("drill", None, init_containers=[_scratch_postgres(backup.drill)]),
                    job_labels("restore-drill", None),
                ),
                opts=child,
            )
            self.schedules["restore-drill"] = backup.drill.schedule
        self.register_outputs({"schedules": self.schedules})

    @staticmethod
    def _target_volume(
        name: str, backup: BackupConfig, meta, opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str] | None:
        target = backup.target
        if target.kind != "pvc":
            return None
        if target.claim_name:
            return pulumi.Output.from_input(target.claim_name)
        claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-target",
            metadata=meta("agent-backups", "backup"),
            spec={
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": target.size}},
                **({"storageClassName": target.storage_class} if target.storage_class else {}),
            },
            # Turning backups off keeps what was backed up. Destroying the whole stack deletes the
            # namespace and so this claim too: backups that must outlive the stack belong on a
            # claim the stack does not own (`target.claim_name`).
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        return claim.metadata["name"]


WAL_DIR = "/wal"
WAL_HEARTBEAT = f"{WAL_DIR}/.heartbeat"
# The receiver's liveness: its heartbeat (written each second while pg_receivewal runs) is fresh.
_HEARTBEAT_CHECK = (
    "import os, sys, time; "
    f"sys.exit(0 if time.time() - os.stat('{WAL_HEARTBEAT}').st_mtime < 60 else 1)"
)


def wal_receiver_pod(source: BackupSource, backup: BackupConfig, settings_name: pulumi.Input[str],
                     image: pulumi.Input[str]) -> dict[str, Any]:
    """The receiver's pod: `wal-receive` streaming into the WAL volume (see agent_runtime.recovery_wal)."""
    args = ["wal-receive", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}", "--source", source.name,
            "--wal-dir", f"{WAL_DIR}/wal", "--heartbeat", WAL_HEARTBEAT]
    container = workload.job_container(
        name="wal-receive", image=image, spec=JOB_RESOURCES, args=args, env=_env(source, backup.target),
        volume_mounts=[{"name": "settings", "mountPath": CONFIG_DIR, "readOnly": True},
                       {"name": "wal", "mountPath": WAL_DIR}],
    )
    probe = {"exec": {"command": ["python", "-c", _HEARTBEAT_CHECK]}, "periodSeconds": 10, "timeoutSeconds": 5}
    container.update(
        startupProbe={**probe, "failureThreshold": 30},
        livenessProbe={**probe, "failureThreshold": 6},
        readinessProbe={**probe, "failureThreshold": 2},
    )
    spec = workload.job_pod_spec([container], [{"name": "settings", "configMap": {"name": settings_name}}])
    # The WAL written so far is flushed on SIGTERM (pg_receivewal) and pushed once more (s3).
    return {**spec, "restartPolicy": "Always", "terminationGracePeriodSeconds": 120}


def wal_archiving(name: str, source: BackupSource, backup: BackupConfig, meta, settings_name: pulumi.Input[str],
                  target_volume: pulumi.Input[str] | None, image: pulumi.Input[str],
                  opts: pulumi.ResourceOptions) -> str:
    """Point-in-time recovery of one PostgreSQL source: the WAL receiver and the base backups.

    The receiver is a StatefulSet of one: a replication slot has a single consumer, and a
    StatefulSet never runs two pods of one ordinal at once (a Deployment may, during a rollout or
    a partition); its volume (volumeClaimTemplates) is kept when the set is deleted or scaled down.
    What the database itself needs (recovery_wal.DATABASE_SETTINGS, a role with REPLICATION) is
    on the set as an annotation. Returns the base backups' schedule.
    """
    from agent_runtime.recovery_wal import DATABASE_SETTINGS, slot_name

    wal = source.wal_archiving
    selector = L.selector_labels(f"wal-{source.name}", "wal-receiver")
    annotations = {
        L.BACKUP_SOURCE: source.name,
        "agent-platform.io/replication-slot": slot_name(source.name),
        "agent-platform.io/database-settings": ", ".join(f"{k}={v}" for k, v in DATABASE_SETTINGS.items()),
    }
    metadata = meta(f"wal-{source.name}", "wal-receiver", annotations)
    k8s.apps.v1.StatefulSet(
        f"{name}-wal-{source.name}",
        metadata=metadata,
        spec={
            "replicas": 1,
            "serviceName": f"wal-{source.name}",
            "selector": {"matchLabels": selector},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": metadata["labels"]},
                "spec": wal_receiver_pod(source, backup, settings_name, image),
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "wal"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": wal.volume_size}},
                    **({"storageClassName": wal.storage_class} if wal.storage_class else {}),
                },
            }],
        },
        opts=opts,
    )
    volumes: list[dict[str, Any]] = [{"name": "settings", "configMap": {"name": settings_name}}]
    if target_volume is not None:
        volumes.append({"name": "target", "persistentVolumeClaim": {"claimName": target_volume}})
    else:
        volumes.append({"name": "target", "emptyDir": {"sizeLimit": backup.target.size}})
    container = workload.job_container(
        name="basebackup", image=image, spec=JOB_RESOURCES, args=backup_args("basebackup", source),
        env=_env(source, backup.target),
        volume_mounts=[{"name": "settings", "mountPath": CONFIG_DIR, "readOnly": True},
                       {"name": "target", "mountPath": TARGET_DIR}],
    )
    k8s.batch.v1.CronJob(
        f"{name}-basebackup-{source.name}",
        metadata=meta(f"basebackup-{source.name}", "backup", {L.BACKUP_SOURCE: source.name}),
        spec=workload.cron_job_spec(wal.base_backup_schedule, workload.job_pod_spec([container], volumes),
                                    job_labels("backup", source.name)),
        opts=opts,
    )
    return wal.base_backup_schedule


def _scratch_postgres(drill: RestoreDrillConfig) -> dict[str, Any]:
    """A native sidecar (restartPolicy Always init container): it runs beside the drill and is
    stopped when the drill finishes, so the Job completes."""
    return {
        "name": "scratch-postgres",
        "image": drill.scratch_image,
        "restartPolicy": "Always",
        "env": [{"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"}, {"name": "PGDATA", "value": "/tmp/pgdata"}],
        "ports": [{"containerPort": 5432, "name": "postgres"}],
        "resources": workload.resources(JOB_RESOURCES),
        "securityContext": {**workload.container_security_context(), "runAsUser": drill.scratch_uid,
                            "runAsGroup": drill.scratch_uid},
        "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1"]}, "periodSeconds": 2},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "pg-run", "mountPath": "/var/run/postgresql"}],
    }
