"""Pure analysis of a run: per-query records, events and IPVS samples in, numbers out.

Implements the definitions of docs/run-directory.md exactly (see `DEFINITIONS`). Vectorised with
numpy/pandas so that ten million query rows take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from reports.detection import (
    Return,
    action_stats,
    detect_fault,
    load_protocol,
    returns,
    sample_interval_ms,
    traffic_share,
)
from reports.lookups import DEFINITIONS as LOOKUP_DEFINITIONS
from reports.lookups import LookupStats, LookupTable, lookup_stats, lookup_table

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
PERCENTILES: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
UNKNOWN = "(unknown)"

DEFINITIONS: dict[str, str] = {
    "queries": "every query the load generator sent (one row of queries.csv)",
    "ok": "queries answered with the expected RCODE (outcome ok)",
    "dropped": "queries that got no answer before the client timeout (outcome timeout)",
    "drop_rate": "dropped / queries",
    "max_stall_ms": "largest gap between consecutive answer times (send time + latency) of ok queries, "
    "across all workers",
    "failover_window_ms": "from the fault to the send time of the last non-ok query sent before the next "
    "fault or rollback (notes do not count) or the end of the run; 0 when none failed",
    "failed": "non-ok queries (timeout, error or unexpected RCODE) sent in the fault's span",
    "detection_ms": "from the fault to the first IPVS sample at or after it in which no row for the "
    "fault's real server in the load's protocol (udp unless every query is TCP) has weight > 0 (absent "
    "counts as removed); empty when never removed in the span",
    "detection_by_proto": "detection_ms for each protocol's virtual server",
    "notify_detection_ms": "from the fault to Keepalived's own report that the server is down (its "
    "lvs_notify_fifo line, a detect event) in the load's protocol; it comes just before the IPVS sample "
    "that shows the removal (at most one sample interval)",
    "share_before": "the faulted resolver's share of the ok answers to queries sent in the second before "
    "the fault (1/3 is an even spread over three): the part of the load its failure can hit. IPVS keeps a "
    "reused source port on the server it had until its entry idles out (the UDP timeout), so after "
    "removals a returned resolver gets less than its share for a while",
    "returns": "per rollback that brings a resolver back: when IPVS sends to it again (readded_ms), when "
    "Keepalived said so (notify_up_ms), the first ok answer to a query sent after it (first_answer_ms) and "
    "the queries that failed in its span (failed), and how often Keepalived took it out again in that span "
    "(flaps)",
    "fault_stats": "per fault action: n, and the median, min and max of failover window, failed and "
    "detection over its faults",
    "span_max_stall_ms": "largest stall (as max_stall_ms) whose gap overlaps the fault's span",
    "latency": "latency percentiles of ok queries (linear interpolation)",
    "blackholed_ports": "source ports that had an ok answer before the fault and then sent at least two "
    "queries in its span, all of which failed",
    "pinned_ports": "source ports whose last ok answer before the fault came from the faulted resolver "
    "and that sent queries in its span",
    **LOOKUP_DEFINITIONS,
}


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
    pinning: pd.DataFrame = field(repr=False, compare=False)
    lookups: LookupStats | None = None  # lookups whose first query was sent in the span

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
            **{k: lookups.get(k) for k in ("lookups", "lookups_failed", "lookups_retried", "lookup_max_ms")},
        }


@dataclass(frozen=True)
class Analysis:
    """Everything the report shows about one run."""

    t0_ns: int
    end_ns: int
    queries: int
    ok: int
    dropped: int
    errors: int
    rcode_failures: int
    max_stall_ms: float | None
    max_stall_at_ns: int | None
    latency_ms: dict[str, float | None]
    faults: tuple[FaultResult, ...]
    returns: tuple[Return, ...]
    load_proto: str
    sample_interval_ms: float | None
    failures: pd.DataFrame = field(repr=False, compare=False)
    latency_per_second: pd.DataFrame = field(repr=False, compare=False)
    answers_per_second: pd.DataFrame = field(repr=False, compare=False)
    lookups: LookupStats | None = None

    @property
    def drop_rate(self) -> float:
        return self.dropped / self.queries if self.queries else 0.0

    def summary(self) -> dict[str, Any]:
        """The JSON summary of docs/run-directory.md, plus extra keys."""
        return {
            "queries": self.queries,
            "ok": self.ok,
            "dropped": self.dropped,
            "drop_rate": self.drop_rate,
            "max_stall_ms": self.max_stall_ms,
            **(self.lookups.summary() if self.lookups else {}),
            "faults": (faults := [f.summary() for f in self.faults]),
            "fault_stats": action_stats(faults),
            "returns": [r.summary() for r in self.returns],
            "load_proto": self.load_proto,
            "ipvs_sample_interval_ms": self.sample_interval_ms,
            "errors": self.errors,
            "rcode_failures": self.rcode_failures,
            "max_stall_at_ns": self.max_stall_at_ns,
            "latency_ms": self.latency_ms,
            "duration_s": (self.end_ns - self.t0_ns) / NS_PER_S,
            # 1 s bins: answers/s summed over the run is the count of ok answers per resolver
            "answers_by_resolver": {str(k): int(v) for k, v in self.answers_per_second.sum().items()},
        }


def is_ok(queries: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the ok queries (compares category codes, not strings)."""
    return (queries["outcome"] == "ok").to_numpy()


