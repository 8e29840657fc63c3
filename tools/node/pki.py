"""Certificates, tokens and kubeconfigs of a test cluster (openssl, two-day validity)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import yaml


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _sign(pki: Path, name: str, subject: str, ext: str) -> None:
    (pki / f"{name}.ext").write_text(ext)
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject, cwd=pki)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext",
             cwd=pki)


def make_pki(pki: Path, ips: tuple[str, ...] = ("127.0.0.1", "10.0.0.1")) -> None:
    """A CA; the API server's serving certificate (for `ips` and the `kubernetes` Service
    names); a client certificate the API server presents to kubelets (system:masters); a
    front-proxy client certificate for aggregated APIs (metrics-server); service-account keys."""
    pki.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=agent-platform-test-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature", cwd=pki)
    sans = ",".join([*(f"IP:{ip}" for ip in ips), "DNS:localhost", "DNS:kubernetes",
                     "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                     "DNS:kubernetes.default.svc.cluster.local"])
    _sign(pki, "apiserver", "/CN=kube-apiserver",
          f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
          "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    client = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
              "extendedKeyUsage=clientAuth\n")
    _sign(pki, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", client)
    _sign(pki, "front-proxy-client", "/CN=front-proxy-client", client)
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key",
             cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def new_token() -> str:
    return base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")


def kubeconfig(server: str, ca_file: Path, user: str, token: str, context: str) -> str:
    ca_data = base64.b64encode(ca_file.read_bytes()).decode()
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {
            "server": server, "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
        "preferences": {},
    }, sort_keys=False)


def write_private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path
