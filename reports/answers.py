"""The answers page: the seed's questions, each answered from a suite's measured runs.

Pure core: `answer(cells, probe, lab)` turns plain data (each cell's varied settings, overrides and
JSON summary; the sysctl-namespace probe's result; the lab model) into `Answers`, every number
traceable to the run it came from. `sections(answers)` renders them as index.html sections. The
shell (`load_cells`, `write_answers`) reads a matrix directory and writes reports/index.html.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.check_cost import sentences
from lab.model.config import Lab
from lab.model.errors import LabError
from lab.model.layout import EXIT_WATCHER, KEEPALIVED_CONF, KEEPALIVED_UNIT, RESOLVER_DROPIN
from lab.model.parse import flatten, with_overrides
from lab.render.files import (
    exit_watcher,
    render_keepalived,
    render_keepalived_unit,
    render_resolver_dropin,
    render_sysctl,
    render_unbound,
)
from reports.html import environment
from reports.index import Section, write_index
from reports.stats import NO_DIFFERENCE, separated, verdict

QUESTIONS = {
    "burp": "How long is the “burp” when one resolver dies, and how many queries are lost?",
    "settings": "Which settings remove it?",
    "check": "Is nslookup too heavy as a health check, and what does DNS_CHECK change?",
    "sysctl": "Are the net.ipv4.vs.* sysctls per network namespace?",
    "netns": "Does Keepalived need the host network?",
    "vlan": "What does the VLAN / ipvlan layering cost?",
    "lookups": "Does a lookup stall or fail?",
}
# Repeated closed-model baseline runs of one lab variant under TCG on the build host differed by up to
# 38 % (VLAN on: 2070 and 1801 q/s; off: 2163 and 1349 q/s), so smaller differences are not resolved.
BASELINE_NOISE_PCT = 38.0
CASE_NAMES = {
    "init": "init namespace",
    "child_init_userns": "child netns, init user namespace",
    "child_unpriv_userns": "child netns, unprivileged user namespace",
}


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
        return {**mine[0], **medians, "n": len(mine), "stats": stats,
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


def _fault_rank(cell: Cell) -> tuple[float, float, float]:
    fault = cell.fault or {}
    return (fault.get("failover_window_ms") or 0.0, fault.get("failed") or 0,
            fault.get("detection_ms") or float("inf"))


def _row(cell: Cell) -> dict[str, Any]:
    """A cell's figures for the page: fault medians, with their spreads (`*_s`), and load figures."""
    fault = cell.fault or {}
    stats = fault.get("stats") or {}
    return {"cell": cell, "window": fault.get("failover_window_ms"), "failed": fault.get("failed"),
            "detection": fault.get("detection_ms"), "n": fault.get("n"),
            "window_s": stats.get("failover_window_ms"), "failed_s": stats.get("failed"),
            "detection_s": stats.get("detection_ms"), "dropped": cell.summary.get("dropped"),
            "queries": cell.summary.get("queries"), "stall": cell.summary.get("max_stall_ms"),
            "p50": cell.latency("p50"), "p99": cell.latency("p99"), "qps": cell.qps}


def _one_per_run(cells: Sequence[Cell]) -> list[Cell]:
    """The first cell of each run: suite cells equal to lab.toml's settings share one run."""
    first: dict[str, Cell] = {}
    for cell in cells:
        first.setdefault(cell.run_id, cell)
    return list(first.values())


def _varying(cells: Sequence[Cell], key: str) -> list[Cell]:
    return [c for c in cells if key in c.settings]


def _compared(cells: Sequence[Cell], reference: Cell | None, own: str) -> dict[str, Any]:
    """Rows of the cells that vary a setting; else only the reference run, flagged as the lab's own."""
    if cells:
        return {"rows": [_row(c) for c in cells], "only": None}
    return {"rows": [_row(reference)] if reference else [], "only": own}