def answer_ns(queries: pd.DataFrame) -> np.ndarray:
    """Answer time in ns (send time + latency, rounded to 1 ns); -1 where there is no answer."""
    latency = queries["latency_ms"].to_numpy()
    answered = ~np.isnan(latency)
    out = np.full(len(latency), -1, dtype=np.int64)
    out[answered] = queries["t_send_ns"].to_numpy()[answered] + np.rint(latency[answered] * NS_PER_MS).astype(
        np.int64
    )
    return out


def stall_gaps(ok_answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ok answer times → (gap start times, gap lengths) in ns."""
    times = np.sort(ok_answers)
    return times[:-1], np.diff(times)


def max_stall_in(starts: np.ndarray, gaps: np.ndarray, lo: int, hi: int | None) -> float | None:
    """Largest gap (ms) whose interval overlaps [lo, hi); None when no gap does."""
    mask = starts + gaps > lo
    if hi is not None:
        mask &= starts < hi
    return float(gaps[mask].max()) / NS_PER_MS if mask.any() else None


def percentiles(latency: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99/p99.9 of `latency` (linear interpolation); None when empty."""
    if len(latency) == 0:
        return dict.fromkeys(PERCENTILES)
    values = np.percentile(latency, list(PERCENTILES.values()))
    return {name: float(v) for name, v in zip(PERCENTILES, values, strict=True)}


def latency_by_bin(queries: pd.DataFrame, t0_ns: int, bin_ns: int = NS_PER_S) -> pd.DataFrame:
    """Latency percentiles of ok queries per send-time bin; index = bin start in s from t0."""
    ok = is_ok(queries)
    latency = queries["latency_ms"].to_numpy()[ok]
    bins = (queries["t_send_ns"].to_numpy()[ok] - t0_ns) // bin_ns
    if len(latency) == 0:
        return pd.DataFrame(columns=[*PERCENTILES, "count"], dtype=float)
    grouped = pd.Series(latency).groupby(bins)
    table = grouped.quantile([p / 100 for p in PERCENTILES.values()]).unstack()
    table.columns = list(PERCENTILES)
    table["count"] = grouped.size()
    table.index = table.index * (bin_ns / NS_PER_S)
    table.index.name = "t_s"
    return table


def answers_by_bin(
    queries: pd.DataFrame, answers: np.ndarray, t0_ns: int, bin_ns: int = NS_PER_S
) -> pd.DataFrame:
    """Ok answers per answer-time bin and resolver, as answers/s; index = bin start in s from t0."""
    ok = is_ok(queries)
    bins = (answers[ok] - t0_ns) // bin_ns
    if len(bins) == 0:
        return pd.DataFrame(dtype=float)
    resolver = queries["resolver"].astype("category").cat
    names = [str(c) for c in resolver.categories] + [UNKNOWN]
    codes = resolver.codes.to_numpy()[ok].astype(np.int64)
    codes[codes < 0] = len(names) - 1
    lo, hi = int(bins.min()), int(bins.max())
    counts = np.bincount((bins - lo) * len(names) + codes, minlength=(hi - lo + 1) * len(names))
    counts = counts.reshape(hi - lo + 1, len(names))
    index = pd.Index((np.arange(lo, hi + 1) * bin_ns) / NS_PER_S, name="t_s")
    table = pd.DataFrame(counts / (bin_ns / NS_PER_S), index=index, columns=names)
    return table.loc[:, counts.sum(axis=0) > 0].sort_index(axis=1)


def failures_by_kind(queries: pd.DataFrame) -> pd.DataFrame:
    """Non-ok queries counted by outcome and RCODE (RCODE '-' when there was no answer)."""
    bad = queries.loc[queries["outcome"] != "ok", ["outcome", "rcode"]]
    frame = pd.DataFrame(
        {"outcome": bad["outcome"].astype(str), "rcode": bad["rcode"].astype(object).fillna("-").astype(str)}
    )
    counts = frame.value_counts().rename("count").reset_index()
    return counts.sort_values(["count", "outcome", "rcode"], ascending=[False, True, True], ignore_index=True)


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
        pinning=pinning,
    )


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


