"""Where the in-process evaluator reads samples: a registry, a scraped /metrics page, a textfile."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

__all__ = [
    "DnsSource",
    "FileSource",
    "HttpSource",
    "Labels",
    "MetricsSource",
    "RegistrySource",
    "Sample",
    "labels_of",
    "samples_from_registry",
    "samples_from_text",
]

Labels = tuple[tuple[str, str], ...]

log = logging.getLogger("agent_runtime.alerts")


class Sample(NamedTuple):
    """One exposition-format sample: full sample name, sorted labels, value."""

    name: str
    labels: Labels
    value: float


def labels_of(mapping: Mapping[str, str]) -> Labels:
    """A label mapping as the sorted tuple every sample and signal uses as a key."""
    return tuple(sorted((str(k), str(v)) for k, v in mapping.items()))


def samples_from_registry(registry: Any, extra: Mapping[str, str] | None = None) -> list[Sample]:
    """Every sample a prometheus_client registry (or collector) would expose."""
    out = []
    for family in registry.collect():
        for s in family.samples:
            out.append(Sample(s.name, labels_of({**s.labels, **(extra or {})}), float(s.value)))
    return out


def samples_from_text(text: str, extra: Mapping[str, str] | None = None) -> list[Sample]:
    """Samples parsed from the Prometheus text exposition format (a scraped /metrics page)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append(Sample(s.name, labels_of({**s.labels, **(extra or {})}), float(s.value)))
    return out


class MetricsSource(Protocol):
    """Anything that yields one snapshot of samples per evaluation."""

    async def collect(self) -> list[Sample]: ...


@dataclass
class RegistrySource:
    """The gateway's own registry, read in-process."""

    registry: Any
    labels: Mapping[str, str] = field(default_factory=dict)

    async def collect(self) -> list[Sample]:
        return samples_from_registry(self.registry, self.labels)


@dataclass
class HttpSource:
    """A /metrics URL; samples get `instance` = host:port so replicas stay apart."""

    url: str
    timeout_seconds: float = 5.0
    session: Any = None

    async def collect(self) -> list[Sample]:
        import aiohttp
        from yarl import URL

        instance = URL(self.url).authority
        own = self.session is None
        session = self.session or aiohttp.ClientSession()
        try:
            async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=self.timeout_seconds)) as resp:
                resp.raise_for_status()
                text = await resp.text()
        finally:
            if own:
                await session.close()
        return samples_from_text(text, {"instance": instance})


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass
class DnsSource:
    """Every address a name resolves to, each scraped as its own HttpSource, resolved again at
    every evaluation: a headless Service (one record per ready pod) read the way Prometheus'
    `dns_sd_configs` reads it, where a Service's cluster IP would reach one pod at random.

    One address that does not answer is logged and left out, so the others still count; a name
    that does not resolve raises, and the evaluator logs the source as failed."""

    host: str
    port: int
    path: str = "/metrics"
    timeout_seconds: float = 5.0
    session: Any = None
    resolve: Callable[[str, int], Awaitable[list[str]]] = _resolve

    def _url(self, address: str) -> str:
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{self.port}{self.path}"

    async def collect(self) -> list[Sample]:
        addresses = await self.resolve(self.host, self.port)
        scrapes = [HttpSource(self._url(a), self.timeout_seconds, self.session) for a in addresses]
        results = await asyncio.gather(*(s.collect() for s in scrapes), return_exceptions=True)
        out: list[Sample] = []
        for scrape, result in zip(scrapes, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(json.dumps({"msg": "metrics source failed", "source": scrape.url, "error": str(result)}))
            else:
                out.extend(result)
        return out


@dataclass
class FileSource:
    """A textfile-collector file, such as the one the backup and drill jobs write."""

    path: str | Path

    async def collect(self) -> list[Sample]:
        try:
            text = Path(self.path).read_text()
        except FileNotFoundError:
            return []
        return samples_from_text(text)
