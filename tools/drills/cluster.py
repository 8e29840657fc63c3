"""The cluster side of a drill, through the Kubernetes API: pod events recorded on the drill's
clock, and the faults (delete, evict, SIGKILL of a container)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tools.drills.records import PodEvent


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def is_ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class PodWatcher:
    """Records every pod event of the selected pods until stopped (a watch on its own thread)."""

    def __init__(self, api: client.ApiClient, namespace: str, selector: str, now: Callable[[], float]) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.selector = selector
        self.now = now
        self.events: list[PodEvent] = []
        self._ready: dict[str, bool] = {}
        self._terminating: set[str] = set()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, name="pod-watcher", daemon=True)
        self._started = threading.Event()
        self._stopping = threading.Event()

    def start(self) -> PodWatcher:
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> list[PodEvent]:
        self._stopping.set()
        self._watch.stop()
        self._thread.join(15)
        return self.events

    def record(self, pod: str, kind: str, detail: str = "") -> None:
        self.events.append(PodEvent(self.now(), pod, kind, detail))  # type: ignore[arg-type]

    def _run(self) -> None:
        listing = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
        for pod in listing.items:
            self._observe("ADDED", pod)
        self._started.set()
        version = listing.metadata.resource_version
        while not self._stopping.is_set():
            try:
                for item in self._watch.stream(self.core.list_namespaced_pod, self.namespace,
                                               label_selector=self.selector, resource_version=version,
                                               timeout_seconds=60):
                    version = item["object"].metadata.resource_version
                    self._observe(item["type"], item["object"])
            except ApiException as exc:
                if exc.status == 410:  # the version expired: start again from a fresh list
                    version = None
                    continue
                if not self._stopping.is_set():
                    raise
            except (urllib3.exceptions.HTTPError, OSError):
                # stop() closes the stream under the reader; otherwise the watch is resumed.
                if self._stopping.is_set():
                    return
                time.sleep(0.5)

    def _observe(self, kind: str, pod: Any) -> None:
        name = pod.metadata.name
        if kind == "DELETED":
            self._ready.pop(name, None)
            self.record(name, "deleted")
            return
        if name not in self._ready:
            self._ready[name] = False
            self.record(name, "added")
        if pod.metadata.deletion_timestamp is not None and name not in self._terminating:
            self._terminating.add(name)
            self.record(name, "terminating")
        ready = is_ready(pod)
        if ready != self._ready[name]:
            self._ready[name] = ready
            self.record(name, "ready" if ready else "unready")

    def ready_pods(self) -> set[str]:
        return {name for name, ready in self._ready.items() if ready}

    def present_pods(self) -> set[str]:
        """Every pod not yet deleted, terminating ones included."""
        return set(self._ready)


@dataclasses.dataclass(frozen=True)
class Autoscaler:
    """What a drill reads of a HorizontalPodAutoscaler: its bounds, windows and current target."""

    min_replicas: int
    max_replicas: int
    desired: int
    scale_up_window: float
    scale_down_window: float


class Faults:
    """What a drill does to the cluster. `kill_container` is the node's (it reaches containerd)."""

    def __init__(self, api: client.ApiClient, namespace: str,
                 kill_container: Callable[[str], None] | None = None) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self._kill = kill_container

    def delete_pod(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, self.namespace)

    def evict_pod(self, name: str) -> int:
        """The Eviction API, as `kubectl drain` uses it: 201 evicted, 429 refused by a PDB."""
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=self.namespace))
        try:
            self.core.create_namespaced_pod_eviction(name, self.namespace, body)
        except ApiException as exc:
            return exc.status
        return 201

    def kill_container(self, pod: str, container: str) -> str:
        """SIGKILL the container's process (what an OOM kill or a crash looks like to the kubelet)."""
        if self._kill is None:
            raise RuntimeError("this cluster gives the drill no way to kill a container")
        status = self.core.read_namespaced_pod(pod, self.namespace).status
        ids = [c.container_id for c in status.container_statuses or [] if c.name == container and c.container_id]
        if not ids:
            raise RuntimeError(f"pod {pod} has no running container {container!r}")
        container_id = ids[0].split("://", 1)[-1]
        self._kill(container_id)
        return container_id

    def autoscaler(self, deployment: str) -> Autoscaler:
        """The HPA scaling `deployment` (the API's defaults where its behavior says nothing)."""
        hpas = client.AutoscalingV2Api(self.core.api_client).list_namespaced_horizontal_pod_autoscaler(self.namespace)
        hpa = next((h for h in hpas.items if h.spec.scale_target_ref.name == deployment), None)
        if hpa is None:
            raise RuntimeError(f"no HorizontalPodAutoscaler scales {self.namespace}/{deployment}")
        behavior = hpa.spec.behavior
        up = behavior.scale_up.stabilization_window_seconds if behavior and behavior.scale_up else None
        down = behavior.scale_down.stabilization_window_seconds if behavior and behavior.scale_down else None
        return Autoscaler(
            min_replicas=hpa.spec.min_replicas or 1, max_replicas=hpa.spec.max_replicas,
            desired=(hpa.status.desired_replicas if hpa.status else None) or hpa.spec.min_replicas or 1,
            scale_up_window=0.0 if up is None else float(up),
            scale_down_window=300.0 if down is None else float(down))

    def restarts(self, pod: str, container: str) -> int:
        status = self.core.read_namespaced_pod(pod, self.namespace).status
        return sum(c.restart_count for c in status.container_statuses or [] if c.name == container)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)