def _changes(cell: Cell, lab: Lab) -> dict[str, tuple[Any, Any]]:
    """The settings of a cell that differ from lab.toml's: key -> (lab.toml's value, the cell's)."""
    flat = flatten(lab.raw)
    cell_settings = {**cell.settings, **flatten(dict(cell.overrides))}
    return {k: (flat.get(k), v) for k, v in cell_settings.items() if _toml(flat.get(k)) != _toml(v)}


def _toml(value: Any) -> str:
    """A setting's value as lab.toml spells it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


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
    return best if comparison(_row(best), _row(reference), margin_ms) == "shorter burp" else reference


def _effects(ranked: Sequence[Cell], reference: Cell | None, lab: Lab,
             margin_ms: float) -> list[dict[str, Any]]:
    """What each change from lab.toml did to a resolver failure: every same-experiment fault run that
    differs from the reference run only in settings, against the reference, largest harm first;
    `noise` marks a window change within one check cycle."""
    if reference is None or reference.fault is None:
        return []
    ref = _row(reference)
    out = []
    for cell in ranked:
        changes = _changes(cell, lab)
        if cell.run_id == reference.run_id or cell.experiment != reference.experiment or not changes:
            continue
        row = _row(cell)
        out.append({"row": row, "changes": [f"{k.rsplit('.', 1)[-1]} {_toml(old)} → {_toml(new)}"
                                            for k, (old, new) in changes.items()],
                    "window_delta": (row["window"] or 0.0) - (ref["window"] or 0.0),
                    "verdict": (said := comparison(row, ref, margin_ms)),
                    "noise": said == NO_DIFFERENCE,
                    "failed_delta": (row["failed"] or 0) - (ref["failed"] or 0)})
    return sorted(out, key=lambda e: -e["window_delta"])


def _by_setting(cells: Sequence[Cell], key: str, value: Any) -> dict[str, Any] | None:
    """The row of the first cell whose setting `key` equals `value`."""
    cell = next((c for c in cells if _toml(c.settings.get(key)) == _toml(value)), None)
    return _row(cell) if cell else None


def removal_on_exit(faulted: Sequence[Cell], reference: Cell | None, lab: Lab,
                    margin_ms: float) -> dict[str, Any] | None:
    """What removal on exit did to the burp: the same fault as lab.toml's own run with only
    [check] removal_on_exit changed, against that run (None when not measured)."""
    if reference is None or lab.check.removal_on_exit:
        return None
    cell = next((c for c in faulted if c.experiment == reference.experiment
                 and set(_changes(c, lab)) == {"check.removal_on_exit"}), None)
    if cell is None:
        return None
    row, ref = _row(cell), _row(reference)
    delta = (row["window"] or 0.0) - (ref["window"] or 0.0)
    return {"row": row, "ref": ref, "window_delta": delta,
            "beyond": comparison(row, ref, margin_ms) == "shorter burp",
            "margin_ms": margin_ms, "failed_delta": (row["failed"] or 0) - (ref["failed"] or 0)}


def recommended_files(lab: Lab) -> dict[str, str]:
    """Every file the recommended configuration needs, by its path (the lab's paths: adapt the unit
    names to the resolvers' own units)."""
    files = {
        KEEPALIVED_CONF: render_keepalived(lab),
        "/etc/sysctl.d/90-dnslab-ipvs.conf": render_sysctl(lab),
        f"/etc/unbound/unbound.conf.d/{lab.resolvers[0].name}.conf": render_unbound(lab, lab.resolvers[0]),
    }
    if lab.check.removal_on_exit:
        files[RESOLVER_DROPIN] = render_resolver_dropin(lab)
        files[EXIT_WATCHER] = exit_watcher().content.decode()
        files[KEEPALIVED_UNIT] = render_keepalived_unit(lab)
    return files


def _vlan_cost(cells: Sequence[Cell]) -> dict[str, Any] | None:
    """Throughput and median latency with the VLAN against without it, when both were measured."""
    on, off = _by_setting(cells, "network.vlan", True), _by_setting(cells, "network.vlan", False)
    if not (on and off and on["qps"] and off["qps"]):
        return None
    p50 = on["p50"] - off["p50"] if on["p50"] is not None and off["p50"] is not None else None
    pct = (on["qps"] / off["qps"] - 1) * 100
    return {"on": on, "off": off, "qps_pct": pct, "p50_ms": p50, "noise": abs(pct) <= BASELINE_NOISE_PCT,
            "noise_pct": BASELINE_NOISE_PCT}


CLIENT_KEYS = ("load.client", "load.timeout_ms", "load.attempts", "load.rotate", "load.nameservers")
STALL_MS = 1000.0  # a lookup slower than this is a stall an application notices


def client_label(cell: Cell, lab: Lab) -> str:
    """The client model a cell ran, as resolv.conf would say it (`glibc timeout:5 attempts:2 rotate`)."""
    flat = {**flatten(lab.raw), **flatten(dict(cell.overrides)), **cell.settings}
    client = str(flat.get("load.client", "raw"))
    timeout_ms = float(flat.get("load.timeout_ms", lab.load.timeout_ms))
    if client == "raw":
        return f"raw (one query, {timeout_ms:g} ms timeout)"
    if client == "musl":
        return f"musl (all nameservers at once, {timeout_ms:g} ms per lookup)"
    rotate = " rotate" if str(flat.get("load.rotate", False)).lower() == "true" else ""
    attempts = flat.get("load.attempts", lab.load.attempts)
    return f"glibc timeout:{timeout_ms / 1000:g} attempts:{attempts}{rotate}"


def lookup_rows(faulted: Sequence[Cell], reference: Cell | None, lab: Lab) -> list[dict[str, Any]]:
    """Per client model (the reference's own, then every cell that varies only [load] client keys, and
    each of those with other settings too): lookups, failed lookups and the longest lookup, per fault
    (spread) and over the run; `claim` says whether the seed's "lookups stall, but no dropped
    requests" held: no failed lookup, and a lookup slower than STALL_MS."""
    cells = [reference] if reference else []
    cells += [c for c in _one_per_run(faulted)
              if any(k in c.settings for k in CLIENT_KEYS) and c is not reference]
    out = []
    for cell in cells:
        stats = (cell.fault or {}).get("stats") or {}
        failed, longest = cell.summary.get("lookups_failed"), cell.summary.get("lookup_max_ms")
        others = {k: v for k, v in _changes(cell, lab).items() if k not in CLIENT_KEYS}
        out.append({**_row(cell), "client": client_label(cell, lab), "lookups": cell.summary.get("lookups"),
                    "lookups_failed": failed, "lookup_p99": cell.summary.get("lookup_p99_ms"),
                    "lookup_max": longest, "failed_per_fault_s": stats.get("lookups_failed"),
                    "max_per_fault_s": stats.get("lookup_max_ms"),
                    "settings": [f"{k.rsplit('.', 1)[-1]}={_toml(new)}" for k, (_, new) in others.items()],
                    "claim": None if failed is None else (failed == 0 and (longest or 0) > STALL_MS),
                    "no_failures": failed == 0, "stalls": (longest or 0) > STALL_MS})
    return out


def check_cost(cost: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The health-check cost probe in words, with nslookup's CPU per check against DNS_CHECK's."""
    if not cost:
        return None
    summary = cost["summary"]
    ratios = summary.get("cpu_ratios") or {}
    ratio = ratios.get("nslookup/dns_check") or ratios.get("nslookup/dns_check_min")
    return {"sentences": sentences(summary), "ratio": ratio, "at_least": "nslookup/dns_check" not in ratios,
            "href": cost["href"], "run_id": cost["run_id"]}


def answer(cells: Sequence[Cell], probe: Mapping[str, Any] | None, lab: Lab,
           cost: Mapping[str, Any] | None = None) -> Answers:
    """Answer each question from the cells, the sysctl probe and the check-cost probe (pure)."""
    faulted = [c for c in cells if c.fault and c.exercised]
    items: dict[str, dict[str, Any]] = {}

    reference = next((c for c in faulted if c.experiment == "kill-one" and not _changes(c, lab)),
                     faulted[0] if faulted else None)
    # the client models are the application's side, not a setting of the stack: ranked apart
    ranked = sorted(_one_per_run([c for c in faulted if not any(k in c.settings for k in CLIENT_KEYS)]),
                    key=_fault_rank)
    margin_ms = check_cycle_ms(lab)
    items["burp"] = {"ref": _row(reference) if reference else None,
                     "bound_s": lab.check.removal_bound_s,
                     "exit": removal_on_exit(faulted, reference, lab, margin_ms)}

    best = recommend(ranked, reference, margin_ms)
    items["settings"] = {"rows": [_row(c) for c in ranked], "margin_ms": margin_ms,
                         "recommended": _row(best) if best else None,
                         "effects": _effects(ranked, reference, lab, margin_ms),
                         "reference": _row(reference) if reference else None,
                         "best": _row(ranked[0]) if ranked else None,
                         "worst": _row(ranked[-1]) if ranked else None,
                         "unexercised": [_row(c) for c in cells if c.fault and not c.exercised]}

    checks = sorted((c for c in faulted if "check.type" in c.settings or "check.delay_loop" in c.settings),
                    key=lambda c: (str(c.settings.get("check.type", "")),
                                   -float(c.settings.get("check.delay_loop", 0))))
    items["check"] = {**_compared(checks, reference, f"check.type = {lab.check.type}, "
                                                     f"delay_loop = {lab.check.delay_loop}"),
                      "cost": check_cost(cost)}

    if probe:
        summary = probe.get("summary") or {}
        items["sysctl"] = {
            "kernel": probe.get("kernel"), "total": summary.get("total_in_init"),
            "cases": [{"name": CASE_NAMES.get(k, k), **summary[k]} for k in CASE_NAMES if k in summary],
        }
    else:
        items["sysctl"] = {"kernel": None, "total": None, "cases": []}

    netns = _varying(cells, "network.keepalived_netns")
    items["netns"] = {**_compared(netns, reference, f"keepalived_netns = {lab.network.keepalived_netns}"),
                      "own": _by_setting(netns, "network.keepalived_netns", "lb")}
    vlan = _varying(cells, "network.vlan")
    items["vlan"] = {**_compared(vlan, reference,
                                 f"vlan = {str(lab.network.vlan).lower()} ({lab.network.lower_link})"),
                     "cost": _vlan_cost(vlan)}

    items["lookups"] = {"rows": lookup_rows(faulted, reference, lab), "stall_ms": STALL_MS}

    files = recommended_files(with_overrides(lab, best.overrides)) if best is not None else {}
    return Answers(items=items, recommended=best, files=files)


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def _n(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _window(row: Mapping[str, Any]) -> str:
    """A row's failover window: the median, and with several faults their range and n."""
    s = row.get("window_s") or {}
    if (s.get("n") or 0) < 2:
        return _ms(row["window"])
    ci = f", CI {s['ci'][0]:.0f}–{s['ci'][1]:.0f}" if s.get("ci") else ""
    return f"{_ms(row['window'])} (median, {s['min']:.0f}–{s['max']:.0f} ms, n={s['n']}{ci})"


def headlines(answers: Answers) -> list[str]:
    """One line per answered question, for the terminal (pure)."""
    items, out = answers.items, []
    if ref := items["burp"]["ref"]:
        out.append(f"burp: {ref['cell'].label}: failover window {_window(ref)}, {_n(ref['failed'])} "
                   f"queries failed per fault, removed from IPVS after {_ms(ref['detection'])}")
    if exit_ := items["burp"]["exit"]:
        row = exit_["row"]
        said = "shorter" if exit_["beyond"] else NO_DIFFERENCE
        out.append(f"removal on exit: failover window {_window(row)}, {_n(row['failed'])} failed per fault "
                   f"({exit_['window_delta']:+.0f} ms, {exit_['failed_delta']:+.0f} failed: {said})")
    if (best := items["settings"]["recommended"]) and (worst := items["settings"]["worst"]):
        out.append(f"settings: recommended {best['cell'].label} ({_window(best)}, {_n(best['failed'])} "
                   f"failed); worst {worst['cell'].label} ({_window(worst)}, {_n(worst['failed'])} failed)")
    if (cost := items["check"]["cost"]) and cost["ratio"]:
        out.append(f"check: nslookup costs {'at least ' if cost['at_least'] else ''}{cost['ratio']:.0f}x "
                   f"the CPU of a DNS_CHECK per check")
    if cases := items["sysctl"]["cases"]:
        out.append("sysctls: net.ipv4.vs.* existing / writable / leaking: " + "; ".join(
            f"{c['name']} {c['exist']}/{c['writable']}/{len(c['leaking'])}" for c in cases))
    if (own := items["netns"].get("own")) and own["detection"] is not None:
        out.append(f"keepalived: works in its own namespace (removed the dead resolver after "
                   f"{_ms(own['detection'])}); it needs the VIP's namespace, not the host's")
    for row in items["lookups"]["rows"]:
        if row["lookups"] is None:
            continue
        out.append(f"lookups: {row['client']}{' ' + ', '.join(row['settings']) if row['settings'] else ''}: "
                   f"{row['lookups_failed']} of {row['lookups']} failed, longest {_ms(row['lookup_max'])}")
    if vlan := items["vlan"].get("cost"):
        out.append(f"vlan: {vlan['on']['qps']:.0f} q/s with it, {vlan['off']['qps']:.0f} without "
                   f"({vlan['qps_pct']:+.1f} %)")
    return out


def sections(answers: Answers) -> list[Section]:
    """The answers as index.html sections: one per question, then the recommended configuration."""
    macros = environment().get_template("answers.html.j2").module
    out = [Section(QUESTIONS[key], str(getattr(macros, key)(answers.items[key]))) for key in QUESTIONS]
    out.append(Section("Recommended configuration",
                       str(macros.recommended(answers.recommended, answers.files))))
    return out


# --- shell -------------------------------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"{path}: missing; run the suite again (`fab matrix`)") from None
    except ValueError as err:
        raise LabError(f"{path}: not valid JSON ({err}); delete it and run the suite again") from None


def load_cells(matrix_json: Path, out_dir: Path) -> list[Cell]:
    """The completed cells of a matrix run, with their summaries; links relative to `out_dir`."""
    data = _read_json(matrix_json)
    cells = []
    for entry in data.get("cells") or []:
        if entry.get("status") != "completed":
            continue
        run_dir = Path(entry["run_dir"])
        summary_path = run_dir / "summary.json"
        if not summary_path.exists():
            from reports.build import build_report

            build_report(run_dir)
        cells.append(Cell(
            run_id=run_dir.name, experiment=entry["experiment"], settings=entry.get("settings") or {},
            overrides=entry.get("overrides") or {}, summary=_read_json(summary_path),
            href=os.path.relpath(run_dir / "report.html", out_dir)))
    return cells


def write_answers(matrix_json: Path, probe_json: Path | None, lab: Lab, runs: Path, out: Path,
                  cost_json: Path | None = None) -> tuple[Path, Answers]:
    """Write the answers page (answers, then every run under `runs`) to `out`; its path and the answers.

    `probe_json` is the sysctl-namespace probe's result, `cost_json` the health-check cost probe's."""
    cells = load_cells(matrix_json, out.parent)
    probe = _read_json(probe_json) if probe_json and probe_json.exists() else None
    cost = None
    if cost_json and cost_json.exists():
        cost = {"summary": _read_json(cost_json)["summary"], "href": os.path.relpath(cost_json, out.parent),
                "run_id": cost_json.parent.name}
    result = answer(cells, probe, lab, cost)
    return write_index(runs, out, sections(result), title="dnslab: measured answers"), result
