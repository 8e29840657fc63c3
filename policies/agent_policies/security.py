"""Security: Pod Security Standards "restricted", image provenance, exposure, plaintext secrets."""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import Severity

from .base import Report, resource_policy, resource_rule
from .k8s import (
    CONFIGMAP,
    SERVICE,
    UNKNOWN,
    WORKLOAD_TYPES,
    Container,
    K8sObject,
    as_dict,
    as_list,
    containers,
    dig,
    redact,
)

ALL_CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
_SECCOMP_OK = ("RuntimeDefault", "Localhost")
# The only capability Pod Security "restricted" lets a container add back.
_ADDABLE_CAPABILITIES = {"NET_BIND_SERVICE"}

PSS_HINT = (
    "set the pod's securityContext {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}} and each "
    "container's securityContext {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, "
    "capabilities: {drop: [ALL]}}; mount an emptyDir where the agent needs to write; do not use "
    "hostNetwork, hostPID, hostIPC or hostPath volumes"
)


def _pod_level_problems(pod_spec: dict) -> list[str]:
    problems = [f"{f} is true" for f in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(f) is True]
    volumes = as_list(pod_spec.get("volumes"))
    if volumes is not UNKNOWN:
        for v in volumes:
            if isinstance(v, dict) and v.get("hostPath") is not None:
                problems.append(f"volume '{v.get('name')}' is a hostPath volume")
    return problems


def _container_problems(container: Container, pod_sc: Any) -> list[str]:
    sc = as_dict(container.spec.get("securityContext"))
    if sc is UNKNOWN:
        return []
    problems: list[str] = []

    if sc.get("privileged") is True:
        problems.append("privileged is true")

    run_as_non_root = sc.get("runAsNonRoot")
    if run_as_non_root is None:
        run_as_non_root = dig(pod_sc, "runAsNonRoot")
    if run_as_non_root is not UNKNOWN and run_as_non_root is not True:
        problems.append("runAsNonRoot is not true")
    run_as_user = sc.get("runAsUser")
    if run_as_user is None:
        run_as_user = dig(pod_sc, "runAsUser")
    if run_as_user == 0 and run_as_user is not False:
        problems.append("runAsUser is 0 (root)")

    ape = sc.get("allowPrivilegeEscalation")
    if ape is not UNKNOWN and ape is not False:
        problems.append("allowPrivilegeEscalation is not false")

    caps = as_dict(sc.get("capabilities"))
    if caps is not UNKNOWN:
        drop = as_list(caps.get("drop"))
        if drop is not UNKNOWN and UNKNOWN not in drop:
            if "ALL" not in [str(d).upper() for d in drop]:
                problems.append("capabilities.drop does not include ALL")
        add = as_list(caps.get("add"))
        if add is not UNKNOWN:
            extra = sorted(str(a) for a in add if a is not UNKNOWN and str(a).upper() not in _ADDABLE_CAPABILITIES)
            if extra:
                problems.append(f"capabilities.add has {', '.join(extra)} (only NET_BIND_SERVICE is allowed)")

    seccomp = dig(sc, "seccompProfile", "type")
    if seccomp is None:
        seccomp = dig(pod_sc, "seccompProfile", "type")
    if seccomp is not UNKNOWN and seccomp not in _SECCOMP_OK:
        problems.append(
            "no seccompProfile RuntimeDefault (pod or container)" if seccomp is None
            else f"seccompProfile is {seccomp}"
        )

    ro = sc.get("readOnlyRootFilesystem")
    if ro is not UNKNOWN and ro is not True:
        problems.append("readOnlyRootFilesystem is not true")
    return problems


@resource_rule("pod-security-restricted", WORKLOAD_TYPES)
def validate_pod_security_restricted(obj: K8sObject, settings: dict, report: Report) -> None:
    pod_spec = obj.pod_spec()
    if not isinstance(pod_spec, dict):
        return
    pod_problems = _pod_level_problems(pod_spec)
    if pod_problems:
        report(f"{obj.display}: pod {'; '.join(pod_problems)}. Fix: {PSS_HINT}.")
    pod_sc = pod_spec.get("securityContext")
    pod_sc = {} if pod_sc is None else pod_sc
    for container in containers(pod_spec, ALL_CONTAINER_FIELDS):
        problems = _container_problems(container, pod_sc)
        if problems:
            report(f"{obj.display}: {container.display}: {'; '.join(problems)}. Fix: {PSS_HINT}.")


