"""The answers page's model: the measured runs of a suite (`Cell`), each one's figures as a row, and
the settings a run changed from lab.toml. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.model.config import Lab
from lab.model.parse import flatten


@dataclass(frozen=True)
class Cell:
    """One measured run of a suite: what it varied and what it measured."""

    run_id: str
    experiment: str
    settings: Mapping[str, Any]
    overrides: Mapping[str, Any]
    summary: Mapping[str, Any]
    href: str

    @property
    def label(self) -> str:
        parts = [f"{k.rsplit('.', 1)[-1]}={v}" for k, v in self.settings.items()]
        return f"{self.experiment} [{', '.join(parts)}]" if parts else self.experiment

    @property
    def fault(self) -> Mapping[str, Any] | None:
        """The run's resolver failure: its first fault action's medians over every repetition
        (`failover_window_ms`, `failed`, `detection_ms`), the spreads of each (`stats`: n, median,
        min, max, 95 % interval) and the resolvers it hit. None without a fault."""
        faults = self.summary.get("faults") or []
        if not faults:
            return None
        action = faults[0].get("action")
        stats = (self.summary.get("fault_stats") or {}).get(action) or {}
        mine = [f for f in faults if f.get("action") == action]
        medians = {k: (stats.get(k) or {}).get("median", mine[0].get(k))
                   for k in ("failover_window_ms", "failed", "detection_ms")}
        return {**mine[0], **medians, "n": stats.get("n", len(mine)), "excluded": stats.get("excluded", 0),
                "stats": stats,
                "resolvers": sorted({str(f.get("resolver")) for f in mine})}

    @property
    def exercised(self) -> bool:
        """True when a faulted resolver answered queries in this run, so the fault reached clients.

        With reused source ports every socket may be pinned to other resolvers: then killing this
        one hides nothing and its zero failures say nothing about the settings."""
        fault = self.fault or {}
        answered = self.summary.get("answers_by_resolver") or {}
        return any(answered.get(name, 0) > 0 for name in fault.get("resolvers", ()))

    @property
    def qps(self) -> float | None:
        duration = self.summary.get("duration_s") or 0
        return self.summary["queries"] / duration if duration else None

    def latency(self, key: str) -> float | None:
        return (self.summary.get("latency_ms") or {}).get(key)


@dataclass(frozen=True)
class Answers:
    """Every answer as plain data for the template, plus the recommended cell."""

    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    recommended: Cell | None = None
    files: dict[str, str] = field(default_factory=dict)


def fault_rank(cell: Cell) -> tuple[float, float, float]:
    fault = cell.fault or {}
    return (fault.get("failover_window_ms") or 0.0, fault.get("failed") or 0,
            fault.get("detection_ms") or float("inf"))


def row_of(cell: Cell) -> dict[str, Any]:
    """A cell's figures for the page: fault medians, with their spreads (`*_s`), and load figures."""
    fault = cell.fault or {}
    stats = fault.get("stats") or {}
    return {"cell": cell, "window": fault.get("failover_window_ms"), "failed": fault.get("failed"),
            "detection": fault.get("detection_ms"), "n": fault.get("n"),
            "window_s": stats.get("failover_window_ms"), "failed_s": stats.get("failed"),
            "detection_s": stats.get("detection_ms"), "dropped": cell.summary.get("dropped"),
            "queries": cell.summary.get("queries"), "stall": cell.summary.get("max_stall_ms"),
            "p50": cell.latency("p50"), "p99": cell.latency("p99"), "qps": cell.qps}


def one_per_run(cells: Sequence[Cell]) -> list[Cell]:
    """The first cell of each run: suite cells equal to lab.toml's settings share one run."""
    first: dict[str, Cell] = {}
    for cell in cells:
        first.setdefault(cell.run_id, cell)
    return list(first.values())


def varying(cells: Sequence[Cell], key: str) -> list[Cell]:
    return [c for c in cells if key in c.settings]


def compared(cells: Sequence[Cell], reference: Cell | None, own: str) -> dict[str, Any]:
    """Rows of the cells that vary a setting; else only the reference run, flagged as the lab's own."""
    if cells:
        return {"rows": [row_of(c) for c in cells], "only": None}
    return {"rows": [row_of(reference)] if reference else [], "only": own}


def changes_of(cell: Cell, lab: Lab) -> dict[str, tuple[Any, Any]]:
    """The settings of a cell that differ from lab.toml's: key -> (lab.toml's value, the cell's)."""
    flat = flatten(lab.raw)
    cell_settings = {**cell.settings, **flatten(dict(cell.overrides))}
    return {k: (flat.get(k), v) for k, v in cell_settings.items() if as_toml(flat.get(k)) != as_toml(v)}


def as_toml(value: Any) -> str:
    """A setting's value as lab.toml spells it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def by_setting(cells: Sequence[Cell], key: str, value: Any) -> dict[str, Any] | None:
    """The row of the first cell whose setting `key` equals `value`."""
    cell = next((c for c in cells if as_toml(c.settings.get(key)) == as_toml(value)), None)
    return row_of(cell) if cell else None
