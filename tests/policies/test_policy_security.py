"""pod-security-restricted, image-pinned, image-allowed-registry, no-loadbalancer-services,
no-plaintext-secrets."""

import pytest
from policy_builders import configmap, container, cronjob, deployment, job_pod_spec, pod_spec, service
from policy_fakes import run_resource
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_OBJECT_VALUE, UNKNOWN_STRING_VALUE

from agent_policies.security import (
    _pinning_problem,
    registry_allows,
    split_image,
    validate_image_allowed_registry,
    validate_image_pinned,
    validate_no_loadbalancer_services,
    validate_no_plaintext_secrets,
    validate_pod_security_restricted,
)
from tests.image_cases import CASES

# --- pod-security-restricted --------------------------------------------------------------


def pss(d):
    return run_resource(validate_pod_security_restricted, d)


def podspec(d):
    return d["props"]["spec"]["template"]["spec"]


def csc(d, i=0):
    return podspec(d)["containers"][i]["securityContext"]


def test_restricted_pod_passes():
    assert pss(deployment()) == []
    assert pss(cronjob()) == []


@pytest.mark.parametrize(
    "break_it, expected",
    [
        (lambda d: podspec(d)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot is not true"),
        (lambda d: csc(d).update(runAsNonRoot=False), "runAsNonRoot is not true"),  # container overrides pod
        (lambda d: csc(d).update(runAsUser=0), "runAsUser is 0"),
        (lambda d: csc(d).pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation is not false"),
        (lambda d: csc(d).update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation is not false"),
        (lambda d: csc(d).pop("capabilities"), "capabilities.drop does not include ALL"),
        (lambda d: csc(d).update(capabilities={"drop": ["NET_RAW"]}), "capabilities.drop does not include ALL"),
        (
            lambda d: csc(d).update(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]}),
            "capabilities.add has SYS_ADMIN",
        ),
        (lambda d: podspec(d)["securityContext"].pop("seccompProfile"), "no seccompProfile RuntimeDefault"),
        (lambda d: csc(d).update(seccompProfile={"type": "Unconfined"}), "seccompProfile is Unconfined"),
        (lambda d: csc(d).pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem is not true"),
        (lambda d: csc(d).update(privileged=True), "privileged is true"),
    ],
)
def test_each_container_setting(break_it, expected):
    d = deployment()
    break_it(d)
    (msg,) = pss(d)
    assert "container 'agent'" in msg and expected in msg and "Fix:" in msg


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("hostNetwork", True, "hostNetwork is true"),
        ("hostPID", True, "hostPID is true"),
        ("hostIPC", True, "hostIPC is true"),
        (
            "volumes",
            [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}],
            "volume 'docker' is a hostPath",
        ),
    ],
)
def test_pod_level_settings(field, value, expected):
    d = deployment()
    podspec(d)[field] = value
    (msg,) = pss(d)
    assert "pod" in msg and expected in msg


def test_host_namespaces_false_and_emptydir_pass():
    d = deployment()
    podspec(d).update(hostNetwork=False, volumes=[{"name": "tmp", "emptyDir": {}}])
    assert pss(d) == []


def test_seccomp_and_non_root_at_container_level_only_pass():
    d = deployment()
    podspec(d)["securityContext"] = {}
    csc(d).update(runAsNonRoot=True, seccompProfile={"type": "RuntimeDefault"})
    assert pss(d) == []


def test_net_bind_service_may_be_added():
    d = deployment()
    csc(d)["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert pss(d) == []


def test_init_container_is_checked():
    init = container("migrate", probes=False)
    init["securityContext"] = {}
    d = deployment(spec=pod_spec(init_containers=[init]))
    (msg,) = pss(d)
    assert "init container 'migrate'" in msg


def test_cronjob_pods_are_checked():
    c = container("backup", probes=False)
    del c["securityContext"]
    (msg,) = pss(cronjob(spec=job_pod_spec(containers=[c])))
    assert "CronJob 'agents/nightly'" in msg and "container 'backup'" in msg


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: csc(d).update(allowPrivilegeEscalation=UNKNOWN_BOOLEAN_VALUE),
        lambda d: csc(d).update(readOnlyRootFilesystem=None),
        lambda d: podspec(d)["securityContext"].update(runAsNonRoot=UNKNOWN_BOOLEAN_VALUE),
        lambda d: podspec(d)["securityContext"].update(seccompProfile=UNKNOWN_OBJECT_VALUE),
        lambda d: podspec(d)["containers"][0].update(securityContext=UNKNOWN_OBJECT_VALUE),
        lambda d: csc(d).update(capabilities={"drop": UNKNOWN_OBJECT_VALUE}),
    ],
)
def test_unknown_security_settings_are_not_violations(break_it):
    d = deployment()
    break_it(d)
    assert pss(d) == []


