"""The health-check cost probe's answer in words, from the summary it wrote in its run directory
(`probe_check_cost.json`, key `summary`: chaos/check_cost.py's `summarize`). Pure: dicts in, text out."""

from __future__ import annotations

from typing import Any

OTHER_KINDS = ("in_process_query", "dns_check")  # the summary's kinds that are not MISC_CHECK tools


def misc_tools(kinds: dict[str, Any]) -> list[str]:
    """The MISC_CHECK tools the probe measured, nslookup (the question) first, then by name."""
    return sorted((k for k in kinds if k not in OTHER_KINDS), key=lambda tool: (tool != "nslookup", tool))


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share * 100:.3g} %"


def sentences(summary: dict[str, Any]) -> list[str]:
    """The answer in words, from a `summarize` result: per MISC tool its cost per check and core share at
    the lab's and the reference intervals, then DNS_CHECK's cost and the CPU ratios."""
    sc, kinds, ratios = summary["scenarios"], summary["kinds"], summary["cpu_ratios"]

    def shares(core_share: dict[str, float | None]) -> str:
        """`of one core: 39 % at delay_loop 0.5 s, 20 % at 1 s (3 resolvers x 2 virtual servers)`."""
        sizes = {n: f"{s['resolvers']} resolvers x {s['virtual_servers']} virtual servers"
                 for n, s in sc.items()}
        uniform = len(set(sizes.values())) == 1
        parts = [f"{_pct(core_share[n])} at {'delay_loop ' if i == 0 else ''}{sc[n]['delay_loop']:g} s"
                 + ("" if uniform else f" ({sizes[n]})") for i, n in enumerate(core_share)]
        return "of one core: " + ", ".join(parts) + (f" ({sizes['lab']})" if uniform else "")

    out = []
    for tool in misc_tools(kinds):
        k = kinds[tool]
        if k["n"]:
            out.append(f"A MISC_CHECK with {tool} costs {k['cpu_ms']:.3g} ms of CPU and "
                       f"{k['wall_ms']:.3g} ms wall per check (median of {k['n']}, "
                       f"{k['success'] * 100:.0f} % passed); {shares(k['core_share'])}.")
    dns = kinds["dns_check"]
    if dns["measured"] and dns["cpu_ms"] is not None:
        out.append(f"DNS_CHECK costs {dns['cpu_ms']:.3g} ms of Keepalived's CPU per check (in-process, no "
                   f"fork/exec; {dns['checks']:.0f} checks in {dns['window_s']:.0f} s); "
                   f"{shares(dns['core_share'])}.")
    elif dns["measured"]:
        out.append(f"DNS_CHECK costs under {dns['cpu_ms_per_check_max']:.3g} ms of Keepalived's CPU per "
                   f"check (no clock tick in {dns['window_s']:.0f} s).")
    else:
        out.append(f"DNS_CHECK was not measured: {dns['reason']}.")
    named = [f"{key.removesuffix('_min')} {'>= ' if key.endswith('_min') else ''}{value:.0f}x"
             for key, value in ratios.items() if value is not None]
    base = kinds["in_process_query"]
    if named:
        out.append(f"CPU per check: {', '.join(named)} (a bare in-process query: {base['cpu_ms']:.3g} ms "
                   f"CPU, {base['wall_ms']:.3g} ms wall).")
    return out
