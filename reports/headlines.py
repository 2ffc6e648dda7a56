"""The answers as one line per question, for the terminal. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reports.cells import Answers
from reports.stats import NO_DIFFERENCE


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


def _n(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _window(row: Mapping[str, Any]) -> str:
    """A row's failover window: the median, and with several faults their range and n."""
    s = row.get("window_s") or {}
    if (s.get("n") or 0) < 2:
        return _ms(row["window"])
    ci = f", CI {s['ci'][0]:.0f}–{s['ci'][1]:.0f}" if s.get("ci") else ""
    return f"{_ms(row['window'])} (median, {s['min']:.0f}–{s['max']:.0f} ms, n={s['n']}{ci})"


def headlines(answers: Answers) -> list[str]:
    """One line per answered question, for the terminal (pure)."""
    items, out = answers.items, []
    if ref := items["burp"]["ref"]:
        out.append(f"burp: {ref['cell'].label}: failover window {_window(ref)}, {_n(ref['failed'])} "
                   f"queries failed per fault, removed from IPVS after {_ms(ref['detection'])}")
    if exit_ := items["burp"]["exit"]:
        row = exit_["row"]
        said = "shorter" if exit_["beyond"] else NO_DIFFERENCE
        out.append(f"removal on exit: failover window {_window(row)}, {_n(row['failed'])} failed per fault "
                   f"({exit_['window_delta']:+.0f} ms, {exit_['failed_delta']:+.0f} failed: {said})")
    if (best := items["settings"]["recommended"]) and (worst := items["settings"]["worst"]):
        out.append(f"settings: recommended {best['cell'].label} ({_window(best)}, {_n(best['failed'])} "
                   f"failed); worst {worst['cell'].label} ({_window(worst)}, {_n(worst['failed'])} failed)")
    if (cost := items["check"]["cost"]) and cost["ratio"]:
        out.append(f"check: nslookup costs {'at least ' if cost['at_least'] else ''}{cost['ratio']:.0f}x "
                   f"the CPU of a DNS_CHECK per check")
    if cases := items["sysctl"]["cases"]:
        out.append("sysctls: net.ipv4.vs.* existing / writable / leaking: " + "; ".join(
            f"{c['name']} {c['exist']}/{c['writable']}/{len(c['leaking'])}" for c in cases))
    if (own := items["netns"].get("own")) and own["detection"] is not None:
        out.append(f"keepalived: works in its own namespace (removed the dead resolver after "
                   f"{_ms(own['detection'])}); it needs the VIP's namespace, not the host's")
    for row in items["lookups"]["rows"]:
        if row["lookups"] is None:
            continue
        out.append(f"lookups: {row['client']}{' ' + ', '.join(row['settings']) if row['settings'] else ''}: "
                   f"{row['lookups_failed']} of {row['lookups']} failed, longest {_ms(row['lookup_max'])}")
    if vlan := items["vlan"].get("cost"):
        out.append(f"vlan: {vlan['on']['qps']:.0f} q/s with it, {vlan['off']['qps']:.0f} without "
                   f"({vlan['qps_pct']:+.1f} %)")
    return out