def analyse(
    queries: pd.DataFrame, events: pd.DataFrame, ipvs: pd.DataFrame, meta: dict[str, Any] | None = None
) -> Analysis:
    """The whole analysis of one run's frames (see DEFINITIONS)."""
    ok = is_ok(queries)
    send = queries["t_send_ns"].to_numpy()
    answers = answer_ns(queries)
    t0 = int(send.min())
    end = int(max(send.max(), answers.max()))
    starts, gaps = stall_gaps(answers[ok])
    worst = int(np.argmax(gaps)) if len(gaps) else None
    nonok_sends = np.sort(send[~ok])
    names = _resolver_names(meta or {})
    seen = {str(r) for r in pd.unique(queries["resolver"].dropna())}  # unique first: no 10M-string copy
    proto = load_protocol(queries)
    table = lookup_table(queries, answers, ok)
    faults = tuple(
        _with_lookups(
            analyse_fault(
                queries,
                ipvs,
                events.iloc[i],
                span_end,
                nonok_sends,
                (starts, gaps),
                _fault_resolver(str(events.iloc[i]["target"]), events.iloc[i]["real_server"], names, seen),
                events,
                proto,
            ),
            table,
        )
        for i, span_end in fault_spans(events)
    )
    return Analysis(
        t0_ns=t0,
        end_ns=end,
        queries=len(queries),
        ok=int(ok.sum()),
        dropped=int((queries["outcome"] == "timeout").sum()),
        errors=int((queries["outcome"] == "error").sum()),
        rcode_failures=int((queries["outcome"] == "rcode").sum()),
        max_stall_ms=float(gaps[worst]) / NS_PER_MS if worst is not None else None,
        max_stall_at_ns=int(starts[worst]) if worst is not None else None,
        latency_ms=percentiles(queries["latency_ms"].to_numpy()[ok]),
        faults=faults,
        returns=tuple(returns(events, ipvs, nonok_sends, answers[ok], send[ok], int(send.max()), proto)),
        load_proto=proto,
        sample_interval_ms=sample_interval_ms(ipvs),
        failures=failures_by_kind(queries),
        latency_per_second=latency_by_bin(queries, t0),
        answers_per_second=answers_by_bin(queries, answers, t0),
        lookups=lookup_stats(table),
    )


def _with_lookups(fault: FaultResult, table: LookupTable) -> FaultResult:
    """The fault with the lookups whose first query was sent in its span."""
    return replace(fault, lookups=lookup_stats(table, table.between(fault.t_ns, fault.span_end_ns)))
