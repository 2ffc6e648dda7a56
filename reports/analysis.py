"""Pure analysis of a run: per-query records, events and IPVS samples in, numbers out.

The run as a whole here; each fault's numbers in reports/faults.py. Implements the definitions of
docs/run-directory.md exactly (see `DEFINITIONS`). Vectorised with numpy/pandas so that ten million
query rows take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from reports.detection import Return, action_stats, load_protocol, returns, sample_interval_ms
from reports.faults import FaultResult, analyse_faults
from reports.lookups import DEFINITIONS as LOOKUP_DEFINITIONS
from reports.lookups import LookupStats, lookup_stats, lookup_table
from reports.records import NS_PER_MS, NS_PER_S, answer_ns, is_ok, stall_gaps

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
    "restarted_ms": "compose: from the fault to the instant Docker's restart policy started the resolver's "
    "container again (its State.StartedAt, which the restart action after the fault reports when the "
    "container was running already); empty when the runner started it, and under systemd",
    "notify_detection_ms": "from the fault to Keepalived's own report that the server is down (its "
    "lvs_notify_fifo line, a detect event) in the load's protocol; it comes just before the IPVS sample "
    "that shows the removal (at most one sample interval)",
    "share_before": "the faulted resolver's share of the ok answers to queries sent in the second before "
    "the fault (1/3 is an even spread over three): the part of the load its failure can hit. IPVS keeps a "
    "reused source port on the server it had until its entry idles out (the UDP timeout), so after "
    "removals a returned resolver gets less than its share for a while",
    "served_before": "the share of all queries sent in the second before the fault that were answered "
    "(about 2/3 while one resolver of three is down). Below 1/2 the lab or the load generator was stalled "
    "(the guest starved of CPU under TCG): such a fault is marked excluded and left out of fault_stats, "
    "whose n counts the faults kept",
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
    proto = load_protocol(queries)
    table = lookup_table(queries, answers, ok)
    faults = analyse_faults(queries, events, ipvs, meta or {}, nonok_sends, (starts, gaps), proto, table)
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
