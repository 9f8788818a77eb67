"""The benchmarks' shared plotting: latency distributions drawn the same way in every figure."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def latency_cdfs(axis, curves: Iterable[tuple[str, np.ndarray]], *, title: str, what: str = "requests") -> None:  # type: ignore[no-untyped-def]
    """Draws each (label, latencies in ms) as a cumulative distribution on a log time axis."""
    for label, latencies in curves:
        values = np.sort(np.asarray(latencies))
        if len(values):
            axis.plot(values, np.linspace(0, 1, len(values)), label=label)
    axis.set_xscale("log")
    axis.set_xlabel("latency (ms, log scale)")
    axis.set_ylabel(f"fraction of {what}")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)


def save_log_x(figure, axis, path, *, xlabel: str, ylabel: str, title: str, legend_loc: str = "lower right") -> None:  # type: ignore[no-untyped-def]
    """Finishes a figure of results against compute (a log x axis) the same way everywhere and saves it."""
    axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(loc=legend_loc, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
