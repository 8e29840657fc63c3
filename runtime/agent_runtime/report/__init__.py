"""Performance, capacity and reliability reports from Prometheus range queries (Markdown + PNG).

`python -m agent_runtime report performance|capacity|reliability --prometheus URL --since 7d`;
see `agent_runtime.report.cli`.
"""

from .cli import register, run
from .prometheus import Prometheus, ReportError, parse_duration

__all__ = ["Prometheus", "ReportError", "parse_duration", "register", "run"]
