"""The per-query records as arrays: which queries were ok, when each answer came, the gaps between
answers. The primitives both the run's and each fault's analysis use."""

from __future__ import annotations

import numpy as np
import pandas as pd

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


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
