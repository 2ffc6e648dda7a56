"""Lookups: what the application saw, from the per-query records (docs/run-directory.md).

A lookup is every query sharing (`worker`, `lookup_id`); a run without those columns has one lookup
per query (reports/load.py fills them in). Pure and vectorised: one sort of 10 million keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NS_PER_MS = 1_000_000
NO_ANSWER = np.iinfo(np.int64).max

DEFINITIONS: dict[str, str] = {
    "lookups": "what the application asked for: all queries that share worker and lookup_id (each query "
    "is its own lookup in a run without those columns)",
    "lookups_failed": "lookups none of whose queries is ok",
    "lookups_retried": "lookups that sent more than one query",
    "lookup_latency": "first ok answer time (send time + latency) of the lookup minus the send time of its "
    "first query; percentiles over ok lookups (linear interpolation)",
    "lookup_max_ms": "the longest lookup latency: the stall an application felt",
    "fault_lookups": "lookups whose first query was sent in the fault's span (from the fault to the next "
    "fault or rollback)",
}


@dataclass(frozen=True)
class LookupTable:
    """One entry per lookup, ordered by the send time of its first query."""

    first_ns: np.ndarray  # int64
    latency_ms: np.ndarray  # float64, NaN for a failed lookup
    queries: np.ndarray  # int64: queries the lookup sent

    @property
    def ok(self) -> np.ndarray:
        return ~np.isnan(self.latency_ms)

    def between(self, lo: int | None, hi: int | None) -> slice:
        """The lookups whose first query was sent in [lo, hi) (None: open)."""
        start = 0 if lo is None else int(np.searchsorted(self.first_ns, lo, side="left"))
        end = len(self.first_ns) if hi is None else int(np.searchsorted(self.first_ns, hi, side="left"))
        return slice(start, end)


@dataclass(frozen=True)
class LookupStats:
    """Counts and latency of a set of lookups."""

    lookups: int
    failed: int
    retried: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    def summary(self) -> dict[str, Any]:
        """The keys of docs/run-directory.md (plus lookups_retried)."""
        return {
            "lookups": self.lookups,
            "lookups_failed": self.failed,
            "lookups_retried": self.retried,
            "lookup_p50_ms": self.p50_ms,
            "lookup_p99_ms": self.p99_ms,
            "lookup_max_ms": self.max_ms,
        }


def lookup_table(queries: pd.DataFrame, answers: np.ndarray, ok: np.ndarray) -> LookupTable:
    """Group the query rows into lookups. `answers` are answer times in ns, `ok` the ok mask."""
    worker = queries["worker"].astype("category").cat.codes.to_numpy().astype(np.int64)
    lookup = queries["lookup_id"].to_numpy().astype(np.int64)
    if len(lookup) and lookup.max() < 2**32 and lookup.min() >= 0:
        order = np.argsort((worker << 32) | lookup, kind="stable")
    else:
        order = np.lexsort((lookup, worker))
    w, k = worker[order], lookup[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (w[1:] != w[:-1]) | (k[1:] != k[:-1])
    starts = np.flatnonzero(new)
    if len(starts) == 0:
        empty = np.array([], dtype=np.int64)
        return LookupTable(empty, np.array([], dtype=float), empty)
    first = np.minimum.reduceat(queries["t_send_ns"].to_numpy()[order], starts)
    first_ok = np.minimum.reduceat(np.where(ok, answers, NO_ANSWER)[order], starts)
    answered = first_ok != NO_ANSWER
    latency = np.full(len(starts), np.nan)
    latency[answered] = (first_ok[answered] - first[answered]) / NS_PER_MS
    counts = np.diff(np.append(starts, len(order)))
    by_time = np.argsort(first, kind="stable")
    return LookupTable(first[by_time], latency[by_time], counts[by_time])


def lookup_stats(table: LookupTable, span: slice = slice(None)) -> LookupStats:
    """Counts and latency percentiles of the lookups in `span` (an index range of `table`)."""
    latency = table.latency_ms[span]
    answered = latency[~np.isnan(latency)]
    p50 = p99 = top = None
    if len(answered):
        p50, p99 = (float(v) for v in np.percentile(answered, [50.0, 99.0]))
        top = float(answered.max())
    return LookupStats(
        lookups=len(latency),
        failed=int(np.isnan(latency).sum()),
        retried=int((table.queries[span] > 1).sum()),
        p50_ms=p50,
        p99_ms=p99,
        max_ms=top,
    )
