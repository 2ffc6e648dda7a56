"""Per-fault analysis of a run: each fault's span, failover window, failed queries, detection, stall
and source-port pinning (the definitions are reports/analysis.py's DEFINITIONS)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from reports.detection import SERVED_BEFORE_MIN, detect_fault, served_before, traffic_share
from reports.lookups import LookupStats, LookupTable, lookup_stats
from reports.records import NS_PER_MS, is_ok, max_stall_in


@dataclass(frozen=True)
class FaultResult:
    """The numbers of one fault event over its span [t_ns, span_end_ns)."""

    action: str
    target: str
    t_ns: int
    real_server: str | None
    resolver: str | None
    span_end_ns: int | None
    failover_window_ms: float
    failed: int
    detection_ms: float | None
    detection_by_proto: dict[str, float | None]
    notify_detection_ms: float | None
    notify_detection_by_proto: dict[str, float | None]
    max_stall_ms: float | None
    pinned_ports: int
    blackholed_ports: int
    share_before: float | None
    served_before: float | None
    pinning: pd.DataFrame = field(repr=False, compare=False)
    lookups: LookupStats | None = None  # lookups whose first query was sent in the span
    restarted_ms: float | None = None  # Docker's restart policy started the resolver again (compose)

    @property
    def excluded_why(self) -> str | None:
        """Why this fault is left out of the statistics: the lab was not serving when it came."""
        if self.served_before is None or self.served_before >= SERVED_BEFORE_MIN:
            return None
        return (f"only {self.served_before:.0%} of the queries in the second before it were answered: "
                "the lab (or the load generator) was stalled, not failing over")

    def summary(self) -> dict[str, Any]:
        lookups = self.lookups.summary() if self.lookups else {}
        return {
            "action": self.action,
            "target": self.target,
            "t_ns": self.t_ns,
            "failover_window_ms": self.failover_window_ms,
            "failed": self.failed,
            "detection_ms": self.detection_ms,
            "detection_by_proto": self.detection_by_proto,
            "notify_detection_ms": self.notify_detection_ms,
            "notify_detection_by_proto": self.notify_detection_by_proto,
            "real_server": self.real_server,
            "resolver": self.resolver,
            "span_end_ns": self.span_end_ns,
            "max_stall_ms": self.max_stall_ms,
            "pinned_ports": self.pinned_ports,
            "blackholed_ports": self.blackholed_ports,
            "share_before": self.share_before,
            "served_before": self.served_before,
            "excluded_why": self.excluded_why,
            "restarted_ms": self.restarted_ms,
            **{k: lookups.get(k) for k in ("lookups", "lookups_failed", "lookups_retried", "lookup_max_ms")},
        }


def port_pinning(queries: pd.DataFrame, lo: int, hi: int | None) -> pd.DataFrame:
    """Per source port: the resolver of its last ok answer before `lo` and what it got in [lo, hi).

    Columns: src_port, before, after (resolver of the first ok answer in the span, '' if none),
    ok_after, failed_after. Only ports that answered before and sent queries in the span."""
    send = queries["t_send_ns"].to_numpy()
    port = queries["src_port"].to_numpy()
    ok = is_ok(queries)
    cols = ["src_port", "t_send_ns", "resolver"]
    pre = queries.loc[ok & (send < lo) & (port >= 0), cols]
    before = (
        pre.sort_values("t_send_ns", kind="stable")
        .drop_duplicates("src_port", keep="last")
        .set_index("src_port")["resolver"]
        .astype(object)
    )
    in_span = (send >= lo) & (port >= 0)
    if hi is not None:
        in_span &= send < hi
    span = queries.loc[in_span, cols].assign(ok=ok[in_span])
    span = span[span["src_port"].isin(before.index)]
    grouped = span.groupby("src_port")
    ok_after = grouped["ok"].sum().astype(int)
    failed_after = grouped.size() - ok_after
    first_ok = span[span["ok"]].sort_values("t_send_ns", kind="stable").drop_duplicates("src_port")
    after = first_ok.set_index("src_port")["resolver"].astype(object)
    table = pd.DataFrame(
        {
            "before": before.reindex(ok_after.index),
            "after": after.reindex(ok_after.index),
            "ok_after": ok_after,
            "failed_after": failed_after,
        }
    )
    table["after"] = table["after"].fillna("")
    return table.rename_axis("src_port").reset_index()


def _resolver_names(meta: dict[str, Any]) -> dict[str, str]:
    """real_server 'IP:53' → resolver name, from meta.json's lab config."""
    resolvers = (meta.get("lab") or {}).get("resolvers") or []
    return {f"{r['address']}:53": r["name"] for r in resolvers if isinstance(r, dict) and "address" in r}


