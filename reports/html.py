"""Render a run's report.html: one self-contained file (inline CSS, figures as data URIs)."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from lab.versions import describe
from reports.analysis import DEFINITIONS, Analysis
from reports.figures import Image
from reports.load import Run

PINNING_ROWS = 50
LOOKUP_FAULT_HEADERS = ("action", "target", "at (s)", "lookups", "lookups_failed", "lookups_retried",
                        "lookup_max_ms")
FAULT_HEADERS = (
    "action",
    "target",
    "at (s)",
    "failover_window_ms",
    "failed",
    "detection_ms",
    "detection_by_proto",
    "notify_detection_ms",
    "span_max_stall_ms",
    "pinned_ports",
    "blackholed_ports",
    "share_before",
    "served_before",
)


@cache
def environment() -> jinja2.Environment:
    """The jinja2 environment over reports/templates (autoescaping on)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def fmt(value: Any, digits: int = 1) -> str:
    """A number for people: integers with thousands separators, floats rounded, None as '-'."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts/lists as (dotted key, value) rows; lists of scalars joined, of dicts indexed by name."""
    if isinstance(data, dict):
        rows: list[tuple[str, str]] = []
        for key, value in data.items():
            rows += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(data, list | tuple):
        if all(isinstance(v, dict) for v in data) and data:
            rows = []
            for i, v in enumerate(data):
                rows += flatten({k: x for k, x in v.items() if k != "name"}, f"{prefix}.{v.get('name', i)}")
            return rows
        if all(isinstance(v, list | tuple) and len(v) == 2 for v in data) and data:
            return [(f"{prefix}.{k}", str(v)) for k, v in data]
        return [(prefix, ", ".join(map(str, data)))]
    return [(prefix, fmt(data) if not isinstance(data, str) else data)]


def by_proto(values: dict[str, float | None]) -> str:
    """{"udp": 500.0, "tcp": 1200.0} -> "udp 500.0 · tcp 1,200.0" ('-' where never removed)."""
    return " · ".join(f"{p} {fmt(v)}" for p, v in values.items()) or "-"


def verdict_cell(value: Any) -> dict[str, str]:
    """A steady-state verdict as table text and CSS class."""
    ok = value.get("ok", value.get("passed")) if isinstance(value, dict) else value
    extra = {k: v for k, v in value.items() if k not in ("ok", "passed")} if isinstance(value, dict) else {}
    detail = ", ".join(f"{k}={v}" for k, v in extra.items())
    if isinstance(ok, bool):
        text = ("pass" if ok else "fail") + (f" ({detail})" if detail else "")
        return {"text": text, "css": "pass" if ok else "fail"}
    if value is None:
        return {"text": "-", "css": "na"}
    return {"text": detail or str(value), "css": ""}


def verdict_rows(meta: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[dict[str, str]]]]]:
    """(phases, [(check, cells per phase)]) from meta.json's steady_state."""
    steady = meta.get("steady_state")
    if not isinstance(steady, dict):
        return [], []
    phases = [p for p, v in steady.items() if isinstance(v, dict)]
    names: list[str] = []
    for p in phases:
        names += [n for n in steady[p] if n not in names]
    return phases, [(n, [verdict_cell(steady[p].get(n)) for p in phases]) for n in names]


