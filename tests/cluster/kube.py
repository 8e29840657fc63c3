"""Helpers for tests against the real API server of `kube_cluster` (tests/cluster/conftest.py).

- `api_client(kubeconfig)`: a `kubernetes.client.ApiClient` made from a kubeconfig file.
- `install_monitoring_crds(api)`: minimal structural CRDs for the Prometheus Operator's
  ServiceMonitor and PrometheusRule (monitoring.coreos.com/v1) and KEDA's ScaledObject
  (keda.sh/v1alpha1), so that the objects the platform emits for them can be created. Their
  specs are not validated (`x-kubernetes-preserve-unknown-fields`); the operators are not run.
- `read_object` / `list_objects` / `wait_gone`: read any object back by apiVersion and kind,
  built-in or custom, as a plain dict (the wire format, camelCase), resolving kinds through
  API discovery.
"""

from __future__ import annotations

import json
import time
from os import PathLike
from urllib.parse import quote

from kubernetes import config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException


def api_client(kubeconfig: str | PathLike[str], context: str | None = None) -> ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig), context=context)


# --- raw requests ---------------------------------------------------------------------------


def request(api: ApiClient, method: str, path: str, body: dict | None = None,
            query: dict | None = None, content_type: str = "application/json") -> dict | None:
    """One request to the API server; returns the decoded JSON body, or None on 404."""
    serialized = api.param_serialize(
        method.upper(), path,
        query_params=list(query.items()) if query else None,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(*serialized)
    response.read()
    if response.status == 404:
        return None
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(
            http_resp=response, body=response.data.decode(errors="replace"), data=None
        )
    return json.loads(response.data) if response.data else {}


def _group_path(api_version: str) -> str:
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


def resource_for(api: ApiClient, api_version: str, kind: str) -> tuple[str, bool]:
    """(plural, namespaced) of a kind, from the server's discovery document."""
    found = request(api, "GET", _group_path(api_version))
    if found is None:
        raise LookupError(f"the server does not serve {api_version}")
    for resource in found.get("resources") or []:
        if resource["kind"] == kind and "/" not in resource["name"]:
            return resource["name"], resource["namespaced"]
    raise LookupError(f"the server serves no {kind} in {api_version}")


def object_path(api: ApiClient, api_version: str, kind: str, name: str | None = None,
                namespace: str | None = None) -> str:
    plural, namespaced = resource_for(api, api_version, kind)
    path = _group_path(api_version)
    if namespaced and namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    elif namespaced and name is not None:
        raise ValueError(f"{kind} is namespaced: name the namespace")
    path += f"/{plural}"
    return path + (f"/{quote(name, safe='')}" if name is not None else "")


def read_object(api: ApiClient, api_version: str, kind: str, name: str,
                namespace: str | None = None) -> dict | None:
    """The object as the server stores it (defaults filled in), or None if it does not exist."""
    return request(api, "GET", object_path(api, api_version, kind, name, namespace))


def list_objects(api: ApiClient, api_version: str, kind: str, namespace: str | None = None,
                 label_selector: str | None = None) -> list[dict]:
    query = {"labelSelector": label_selector} if label_selector else None
    found = request(api, "GET", object_path(api, api_version, kind, None, namespace), query=query)
    return [] if found is None else found.get("items", [])


def create_object(api: ApiClient, obj: dict) -> dict:
    namespace = obj.get("metadata", {}).get("namespace")
    path = object_path(api, obj["apiVersion"], obj["kind"], None, namespace)
    created = request(api, "POST", path, body=obj)
    assert created is not None
    return created


def delete_object(api: ApiClient, api_version: str, kind: str, name: str,
                  namespace: str | None = None, propagation: str = "Background") -> bool:
    """Deletes an object; False if it did not exist."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
    return request(api, "DELETE", object_path(api, api_version, kind, name, namespace), body) is not None


def wait_gone(api: ApiClient, api_version: str, kind: str, name: str,
              namespace: str | None = None, timeout: float = 120) -> float:
    """Waits until the object no longer exists; returns the seconds it took."""
    start = time.monotonic()
    while read_object(api, api_version, kind, name, namespace) is not None:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{kind} {namespace + '/' if namespace else ''}{name} "
                               f"still exists after {timeout:.0f}s")
        time.sleep(0.25)
    return time.monotonic() - start


# --- CRDs -----------------------------------------------------------------------------------


def structural_crd(group: str, version: str, kind: str, plural: str,
                   short_names: list[str] | None = None, categories: list[str] | None = None,
                   status_subresource: bool = True) -> dict:
    """A namespaced CRD whose spec and status accept anything (a structural schema)."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    served = {
        "name": version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": open_object,
                "status": open_object,
            },
        }},
    }
    if status_subresource:
        served["subresources"] = {"status": {}}
    names = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()}
    if short_names:
        names["shortNames"] = short_names
    if categories:
        names["categories"] = categories
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced", "names": names, "versions": [served]},
    }


MONITORING_CRDS = [
    structural_crd("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors",
                   short_names=["smon"], categories=["prometheus-operator"],
                   status_subresource=False),
    structural_crd("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules",
                   short_names=["promrule"], categories=["prometheus-operator"],
                   status_subresource=False),
    structural_crd("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects",
                   short_names=["so"], categories=["keda"]),
]

_CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def install_crds(api: ApiClient, crds: list[dict], timeout: float = 60) -> list[str]:
    """Creates the CRDs (those already present are left as they are) and waits until the
    server serves them (Established, and the group/version in discovery)."""
    names = []
    for crd in crds:
        name = crd["metadata"]["name"]
        if request(api, "GET", f"{_CRD_PATH}/{name}") is None:
            try:
                request(api, "POST", _CRD_PATH, body=crd)
            except ApiException as err:
                if err.status != 409:  # created concurrently
                    raise
        names.append(name)
    deadline = time.monotonic() + timeout
    for crd in crds:
        name = crd["metadata"]["name"]
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        version = crd["spec"]["versions"][0]["name"]
        while True:
            current = request(api, "GET", f"{_CRD_PATH}/{name}") or {}
            # A CRD just created may carry `status: null` or `conditions: null` for a moment.
            status = current.get("status") or {}
            conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
            if conditions.get("Established") == "True":
                try:
                    resource_for(api, f"{group}/{version}", kind)
                    break
                except LookupError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not established after {timeout:.0f}s: {conditions}")
            time.sleep(0.2)
    return names


def install_monitoring_crds(api: ApiClient) -> list[str]:
    """ServiceMonitor, PrometheusRule (monitoring.coreos.com/v1), ScaledObject (keda.sh/v1alpha1)."""
    return install_crds(api, MONITORING_CRDS)
