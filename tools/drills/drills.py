"""The drills: a fault injected into the deployed platform under constant load through its gateway,
then the promises the components make checked against what every request and pod went through.

- `delete-pod`: a coordinators pod (streamed runs, consistent hashing) deleted as `kubectl delete`
  does: the preStop pause and the drain let its runs finish, the gateway stops sending it work,
  its replacement becomes Ready.
- `kill-container`: SIGKILL of a workers container (a crash, an OOM kill): the idempotent requests
  it was serving are retried elsewhere, the kubelet restarts it, it gets traffic again.
- `evict`: the Eviction API (`kubectl drain`) on a coordinators pod with a run in flight: the PDB
  allows one disruption and refuses the second, the run finishes, the pod gets no new request once
  its pause is over.
- `rollout`: a rolling update of coordinators through `pulumi up` (a config change): no request
  fails, every run started before it completes, a conversation keeps its endpoint while that
  endpoint lives (the ring moves it only to a pod that joins), and `pulumi up` returns only once
  every new pod is Ready.
- `spike`: a CPU spike on workers (burns through the gateway): its HPA scales up within its
  scale-up window (plus the metrics' delay), not down before its scale-down window after the spike,
  back to its minimum afterwards, and no request fails while the extra pods go away.

Each returns a DrillLog; `tools.drills.report` turns a list of them into the reliability report.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tools.drills import analysis
from tools.drills.cluster import Faults, PodWatcher, api_client, wait_for
from tools.drills.load import LoadRunner, Workload
from tools.drills.records import DrillLog, PodEvent

# components/workload.py: the preStop pause before SIGTERM. Requests that reach a terminating pod
# within it are served normally (that is what the pause is for), so the gateway must have
# stopped sending it work by the time it ends.
PRESTOP_SECONDS = 10
SELECTOR = "app.kubernetes.io/name={}"


@dataclasses.dataclass
class Target:
    """Where the platform runs: its API server (kubeconfig), namespace and gateway URL."""

    kubeconfig: Path
    namespace: str
    gateway_url: str
    # SIGKILL of a container by its runtime id (the node's containerd); None where not possible.
    kill_container: Callable[[str], None] | None = None
    # `pulumi up` of the stack with these environment variables added to one cluster's agents
    # (cluster, env); None where the drill cannot deploy.
    redeploy: Callable[[str, dict[str, str]], None] | None = None
    workload: Workload = dataclasses.field(default_factory=Workload)


class Drill:
    def __init__(self, target: Target, name: str, cluster: str, workload: Workload | None = None,
                 max_seconds: float = 120) -> None:
        self.target = target
        self.api = api_client(target.kubeconfig)
        self.faults = Faults(self.api, target.namespace, target.kill_container)
        self.log = DrillLog(name)
        self.cluster = cluster
        self.runner = LoadRunner(target.gateway_url, workload or target.workload, max_seconds=max_seconds)
        self.watcher = PodWatcher(self.api, target.namespace, SELECTOR.format(cluster), self.runner.now)

    def fault(self, pod: str, detail: str) -> float:
        t = self.runner.now()
        self.log.events.append(PodEvent(t, pod, "fault", detail))
        return t

    def run(self, scenario: Callable[[], None], settle_seconds: float) -> DrillLog:
        """Load starts, `scenario` runs on its own thread, the load runs `settle_seconds` more."""
        self.watcher.start()
        errors: list[BaseException] = []

        async def drive() -> None:
            load = asyncio.create_task(self.runner.run())
            await asyncio.sleep(3)  # a steady state before the fault

            def guarded() -> None:
                try:
                    scenario()
                except BaseException as exc:  # handed to the caller after the load ends
                    errors.append(exc)

            thread = threading.Thread(target=guarded, name=f"drill-{self.log.name}")
            thread.start()
            while thread.is_alive():
                await asyncio.sleep(0.2)
            await asyncio.sleep(settle_seconds)
            self.runner.stop()
            await load

        try:
            asyncio.run(drive())
        finally:
            self.log.events = sorted(self.log.events + self.watcher.stop(), key=lambda e: e.t)
            self.log.requests = self.runner.records
            self.api.close()
        if errors:
            raise errors[0]
        return self.log

    def ready_pods(self) -> list[str]:
        return sorted(self.watcher.ready_pods())

    def common_checks(self, victim: str, fault_t: float, replicas: int) -> None:
        log = self.log
        failed = analysis.failures(log.requests)
        log.figures["requests"] = len(log.requests)
        log.figures["availability_percent"] = round(analysis.availability(log.requests) * 100, 3)
        mttr = analysis.recovery_seconds(log.events, fault_t, replicas)
        log.figures["recovery_seconds"] = None if mttr is None else round(mttr, 1)
        log.check(f"{replicas} {self.cluster} pods Ready again", mttr is not None)
        log.check("no request failed", not failed,
                  f"{len(failed)} failed, first: {failed[0] if failed else None}")


def _last_request_after(log: DrillLog, pod: str, t: float) -> float | None:
    starts = [r.start for r in analysis.requests_to(log.requests, pod, t)]
    return max(starts) - t if starts else None


def _terminating_at(log: DrillLog, pod: str) -> float | None:
    return next((e.t for e in log.events if e.pod == pod and e.kind == "terminating"), None)


def delete_pod(target: Target) -> DrillLog:
    drill = Drill(target, "delete-pod", "coordinators")
    state: dict = {}

    def scenario() -> None:
        ready = wait_for(lambda: drill.ready_pods() if len(drill.ready_pods()) >= 2 else None, 60, "two coordinators")
        victim = ready[0]
        time.sleep(1.0)  # runs in flight on every pod
        state["victim"], state["t"] = victim, drill.fault(victim, "delete")
        drill.faults.delete_pod(victim)
        wait_for(lambda: len([p for p in drill.ready_pods() if p != victim]) >= 2, 180, "a replacement Ready")

    log = drill.run(scenario, settle_seconds=5)
    victim, fault_t = state["victim"], state["t"]
    drill.common_checks(victim, fault_t, 2)
    before = analysis.streams_started_before(log.requests, fault_t)
    log.check("every run started before the deletion completed", all(r.ok for r in before))
    _no_new_work_after_pause(log, victim)
    return log


def _no_new_work_after_pause(log: DrillLog, victim: str) -> None:
    terminating = _terminating_at(log, victim)
    last = None if terminating is None else _last_request_after(log, victim, terminating)
    log.figures["last_request_after_terminating_seconds"] = None if last is None else round(last, 2)
    log.check(f"no new request to the terminating pod after its {PRESTOP_SECONDS}s pause",
              terminating is not None and (last is None or last <= PRESTOP_SECONDS),
              f"last request started {last}s after it began terminating")


def kill_container(target: Target) -> DrillLog:
    drill = Drill(target, "kill-container", "workers")
    state: dict = {}

    def scenario() -> None:
        ready = wait_for(lambda: drill.ready_pods() if len(drill.ready_pods()) >= 2 else None, 60, "two workers")
        victim = ready[0]
        state["restarts"] = drill.faults.restarts(victim, "agent")
        state["victim"], state["t"] = victim, drill.fault(victim, "SIGKILL agent")
        drill.faults.kill_container(victim, "agent")
        wait_for(lambda: drill.faults.restarts(victim, "agent") > state["restarts"], 60, "the kubelet restarting it")
        wait_for(lambda: victim in drill.ready_pods(), 120, "the restarted pod Ready")
        state["ready_t"] = drill.runner.now()
        time.sleep(8)  # slow start ramps it back in

    log = drill.run(scenario, settle_seconds=2)
    victim, fault_t = state["victim"], state["t"]
    drill.common_checks(victim, fault_t, 2)
    shorts = [r for r in log.requests if r.kind == "short"]
    log.check("every idempotent request succeeded (retried within the budget)",
              not analysis.failures(shorts))
    back = analysis.requests_to(log.requests, victim, state["ready_t"])
    log.figures["requests_to_restarted_pod"] = len(back)
    log.check("the restarted pod gets traffic again", len(back) > 0)
    return log


def evict(target: Target) -> DrillLog:
    drill = Drill(target, "evict", "coordinators")
    state: dict = {}

    def scenario() -> None:
        ready = wait_for(lambda: drill.ready_pods() if len(drill.ready_pods()) >= 2 else None, 60, "two coordinators")
        time.sleep(1.0)
        state["victim"], state["t"] = ready[0], drill.fault(ready[0], "evict")
        state["first"] = drill.faults.evict_pod(ready[0])
        # The PDB (maxUnavailable 1) must refuse a second disruption while the first is not replaced.
        state["second"] = drill.faults.evict_pod(ready[1])
        wait_for(lambda: len([p for p in drill.ready_pods() if p != ready[0]]) >= 2, 180, "a replacement Ready")

    log = drill.run(scenario, settle_seconds=5)
    victim, fault_t = state["victim"], state["t"]
    log.figures["eviction_statuses"] = [state["first"], state["second"]]
    log.check("the first eviction was allowed", state["first"] == 201)
    log.check("the PDB refused a second eviction", state["second"] == 429)
    drill.common_checks(victim, fault_t, 2)
    in_flight = [r for r in analysis.streams_started_before(log.requests, fault_t) if r.end > fault_t]
    log.figures["runs_in_flight_at_eviction"] = len(in_flight)
    log.check("every run in flight at the eviction finished", bool(in_flight) and all(r.ok for r in in_flight))
    _no_new_work_after_pause(log, victim)
    return log


REVISION_ENV = "AGENT_DRILL_REVISION"


def rollout(target: Target) -> DrillLog:
    if target.redeploy is None:
        raise RuntimeError("this target gives the drill no way to run `pulumi up`")
    redeploy = target.redeploy
    drill = Drill(target, "rollout", "coordinators", max_seconds=400)
    state: dict = {}

    def scenario() -> None:
        state["old"] = set(wait_for(lambda: drill.ready_pods() if len(drill.ready_pods()) >= 2 else None, 60,
                                    "two coordinators"))
        time.sleep(1.0)  # runs in flight on every pod
        revision = f"r{int(time.time())}"
        state["t"] = drill.fault("coordinators", f"pulumi up ({REVISION_ENV}={revision})")
        redeploy("coordinators", {REVISION_ENV: revision})
        state["up_done"] = drill.runner.now()
        # What was Ready when `pulumi up` returned: only new pods, as many as before.
        state["ready_at_return"] = set(drill.ready_pods())
        # The old pods finish their runs (preStop pause, drain) after the rollout is complete.
        wait_for(lambda: not old_present(), 120, "the old pods gone")

    def old_present() -> set[str]:
        return state["old"] & drill.watcher.present_pods()

    log = drill.run(scenario, settle_seconds=3)
    fault_t, old = state["t"], state["old"]
    failed = analysis.failures(log.requests)
    log.figures["requests"] = len(log.requests)
    log.figures["availability_percent"] = round(analysis.availability(log.requests) * 100, 3)
    log.figures["pulumi_up_seconds"] = round(state["up_done"] - fault_t, 1)
    log.check("no request failed during the rollout", not failed,
              f"{len(failed)} failed, first: {failed[0] if failed else None}")
    before = analysis.streams_started_before(log.requests, fault_t)
    in_flight = [r for r in before if r.end > fault_t]
    log.figures["runs_in_flight_at_rollout"] = len(in_flight)
    log.check("every run started before the rollout completed", bool(before) and all(r.ok for r in before))
    ready_at_return = state["ready_at_return"]
    log.check("`pulumi up` returned once every new pod was Ready",
              len(ready_at_return) >= len(old) and not ready_at_return & old,
              f"Ready when it returned: {sorted(ready_at_return)}, old: {sorted(old)}")
    replaced = {e.pod for e in log.events if e.kind == "deleted"}
    log.check("every old pod was replaced", old <= replaced, f"old {sorted(old)}, deleted {sorted(replaced)}")
    breaks = analysis.affinity_breaks(log.requests, log.events)
    log.figures["conversations_moved_without_cause"] = len(breaks)
    log.check("conversations kept their endpoint while it lived", not breaks, f"moves: {breaks[:5]}")
    return log


# What the HPA's reaction may add to its windows: metrics-server's resolution (15 s on the node)
# and up to two HPA syncs (15 s each, kube-controller-manager's default).
METRICS_DELAY_SECONDS = 45
SPIKE_WINDOW = (5.0, 50.0)


def spike(target: Target) -> DrillLog:
    workload = dataclasses.replace(target.workload, burns_per_second=1.0, burn_seconds=1.0,
                                   burn_window=SPIKE_WINDOW)
    drill = Drill(target, "spike", "workers", workload, max_seconds=300)
    hpa = drill.faults.autoscaler("workers")
    state: dict = {"replicas": []}

    def replicas() -> int:
        desired = drill.faults.autoscaler("workers").desired
        if not state["replicas"] or state["replicas"][-1][1] != desired:
            state["replicas"].append((round(drill.runner.now(), 1), desired))
        return desired

    def scenario() -> None:
        start, end = SPIKE_WINDOW
        wait_for(lambda: replicas() > hpa.min_replicas, hpa.scale_up_window + METRICS_DELAY_SECONDS + 60,
                 "the HPA scaling up")
        wait_for(lambda: replicas() and len(drill.ready_pods()) > hpa.min_replicas, 120, "the new pods Ready")
        # Polled on through the spike, so the replica series has every change.
        wait_for(lambda: replicas() and drill.runner.now() > end, end + 60, "the spike's end")
        # Back at the minimum once the extra pods are gone (deleted after their pause and drain).
        wait_for(lambda: replicas() == hpa.min_replicas and len(drill.watcher.present_pods()) == hpa.min_replicas,
                 hpa.scale_down_window + METRICS_DELAY_SECONDS + 120, "the HPA back at its minimum")
        time.sleep(3)

    log = drill.run(scenario, settle_seconds=3)
    start, end = SPIKE_WINDOW
    series = state["replicas"]
    log.figures["replicas_over_time"] = series
    up = next((t for t, n in series if n > hpa.min_replicas), None)
    down = next((t for t, n in series if up is not None and t > up and n < max(n for _, n in series)), None)
    back = next((t for t, n in series if up is not None and t > up and n == hpa.min_replicas), None)
    log.figures["peak_replicas"] = max(n for _, n in series)
    log.figures["scale_up_after_spike_start_seconds"] = None if up is None else round(up - start, 1)
    log.figures["first_scale_down_after_spike_end_seconds"] = None if down is None else round(down - end, 1)
    log.figures["back_to_minimum_after_spike_end_seconds"] = None if back is None else round(back - end, 1)
    log.figures["requests"] = len(log.requests)
    log.figures["burns"] = sum(r.kind == "burn" for r in log.requests)
    log.check("the HPA scaled workers up during the spike", up is not None and up < end)
    log.check(f"within its {hpa.scale_up_window:.0f}s scale-up window plus the metrics' delay",
              up is not None and up - start <= hpa.scale_up_window + METRICS_DELAY_SECONDS,
              f"{None if up is None else round(up - start, 1)}s after the spike began")
    log.check(f"not down before its {hpa.scale_down_window:.0f}s scale-down window after the spike",
              down is not None and down - end >= hpa.scale_down_window,
              f"first scale-down {None if down is None else round(down - end, 1)}s after the spike ended")
    log.check(f"back to its minimum of {hpa.min_replicas}", back is not None)
    added = {e.pod for e in log.events if e.kind == "added" and e.t > start}
    log.check("the added pods served requests", any(analysis.requests_to(log.requests, p, 0) for p in added),
              f"added {sorted(added)}")
    gone = {e.pod for e in log.events if e.kind == "deleted"}
    log.check("pods went away after the spike", bool(gone), f"deleted: {sorted(gone)}")
    failed = analysis.failures(log.requests)
    log.figures["availability_percent"] = round(analysis.availability(log.requests) * 100, 3)
    log.check("no request failed, while pods came or went", not failed,
              f"{len(failed)} failed, first: {failed[0] if failed else None}")
    return log


DRILLS: dict[str, Callable[[Target], DrillLog]] = {
    "delete-pod": delete_pod,
    "kill-container": kill_container,
    "evict": evict,
    "rollout": rollout,
    "spike": spike,
}