# --- image-pinned -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, expected",
    [
        ("ghcr.io/acme/agents/worker:latest", "uses the ':latest' tag"),
        ("ghcr.io/acme/agents/worker", "has no tag"),
        ("nginx", "has no tag"),
        ("localhost:5000/agent", "has no tag"),  # the colon belongs to the registry port
        ("ghcr.io/acme/agent:", "has an empty tag"),
        ("ghcr.io/acme/agent@md5:abc", "malformed digest"),
    ],
)
def test_unpinned_images(image, expected):
    (msg,) = run_resource(validate_image_pinned, deployment(spec=pod_spec(containers=[container(image=image)])))
    assert expected in msg and f"'{image}'" in msg


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme/agents/worker:0.4.2",
        "localhost:5000/agent:1.2",
        "ghcr.io/acme/agent@sha256:" + "a" * 64,
        "ghcr.io/acme/agent:latest@sha256:" + "b" * 64,  # the digest wins over the tag
        "python:3.11-slim",
    ],
)
def test_pinned_images(image):
    assert run_resource(validate_image_pinned, deployment(spec=pod_spec(containers=[container(image=image)]))) == []


def test_init_container_image_in_a_cronjob():
    spec = job_pod_spec(init_containers=[container("fetch", image="busybox:latest", probes=False)])
    (msg,) = run_resource(validate_image_pinned, cronjob(spec=spec))
    assert "init container 'fetch'" in msg


def test_unknown_image_is_skipped():
    c = container(image=UNKNOWN_STRING_VALUE)  # e.g. an image built in the same stack
    assert run_resource(validate_image_pinned, deployment(spec=pod_spec(containers=[c]))) == []


@pytest.mark.parametrize("image,parts,problem", CASES)
def test_shared_image_table(image, parts, problem):
    """The pack's copy splits and judges images as components/image_ref.py does."""
    assert split_image(image) == parts
    assert _pinning_problem(image) == problem


def test_split_image():
    assert split_image("localhost:5000/a/b:1@sha256:x") == ("localhost:5000/a/b", "1", "sha256:x")
    assert split_image("localhost:5000/a") == ("localhost:5000/a", None, None)


# --- image-allowed-registry ---------------------------------------------------------------


def registry_check(image, allowed):
    d = deployment(spec=pod_spec(containers=[container(image=image)]))
    return run_resource(validate_image_allowed_registry, d, {"allowedRegistries": allowed})


def test_empty_allow_list_allows_everything():
    assert registry_check("docker.io/anything:1", []) == []


def test_allowed_prefix_passes_and_others_fail():
    assert registry_check("ghcr.io/acme/agents/worker:1", ["ghcr.io/acme/"]) == []
    (msg,) = registry_check("docker.io/library/nginx:1", ["ghcr.io/acme/", "registry.local/"])
    assert "not from an allowed registry (ghcr.io/acme/, registry.local/)" in msg


def test_prefix_matches_on_a_path_boundary():
    assert registry_check("ghcr.io/acme/agent:1", ["ghcr.io/acme"]) == []
    assert len(registry_check("ghcr.io/acme-evil/agent:1", ["ghcr.io/acme"])) == 1


def test_docker_hub_shorthand_is_spelled_out():
    assert registry_allows("docker.io/library/", "nginx:1.27")
    assert registry_allows("docker.io/bitnami/", "bitnami/redis:7")
    assert not registry_allows("docker.io/library/", "ghcr.io/x/nginx:1")


def test_registry_exemption():
    d = deployment(spec=pod_spec(containers=[container(image="quay.io/x/y:1")]))
    cfg = {"allowedRegistries": ["ghcr.io/acme/"], "exemptions": ["workers"]}
    assert run_resource(validate_image_allowed_registry, d, cfg) == []


