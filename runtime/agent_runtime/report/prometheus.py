"""A small client of Prometheus' HTTP API (`/api/v1/query_range`, `/api/v1/query`) for the reports.

Standard library only. Every failure is one `ReportError` naming the URL and the query, never a
traceback: an unreachable server, an HTTP error, Prometheus' own `"status": "error"` answer.
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

__all__ = ["MAX_POINTS", "Prometheus", "ReportError", "Series", "parse_duration"]

# Prometheus refuses a range query of more than 11,000 points per series.
MAX_POINTS = 11_000

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class ReportError(Exception):
    """A problem the user can fix (bad argument, unreachable Prometheus); printed as it is."""


def parse_duration(text: str, field: str) -> float:
    """`7d`, `36h`, `1h30m`, `90s` -> seconds; anything else names the field in the error."""
    text = str(text).strip()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or total <= 0:
        raise ReportError(f"{field}: {text!r} is not a positive duration such as 7d, 36h, 1h30m or 90s")
    return total


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and (time, value) samples, NaN-free."""

    labels: dict[str, str]
    times: list[float]
    values: list[float]


class Prometheus:
    """Range and instant queries against one Prometheus server."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ReportError(f"--prometheus: {url!r} is not an http(s) URL such as http://prometheus:9090")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> dict:
        target = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        what = f"Prometheus at {self.url}: query {params.get('query', '')!r}"
        try:
            with urllib.request.urlopen(target, timeout=self.timeout) as answer:
                body = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except (ValueError, AttributeError):
                detail = ""
            raise ReportError(f"{what}: HTTP {exc.code} {detail}".rstrip()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ReportError(f"{what}: cannot reach it ({getattr(exc, 'reason', exc)})") from None
        except ValueError:
            raise ReportError(f"{what}: the answer is not JSON (is this a Prometheus?)") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error", body) if isinstance(body, dict) else body
            raise ReportError(f"{what}: {detail}")
        return body["data"]

    def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """`/api/v1/query_range`: a matrix, each series with its NaN samples dropped."""
        if (end - start) / step + 1 > MAX_POINTS:
            raise ReportError(
                f"--step: {step:g}s over {end - start:g}s is more than Prometheus' {MAX_POINTS} points per series"
            )
        data = self._get(
            "/api/v1/query_range", {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        return [_series(r["metric"], r.get("values", [])) for r in data.get("result", [])]

    def instant(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """`/api/v1/query`: a vector, as (labels, value) pairs."""
        data = self._get("/api/v1/query", {"query": query, "time": f"{at:.3f}"})
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data.get("result", [])]


def _series(labels: dict[str, str], values: list[list]) -> Series:
    times, out = [], []
    for t, v in values:
        x = float(v)
        if not math.isnan(x):
            times.append(float(t))
            out.append(x)
    return Series(dict(labels), times, out)
