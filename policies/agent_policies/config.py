"""Configuration schema of every policy in the pack, in one place.

Each policy reads its own block of the policy-pack config file
(`stacks/policy-config.<env>.json`, passed with `--policy-pack-config`):

    {"all": "mandatory",
     "production-replicas": {"enforcementLevel": "mandatory", "minReplicas": 3,
                             "exemptions": ["batch-sandbox"]}}

The defaults below are the ones the code applies when a key is absent; they are also published in
the JSON schema so `pulumi` shows and validates them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pulumi_policy import PolicyConfigSchema

EXEMPTIONS = "exemptions"

_EXEMPTIONS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string"},
    "default": [],
    "description": "Resources this policy skips: a Pulumi resource name, a metadata.name, "
    "or namespace/metadata.name.",
}

# Policy name -> its own config properties (JSON schema), besides `exemptions`.
POLICY_CONFIG: dict[str, dict[str, dict[str, Any]]] = {
    "container-resources": {},
    "container-probes": {},
    "pod-security-restricted": {},
    "image-pinned": {},
    "image-allowed-registry": {
        "allowedRegistries": {
            "type": "array",
            "items": {"type": "string"},
            "default": [],
            "description": "Image reference prefixes allowed (e.g. 'ghcr.io/acme/'); empty allows all.",
        },
    },
    "production-replicas": {
        "minReplicas": {
            "type": "integer",
            "minimum": 1,
            "default": 2,
            "description": "Fewest replicas a Deployment (or its HPA's minReplicas) may run.",
        },
    },
    "production-pdb": {},
    "topology-spread": {},
    "hpa-sane": {
        "minScaleDownStabilizationSeconds": {
            "type": "integer",
            "minimum": 0,
            "default": 60,
            "description": "Shortest scale-down stabilization window an HPA may use.",
        },
    },
    "agent-termination-grace": {},
    "stateful-agents-not-autoscaled": {},
    "no-loadbalancer-services": {
        "allowLoadBalancer": {
            "type": "boolean",
            "default": False,
            "description": "Allow Services of type LoadBalancer in this stack.",
        },
    },
    "namespace-default-deny": {},
    "no-plaintext-secrets": {},
    "backup-coverage": {
        "requireRestoreDrill": {
            "type": "boolean",
            "default": False,
            "description": "Also require a restore-drill CronJob in each namespace that holds state.",
        },
    },
    "alert-coverage": {},
}


def properties_for(policy_name: str) -> dict[str, dict[str, Any]]:
    """The full JSON-schema properties of one policy's config (its own keys plus `exemptions`)."""
    return {EXEMPTIONS: copy.deepcopy(_EXEMPTIONS_SCHEMA), **copy.deepcopy(POLICY_CONFIG[policy_name])}


def schema_for(policy_name: str) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties_for(policy_name))


def defaults_for(policy_name: str) -> dict[str, Any]:
    return {k: copy.deepcopy(v.get("default")) for k, v in properties_for(policy_name).items()}


def read_config(policy_name: str, raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The policy's settings: defaults overlaid with the stack's config, types normalised.

    Numbers arrive from the engine as floats (a protobuf Struct has no integers).
    """
    props = properties_for(policy_name)
    settings = defaults_for(policy_name)
    for key, value in dict(raw or {}).items():
        if key not in props or value is None:
            continue
        kind = props[key].get("type")
        if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            settings[key] = int(value)
        elif kind == "boolean" and isinstance(value, bool):
            settings[key] = value
        elif kind == "array" and isinstance(value, (list, tuple)):
            settings[key] = [str(v) for v in value if v is not None]
    return settings


def is_exempt(settings: Mapping[str, Any], identities: set[str]) -> bool:
    return any(name in identities for name in settings.get(EXEMPTIONS) or [])
