"""When Keepalived took a server out and put it back: from the IPVS samples and from its own word.

Pure (pandas/numpy in, plain numbers out), following docs/run-directory.md:
- detection runs from a fault to the first IPVS sample in which no row for the fault's real server
  **in the load's protocol** has weight > 0 (udp unless every query is TCP); per protocol too;
- Keepalived's word is the `detect` events (rs_down / rs_up, from its lvs_notify_fifo);
- a return is a rollback that brings a resolver back: when IPVS sends to it again, when the first
  answer came, and what failed meanwhile;
- per-action statistics (n, median, min, max) over several faults of the same action.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.stats import spread

NS_PER_MS = 1_000_000
PROTOS = ("udp", "tcp")


def load_protocol(queries: pd.DataFrame) -> str:
    """The load's protocol: udp unless every query is TCP."""
    proto = queries["proto"]
    return "tcp" if len(proto) and bool((proto == "tcp").all()) else "udp"


def _window(times: np.ndarray, lo: int, hi: int | None) -> np.ndarray:
    times = times[times >= lo]
    return times if hi is None else times[times < hi]


def _rows(ipvs: pd.DataFrame, real_server: str, proto: str | None) -> pd.Series:
    mask = ipvs["real_server"].astype(str) == real_server
    if proto is not None:
        mask &= ipvs["proto"].astype(str) == proto
    return mask


def removal_instant(ipvs: pd.DataFrame, real_server: str, lo: int, hi: int | None,
                    proto: str | None = None) -> int | None:
    """First sample t_ns in [lo, hi) in which no row for `real_server` (in `proto`, or any protocol
    when None) has weight > 0."""
    samples = np.unique(ipvs["t_ns"].to_numpy())
    up = ipvs.loc[_rows(ipvs, real_server, proto) & (ipvs["weight"] > 0), "t_ns"].to_numpy()
    removed = _window(samples[~np.isin(samples, up)], lo, hi)
    return int(removed[0]) if len(removed) else None


def return_instant(ipvs: pd.DataFrame, real_server: str, lo: int, hi: int | None, proto: str) -> int | None:
    """First sample t_ns in [lo, hi) in which a row for `real_server` in `proto` has weight > 0."""
    up = np.unique(ipvs.loc[_rows(ipvs, real_server, proto) & (ipvs["weight"] > 0), "t_ns"].to_numpy())
    up = _window(up, lo, hi)
    return int(up[0]) if len(up) else None


def sample_interval_ms(ipvs: pd.DataFrame) -> float | None:
    """The median time between IPVS samples (None with fewer than two)."""
    samples = np.unique(ipvs["t_ns"].to_numpy())
    return float(np.median(np.diff(samples))) / NS_PER_MS if len(samples) > 1 else None


def notified(events: pd.DataFrame, real_server: str, action: str, lo: int, hi: int | None,
             proto: str) -> int | None:
    """t_ns of the first `detect` event `action` (rs_down / rs_up) for `real_server` in `proto` in
    [lo, hi)."""
    if events.empty:
        return None
    detect = events[(events["kind"] == "detect") & (events["action"] == action)
                    & (events["real_server"] == real_server)]
    protos = detect["detail"].map(lambda d: d.get("proto") if isinstance(d, Mapping) else None)
    times = _window(np.sort(detect.loc[protos == proto, "t_ns"].to_numpy()), lo, hi)
    return int(times[0]) if len(times) else None


def said_count(events: pd.DataFrame, real_server: str, action: str, lo: int, hi: int | None,
               proto: str) -> int:
    """How many `detect` events `action` Keepalived gave for `real_server` in `proto` in [lo, hi)."""
    count = 0
    while (t := notified(events, real_server, action, lo, hi, proto)) is not None:
        count, lo = count + 1, t + 1
    return count


def traffic_share(queries: pd.DataFrame, resolver: str | None, t: int, before_ns: int = 1_000_000_000
                  ) -> float | None:
    """The share of ok answers that `resolver` gave to queries sent in the `before_ns` before `t`
    (None without a resolver or an answer): how much of the load a fault on it could hit."""
    if not resolver:
        return None
    mask = _sent_before(queries, t, before_ns) & (queries["outcome"] == "ok").to_numpy()
    answered = queries["resolver"].to_numpy()[mask]
    return float((answered == resolver).mean()) if len(answered) else None


SERVED_BEFORE_MIN = 0.5  # a fault whose preceding second had fewer queries answered is not measured


def served_before(queries: pd.DataFrame, t: int, before_ns: int = 1_000_000_000) -> float | None:
    """The share of queries sent in the `before_ns` before `t` that were answered (None when none was
    sent). One resolver of three down gives about 2/3; below SERVED_BEFORE_MIN the whole lab (or the
    load generator, starved of CPU under TCG) was not serving, and a fault then measures that stall."""
    mask = _sent_before(queries, t, before_ns)
    return float((queries["outcome"].to_numpy()[mask] == "ok").mean()) if mask.any() else None


