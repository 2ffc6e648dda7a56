"""Statistics over repeated faults (pure): n, median, min–max and a bootstrap 95 % interval for the
median, and the one rule every comparison follows: a setting is better only when the intervals
separate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

CI_MIN_N = 3  # fewer faults give no interval: a comparison then says it cannot tell
BOOTSTRAP_RESAMPLES = 2000
NO_DIFFERENCE = "no measurable difference"


def median_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float] | None:
    """Percentile-bootstrap interval for the median (fixed seed: the same data gives the same interval)."""
    known = np.asarray(list(values), dtype=float)
    if len(known) < CI_MIN_N:
        return None
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(known, size=(BOOTSTRAP_RESAMPLES, len(known)), replace=True), axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(medians, [tail, 100.0 - tail])
    return float(low), float(high)


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """n (how many are known), median, min, max and `ci` ([low, high] for the median, or None) of the
    values that are not None."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return {"n": 0, "median": None, "min": None, "max": None, "ci": None}
    ci = median_ci(known)
    return {"n": len(known), "median": float(np.median(known)), "min": min(known), "max": max(known),
            "ci": list(ci) if ci else None}


def separated(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """True when both spreads have an interval and the intervals do not overlap."""
    if not a or not b or not a.get("ci") or not b.get("ci"):
        return False
    (a_low, a_high), (b_low, b_high) = a["ci"], b["ci"]
    return a_high < b_low or b_high < a_low


def verdict(candidate: Mapping[str, Any] | None, reference: Mapping[str, Any] | None,
            lower_is_better: bool = True) -> str:
    """"better", "worse" or NO_DIFFERENCE: the candidate's median against the reference's, counted
    only when their intervals separate."""
    if not separated(candidate, reference):
        return NO_DIFFERENCE
    below = candidate["median"] < reference["median"]  # type: ignore[index]
    return "better" if below == lower_is_better else "worse"


def describe(s: Mapping[str, Any] | None, unit: str = "", digits: int = 0) -> str:
    """`median [min–max], n=N (95 % CI low–high)` for a spread."""
    if not s or not s.get("n"):
        return "–"

    def f(x: float) -> str:
        return f"{x:.{digits}f}{unit}"

    text = f"{f(s['median'])} [{f(s['min'])}–{f(s['max'])}], n={s['n']}"
    if s.get("ci"):
        text += f" (95 % CI {f(s['ci'][0])}–{f(s['ci'][1])})"
    return text
