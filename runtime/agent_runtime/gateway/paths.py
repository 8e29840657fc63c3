"""Request targets: origin or absolute form to (path, query), path normalised before matching.

Envoy's `normalize_path` + `merge_slashes`: percent-encoded unreserved characters are decoded,
repeated slashes merged, dot segments removed (RFC 3986 section 5.2.4), so `/v1/chat/../admin`
can never match the `/v1/chat` route. Encoded slashes and backslashes (%2F, %5C) and encoded
NUL are refused (Envoy's `path_with_escaped_slashes_action: REJECT_REQUEST`): what they mean
differs between servers, which is what path-confusion attacks use.
"""

from __future__ import annotations

import re

__all__ = ["BadTarget", "normalise_path", "normalise_prefix", "split_target"]

_UNRESERVED = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")
_FORBIDDEN = re.compile(r"%(2[fF]|5[cC]|00)")
_SLASHES = re.compile(r"/{2,}")


class BadTarget(ValueError):
    """A request target the gateway refuses with 400."""


def split_target(target: str) -> tuple[str, str]:
    """(path, '?query' or ''), accepting origin form and absolute form (RFC 9112 section 3.2.2)."""
    if not target.startswith("/"):
        lower = target[:8].lower()
        if lower.startswith("http://") or lower.startswith("https://"):
            rest = target.split("://", 1)[1]
            slash = rest.find("/")
            q = rest.find("?")
            if slash < 0 or (0 <= q < slash):
                target = "/" + (rest[q:] if q >= 0 else "")
            else:
                target = rest[slash:]
        elif target == "*":
            raise BadTarget("asterisk-form is only for OPTIONS to a server, not through a gateway")
        else:
            raise BadTarget(f"request target must be origin or absolute form: {target[:80]!r}")
    i = target.find("?")
    if i < 0:
        return target, ""
    return target[:i], target[i:]


def normalise_path(path: str) -> str:
    """The path as matched and forwarded; raises `BadTarget` for ones that cannot be made safe."""
    if "#" in path:
        path = path.split("#", 1)[0]
    if "%" in path:
        if _FORBIDDEN.search(path):
            raise BadTarget("encoded slash, backslash or NUL in the path")
        path = _UNRESERVED.sub(lambda mo: chr(int(mo.group(1), 16)), path)
    if "\\" in path:
        raise BadTarget("backslash in the path")
    if "//" in path:
        path = _SLASHES.sub("/", path)
    if "/." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for seg in segments[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    # A trailing dot segment leaves a directory: keep its slash.
    trailing = segments[-1] in (".", "..") and out
    return "/" + "/".join(out) + ("/" if trailing else "")


def normalise_prefix(prefix: str) -> str:
    return normalise_path(prefix) if prefix != "/" else prefix
