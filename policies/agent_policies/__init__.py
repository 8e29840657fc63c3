"""The agent-platform CrossGuard rules, importable without starting a policy pack.

`policies/__main__.py` builds the `PolicyPack` from `ALL_POLICIES`; tests import the rule modules
(`resources`, `workloads`, `security`, `stack`) and call their `validate_*` functions directly.
"""

from . import resources, security, stack, workloads

PACK_NAME = "agent-platform-policies"
PACK_DESCRIPTION = (
    "Guardrails for agent-platform stacks: resources, probes, Pod Security restricted, pinned images, "
    "production availability, sane autoscaling, default-deny networking, no plaintext secrets, "
    "backups and alert coverage."
)

ALL_POLICIES = [
    *resources.POLICIES,
    *workloads.POLICIES,
    *security.POLICIES,
    *stack.POLICIES,
]

__all__ = ["ALL_POLICIES", "PACK_DESCRIPTION", "PACK_NAME"]
