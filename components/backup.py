"""Backup: scheduled backups of the declared state sources, restore Jobs and the restore drill.

Kubernetes schedules (CronJobs, concurrencyPolicy Forbid); `agent_runtime.recovery` does the
work inside the pods (dump, compress, checksum manifest, retention, verify, restore, drill).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from agent_runtime.config import BackupConfig, BackupSource, BackupTarget
from components import labels as L
from components import workload
from components.config import PlatformConfig, Resources, ResourceSpec
from components.errors import ResourceError

CONFIG_DIR = "/etc/agent-backup"
CONFIG_FILE = "backup.json"
TARGET_DIR = "/backups"
SOURCE_DIR = "/source"
# The drill restores into a throwaway PostgreSQL beside it, never into a live database.
SCRATCH_POSTGRES_IMAGE = "postgres:15.10-bookworm"
JOB_RESOURCES = ResourceSpec(requests=Resources(cpu="250m", memory="256Mi"),
                             limits=Resources(cpu="1", memory="1Gi"))
# A restore is never scheduled: this CronJob is suspended and used as a template with
# `kubectl create job --from=cronjob/restore-<source> restore-now`.
NEVER = "0 0 31 2 *"


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
                spec=workload.cron_job_spec(backup.schedule, pod("backup", source)),
                opts=child,
            )
            k8s.batch.v1.CronJob(
                f"{name}-restore-{source.name}",
                metadata=meta(f"restore-{source.name}", "restore", {L.BACKUP_SOURCE: source.name}),
                spec={**workload.cron_job_spec(NEVER, pod("restore", source)), "suspend": True},
                opts=child,
            )
            self.schedules[source.name] = backup.schedule
        if backup.drill.enabled:
            k8s.batch.v1.CronJob(
                f"{name}-restore-drill",
                metadata=meta("restore-drill", "restore-drill"),
                spec=workload.cron_job_spec(
                    backup.drill.schedule,
                    pod("drill", None, init_containers=[_scratch_postgres()]),
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


def _scratch_postgres() -> dict[str, Any]:
    """A native sidecar (restartPolicy Always init container): it runs beside the drill and is
    stopped when the drill finishes, so the Job completes."""
    return {
        "name": "scratch-postgres",
        "image": SCRATCH_POSTGRES_IMAGE,
        "restartPolicy": "Always",
        "env": [{"name": "POSTGRES_HOST_AUTH_METHOD", "value": "trust"}, {"name": "PGDATA", "value": "/tmp/pgdata"}],
        "ports": [{"containerPort": 5432, "name": "postgres"}],
        "resources": workload.resources(JOB_RESOURCES),
        "securityContext": {**workload.container_security_context(), "runAsUser": 999, "runAsGroup": 999},
        "readinessProbe": {"exec": {"command": ["pg_isready", "-h", "127.0.0.1"]}, "periodSeconds": 2},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "pg-run", "mountPath": "/var/run/postgresql"}],
    }