def _sent_before(queries: pd.DataFrame, t: int, before_ns: int) -> np.ndarray:
    """The queries sent in the `before_ns` before `t` (a boolean mask)."""
    send = queries["t_send_ns"].to_numpy()
    return (send >= t - before_ns) & (send < t)


def _ms(t: int | None, since: int) -> float | None:
    return (t - since) / NS_PER_MS if t is not None else None


@dataclass(frozen=True)
class Detection:
    """One fault's detection: from the samples and from Keepalived's word, in the load's protocol
    (`ms`, `notify_ms`) and per protocol."""

    ms: float | None
    by_proto: dict[str, float | None]
    notify_ms: float | None
    notify_by_proto: dict[str, float | None]


def detect_fault(ipvs: pd.DataFrame, events: pd.DataFrame, real_server: str | None, t: int,
                 span_end: int | None, load_proto: str) -> Detection:
    """Detection of the fault at `t` on `real_server` within its span, by both instruments."""
    if not real_server:
        return Detection(None, {}, None, {})
    protos = [p for p in PROTOS if _rows(ipvs, real_server, p).any()]
    by_proto = {p: _ms(removal_instant(ipvs, real_server, t, span_end, p), t) for p in protos}
    notify = {p: _ms(notified(events, real_server, "rs_down", t, span_end, p), t)
              for p in PROTOS if p in protos or not protos}
    return Detection(by_proto.get(load_proto), by_proto, notify.get(load_proto), notify)


@dataclass(frozen=True)
class Return:
    """A rollback that brought a resolver back, over its span [t_ns, span_end_ns)."""

    action: str
    target: str
    t_ns: int
    real_server: str
    span_end_ns: int | None
    readded_ms: float | None
    notify_up_ms: float | None
    first_answer_ms: float | None
    failed: int
    window_ms: float
    flaps: int

    def summary(self) -> dict[str, Any]:
        return {"action": self.action, "target": self.target, "t_ns": self.t_ns,
                "real_server": self.real_server, "span_end_ns": self.span_end_ns,
                "readded_ms": self.readded_ms, "notify_up_ms": self.notify_up_ms,
                "first_answer_ms": self.first_answer_ms, "failed": self.failed, "window_ms": self.window_ms,
                "flaps": self.flaps}


def returns(events: pd.DataFrame, ipvs: pd.DataFrame, nonok_sends: np.ndarray, ok_answers: np.ndarray,
            ok_sends: np.ndarray, last_send: int, load_proto: str) -> list[Return]:
    """Every rollback naming a resolver, sent while the load ran: when IPVS (and Keepalived's word)
    had it back, the first ok answer to a query sent after it (from any resolver: after "all down",
    the time to the first answer), the queries that failed in its span (the next fault or rollback,
    or the end) and `flaps`: how often Keepalived took it out again in that span (rs_down after
    its first rs_up; 0 when the return was clean)."""
    kinds, times = events["kind"].tolist(), events["t_ns"].tolist()
    out = []
    for i, kind in enumerate(kinds):
        real_server = events["real_server"].iloc[i]
        if kind != "rollback" or not isinstance(real_server, str) or times[i] > last_send:
            continue
        t = int(times[i])
        end = next((times[j] for j in range(i + 1, len(kinds)) if kinds[j] in ("fault", "rollback")), None)
        failed = _window(nonok_sends, t, end)
        answered = ok_answers[ok_sends >= t]
        out.append(Return(
            action=str(events["action"].iloc[i]), target=str(events["target"].iloc[i]), t_ns=t,
            real_server=real_server, span_end_ns=end,
            readded_ms=_ms(return_instant(ipvs, real_server, t, end, load_proto), t),
            notify_up_ms=_ms(notified(events, real_server, "rs_up", t, end, load_proto), t),
            first_answer_ms=_ms(int(answered.min()), t) if len(answered) else None,
            failed=len(failed), window_ms=float(failed[-1] - t) / NS_PER_MS if len(failed) else 0.0,
            flaps=_flaps(events, real_server, t, end, load_proto)))
    return out


def _flaps(events: pd.DataFrame, real_server: str, t: int, end: int | None, proto: str) -> int:
    up = notified(events, real_server, "rs_up", t, end, proto)
    return 0 if up is None else said_count(events, real_server, "rs_down", up, end, proto)


STAT_KEYS = ("failover_window_ms", "failed", "detection_ms", "notify_detection_ms", "lookups_failed",
             "lookup_max_ms", "restarted_ms")


def action_stats(faults: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per fault action: n, and the spread (reports.stats) of each of STAT_KEYS over its faults; a
    fault that met a lab not serving (`excluded_why`) is left out and counted in `excluded`."""
    out: dict[str, dict[str, Any]] = {}
    for action in dict.fromkeys(f["action"] for f in faults):
        mine = [f for f in faults if f["action"] == action and not f.get("excluded_why")]
        excluded = sum(1 for f in faults if f["action"] == action and f.get("excluded_why"))
        out[action] = {"n": len(mine), "excluded": excluded,
                       **{k: spread(f.get(k) for f in mine) for k in STAT_KEYS}}
    return out
