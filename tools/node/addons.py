"""The node's add-ons as pods: CoreDNS (cluster.local, the `kube-dns` Service at the DNS
address) and metrics-server (serving metrics.k8s.io through the aggregation layer). Both run
from images imported into containerd; CoreDNS has no upstream (nothing leaves the namespace)."""

from __future__ import annotations

from tools.node.images import COREDNS_IMAGE, METRICS_SERVER_IMAGE

SYSTEM = "kube-system"

COREFILE = """\
.:53 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }
    cache 5
    loop
    reload
}
"""

_RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _meta(name: str, namespace: str | None = SYSTEM, **labels: str) -> dict:
    meta: dict = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def _deployment(name: str, labels: dict, pod_spec: dict) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(name, **labels),
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }


def coredns(dns_ip: str) -> list[dict]:
    labels = {"k8s-app": "kube-dns"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("coredns")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta("system:coredns", None),
         "rules": [
             {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
              "verbs": ["list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
              "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta("system:coredns", None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": SYSTEM}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("coredns"),
         "data": {"Corefile": COREFILE}},
        _deployment("coredns", labels, {
            "serviceAccountName": "coredns",
            "dnsPolicy": "Default",
            "priorityClassName": "system-cluster-critical",
            "containers": [{
                "name": "coredns", "image": COREDNS_IMAGE, "imagePullPolicy": "IfNotPresent",
                "args": ["-conf", "/etc/coredns/Corefile"],
                "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                          {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}],
                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                   "periodSeconds": 2},
                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                "resources": {"requests": {"cpu": "50m", "memory": "40Mi"},
                              "limits": {"memory": "128Mi"}},
                # Port 53 needs NET_BIND_SERVICE, which only root gets without ambient
                # capabilities; everything else is dropped.
                "securityContext": {**_RESTRICTED, "runAsUser": 0,
                                    "capabilities": {"drop": ["ALL"],
                                                     "add": ["NET_BIND_SERVICE"]}},
            }],
            "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
        }),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": _meta("kube-dns", **labels, **{"kubernetes.io/name": "CoreDNS"}),
         "spec": {"selector": labels, "clusterIP": dns_ip, "ports": [
             {"name": "dns", "port": 53, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]


def metrics_server() -> list[dict]:
    labels = {"k8s-app": "metrics-server"}
    rbac = "rbac.authorization.k8s.io/v1"
    sa = [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": SYSTEM}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta("metrics-server")},
        {"apiVersion": rbac, "kind": "ClusterRole",
         "metadata": _meta("system:aggregated-metrics-reader", None, **{
             "rbac.authorization.k8s.io/aggregate-to-view": "true",
             "rbac.authorization.k8s.io/aggregate-to-edit": "true",
             "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
         "rules": [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": _meta("system:metrics-server", None),
         "rules": [{"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                   {"apiGroups": [""], "resources": ["pods", "nodes"],
                    "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": rbac, "kind": "RoleBinding",
         "metadata": _meta("metrics-server-auth-reader"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "extension-apiserver-authentication-reader"},
         "subjects": sa},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding",
         "metadata": _meta("metrics-server:system:auth-delegator", None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:auth-delegator"},
         "subjects": sa},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding",
         "metadata": _meta("system:metrics-server", None),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:metrics-server"},
         "subjects": sa},
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta("metrics-server", **labels),
         "spec": {"selector": labels,
                  "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}},
        _deployment("metrics-server", labels, {
            "serviceAccountName": "metrics-server",
            "priorityClassName": "system-cluster-critical",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "metrics-server", "image": METRICS_SERVER_IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "args": ["--cert-dir=/tmp", "--secure-port=10250",
                         "--kubelet-preferred-address-types=InternalIP",
                         # The kubelet serves a self-signed certificate.
                         "--kubelet-insecure-tls",
                         "--kubelet-use-node-status-port", "--metric-resolution=15s"],
                "ports": [{"containerPort": 10250, "name": "https"}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "https",
                                               "scheme": "HTTPS"}, "periodSeconds": 5},
                "resources": {"requests": {"cpu": "50m", "memory": "50Mi"}},
                "securityContext": _RESTRICTED,
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        }),
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": _meta("v1beta1.metrics.k8s.io", None, **labels),
         "spec": {"service": {"name": "metrics-server", "namespace": SYSTEM},
                  "group": "metrics.k8s.io", "version": "v1beta1",
                  "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100,
                  "versionPriority": 100}},
    ]


def all_addons(dns_ip: str) -> list[dict]:
    return coredns(dns_ip) + metrics_server()