def _fault_resolver(
    target: str, real_server: str | None, names: dict[str, str], seen: set[str]
) -> str | None:
    if target in seen or target in names.values():
        return target
    return names.get(real_server) if real_server else None


def analyse_fault(
    queries: pd.DataFrame,
    ipvs: pd.DataFrame,
    event: pd.Series,
    span_end: int | None,
    nonok_sends: np.ndarray,
    gaps: tuple[np.ndarray, np.ndarray],
    resolver: str | None,
    events: pd.DataFrame,
    load_proto: str,
) -> FaultResult:
    """Failover window, failed queries, detection time, stall and port pinning of one fault."""
    t = int(event["t_ns"])
    lo_i = np.searchsorted(nonok_sends, t, side="left")
    hi_i = len(nonok_sends) if span_end is None else np.searchsorted(nonok_sends, span_end, side="left")
    failed = int(hi_i - lo_i)
    window = float(nonok_sends[hi_i - 1] - t) / NS_PER_MS if failed else 0.0
    real_server = event["real_server"] if isinstance(event["real_server"], str) else None
    detection = detect_fault(ipvs, events, real_server, t, span_end, load_proto)
    pinning = port_pinning(queries, t, span_end)
    pinned = int((pinning["before"] == resolver).sum()) if resolver else 0
    queried = pinning["ok_after"] + pinning["failed_after"]
    blackholed = int(((pinning["ok_after"] == 0) & (queried >= 2)).sum())
    return FaultResult(
        action=str(event["action"]),
        target=str(event["target"]),
        t_ns=t,
        real_server=real_server,
        resolver=resolver,
        span_end_ns=span_end,
        failover_window_ms=window,
        failed=failed,
        detection_ms=detection.ms,
        detection_by_proto=detection.by_proto,
        notify_detection_ms=detection.notify_ms,
        notify_detection_by_proto=detection.notify_by_proto,
        max_stall_ms=max_stall_in(*gaps, t, span_end),
        pinned_ports=pinned,
        blackholed_ports=blackholed,
        share_before=traffic_share(queries, resolver, t),
        served_before=served_before(queries, t),
        pinning=pinning,
        restarted_ms=policy_restart_ms(events, str(event["target"]), t),
    )


def policy_restart_ms(events: pd.DataFrame, target: str, t: int) -> float | None:
    """From the fault at `t` to Docker's restart policy starting its target's container again: the
    `started_ns` of the next restart_resolver event of that target when it says `started_by` policy
    (chaos/actions.py); None otherwise (systemd, restart "no", a runner's start)."""
    later = events[(events["t_ns"] > t) & (events["action"] == "restart_resolver")
                   & (events["target"] == target)]
    detail = later.iloc[0]["detail"] if len(later) else None
    if not isinstance(detail, dict) or detail.get("started_by") != "policy":
        return None
    started = detail.get("started_ns")
    if not isinstance(started, int) or isinstance(started, bool) or started < t:
        return None
    return (started - t) / NS_PER_MS


def fault_spans(events: pd.DataFrame) -> list[tuple[int, int | None]]:
    """(row index, span end) of each fault: the span ends at the next fault or rollback, else None."""
    kinds = events["kind"].tolist()
    times = events["t_ns"].tolist()
    spans = []
    for i, kind in enumerate(kinds):
        if kind != "fault":
            continue
        end = next((times[j] for j in range(i + 1, len(kinds)) if kinds[j] in ("fault", "rollback")), None)
        spans.append((i, end))
    return spans


def analyse_faults(
    queries: pd.DataFrame,
    events: pd.DataFrame,
    ipvs: pd.DataFrame,
    meta: dict[str, Any],
    nonok_sends: np.ndarray,
    gaps: tuple[np.ndarray, np.ndarray],
    proto: str,
    table: LookupTable,
) -> tuple[FaultResult, ...]:
    """Every fault of the run (its span ends at the next fault or rollback), with its lookups."""
    names = _resolver_names(meta)
    seen = {str(r) for r in pd.unique(queries["resolver"].dropna())}  # unique first: no 10M-string copy
    return tuple(
        _with_lookups(
            analyse_fault(
                queries,
                ipvs,
                events.iloc[i],
                span_end,
                nonok_sends,
                gaps,
                _fault_resolver(str(events.iloc[i]["target"]), events.iloc[i]["real_server"], names, seen),
                events,
                proto,
            ),
            table,
        )
        for i, span_end in fault_spans(events)
    )


def _with_lookups(fault: FaultResult, table: LookupTable) -> FaultResult:
    """The fault with the lookups whose first query was sent in its span."""
    return replace(fault, lookups=lookup_stats(table, table.between(fault.t_ns, fault.span_end_ns)))