# --- no-loadbalancer-services -------------------------------------------------------------


def test_loadbalancer_rejected_by_default():
    (msg,) = run_resource(validate_no_loadbalancer_services, service(type_="LoadBalancer"))
    assert "Service 'agents/gateway' is of type LoadBalancer" in msg and "Fix:" in msg


def test_loadbalancer_allowed_by_config_or_exemption():
    lb = service(type_="LoadBalancer")
    assert run_resource(validate_no_loadbalancer_services, lb, {"allowLoadBalancer": True}) == []
    assert run_resource(validate_no_loadbalancer_services, lb, {"exemptions": ["gateway"]}) == []


@pytest.mark.parametrize("type_", ["ClusterIP", None, "NodePort", UNKNOWN_STRING_VALUE])
def test_other_service_types_pass(type_):
    assert run_resource(validate_no_loadbalancer_services, service(type_=type_)) == []


# --- no-plaintext-secrets -----------------------------------------------------------------

AWS_KEY = "AKIA" + "ABCDEFGHIJKLMNOP"
OPENAI_KEY = "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2"
GITHUB_TOKEN = "ghp_" + "A" * 36
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----"


def cm(data):
    return run_resource(validate_no_plaintext_secrets, configmap(data=data))


@pytest.mark.parametrize(
    "key, value, what",
    [
        ("DB_PASSWORD", "hunter2", "secret-looking name"),
        ("api-key", "abc123", "secret-looking name"),
        ("openaiApiKey", "abc123", "secret-looking name"),
        ("dbPassword", "hunter2", "secret-looking name"),
        ("GITHUB_TOKEN", "abc", "secret-looking name"),
        ("cloud_credentials", "xyz", "secret-looking name"),
        ("config", f"aws_access_key_id = {AWS_KEY}", "an AWS access key id"),
        ("tls.key", PRIVATE_KEY, "a private key"),
        ("LLM_KEY", OPENAI_KEY, "an OpenAI-style API key"),
        ("clone", f"https://x:{GITHUB_TOKEN}@github.com/acme/x", "a GitHub token"),
        ("DATABASE_URL", "postgres://user:pass@db:5432/agents", "a URL with an inline password"),
        (
            "runtime.json",
            '{"webhook_url": "https://hooks.example.com/alert?channel=ops&token=abc123"}',
            "a URL with a credential in its query string",
        ),
        ("ALERT_WEBHOOK", "https://alerts.example.com/hook?token=s3cr3t", "a URL with a credential in its query"),
        (
            "backup.json",
            '{"target": {"kind": "s3", "access_key_id": "minioadmin", "secret_access_key": "minio123"}}',
            "a literal S3 credential",
        ),
        (
            "credentials.env",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "a literal S3 credential",
        ),
        ("s3.yaml", "secretAccessKey: wJalrXUtnFEMIK7MDENGbPxRfiCY", "a literal S3 credential"),
    ],
)
def test_plaintext_secrets_in_configmaps(key, value, what):
    (msg,) = cm({key: value, "LOG_LEVEL": "info"})
    assert f"data key '{key}'" in msg and what in msg and "Fix:" in msg


def test_message_never_repeats_the_secret():
    (msg,) = cm({"LLM_KEY": OPENAI_KEY})
    assert OPENAI_KEY not in msg and OPENAI_KEY[:4] in msg


def test_secret_hidden_in_runtime_json():
    (msg,) = cm({"runtime.json": '{"llm": {"api_key": "' + OPENAI_KEY + '"}}'})
    assert "'runtime.json'" in msg


