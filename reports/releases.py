"""The side-by-side page of the per-release demo (`SUITE=releases make demo`): each guest release's
sysctl-namespace probe, nodest grid, check-cost probe and removal-on-exit cell, and where they differ.

Pure core: `compare_releases(releases, lab)` turns each release's plain data (`Release`) into the
page's data; a cell counts as different between releases only when the 95 % intervals of its
medians separate (reports.stats), a sysctl when it exists, is writable or leaks in one release and
not in another. Each difference carries the recommendation it touches and the releases it holds for.
The shell (`write_releases`) reads each release's files and writes the page.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.model.config import Lab
from lab.versions import describe
from reports.answers import CASE_NAMES, load_cells
from reports.cells import Cell, as_toml, changes_of, one_per_run, row_of
from reports.check_cost import sentences
from reports.html import environment
from reports.stats import NO_DIFFERENCE, separated, verdict
from reports.stats import describe as spread_text

NODEST = "sysctl.net.ipv4.vs.expire_nodest_conn"
REMOVAL = "check.removal_on_exit"
METRICS = (("window_s", "failover window", " ms"), ("failed_s", "failed queries per fault", ""))


@dataclass(frozen=True)
class Release:
    """What one release measured: its guest, probes and suite cells, and its own answers page."""

    name: str
    guest: Mapping[str, str] | None
    probe: Mapping[str, Any] | None  # probe_sysctl_namespaces.json
    cells: Sequence[Cell]
    cost: Mapping[str, Any] | None  # probe_check_cost.json's summary
    answers_href: str


# --- sysctls -----------------------------------------------------------------------------------------

def sysctl_state(entry: Mapping[str, Any] | None) -> tuple[bool | None, tuple[str, ...]] | None:
    """(writable, leaks_to) of one sysctl in one case, as compared between releases; None when absent."""
    if not entry or not entry.get("exists"):
        return None
    return entry.get("writable"), tuple(entry.get("leaks_to") or ())


def sysctl_text(entry: Mapping[str, Any] | None) -> str:
    """A table cell: `exists, writable`, `exists, read-only, leaks to init`, or `–` when absent."""
    state = sysctl_state(entry)
    if state is None:
        return "–"
    writable, leaks = state
    parts = ["exists", {True: "writable", False: "read-only"}.get(writable, "not written")]
    if leaks:
        parts.append("leaks to " + ", ".join(leaks))
    elif entry and entry.get("not_changed"):
        parts.append("leak untested")
    return ", ".join(parts)


def _sysctls(release: Release) -> Mapping[str, Any]:
    return (release.probe or {}).get("sysctls") or {}


def sysctl_table(releases: Sequence[Release]) -> dict[str, Any]:
    """Per-case counts per release, and one row per sysctl (the union over releases) with a cell per
    release x case."""
    names = sorted({name for r in releases for name in _sysctls(r)})
    rows = [{"name": name, "cells": [sysctl_text(_sysctls(r).get(name, {}).get(case))
                                     for r in releases for case in CASE_NAMES]} for name in names]
    counts = [{"release": r.name, "kernel": (r.probe or {}).get("kernel"),
               "not_changed": ((r.probe or {}).get("summary") or {}).get("not_changed") or [],
               "cases": [{"name": CASE_NAMES[case], **((r.probe or {}).get("summary") or {})[case]}
                         for case in CASE_NAMES if case in ((r.probe or {}).get("summary") or {})]}
              for r in releases]
    return {"cases": list(CASE_NAMES.values()), "rows": rows, "counts": counts}


def sysctl_differences(releases: Sequence[Release]) -> list[dict[str, Any]]:
    """The sysctls whose existence, writability or leaks differ between the releases the probe
    measured, one difference per case and per way they differ (the sysctls that differ alike are
    named together); the recommendation (set it in the namespace that holds the VIP) holds where it
    exists, is writable and does not leak."""
    probed = [r for r in releases if r.probe]
    out = []
    for case, case_name in CASE_NAMES.items():
        groups: dict[tuple[str, ...], list[str]] = {}
        holds: dict[tuple[str, ...], list[str]] = {}
        for name in sorted({name for r in probed for name in _sysctls(r)}):
            entries = {r.name: _sysctls(r).get(name, {}).get(case) for r in probed}
            if len({sysctl_state(e) for e in entries.values()}) < 2:
                continue
            texts = tuple(f"{r}: {sysctl_text(e)}" for r, e in entries.items())
            groups.setdefault(texts, []).append(name)
            holds[texts] = [r for r, e in entries.items()
                            if (state := sysctl_state(e)) and state[0] is True and not state[1]]
        for texts, names in groups.items():
            what = f"net.ipv4.vs.{names[0]}" if len(names) == 1 else \
                f"net.ipv4.vs.* ({len(names)}: {', '.join(names)})"
            out.append({"what": what, "case": case_name, "text": "; ".join(texts),
                        "recommendation": f"set {'it' if len(names) == 1 else 'them'} in the namespace that "
                                          f"holds the VIP ({case_name})",
                        "holds_for": holds[texts]})
    return out


# --- the grid ----------------------------------------------------------------------------------------

Key = tuple[str, tuple[tuple[str, str], ...]]


def cell_key(experiment: str, settings: Mapping[str, Any]) -> Key:
    """A cell's identity across releases: its experiment and varied settings."""
    return experiment, tuple(sorted((k, as_toml(v)) for k, v in settings.items()))


