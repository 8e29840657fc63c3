"""The one table of image references both image parsers are held to.

components/image_ref.py (stack config, version label) and the policy pack's standalone copy
(policies/agent_policies/security.py) must split and judge every reference alike.
"""

from __future__ import annotations

D = "sha256:" + "a" * 64

# (reference, (repository, tag, digest), pinning problem or None)
CASES: list[tuple[str, tuple[str, str | None, str | None], str | None]] = [
    ("ghcr.io/acme/agents/worker:0.4.2", ("ghcr.io/acme/agents/worker", "0.4.2", None), None),
    ("python:3.11-slim", ("python", "3.11-slim", None), None),
    ("localhost:5000/agent:1.2", ("localhost:5000/agent", "1.2", None), None),
    ("localhost:5000/agent", ("localhost:5000/agent", None, None), "has no tag, so Kubernetes pulls ':latest'"),
    ("nginx", ("nginx", None, None), "has no tag, so Kubernetes pulls ':latest'"),
    ("ghcr.io/acme/agent:latest", ("ghcr.io/acme/agent", "latest", None), "uses the ':latest' tag"),
    ("ghcr.io/acme/agent:Latest", ("ghcr.io/acme/agent", "Latest", None), "uses the ':latest' tag"),
    ("ghcr.io/acme/agent:", ("ghcr.io/acme/agent", "", None), "has an empty tag"),
    ("ghcr.io/acme/agent@" + D, ("ghcr.io/acme/agent", None, D), None),
    ("ghcr.io/acme/agent:latest@" + D, ("ghcr.io/acme/agent", "latest", D), None),  # the digest wins
    ("ghcr.io/acme/agent@md5:abc", ("ghcr.io/acme/agent", None, "md5:abc"), "has a malformed digest '@md5:abc'"),
    ("ghcr.io/acme/agent@sha256:", ("ghcr.io/acme/agent", None, "sha256:"), "has a malformed digest '@sha256:'"),
]
