"""One benchmark figure: its name, value, unit and target, printed one line each and written
to `.bench/results.json` by `make bench` (benchmarks/run_all.py). Figures never assert."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """A measured value; `target` None means the figure is reported without a target."""

    name: str
    value: float
    unit: str
    target: float | None
    higher_is_better: bool = False
    note: str = ""
    limit: str = ""  # what limits the figure: printed when it misses its target

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when there is none."""
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target

    def line(self) -> str:
        """The figure as one printed line."""
        if self.target is None:
            verdict = ""
        else:
            sign = ">=" if self.higher_is_better else "<="
            verdict = f"target {sign} {self.target:g}  {'met' if self.met else 'MISSED'}"
        note = f"  ({self.note})" if self.note else ""
        limit = f"  limit: {self.limit}" if self.limit and self.met is False else ""
        return f"{self.name:<42} {self.value:10.3f} {self.unit:<7} {verdict}{note}{limit}"


def printed(figures: list[Figure]) -> list[Figure]:
    """`figures`, each printed as its line first (a module's `figures()` result)."""
    for figure in figures:
        print(figure.line(), flush=True)
    return figures


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def write_results(figures: Sequence[Figure], path: Path, machine: dict[str, object]) -> None:
    """`figures` as JSON, with `met` and the machine they were measured on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(figure), "met": figure.met} for figure in figures]
    path.write_text(json.dumps({"machine": machine, "figures": rows}, indent=2) + "\n")