@pytest.mark.parametrize(
    "key, value",
    [
        ("MAX_TOKENS", "4096"),  # an LLM setting, not a token
        ("TOKENIZER", "cl100k_base"),
        ("DB_PASSWORD_FILE", "/var/run/secrets/db/password"),  # a path to a secret
        ("OPENAI_API_KEY_SECRET_NAME", "openai"),
        ("DATABASE_URL", "postgres://app:$(DB_PASSWORD)@db:5432/agents"),  # Kubernetes substitution
        ("DATABASE_URL", "postgres://db:5432/agents"),
        ("WORKER_POOL", "task-scheduler-worker-pool-1234567890abc"),  # contains "sk-" mid-word
        ("API_KEY", ""),  # empty: nothing leaked
        ("notes", "rotate the api key monthly"),
        ("WEBHOOK_URL", "https://alerts.example.com/hook?channel=ops"),  # a query, but no credential
        ("WEBHOOK_URL", "https://alerts.example.com/hook?token=$(WEBHOOK_TOKEN)"),  # substitution
        (
            "backup.json",
            '{"password_secret": "agent-state-db", "password_secret_key": "password", '
            '"credentials_secret": "backup-s3"}',
        ),  # names of Secrets, not secrets
        ("S3_ACCESS_KEY_SECRET_NAME", "backup-s3"),
    ],
)
def test_not_secrets(key, value):
    assert cm({key: value}) == []


def test_env_literal_is_flagged_but_secret_key_ref_is_fine():
    c = container()
    c["env"].append({"name": "OPENAI_API_KEY", "value": OPENAI_KEY})
    c["env"].append({"name": "GITHUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "gh", "key": "token"}}})
    (msg,) = run_resource(validate_no_plaintext_secrets, deployment(spec=pod_spec(containers=[c])))
    assert "container 'agent' env var 'OPENAI_API_KEY'" in msg


def test_env_in_cronjob_init_container():
    init = container("fetch", probes=False, env=[{"name": "AWS_SECRET_ACCESS_KEY", "value": "wJalrXUtnFEMI"}])
    (msg,) = run_resource(validate_no_plaintext_secrets, cronjob(spec=job_pod_spec(init_containers=[init])))
    assert "init container 'fetch' env var 'AWS_SECRET_ACCESS_KEY'" in msg


def test_secret_in_args():
    c = container(args=["--api-key", OPENAI_KEY])
    (msg,) = run_resource(validate_no_plaintext_secrets, deployment(spec=pod_spec(containers=[c])))
    assert "args contain an OpenAI-style API key" in msg


@pytest.mark.parametrize(
    "env",
    [
        UNKNOWN_OBJECT_VALUE,
        [{"name": "DB_PASSWORD", "value": UNKNOWN_STRING_VALUE}],
        [{"name": UNKNOWN_STRING_VALUE, "value": UNKNOWN_STRING_VALUE}],
    ],
)
def test_unknown_env_is_not_a_violation(env):
    c = container(env=env)
    assert run_resource(validate_no_plaintext_secrets, deployment(spec=pod_spec(containers=[c]))) == []


def test_unknown_configmap_data():
    assert run_resource(validate_no_plaintext_secrets, configmap(data=UNKNOWN_OBJECT_VALUE)) == []


def test_configmap_exemption():
    o = configmap(data={"DB_PASSWORD": "hunter2"})
    assert run_resource(validate_no_plaintext_secrets, o, {"exemptions": ["settings"]}) == []


def scaled_object(metadata):
    return {
        "type": "kubernetes:keda.sh/v1alpha1:ScaledObject",
        "name": "workers",
        "props": {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "workers", "namespace": "agents"},
            "spec": {"scaleTargetRef": {"name": "workers"}, "triggers": [{"type": "prometheus", "metadata": metadata}]},
        },
    }


def test_keda_server_address_with_user_and_password_is_flagged():
    (msg,) = run_resource(
        validate_no_plaintext_secrets,
        scaled_object(
            {
                "serverAddress": "http://admin:hunter2@prometheus.monitoring:9090",
                "query": "sum(agent_queue_length)",
                "threshold": "5",
            }
        ),
    )
    assert "spec.triggers[0] (prometheus) metadata 'serverAddress'" in msg
    assert "a URL with an inline password" in msg and "TriggerAuthentication" in msg and "hunter2" not in msg


def test_keda_trigger_without_credentials_passes():
    assert (
        run_resource(
            validate_no_plaintext_secrets,
            scaled_object(
                {"serverAddress": "http://prometheus-operated.monitoring.svc:9090", "query": "sum(x)", "threshold": "5"}
            ),
        )
        == []
    )
    unknown = scaled_object({})
    unknown["props"]["spec"]["triggers"] = UNKNOWN_OBJECT_VALUE
    assert run_resource(validate_no_plaintext_secrets, unknown) == []
