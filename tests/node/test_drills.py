"""tools/drills on the node: crashes, deletions and evictions under load through the deployed
gateway, every promise checked and the reliability report written (`make drills` runs the same)."""

from __future__ import annotations

import pytest

from tools.drills import drills, report
from tools.drills.__main__ import SLO_PERCENT, node_target
from tools.node import deploy


@pytest.fixture(scope="module")
def target(platform):
    node, project, _ = platform

    def redeploy(cluster: str, env: dict[str, str]) -> None:
        project.edit(deploy.STACK, lambda config: deploy.add_cluster_env(config, cluster, env))
        result = project.run("up", deploy.STACK, policy_packs=["policies"])
        assert result.summary.result == "succeeded"

    with node.forward(*deploy.gateway_service(node)) as forward:
        yield node_target(node, f"http://127.0.0.1:{forward.listen_port}", redeploy)


@pytest.mark.parametrize("name", list(drills.DRILLS))
def test_drill_keeps_every_promise(target, name, tmp_path):
    log = drills.DRILLS[name](target)
    written = report.write_report([log], tmp_path, objective_percent=SLO_PERCENT)
    assert log.checks and log.passed, (log.checks, log.notes, log.figures)
    assert written["drills"][0]["failed"] == 0
    assert (tmp_path / f"{name}.png").stat().st_size > 10_000