def _by_key(release: Release) -> dict[Key, Cell]:
    return {cell_key(c.experiment, c.settings): c for c in one_per_run(release.cells) if c.fault}


def _label(cell: Cell) -> str:
    """`kill-one [expire_nodest_conn=0, socket_mode=reuse]`, values as lab.toml spells them."""
    parts = [f"{k.rsplit('.', 1)[-1]}={as_toml(v)}" for k, v in cell.settings.items()]
    return f"{cell.experiment} [{', '.join(parts)}]" if parts else cell.experiment


def _cells(releases: Sequence[Release]) -> dict[Key, str]:
    """Every fault cell of any release (in suite order), with its label as the suite spells it."""
    out: dict[Key, str] = {}
    for release in releases:
        for key, cell in _by_key(release).items():
            out.setdefault(key, _label(cell))
    return out


def grid_rows(releases: Sequence[Release]) -> list[dict[str, Any]]:
    """One row per fault cell (the union over releases, in suite order): per release the failover
    window and failed queries per fault as `median [min–max], n=N`, and the run's link."""
    rows = []
    for key, label in _cells(releases).items():
        per = []
        for release in releases:
            cell = _by_key(release).get(key)
            row = row_of(cell) if cell else {}
            per.append({"window": spread_text(row.get("window_s"), " ms"),
                        "failed": spread_text(row.get("failed_s")), "href": cell.href if cell else None,
                        "unexercised": bool(cell) and not cell.exercised})
        rows.append({"label": label, "removal": dict(key[1]).get(REMOVAL) == "true", "releases": per})
    return rows


def _alternative(cell: Cell, cells: Sequence[Cell], lab: Lab) -> tuple[Cell | None, str, str]:
    """The cell this one's setting is weighed against in its release, and both settings in words:
    expire_nodest_conn flipped (same experiment and ports), or removal on exit against lab.toml's run."""
    if NODEST in cell.settings:
        value = as_toml(cell.settings[NODEST])
        other = {**cell.settings, NODEST: "1" if value == "0" else "0"}
        alt = next((c for c in cells if cell_key(c.experiment, c.settings)
                    == cell_key(cell.experiment, other)), None)
        where = f" ({cell.experiment}, socket_mode={as_toml(cell.settings.get('load.socket_mode', '-'))})"
        return alt, f"expire_nodest_conn = {value}{where}", f"expire_nodest_conn = {other[NODEST]}{where}"
    reference = next((c for c in cells if c.experiment == cell.experiment and c.fault
                      and not changes_of(c, lab)), None)
    mine = ", ".join(f"{k.rsplit('.', 1)[-1]} = {as_toml(v)}" for k, v in cell.settings.items())
    return reference, mine, "lab.toml's settings"


