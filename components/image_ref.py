"""Container image references ("ghcr.io/acme/agent:1.4@sha256:..."): split and judged once.

The stack config (pinned images in staging and prod) and the version label read images through
these two functions. The policy pack keeps its own copy (policies/agent_policies/security.py:
`split_image`, `_pinning_problem`) because it must stay standalone; tests/image_cases.py is the one
table of cases both are held to.
"""

from __future__ import annotations

__all__ = ["pinning_problem", "split_image"]


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


def pinning_problem(image: str) -> str | None:
    """Why an image is not pinned to a version tag or a digest, or None when it is."""
    _, tag, digest = split_image(image.strip())
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