def report_context(run: Run, analysis: Analysis, images: list[Image]) -> dict[str, Any]:
    """Everything report.html.j2 shows, as plain strings and lists."""
    s = analysis.summary()
    lat = analysis.latency_ms
    meta = run.meta
    cards = [
        ("queries", fmt(s["queries"])),
        ("dropped", fmt(s["dropped"])),
        ("drop rate", f"{100 * s['drop_rate']:.3f} %"),
        ("max stall", f"{fmt(s['max_stall_ms'])} ms"),
        ("p99 latency", f"{fmt(lat['p99'], 2)} ms"),
        ("failed lookups", fmt(s.get("lookups_failed"))),
        ("longest lookup", f"{fmt(s.get('lookup_max_ms'))} ms"),
    ] + [
        (f"failover window #{i + 1}", f"{fmt(f.failover_window_ms)} ms")
        for i, f in enumerate(analysis.faults)
    ]
    summary_rows = [
        {"name": name, "value": value, "definition": DEFINITIONS.get(key, "")}
        for name, key, value in (
            ("queries", "queries", fmt(s["queries"])),
            ("ok", "ok", fmt(s["ok"])),
            ("dropped", "dropped", fmt(s["dropped"])),
            ("drop_rate", "drop_rate", f"{s['drop_rate']:.6f}"),
            ("max_stall_ms", "max_stall_ms", fmt(s["max_stall_ms"], 3)),
            ("errors", "", fmt(s["errors"])),
            ("rcode_failures", "", fmt(s["rcode_failures"])),
        )
    ]
    summary_rows[5]["definition"] = "queries that failed locally (outcome error, e.g. connection refused)"
    summary_rows[6]["definition"] = "queries answered with an unexpected RCODE (outcome rcode)"
    summary_rows += [
        {"name": f"latency {k}", "value": f"{fmt(v, 3)} ms", "definition": DEFINITIONS["latency"]}
        for k, v in lat.items()
    ]
    lookup_rows = [
        {"name": name, "value": value, "definition": DEFINITIONS[key]}
        for name, key, value in (
            ("lookups", "lookups", fmt(s.get("lookups"))),
            ("lookups_failed", "lookups_failed", fmt(s.get("lookups_failed"))),
            ("lookups_retried", "lookups_retried", fmt(s.get("lookups_retried"))),
            ("lookup_p50_ms", "lookup_latency", fmt(s.get("lookup_p50_ms"), 3)),
            ("lookup_p99_ms", "lookup_latency", fmt(s.get("lookup_p99_ms"), 3)),
            ("lookup_max_ms", "lookup_max_ms", fmt(s.get("lookup_max_ms"), 3)),
        )
    ]
    lookup_faults = [
        [f["action"], f["target"], fmt((f["t_ns"] - analysis.t0_ns) / 1e9, 3), fmt(f["lookups"]),
         fmt(f["lookups_failed"]), fmt(f["lookups_retried"]), fmt(f["lookup_max_ms"], 3)]
        for f in s["faults"]
    ]
    faults = [
        [
            f.action,
            f.target,
            fmt((f.t_ns - analysis.t0_ns) / 1e9, 3),
            fmt(f.failover_window_ms, 3),
            fmt(f.failed),
            fmt(f.detection_ms, 3),
            by_proto(f.detection_by_proto),
            fmt(f.notify_detection_ms, 3),
            fmt(f.max_stall_ms, 3),
            fmt(f.pinned_ports),
            fmt(f.blackholed_ports),
            fmt(f.share_before, 2),
            fmt(f.served_before, 2) + (" (excluded)" if f.excluded_why else ""),
        ]
        for f in analysis.faults
    ]
    fault_definitions = [(k, DEFINITIONS[k]) for k in FAULT_HEADERS if k in DEFINITIONS]
    fault_definitions += [(k, DEFINITIONS[k]) for k in ("returns", "fault_stats")]
    pinning = []
    for i, f in enumerate(analysis.faults):
        table = f.pinning.sort_values(["ok_after", "failed_after"], ascending=[True, False])
        pinning.append(
            {
                "label": f"#{i + 1} {f.action} {f.target} at {fmt((f.t_ns - analysis.t0_ns) / 1e9, 3)} s",
                "rows": table.head(PINNING_ROWS).to_dict("records"),
                "more": max(0, len(table) - PINNING_ROWS),
            }
        )
    per_second = [
        [fmt(t, 0), fmt(int(r["count"]))] + [fmt(r[k], 3) for k in ("p50", "p90", "p99", "p99.9")]
        for t, r in analysis.latency_per_second.iterrows()
    ]
    answers = [[fmt(t, 0)] + [fmt(v, 0) for v in r] for t, r in analysis.answers_per_second.iterrows()]
    phases, verdicts = verdict_rows(meta)
    return {
        "title": meta.get("title") or f"Run {run.run_id}",
        "run_id": run.run_id,
        "meta": meta,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cards": [{"label": k, "value": v} for k, v in cards],
        "summary_rows": summary_rows,
        "lookup_rows": lookup_rows,
        "lookup_fault_headers": LOOKUP_FAULT_HEADERS,
        "lookup_faults": lookup_faults,
        "lookup_fault_definition": DEFINITIONS["fault_lookups"],
        "fault_headers": FAULT_HEADERS,
        "faults": faults,
        "fault_definitions": fault_definitions,
        **failover_context(run, analysis),
        "verdict_phases": phases,
        "verdicts": verdicts,
        "images": images,
        "failures": analysis.failures.to_dict("records"),
        "pinning": pinning,
        "per_second": per_second,
        "answers": answers,
        "answer_columns": list(analysis.answers_per_second.columns),
        "settings": flatten(meta.get("settings") or {}),
        "lab": flatten(meta.get("lab") or {}),
        "tools": flatten(meta.get("tools") or {}),
        "guest": describe(meta.get("guest")),
    }