pod_security_restricted = resource_policy(
    validate_pod_security_restricted,
    description='Pods meet the Kubernetes Pod Security Standard "restricted" (non-root, no privilege '
    "escalation, all capabilities dropped, RuntimeDefault seccomp, no host namespaces or hostPath "
    "volumes) and use a read-only root filesystem, so a compromised agent stays in its box.",
    remediation=PSS_HINT[0].upper() + PSS_HINT[1:] + ".",
    severity=Severity.HIGH,
)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; tag/digest None when absent."""
    digest = None
    if "@" in image:
        image, digest = image.split("@", 1)
    last_slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > last_slash:  # a colon before the last slash is a registry port
        return image[:colon], image[colon + 1:], digest
    return image, None, digest


def _pinning_problem(image: str) -> str | None:
    _, tag, digest = split_image(image)
    if digest is not None:
        if digest.startswith("sha256:") and len(digest) > len("sha256:"):
            return None
        return f"has a malformed digest '@{digest}'"
    if tag is None:
        return "has no tag, so Kubernetes pulls ':latest'"
    if tag == "":
        return "has an empty tag"
    if tag.lower() == "latest":
        return "uses the ':latest' tag"
    return None


IMAGE_PIN_HINT = "pin the image to a version tag (app:1.4.2) or a digest (app@sha256:...)"


@resource_rule("image-pinned", WORKLOAD_TYPES)
def validate_image_pinned(obj: K8sObject, settings: dict, report: Report) -> None:
    for container in containers(obj.pod_spec(), ALL_CONTAINER_FIELDS):
        image = container.spec.get("image")
        if not isinstance(image, str):
            continue  # unknown during preview (e.g. an image built in this stack)
        problem = _pinning_problem(image.strip())
        if problem:
            report(
                f"{obj.display}: {container.display} image '{image}' {problem}, so what runs changes "
                f"without a deployment. Fix: {IMAGE_PIN_HINT}."
            )


image_pinned = resource_policy(
    validate_image_pinned,
    description="Container images are pinned to a version tag or a digest, never ':latest' or "
    "untagged, so every deployment runs exactly what was reviewed and can be rolled back.",
    remediation=IMAGE_PIN_HINT[0].upper() + IMAGE_PIN_HINT[1:] + ".",
    severity=Severity.HIGH,
)


def normalized_image(image: str) -> str:
    """Docker Hub shorthand spelled out: 'nginx:1' -> 'docker.io/library/nginx:1'."""
    first, _, rest = image.partition("/")
    if not rest:
        return f"docker.io/library/{image}"
    if "." in first or ":" in first or first == "localhost":
        return image
    return f"docker.io/{image}"


def registry_allows(prefix: str, image: str) -> bool:
    """A prefix matches on a path boundary: 'ghcr.io/acme' allows 'ghcr.io/acme/x' not 'ghcr.io/acme-x'."""
    if not prefix:
        return False
    for candidate in {image, normalized_image(image)}:
        if not candidate.startswith(prefix):
            continue
        if prefix[-1] in "/:@" or len(candidate) == len(prefix) or candidate[len(prefix)] in "/:@":
            return True
    return False


@resource_rule("image-allowed-registry", WORKLOAD_TYPES)
def validate_image_allowed_registry(obj: K8sObject, settings: dict, report: Report) -> None:
    allowed = [p.strip() for p in settings["allowedRegistries"] if p.strip()]
    if not allowed:
        return
    for container in containers(obj.pod_spec(), ALL_CONTAINER_FIELDS):
        image = container.spec.get("image")
        if not isinstance(image, str):
            continue
        if not any(registry_allows(p, image.strip()) for p in allowed):
            report(
                f"{obj.display}: {container.display} image '{image}' is not from an allowed registry "
                f"({', '.join(allowed)}). Fix: push the image to one of them and reference it from there, "
                f"or add its registry to allowedRegistries in this stack's policy config."
            )


image_allowed_registry = resource_policy(
    validate_image_allowed_registry,
    description="Container images come from the registries this stack allows (config "
    "allowedRegistries, a list of prefixes; empty allows any), so nothing unvetted runs.",
    remediation="Reference images from an allowed registry, or extend allowedRegistries.",
    severity=Severity.HIGH,
)


@resource_rule("no-loadbalancer-services", [SERVICE])
def validate_no_loadbalancer_services(obj: K8sObject, settings: dict, report: Report) -> None:
    if settings["allowLoadBalancer"]:
        return
    if dig(obj.props, "spec", "type") == "LoadBalancer":
        report(
            f"{obj.display} is of type LoadBalancer, which exposes it outside the cluster (and costs a "
            f"cloud load balancer). Fix: use type ClusterIP behind the gateway or an Ingress, or set "
            f"allowLoadBalancer: true for this stack (or exempt this Service) if it is meant to be public."
        )


no_loadbalancer_services = resource_policy(
    validate_no_loadbalancer_services,
    description="No Service of type LoadBalancer unless the stack allows it (config allowLoadBalancer), "
    "so agents are never exposed to the internet by accident.",
    remediation="Use ClusterIP Services behind the gateway or an Ingress.",
    severity=Severity.HIGH,
)


# Names that say "this is a secret". Word-bounded after splitting camelCase, so MAX_TOKENS or
# tokenizer settings of an LLM agent do not match while GITHUB_TOKEN and dbPassword do.
_SECRET_NAME = re.compile(
    r"(?:^|[_.\-])(password|passwd|pwd|secret|token|api[_\-]?key|credentials?|private[_\-]?key)(?:$|[_.\-])",
    re.IGNORECASE,
)
# A name that points at a secret rather than holding one (DB_PASSWORD_FILE=/run/secrets/db).
_REFERENCE_SUFFIX = re.compile(r"[_.\-](file|path|dir|name|ref|mount)$", re.IGNORECASE)

SECRET_VALUE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("an AWS access key id", re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])")),
    ("a private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("an OpenAI-style API key", re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{20,}")),
    ("a GitHub token", re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{30,})")),
    ("a Slack token", re.compile(r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}")),
    # user:password@ in a URL, unless the password is a $(VAR) or ${VAR} substitution.
    ("a URL with an inline password", re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:(?!\$[({])[^/\s@]+@")),
    # A webhook or presigned URL that authenticates by its query (Slack/Teams-style ?token=, S3's
    # X-Amz-Signature), unless the value is a substitution.
    (
        "a URL with a credential in its query string",
        re.compile(
            r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s?#\"']*\?(?:[^\s#\"']*&)?"
            r"(?:access_token|token|api[_\-]?key|apikey|key|secret|password|passwd|sig|signature|auth"
            r"|x-amz-signature|x-amz-credential|x-amz-security-token)=(?!\$[({])[^&\s#\"']+",
            re.IGNORECASE,
        ),
    ),
    # An S3 (or S3-compatible: MinIO, SeaweedFS) key pair written out, in env files, JSON or YAML.
    (
        "a literal S3 credential",
        re.compile(
            r"[\"']?\b(?:aws_)?(?:secret_access_key|access_key_id|secret_key|access_key|secretaccesskey|accesskeyid"
            r"|minio_root_password|minio_secret_key)\b[\"']?\s*[:=]\s*[\"']?(?!\$[({])[^\s\"',}]{3,}",
            re.IGNORECASE,
        ),
    ),
]

SECRETS_HINT = (
    "move the value into a Kubernetes Secret (or a secret store) and reference it with "
    "env[].valueFrom.secretKeyRef or a mounted Secret volume; mark it secret in Pulumi config"
)


def _name_says_secret(name: str) -> bool:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return bool(_SECRET_NAME.search(spaced)) and not _REFERENCE_SUFFIX.search(spaced)


def secret_findings(key: str, value: Any) -> list[str]:
    """Why a key/value pair looks like a plaintext secret (empty when it does not)."""
    if not isinstance(value, str) or not value.strip():
        return []
    findings = [what for what, pattern in SECRET_VALUE_PATTERNS if pattern.search(value)]
    if not findings and _name_says_secret(key):
        findings.append("a secret-looking name with a literal value")
    return findings


# KEDA scalers take their connection settings as trigger metadata (a Prometheus serverAddress,
# a Redis password...); credentials belong in a TriggerAuthentication that reads a Secret.
KEDA_SCALED_TYPES = frozenset({"kubernetes:keda.sh/v1alpha1:ScaledObject", "kubernetes:keda.sh/v1alpha1:ScaledJob"})


def _keda_trigger_findings(obj: K8sObject, report: Report) -> None:
    triggers = as_list(dig(obj.props, "spec", "triggers"))
    if triggers is UNKNOWN:
        return
    for index, trigger in enumerate(triggers):
        metadata = as_dict(trigger.get("metadata")) if isinstance(trigger, dict) else None
        if not isinstance(metadata, dict):
            continue
        for key, value in metadata.items():
            findings = secret_findings(key, value)
            if findings:
                report(
                    f"{obj.display}: spec.triggers[{index}] ({trigger.get('type')}) metadata '{key}' holds "
                    f"{' and '.join(findings)} ({redact(value)}) in plaintext. Fix: reference the credential "
                    f"through a KEDA TriggerAuthentication (secretTargetRef) instead; {SECRETS_HINT}."
                )


@resource_rule("no-plaintext-secrets", WORKLOAD_TYPES | {CONFIGMAP} | KEDA_SCALED_TYPES)
def validate_no_plaintext_secrets(obj: K8sObject, settings: dict, report: Report) -> None:
    if obj.resource_type in KEDA_SCALED_TYPES:
        _keda_trigger_findings(obj, report)
        return
    if obj.resource_type == CONFIGMAP:
        data = as_dict(dig(obj.props, "data"))
        if data is UNKNOWN:
            return
        for key, value in data.items():
            findings = secret_findings(key, value)
            if findings:
                report(
                    f"{obj.display}: data key '{key}' holds {' and '.join(findings)} "
                    f"({redact(value)}) in plaintext. Fix: {SECRETS_HINT}."
                )
        return
    for container in containers(obj.pod_spec(), ALL_CONTAINER_FIELDS):
        env = as_list(container.spec.get("env"))
        if env is not UNKNOWN:
            for var in env:
                if not isinstance(var, dict) or var.get("valueFrom") is not None:
                    continue  # valueFrom (secretKeyRef, configMapKeyRef, fieldRef) is fine
                name, value = var.get("name"), var.get("value")
                findings = secret_findings(name if isinstance(name, str) else "", value)
                if findings and isinstance(value, str):  # findings imply a str value
                    report(
                        f"{obj.display}: {container.display} env var '{name}' holds {' and '.join(findings)} "
                        f"({redact(value)}) in plaintext. Fix: {SECRETS_HINT}."
                    )
        for field in ("command", "args"):
            items = as_list(container.spec.get(field))
            if items is UNKNOWN:
                continue
            for item in items:
                if not isinstance(item, str):
                    continue
                findings = [what for what, pattern in SECRET_VALUE_PATTERNS if pattern.search(item)]
                if findings:
                    report(
                        f"{obj.display}: {container.display} {field} contain {' and '.join(findings)} "
                        f"({redact(item)}) in plaintext. Fix: {SECRETS_HINT}."
                    )


no_plaintext_secrets = resource_policy(
    validate_no_plaintext_secrets,
    description="No secrets in plaintext in ConfigMap data, container env values/args or KEDA trigger "
    "metadata (secret-looking names such as *_PASSWORD, *_TOKEN, API_KEY, or values such as AWS keys, "
    "literal S3 credentials, private keys, sk-... API keys, GitHub tokens, user:password@ URLs, "
    "?token= webhook URLs); env vars from secretKeyRef are fine.",
    remediation=SECRETS_HINT[0].upper() + SECRETS_HINT[1:] + ".",
    severity=Severity.CRITICAL,
)

POLICIES = [
    pod_security_restricted,
    image_pinned,
    image_allowed_registry,
    no_loadbalancer_services,
    no_plaintext_secrets,
]
