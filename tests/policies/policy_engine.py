"""The engine's side of a policy pack, for tests that run the pack as a real analyzer process.

`pulumi preview --policy-pack policies --policy-pack-config <file>` starts `policies/__main__.py`,
reads the gRPC port it prints, asks GetAnalyzerInfo, reconciles the config file with the policies'
schemas (defaults, then "all", then per-policy blocks; see ReconcilePolicyPackConfig in
pulumi/pkg/resource/analyzer/config.go), validates it, calls Configure, then Analyze for each
resource and AnalyzeStack once. This module does the same, without the CLI, so the pack's wire
behaviour (proxies, float config, enforcement levels) is tested before the engine test exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import Any

import grpc
import jsonschema
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime import proto
from pulumi.runtime.proto import analyzer_pb2_grpc

LEVELS = {
    "advisory": proto.ADVISORY,
    "mandatory": proto.MANDATORY,
    "remediate": proto.REMEDIATE,
    "disabled": proto.DISABLED,
}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}


class AnalyzerProcess:
    """`python policies/__main__.py` as the engine runs it, and a gRPC stub to talk to it."""

    def __init__(self, policies_dir: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", os.path.join(policies_dir, "__main__.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=policies_dir,
        )
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=60)
        if not line or not line[0].strip().isdigit():
            self.close()
            raise RuntimeError(f"analyzer did not print its port: {line!r} {self.proc.stderr.read()!r}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{int(line[0])}")
        self.stub = analyzer_pb2_grpc.AnalyzerStub(self.channel)

    def close(self) -> None:
        if getattr(self, "channel", None) is not None:
            self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def info(self) -> Any:
        return self.stub.GetAnalyzerInfo(empty_pb2.Empty())

    def configure(self, config_file: str | None) -> dict[str, tuple[str, dict]]:
        reconciled = reconcile(self.info(), config_file)
        request = proto.ConfigureAnalyzerRequest()
        for name, (level, props) in reconciled.items():
            pc = request.policyConfig[name]
            pc.enforcementLevel = LEVELS[level]
            pc.properties.update(props)
        self.stub.Configure(request)
        return reconciled

    def analyze(self, resource: dict) -> list[Any]:
        request = proto.AnalyzeRequest(
            type=resource["type"], urn=resource["urn"], name=resource["name"], properties=_struct(resource["props"])
        )
        return list(self.stub.Analyze(request).diagnostics)

    def analyze_stack(self, resources: Iterable[dict]) -> list[Any]:
        request = proto.AnalyzeStackRequest(
            resources=[
                proto.AnalyzerResource(type=r["type"], urn=r["urn"], name=r["name"], properties=_struct(r["props"]))
                for r in resources
            ]
        )
        return list(self.stub.AnalyzeStack(request).diagnostics)


def _struct(props: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(props)
    return s


def reconcile(info: Any, config_file: str | None) -> dict[str, tuple[str, dict]]:
    """What the CLI sends to Configure for this config file: {policy: (level, properties)}."""
    result: dict[str, tuple[str, dict]] = {}
    schemas: dict[str, dict] = {}
    for p in info.policies:
        props = json_format.MessageToDict(p.configSchema.properties) if p.HasField("configSchema") else {}
        schemas[p.name] = props
        defaults = {k: v["default"] for k, v in props.items() if "default" in v}
        result[p.name] = (LEVEL_NAMES[p.enforcementLevel], defaults)
    given: dict[str, tuple[str | None, dict]] = {}
    if config_file:
        with open(config_file) as f:
            for key, value in json.load(f).items():
                if isinstance(value, str):
                    given[key] = (value, {})
                else:
                    value = dict(value)
                    given[key] = (value.pop("enforcementLevel", None), value)
    if "all" in given and given["all"][0]:
        result = {k: (given["all"][0], v) for k, (_, v) in result.items()}
    for name, (level, props) in given.items():
        if name == "all":
            continue
        old_level, old_props = result.get(name, (None, {}))
        result[name] = (level or old_level, {**old_props, **props})
    for name, (_, props) in result.items():
        schema = {
            "type": "object",
            "properties": {
                **schemas.get(name, {}),
                "enforcementLevel": {"type": "string", "enum": list(LEVELS)},
            },
        }
        jsonschema.validate(props, schema)
    return result


def type_token(manifest: dict) -> str:
    api = manifest["apiVersion"]
    group_version = f"core/{api}" if "/" not in api else api
    return f"kubernetes:{group_version}:{manifest['kind']}"


def load_manifests(path: str) -> list[dict]:
    """{type, name, urn, props, expect} for each manifest of a multi-document YAML file."""
    out = []
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            rtype = type_token(doc)
            name = doc["metadata"]["name"]
            expect = doc["metadata"].get("annotations", {}).get("policy-fixture.agent-platform.io/expect", "")
            out.append(
                {
                    "type": rtype,
                    "name": name,
                    "urn": f"urn:pulumi:fixture::agent-platform::{rtype}::{name}",
                    "props": doc,
                    "expect": {p.strip() for p in expect.split(",") if p.strip()},
                }
            )
    return out