def _spread(s: dict[str, Any]) -> str:
    ci = f"; CI {fmt(s['ci'][0], 1)}–{fmt(s['ci'][1], 1)}" if s.get("ci") else ""
    return f"{fmt(s['median'], 1)} ({fmt(s['min'], 1)}–{fmt(s['max'], 1)}{ci})"


def failover_context(run: Run, analysis: Analysis) -> dict[str, Any]:
    """Returns, per-action statistics and Keepalived's own word (detect events) against the samples."""
    t0 = analysis.t0_ns
    returns = [[r.action, r.target, fmt((r.t_ns - t0) / 1e9, 3), fmt(r.readded_ms, 1), fmt(r.notify_up_ms, 1),
                fmt(r.first_answer_ms, 1), fmt(r.failed), fmt(r.window_ms, 1), fmt(r.flaps)]
               for r in analysis.returns]
    by_action = analysis.summary()["fault_stats"]
    keys = ("failover_window_ms", "failed", "detection_ms", "notify_detection_ms", "lookups_failed",
            "lookup_max_ms")
    stats = [[action, fmt(s["n"]) + (f" ({s['excluded']} excluded)" if s.get("excluded") else ""),
              *(_spread(s[k]) for k in keys)] for action, s in by_action.items()]
    detect = run.events[run.events["kind"] == "detect"]
    said = [[fmt((e.t_ns - t0) / 1e9, 3), e.action, e.target, str(e.detail.get("proto", ""))]
            for e in detect.itertuples()]
    agree = [[f.action, f.target, fmt(f.notify_detection_ms, 1), fmt(f.detection_ms, 1),
              fmt(f.detection_ms - f.notify_detection_ms, 1)]
             for f in analysis.faults if f.detection_ms is not None and f.notify_detection_ms is not None]
    return {"returns": returns, "fault_stats": stats if any(s["n"] > 1 for s in by_action.values()) else [],
            "detect_events": said, "agreement": agree, "load_proto": analysis.load_proto,
            "sample_interval_ms": fmt(analysis.sample_interval_ms, 1)}


def render_report(run: Run, analysis: Analysis, images: list[Image],
                  journal: dict[str, Any] | None = None) -> str:
    """report.html's text; with a Chaos Toolkit journal (reports/ctk_journal.py), its section too."""
    from reports.ctk_journal import journal_context

    ctk = journal_context(journal) if journal is not None else None
    context = report_context(run, analysis, images)
    return environment().get_template("report.html.j2").render(**context, ctk=ctk)
