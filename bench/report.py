"""Figures and their printing: a benchmark's value beside its same-run baseline."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, optionally against a baseline from the same run.

    ``higher_is_better`` decides how the ratio reads: for a rate, value ÷ baseline;
    for a time, baseline ÷ value; either way a ratio above 1 means better than baseline.
    """

    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline: float | None = None
    higher_is_better: bool = True
    target: str = ""

    @property
    def ratio(self) -> float | None:
        """value relative to baseline, > 1 meaning better; None without a baseline."""
        if self.baseline is None or self.baseline == 0 or self.value == 0:
            return None
        return self.value / self.baseline if self.higher_is_better else self.baseline / self.value


def percentile(samples: list[float], pct: float) -> float:
    """The pct-th percentile (0–100) of samples, nearest-rank."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(samples: list[float]) -> float:
    """Median of samples."""
    return statistics.median(samples)


def print_figures(title: str, figures: list[Figure], console: Console | None = None) -> None:
    """Print figures as a table: value, baseline, ratio, target."""
    table = Table(title=title, title_justify="left")
    for column in ("figure", "value", "baseline (same run)", "ratio", "target"):
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for fig in figures:
        base = (
            "" if fig.baseline is None else f"{fig.baseline:,.3g} {fig.unit} ({fig.baseline_name})"
        )
        ratio = "" if fig.ratio is None else f"{fig.ratio:.2f}×"
        table.add_row(fig.name, f"{fig.value:,.3g} {fig.unit}", base, ratio, fig.target)
    (console or Console(width=160)).print(table)
