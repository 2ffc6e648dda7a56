"""The report's figures: matplotlib (Agg, no pyplot state) rendered to PNG data URIs.

Every figure carries a title, axis labels with units and a legend, so it reads without its caption.
Large runs are binned or thinned so rendering time does not grow with the number of queries.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.analysis import Analysis, answers_by_bin, latency_by_bin
from reports.load import Run
from reports.records import NS_PER_S, answer_ns, is_ok

BIN_CHOICES_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
MAX_BINS = 600
MAX_POINTS = 40_000
OUTCOME_COLORS = {"timeout": "#d62728", "error": "#9467bd", "rcode": "#ff7f0e"}
MARKER_STYLE = {"fault": ("#d62728", "-"), "rollback": ("#2ca02c", "-"), "detected": ("#ff7f0e", "--")}


@dataclass(frozen=True)
class Image:
    """One rendered figure: a PNG data URI and the words around it."""

    key: str
    title: str
    caption: str
    data_uri: str


def bin_seconds(duration_s: float) -> float:
    """The finest bin width (s) that keeps a run within MAX_BINS bins."""
    return next((b for b in BIN_CHOICES_S if duration_s / b <= MAX_BINS), BIN_CHOICES_S[-1])


def to_data_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(height: float = 3.6) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(10, height), layout="constrained")
    return fig, fig.add_subplot()


def _markers(ax: Axes, run: Run, analysis: Analysis, *, names: bool = False) -> None:
    """Vertical lines for faults, rollbacks and detection instants (each in the legend once);
    with `names`, each fault and rollback is also written along its line ("kill rs2")."""
    t0 = analysis.t0_ns
    seen: set[str] = set()

    def line(t_ns: int, what: str, label: str) -> None:
        color, style = MARKER_STYLE[what]
        ax.axvline(
            (t_ns - t0) / NS_PER_S,
            color=color,
            linestyle=style,
            linewidth=1.4,
            label=label if label not in seen else None,
        )
        seen.add(label)

    for ev in run.events.itertuples():
        if ev.kind in ("fault", "rollback"):
            line(ev.t_ns, ev.kind, ev.kind)
            if names:
                ax.annotate(
                    f" {ev.action} {ev.target}",
                    xy=((ev.t_ns - t0) / NS_PER_S, 1.0),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize="x-small",
                    color=MARKER_STYLE[ev.kind][0],
                )
    for fault in analysis.faults:
        if fault.detection_ms is not None:
            line(fault.t_ns + int(fault.detection_ms * 1e6), "detected", "removed from IPVS")


def answers_figure(run: Run, analysis: Analysis, bin_s: float) -> Figure:
    table = answers_by_bin(run.queries, answer_ns(run.queries), analysis.t0_ns, int(bin_s * NS_PER_S))
    fig, ax = _figure()
    if not table.empty:
        ax.stackplot(
            table.index.to_numpy(), table.to_numpy().T, labels=list(table.columns), step="post", alpha=0.85
        )
    _markers(ax, run, analysis, names=True)
    ax.set(
        title=f"Answers per second by resolver ({bin_s:g} s bins)",
        xlabel="time since first query (s)",
        ylabel="ok answers/s",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    ax.margins(x=0)
    return fig


def latency_figure(run: Run, analysis: Analysis, bin_s: float) -> Figure:
    table = latency_by_bin(run.queries, analysis.t0_ns, int(bin_s * NS_PER_S))
    fig, ax = _figure()
    for name in ("p50", "p90", "p99", "p99.9"):
        if name in table and not table.empty:
            ax.step(table.index.to_numpy(), table[name].to_numpy(), where="post", label=name)
    _markers(ax, run, analysis)
    ax.set_yscale("log")
    ax.set(
        title=f"Latency percentiles of ok queries over time ({bin_s:g} s bins)",
        xlabel="time since first query (s)",
        ylabel="latency (ms, log scale)",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def thin(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Evenly spaced indices keeping at most `limit` of `n` points."""
    return np.arange(n) if n <= limit else np.linspace(0, n - 1, limit).astype(np.int64)


