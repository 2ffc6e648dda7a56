"""Comparing resolver-failure runs: whether two failover windows are told apart, the run to recommend,
what each change from lab.toml did, and what removal on exit did. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.model.config import Lab
from reports.cells import Cell, as_toml, changes_of, row_of
from reports.stats import NO_DIFFERENCE, separated, verdict


def check_cycle_ms(lab: Lab) -> float:
    """One check cycle of lab.toml's timers (delay_loop + retries x delay_before_retry), in ms: where
    in that cycle a fault lands moves a run's detection and failover window by up to about this much,
    so two single runs closer than this are not told apart."""
    return (lab.check.delay_loop + lab.check.retry * lab.check.delay_before_retry) * 1000


def told_apart(row: Mapping[str, Any], ref: Mapping[str, Any], margin_ms: float) -> bool:
    """Do two runs' failover windows differ beyond their spread? With intervals (n >= 3 faults each):
    only when the 95 % intervals of the medians separate. Without: only by more than `margin_ms` (one
    check cycle, where a single fault may land)."""
    if (row.get("window_s") or {}).get("ci") and (ref.get("window_s") or {}).get("ci"):
        return separated(row["window_s"], ref["window_s"])
    return abs((row.get("window") or 0.0) - (ref.get("window") or 0.0)) > margin_ms


def comparison(row: Mapping[str, Any], ref: Mapping[str, Any], margin_ms: float) -> str:
    """"shorter burp", "longer burp" or "no measurable difference" for a run against the reference."""
    if not told_apart(row, ref, margin_ms):
        return NO_DIFFERENCE
    if (row.get("window_s") or {}).get("ci") and (ref.get("window_s") or {}).get("ci"):
        better = verdict(row["window_s"], ref["window_s"]) == "better"
    else:
        better = (row.get("window") or 0.0) < (ref.get("window") or 0.0)
    return "shorter burp" if better else "longer burp"


def recommend(ranked: Sequence[Cell], reference: Cell | None, margin_ms: float) -> Cell | None:
    """The best-ranked run, unless it cannot be told apart from lab.toml's own run (`told_apart`):
    then lab.toml's settings stand."""
    if not ranked:
        return None
    best = ranked[0]
    if reference is None or reference.run_id == best.run_id:
        return best
    return best if comparison(row_of(best), row_of(reference), margin_ms) == "shorter burp" else reference


def effects(ranked: Sequence[Cell], reference: Cell | None, lab: Lab,
             margin_ms: float) -> list[dict[str, Any]]:
    """What each change from lab.toml did to a resolver failure: every same-experiment fault run that
    differs from the reference run only in settings, against the reference, largest harm first;
    `noise` marks a window change within one check cycle."""
    if reference is None or reference.fault is None:
        return []
    ref = row_of(reference)
    out = []
    for cell in ranked:
        changes = changes_of(cell, lab)
        if cell.run_id == reference.run_id or cell.experiment != reference.experiment or not changes:
            continue
        row = row_of(cell)
        out.append({"row": row, "changes": [f"{k.rsplit('.', 1)[-1]} {as_toml(old)} → {as_toml(new)}"
                                            for k, (old, new) in changes.items()],
                    "window_delta": (row["window"] or 0.0) - (ref["window"] or 0.0),
                    "verdict": (said := comparison(row, ref, margin_ms)),
                    "noise": said == NO_DIFFERENCE,
                    "failed_delta": (row["failed"] or 0) - (ref["failed"] or 0)})
    return sorted(out, key=lambda e: -e["window_delta"])


def removal_on_exit(faulted: Sequence[Cell], reference: Cell | None, lab: Lab,
                    margin_ms: float) -> dict[str, Any] | None:
    """What removal on exit did to the burp: the same fault as lab.toml's own run with only
    [check] removal_on_exit changed, against that run (None when not measured)."""
    if reference is None or lab.check.removal_on_exit:
        return None
    cell = next((c for c in faulted if c.experiment == reference.experiment
                 and set(changes_of(c, lab)) == {"check.removal_on_exit"}), None)
    if cell is None:
        return None
    row, ref = row_of(cell), row_of(reference)
    delta = (row["window"] or 0.0) - (ref["window"] or 0.0)
    return {"row": row, "ref": ref, "window_delta": delta,
            "beyond": comparison(row, ref, margin_ms) == "shorter burp",
            "margin_ms": margin_ms, "failed_delta": (row["failed"] or 0) - (ref["failed"] or 0)}