def recommendation(key: Key, releases: Sequence[Release], lab: Lab) -> tuple[str, list[str]]:
    """The setting a cell weighs (against `_alternative`) recommended per release, in words, and the
    releases it holds for: a setting is better only where the intervals of its failover window
    separate from the alternative's; with no such release, lab.toml's setting stands everywhere."""
    verdicts: dict[str, str] = {}
    mine = theirs = ""
    for release in releases:
        cell = _by_key(release).get(key)
        if cell is None:
            continue
        alt, mine, theirs = _alternative(cell, release.cells, lab)
        verdicts[release.name] = (verdict(row_of(cell)["window_s"], row_of(alt)["window_s"])
                                  if alt and alt.exercised and cell.exercised else NO_DIFFERENCE)
    for word, setting in (("better", mine), ("worse", theirs)):
        holds = [r for r, v in verdicts.items() if v == word]
        if holds:
            return setting, holds
    return f"lab.toml's setting ({NO_DIFFERENCE} between {mine} and {theirs})", list(verdicts)


def grid_differences(releases: Sequence[Release], lab: Lab) -> list[dict[str, Any]]:
    """Every cell whose failover window or failed queries separate between two releases (95 % intervals
    of the medians), named, with which release was better and the recommendation it touches."""
    out = []
    keyed = [(r, _by_key(r)) for r in releases]
    for key, label in _cells(releases).items():
        # a fault no client traffic reached shows nothing about the release: not compared
        present = [(r, cells[key]) for r, cells in keyed if key in cells and cells[key].exercised]
        found = []
        for i, (ra, a) in enumerate(present):
            for rb, b in present[i + 1:]:
                for stat, name, unit in METRICS:
                    sa, sb = row_of(a)[stat], row_of(b)[stat]
                    if separated(sa, sb):
                        better = ra.name if sa["median"] < sb["median"] else rb.name
                        found.append(f"{name} {spread_text(sa, unit)} on {ra.name} against "
                                     f"{spread_text(sb, unit)} on {rb.name}: lower on {better}")
        if found:
            setting, holds = recommendation(key, releases, lab)
            out.append({"what": label, "case": "", "text": "; ".join(found) + " (the 95 % intervals "
                        "separate)", "recommendation": setting, "holds_for": holds})
    return out


def compare_releases(releases: Sequence[Release], lab: Lab) -> dict[str, Any]:
    """The page's data (pure): per release its guest line, check-cost sentences and answers page; the
    sysctl table; the grid; and every difference with the releases its recommendation holds for."""
    return {
        "releases": [{"name": r.name, "guest": describe(dict(r.guest) if r.guest else None),
                      "href": r.answers_href, "cost": sentences(dict(r.cost)) if r.cost else []}
                     for r in releases],
        "sysctl": sysctl_table(releases),
        "grid": grid_rows(releases),
        "differences": sysctl_differences(releases) + grid_differences(releases, lab),
    }


def render_releases(data: Mapping[str, Any], generated: str = "") -> str:
    """The page's HTML (`generated`: when, for its footer)."""
    return environment().get_template("releases.html.j2").render(**data, generated=generated)


# --- shell -------------------------------------------------------------------------------------------

def _json(path: Path | None) -> Any:
    try:
        return json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None


def read_release(name: str, matrix_json: Path, probe_json: Path | None, cost_json: Path | None,
                 answers: Path, out: Path) -> Release:
    """One release's data from its files (links relative to the page `out`); the guest from the
    sysctl probe's run (meta.json `guest`)."""
    meta = _json(probe_json.parent / "meta.json") if probe_json else None
    cost = _json(cost_json)
    return Release(name=name, guest=(meta or {}).get("guest"), probe=_json(probe_json),
                   cells=load_cells(matrix_json, out.parent), cost=(cost or {}).get("summary"),
                   answers_href=os.path.relpath(answers, out.parent))


def write_releases(releases: Sequence[Release], lab: Lab, out: Path) -> Path:
    """Write the side-by-side page to `out`; its path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out.write_text(render_releases(compare_releases(releases, lab), now))
    return out
