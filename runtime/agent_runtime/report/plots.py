"""PNG plots for the reports (matplotlib, Agg backend: files only, no display)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .prometheus import ReportError

__all__ = ["Line", "pyplot", "save_lines"]


def pyplot() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise ReportError("the report needs matplotlib: pip install 'agent-runtime[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class Line:
    """One plotted line: a label, its times (Unix seconds) and values, and a style."""

    def __init__(self, label: str, times: Sequence[float], values: Sequence[float], **style: Any) -> None:
        self.label, self.times, self.values, self.style = label, times, values, style


def _dates(times: Sequence[float]) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(t, dt.UTC) for t in times]


def save_lines(path: Path, title: str, panels: Sequence[tuple[str, Sequence[Line]]], *, dpi: int = 80) -> Path:
    """One figure with a panel per (y label, lines), sharing the time axis, saved as PNG."""
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(9, 2.6 * len(panels) + 0.6), squeeze=False)
    for axis, (ylabel, lines) in zip(axes[:, 0], panels, strict=False):
        for line in lines:
            if line.times:
                axis.plot(_dates(line.times), line.values, label=line.label, linewidth=1.2, **line.style)
        axis.set_ylabel(ylabel)
        axis.grid(True, alpha=0.3)
        if any(line.times for line in lines):
            axis.legend(fontsize=7, loc="upper left")
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
