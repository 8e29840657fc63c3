"""Header work of the proxy: hop-by-hop removal, trace and request ids, message heads as bytes.

Heads are built as one `bytes` so a response (head and small body) leaves in one transport write.
"""

from __future__ import annotations

import os
import random
from http import HTTPStatus

__all__ = [
    "CAPABILITIES_HEADER",
    "CONVERSATION_HEADER",
    "HOP_BY_HOP",
    "REQUEST_ID_HEADER",
    "connection_tokens",
    "new_id",
    "reason",
    "response_head",
    "traceparent",
]

CAPABILITIES_HEADER = "x-agent-capabilities"
CONVERSATION_HEADER = "x-conversation-id"
REQUEST_ID_HEADER = "x-request-id"

# RFC 9110 section 7.6.1 hop-by-hop headers, plus ones the proxy recomputes itself (framing,
# Expect: the gateway answers 100-continue itself).
HOP_BY_HOP = frozenset(
    (
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
        "content-length",
    )
)

_rand = random.Random(os.urandom(16)).getrandbits
_REASONS = {s.value: s.phrase for s in HTTPStatus}


def new_id(nbytes: int) -> str:
    """A random hex id; ids need to be unique, not secret, so a seeded PRNG beats a syscall."""
    return f"{_rand(nbytes * 8):0{nbytes * 2}x}"


def reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def connection_tokens(value: str | None) -> frozenset[str]:
    """The header names a `Connection` header lists: hop-by-hop too (RFC 9110 section 7.6.1)."""
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def traceparent(incoming: str | None) -> tuple[str, str]:
    """(trace id, traceparent to send): keep the caller's trace, with the gateway as parent span."""
    if incoming:
        parts = incoming.strip().split("-")
        if (
            len(parts) >= 4
            and len(parts[0]) == 2
            and parts[0] != "ff"
            and len(parts[1]) == 32
            and len(parts[2]) == 16
            and len(parts[3]) == 2
            and parts[1] != "0" * 32
        ):
            try:
                int(parts[0], 16), int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
            except ValueError:
                pass
            else:
                return parts[1], f"00-{parts[1]}-{new_id(8)}-{parts[3]}"
    trace_id = new_id(16)
    return trace_id, f"00-{trace_id}-{new_id(8)}-01"


def response_head(status: int, headers: list[tuple[str, str]], framing: str, close: bool) -> bytes:
    """Status line and headers; `framing` is a ready `Content-Length: n` or chunked line, or ''."""
    lines = [f"HTTP/1.1 {status} {reason(status)}"]
    for k, v in headers:
        lines.append(f"{k}: {v}")
    if framing:
        lines.append(framing)
    if close:
        lines.append("Connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")