def raster_figure(run: Run, analysis: Analysis) -> Figure:
    q = run.queries
    workers = sorted(q["worker"].astype(str).unique())
    row = {w: i for i, w in enumerate(workers)}
    bad = q.loc[~is_ok(q), ["t_send_ns", "outcome", "worker"]]
    fig, ax = _figure(max(2.4, min(6.0, 1.2 + 0.25 * len(workers))))
    for outcome, color in OUTCOME_COLORS.items():
        part = bad[bad["outcome"] == outcome]
        if part.empty:
            continue
        part = part.iloc[thin(len(part))]
        x = (part["t_send_ns"].to_numpy() - analysis.t0_ns) / NS_PER_S
        y = part["worker"].astype(str).map(row).to_numpy()
        ax.scatter(
            x, y, s=6, marker="|", color=color, label=f"{outcome} ({(bad['outcome'] == outcome).sum()})"
        )
    _markers(ax, run, analysis)
    ax.set_yticks(range(len(workers)), workers if len(workers) <= 32 else [""] * len(workers))
    ax.set_ylim(-0.5, len(workers) - 0.5)
    ax.set_xlim(0, (analysis.end_ns - analysis.t0_ns) / NS_PER_S)
    ax.set(title="Failed queries by worker (send time)", xlabel="time since first query (s)", ylabel="worker")
    if bad.empty:
        ax.text(0.5, 0.5, "no failed queries", transform=ax.transAxes, ha="center", va="center")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def weights_figure(run: Run, analysis: Analysis) -> Figure:
    ipvs = run.ipvs
    servers = sorted(s for s in ipvs["real_server"].astype(str).unique() if s)  # "": service left empty
    fig = Figure(figsize=(10, max(2.4, 1.0 + 1.1 * len(servers))), layout="constrained")
    axes = fig.subplots(max(1, len(servers)), 1, sharex=True, squeeze=False)[:, 0]
    samples = np.unique(ipvs["t_ns"].to_numpy())
    x = (samples - analysis.t0_ns) / NS_PER_S
    top = max(1, int(ipvs["weight"].max())) if len(ipvs) else 1
    for ax, server in zip(axes, servers, strict=False):
        rows = ipvs[ipvs["real_server"].astype(str) == server]
        for proto, part in rows.groupby(rows["proto"].astype(str)):
            w = part.groupby("t_ns")["weight"].max().reindex(samples)
            ax.step(x, w.to_numpy(), where="post", label=f"{proto} weight")
        absent = ~np.isin(samples, rows["t_ns"].to_numpy())
        ax.fill_between(x, 0, top, where=absent, step="post", color="0.8", label="absent (removed)")
        ax.set_ylim(-0.1 * top, 1.15 * top)
        ax.set_ylabel(f"{server}\nweight", fontsize="small")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="x-small")
        _markers(ax, run, analysis)
    if not servers:
        axes[0].text(
            0.5, 0.5, "no ipvs.csv samples in this run", transform=axes[0].transAxes, ha="center", va="center"
        )
    axes[0].set_title("IPVS real-server weights over time (sampled)")
    axes[-1].set_xlabel("time since first query (s)")
    return fig


def histogram_figure(run: Run) -> Figure:
    q = run.queries
    fig, ax = _figure(3.2)
    for outcome, color in (("ok", "#1f77b4"), ("rcode", OUTCOME_COLORS["rcode"])):
        latency = q.loc[(q["outcome"] == outcome).to_numpy(), "latency_ms"].to_numpy()
        latency = latency[latency > 0]
        if len(latency) == 0:
            continue
        lo, hi = latency.min(), latency.max()
        edges = np.logspace(np.log10(lo), np.log10(hi if hi > lo else lo * 1.01), 80)
        counts, edges = np.histogram(latency, edges)
        ax.stairs(counts, edges, fill=True, alpha=0.6, color=color, label=f"{outcome} ({len(latency)})")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1)
    ax.set(
        title="Latency histogram of answered queries",
        xlabel="latency (ms, log scale)",
        ylabel="queries per bin",
    )
    ax.legend(fontsize="small")
    return fig


def render_figures(run: Run, analysis: Analysis) -> list[Image]:
    """The five report figures as PNG data URIs."""
    bin_s = bin_seconds((analysis.end_ns - analysis.t0_ns) / NS_PER_S)
    specs: Sequence[tuple[str, str, str, Figure]] = (
        (
            "answers",
            "Answers per second by resolver",
            "Stacked ok answers per resolver, by answer time. Red lines: faults; green: rollbacks; "
            "dashed orange: the instant IPVS stopped sending to the faulted server.",
            answers_figure(run, analysis, bin_s),
        ),
        (
            "latency",
            "Latency percentiles over time",
            "p50/p90/p99/p99.9 of ok queries per bin of send time (log scale).",
            latency_figure(run, analysis, bin_s),
        ),
        (
            "raster",
            "Failure raster",
            "One mark per failed query at its send time, one row per load worker. A row that stays red "
            "after removal is a client pinned to a dead server (stale IPVS entry).",
            raster_figure(run, analysis),
        ),
        (
            "weights",
            "IPVS weights",
            "Weight of each real server in every ipvs.csv sample; grey where the server was absent.",
            weights_figure(run, analysis),
        ),
        (
            "histogram",
            "Latency histogram",
            "Distribution of answered-query latency, logarithmic bins.",
            histogram_figure(run),
        ),
    )
    return [Image(key, title, caption, to_data_uri(fig)) for key, title, caption, fig in specs]


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    value_label: str,
    category_label: str = "run (settings)",
) -> str:
    """A labelled bar chart (used by the comparison report) as a data URI; None bars show 'n/a'."""
    fig, ax = _figure(max(3.0, 1.6 + 0.05 * len(labels)))
    heights = [0.0 if v is None or pd.isna(v) else float(v) for v in values]
    bars = ax.barh(range(len(labels)), heights, color="#1f77b4")
    for bar, v in zip(bars, values, strict=True):
        text = "n/a" if v is None or pd.isna(v) else f"{v:g}"
        ax.annotate(
            text,
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.set(title=title, xlabel=value_label, ylabel=category_label)
    ax.margins(x=0.15)
    return to_data_uri(fig)
