"""The compose runtime's answers page (issue 16, `SUITE=compose make demo`): Keepalived in the compose
stack, the init container, a client behind Docker's embedded DNS, the restart policy, the seed preset
against the recommended settings and compose against systemd.

Pure core: `compose_answers(compose, seed, reference, deploy)` turns the runs of the `compose` suite,
the `seed-compose` suite and a systemd reference (each a `Run`: a suite cell and the lab as it ran,
meta.json's `lab`) and the deploy figures into the page's data. Every figure is `median [min–max],
n=N` over the faults kept, with the faults excluded and why; a difference is named only when the 95 %
intervals of the medians separate (reports.stats); a cell that did not run reads "not measured". The
shell (`read_runs`, `write_compose`) reads the matrix directories and writes reports/compose.html.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.model.errors import LabError
from lab.model.parse import flatten
from reports.answers import STALL_MS, load_cells
from reports.cells import Cell
from reports.html import environment
from reports.index import Section
from reports.stats import CI_MIN_N, NO_DIFFERENCE, separated, spread
from reports.stats import describe as spread_text

QUESTIONS = {
    "keepalived": "Does Keepalived work inside the compose stack, and does its detection change?",
    "init": "Can the init container replace the manual steps?",
    "docker_dns": "What does a client behind Docker's embedded DNS see during the burp: a stall, or "
                  "failures?",
    "restart": "What does the restart policy do to the burp?",
    "exit": "Does removal on exit work in its container form (Docker's die and start events)?",
    "presets": "The seed preset against the recommended settings, and compose against systemd, on the "
               "same fault",
}
STATS = {"failover_window_ms": ("failover window", " ms"), "failed": ("failed queries per fault", ""),
         "detection_ms": ("detection", " ms"), "lookups_failed": ("failed lookups per fault", ""),
         "lookup_max_ms": ("longest lookup per fault", " ms")}
NOT_MEASURED = "not measured"
CANNOT_TELL = "cannot tell"
DETECTION = ("detection_ms", "failover_window_ms")
CRASH = ("failover_window_ms", "failed", "detection_ms")  # two runs of the same crash at the same rate
FAULTS = {"kill-one": "SIGKILL of one resolver", "stop-one": "docker pause of one resolver (the hang)",
          "all-down": "every resolver killed, then back",
          "all-down-repeat": "every resolver killed, then back (5 times)",
          "kill-one-of-two": "SIGKILL of one of two resolvers"}


@dataclass(frozen=True)
class Run:
    """One measured cell and the lab as it ran, flattened (`{"stack.runtime": "compose", ...}`)."""

    cell: Cell
    lab: Mapping[str, Any]

    def value(self, key: str, default: Any = None) -> Any:
        """A setting as the run had it: the lab as run, else the cell's settings or overrides."""
        if key in self.lab:
            return self.lab[key]
        return {**flatten(dict(self.cell.overrides)), **self.cell.settings}.get(key, default)


# --- one run's figures ---------------------------------------------------------------------------------

def client_path(run: Run) -> str:
    """How the load reached the VIP: `VIP direct, raw` or `Docker DNS 127.0.0.11, musl 5000 ms x 2`."""
    where = "Docker DNS 127.0.0.11" if "docker" in (run.value("load.nameservers") or []) else "VIP direct"
    client = str(run.value("load.client", "raw"))
    if client != "raw":
        client += f" {float(run.value('load.timeout_ms', 0)):g} ms x {run.value('load.attempts', 1)}"
    return f"{where}, {client}"


def label(run: Run) -> str:
    """`kill-one on compose (restart unless-stopped), 3 resolvers, DNS_CHECK every 0.5 s, VIP direct, raw`."""
    runtime = str(run.value("stack.runtime", "systemd"))
    if runtime == "compose":
        runtime += f" (restart {run.value('stack.restart', 'no')})"
    resolvers = run.value("resolvers")
    count = f"{len(resolvers)} resolvers, " if isinstance(resolvers, list) else ""
    check = f"{run.value('check.type', '?')} every {run.value('check.delay_loop', '?')} s"
    return f"{run.cell.experiment} on {runtime}, {count}{check}, {client_path(run)}"


def short(s: Mapping[str, Any] | None, unit: str = "") -> str:
    """`810 [515–1746] ms, n=5` (a table cell; the comparisons add the 95 % interval)."""
    if not s or not s.get("n"):
        return "–"
    return f"{s['median']:.0f} [{s['min']:.0f}–{s['max']:.0f}]{unit}, n={s['n']}"


def measured(run: Run | None, name: str) -> dict[str, Any] | None:
    """A run's figures for the page: per fault (kept faults only) each STATS spread and its text, n,
    how many faults were excluded and why, how many Keepalived removed, and the whole run's figures."""
    if run is None:
        return None
    cell = run.cell
    fault = cell.fault or {}
    stats = fault.get("stats") or {}
    action = fault.get("action")
    faults = [f for f in cell.summary.get("faults") or [] if f.get("action") == action]
    returns = spread(r.get("first_answer_ms") for r in cell.summary.get("returns") or [])
    spans = spread((f["span_end_ns"] - f["t_ns"]) / 1e6 for f in faults
                   if f.get("span_end_ns") is not None and f.get("t_ns") is not None)
    restarts = [f for f in faults if not f.get("excluded_why") and f.get("restarted_ms") is not None]
    return {"name": name, "label": label(run), "fault": FAULTS.get(cell.experiment, cell.experiment),
            "href": cell.href, "run_id": cell.run_id,
            "n": fault.get("n", 0), "excluded": fault.get("excluded", 0),
            "why": [f["excluded_why"] for f in faults if f.get("excluded_why")],
            "stats": {k: stats.get(k) for k in STATS},
            "text": {k: short(stats.get(k), unit) for k, (_, unit) in STATS.items()},
            "removed": (stats.get("detection_ms") or {}).get("n", 0), "qps": cell.qps,
            "queries": cell.summary.get("queries"), "dropped": cell.summary.get("dropped"),
            "max_stall_ms": cell.summary.get("max_stall_ms"),
            "run_lookups_failed": cell.summary.get("lookups_failed"),
            "run_lookup_max_ms": cell.summary.get("lookup_max_ms"),
            "first_answer": short(returns, " ms"), "span": short(spans, " ms"),
            "restarted": short(stats.get("restarted_ms"), " ms"), "restarted_n": len(restarts),
            "restarted_after_window": sum(f["restarted_ms"] > f["failover_window_ms"] for f in restarts)}


def compare(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, stat: str) -> dict[str, str]:
    """One figure of two runs: `lower with NAME` only when the 95 % intervals separate; NO_DIFFERENCE
    when they overlap; CANNOT_TELL with fewer than CI_MIN_N kept faults; NOT_MEASURED without a run."""
    what, unit = STATS[stat]
    if a is None or b is None:
        ran = [r["name"] for r in (a, b) if r is not None]
        only = f" (only {ran[0]} ran)" if ran else ""
        return {"verdict": NOT_MEASURED, "text": f"{what}: {NOT_MEASURED}{only}"}
    sa, sb = a["stats"].get(stat), b["stats"].get(stat)
    if separated(sa, sb):
        verdict = f"lower with {(a if sa['median'] < sb['median'] else b)['name']}"  # type: ignore[index]
        why = "the 95 % intervals separate"
    elif (sa or {}).get("ci") and (sb or {}).get("ci"):
        verdict, why = NO_DIFFERENCE, "the 95 % intervals overlap"
    else:
        verdict, why = CANNOT_TELL, f"an interval needs {CI_MIN_N} kept faults"
    return {"verdict": verdict, "text": f"{what}: {spread_text(sa, unit)} with {a['name']} against "
                                        f"{spread_text(sb, unit)} with {b['name']}: {verdict} ({why})"}


def comparisons(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None,
                stats: Sequence[str]) -> list[dict[str, str]]:
    return [compare(a, b, stat) for stat in stats]


# --- picking the cells ----------------------------------------------------------------------------------

def pick(runs: Sequence[Run], test: Callable[[Run], bool]) -> Run | None:
    """The first fault run that passes `test`."""
    return next((r for r in runs if r.cell.fault and test(r)), None)


def on_compose(experiment: str, restart: str | None = None,
               exit_events: bool = False) -> Callable[[Run], bool]:
    """Runs of `experiment` on compose, with that restart policy, with or without removal on exit."""
    def test(run: Run) -> bool:
        return (run.cell.experiment == experiment and run.value("stack.runtime") == "compose"
                and (restart is None or run.value("stack.restart") == restart)
                and bool(run.value("check.removal_on_exit", False)) == exit_events)
    return test


def seed_path(docker: bool, client: str) -> Callable[[Run], bool]:
    def test(run: Run) -> bool:
        return (("docker" in (run.value("load.nameservers") or [])) == docker
                and run.value("load.client", "raw") == client)
    return test


def systemd_reference(run: Run) -> bool:
    """kill-one on systemd at the lab file's own settings (a suite cell that varies nothing)."""
    return (run.cell.experiment == "kill-one" and run.value("stack.runtime", "systemd") == "systemd"
            and not run.cell.settings and not run.cell.overrides)


# --- the answers ----------------------------------------------------------------------------------------

def keepalived_answer(compose: Sequence[Run], rows: Mapping[str, Any]) -> dict[str, Any]:
    """Yes when Keepalived, in its container, removed a faulted resolver and the VIP served; detection
    and window of the crash against systemd's."""
    faulted = [measured(r, "") for r in compose if r.cell.fault]
    removed, kept = sum(m["removed"] for m in faulted if m), sum(m["n"] for m in faulted if m)
    served = sum((r.cell.summary.get("ok") or 0) for r in compose)
    works = None if not faulted else bool(removed and served)
    return {"works": works, "removed": removed, "kept": kept, "served": served, "cells": len(faulted),
            "comparisons": comparisons(rows["unless"], rows["systemd"], DETECTION)
            + comparisons(rows["no"], rows["systemd"], DETECTION)}


def deploy_figures(fresh_s: float, steps: Mapping[str, float], again_s: float, again_changed: int,
                   changed: Sequence[str], *, fresh_vm: bool = True) -> dict[str, Any]:
    """The demo's deploy figures: the first deploy's time, `docker-compose up -d` (its step), from its
    end until the VIP answers (every later step up to and including "ready:"), the redeploy's time and
    changes, the steps the first deploy changed, and whether it met a fresh VM (else the demo's VM, its
    systemd stack torn down by that deploy)."""
    names = list(steps)
    up = next((i for i, n in enumerate(names) if n.startswith("compose: project up")), None)
    ready = next((i for i, n in enumerate(names) if n.startswith("ready:")), None)
    ok = up is not None and ready is not None and up < ready
    return {"fresh_s": fresh_s, "again_s": again_s, "again_changed": again_changed,
            "compose_up_s": steps[names[up]] if ok else None,  # type: ignore[index]
            "ready_s": sum(steps[n] for n in names[up + 1:ready + 1]) if ok else None,  # type: ignore[operator]
            "changed_steps": list(changed), "fresh_vm": fresh_vm}


def init_answer(deploy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The deploy figures with `docker-compose up` to a working VIP, and whether a redeploy changed
    nothing."""
    if not deploy:
        return None
    up, ready = deploy.get("compose_up_s"), deploy.get("ready_s")
    return {**deploy, "to_vip_s": up + ready if up is not None and ready is not None else None,
            "idempotent": deploy.get("again_changed") == 0}


def sees(row: Mapping[str, Any] | None) -> str:
    """What a client saw in the kept faults: failures, a stall (a lookup over STALL_MS), both or neither."""
    if row is None:
        return NOT_MEASURED
    if not row["n"]:
        return f"{CANNOT_TELL}: all {row['excluded']} faults excluded"
    failed = (row["stats"].get("lookups_failed") or {}).get("max") or 0
    longest = (row["stats"].get("lookup_max_ms") or {}).get("max") or 0
    seen = [w for w, yes in (("failed lookups", failed > 0), (f"a stall (a lookup over {STALL_MS:g} ms)",
                                                               longest > STALL_MS)) if yes]
    text = " and ".join(seen) if seen else f"neither failures nor a stall over {STALL_MS:g} ms"
    return text + (f" (only {row['n']} kept faults)" if row["n"] < CI_MIN_N else "")


def docker_dns_answer(rows: Mapping[str, Any]) -> dict[str, Any]:
    """What each client path saw, and Docker's DNS against the VIP direct, musl against a raw client."""
    paths = [rows["seed_vip"], rows["seed_docker"], rows["seed_musl"]]
    stats = ("failed", "lookups_failed", "lookup_max_ms")
    return {"sees": [sees(r) for r in paths], "stall_ms": STALL_MS,
            "comparisons": comparisons(rows["seed_docker"], rows["seed_vip"], stats)
            + comparisons(rows["seed_musl"], rows["seed_docker"], stats[1:])}


def restart_answer(rows: Mapping[str, Any]) -> dict[str, Any]:
    """unless-stopped against restart "no" on the same crash, and from the unless-stopped run alone when
    Docker's policy restarted the container (`policy`: after the failover window had closed in how many
    kept faults: then the policy cannot have changed the burp, which Keepalived's removal ended)."""
    unless = rows["unless"]
    policy = None
    if unless and unless["restarted_n"]:
        after, n = unless["restarted_after_window"], unless["restarted_n"]
        policy = {"restarted": unless["restarted"], "after": after, "n": n, "shortened": n - after,
                  "window": unless["text"]["failover_window_ms"], "detection": unless["text"]["detection_ms"]}
    return {**table(rows, ("unless", "no")), "policy": policy,
            "comparisons": comparisons(rows["unless"], rows["no"], CRASH)}


def policy_line(policy: Mapping[str, Any] | None) -> list[str]:
    """The restart policy's effect read from the unless-stopped run (none without a policy restart)."""
    if not policy:
        return []
    verdict = ("so the policy did not shorten the burp" if not policy["shortened"] else
               f"so it shortened the burp in {policy['shortened']} of {policy['n']}")
    return [f"restart policy: Docker started the crashed container again {policy['restarted']} after the "
            f"crash, after the failover window had closed in {policy['after']} of {policy['n']} kept "
            f"faults, {verdict}"]


def presets_answer(rows: Mapping[str, Any]) -> dict[str, Any]:
    """The seed against the recommended settings on compose, and compose against systemd. Each runs at its
    own rate: failed queries scale with it, windows and detection do not. Without the seed's VIP-direct
    cell another seed cell stands in, compared on detection alone (Keepalived's removal does not depend
    on the client path; the window does)."""
    seed = next((k for k in ("seed_vip", "seed_docker", "seed_musl") if rows[k] is not None), "seed_vip")
    seed_stats = DETECTION if seed == "seed_vip" else ("detection_ms",)
    return {**table(rows, (seed, "unless", "systemd")),
            "comparisons": comparisons(rows[seed], rows["unless"], seed_stats)
            + comparisons(rows["unless"], rows["systemd"], CRASH)}


ROWS = {"unless": ("compose, unless-stopped", "compose", on_compose("kill-one", "unless-stopped")),
        "no": ('compose, restart "no"', "compose", on_compose("kill-one", "no")),
        "exit": ("compose, removal on exit", "compose", on_compose("kill-one", "unless-stopped", True)),
        "systemd": ("systemd", "reference", systemd_reference),
        "seed_vip": ("the seed, VIP direct", "seed", seed_path(False, "raw")),
        "seed_docker": ("the seed, Docker DNS (raw)", "seed", seed_path(True, "raw")),
        "seed_musl": ("the seed, Docker DNS (musl)", "seed", seed_path(True, "musl"))}


def table(rows: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """Some of the rows, and the names of those not measured."""
    return {"rows": [rows[k] for k in keys], "missing": [ROWS[k][0] for k in keys if rows[k] is None]}


def compose_answers(compose: Sequence[Run], seed: Sequence[Run], reference: Sequence[Run],
                    deploy: Mapping[str, Any] | None) -> dict[str, Any]:
    """The page's data (pure): the five answers and the row of every compose and seed-compose run and
    of the systemd reference."""
    groups = {"compose": compose, "seed": seed, "reference": reference}
    picked = {key: pick(groups[group], test) for key, (_, group, test) in ROWS.items()}
    rows = {key: measured(run, ROWS[key][0]) for key, run in picked.items()}
    answers = {
        "keepalived": {**keepalived_answer(compose, rows), **table(rows, ("systemd", "unless", "no"))},
        "init": init_answer(deploy),
        "docker_dns": {**docker_dns_answer(rows), **table(rows, ("seed_vip", "seed_docker", "seed_musl"))},
        "restart": restart_answer(rows),
        "exit": {**table(rows, ("unless", "exit")),
                 "comparisons": comparisons(rows["exit"], rows["unless"], CRASH)},
        "presets": presets_answer(rows),
    }
    listed = [("compose", r) for r in compose] + [("seed-compose", r) for r in seed]
    listed += [("systemd reference", picked["systemd"])] if picked["systemd"] else []
    cells = [{"suite": suite, **m} for suite, run in listed if run.cell.fault
             for m in [measured(run, run.cell.run_id)] if m]
    return {"questions": QUESTIONS, "answers": answers, "cells": cells, "ci_min_n": CI_MIN_N,
            "not_measured": NOT_MEASURED}


def answer_lines(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each question's answer in a few lines of text, by question key (the terminal, the answers page)."""
    a = data["answers"]
    k = a["keepalived"]
    works = NOT_MEASURED if k["works"] is None else "works" if k["works"] else "not shown"
    init = a["init"]
    seen = [f"{row['name']}: {sees_text}: failed lookups per fault {row['text']['lookups_failed']}, longest "
            f"lookup {row['text']['lookup_max_ms']} ({row['excluded']} excluded)"
            for row, sees_text in zip(a["docker_dns"]["rows"], a["docker_dns"]["sees"], strict=True) if row]
    return {
        "keepalived": [f"keepalived in compose: {works} (removed the resolver in {k['removed']} of "
                       f"{k['kept']} kept faults)", *(c["text"] for c in k["comparisons"][:2])],
        "init": ["init container: not measured" if not init else
                 f"init container: docker-compose up {init['compose_up_s'] or 0:.1f} s, VIP answering "
                 f"{init['ready_s'] or 0:.1f} s later; redeploy {init['again_changed']} changed"],
        "docker_dns": seen or [f"Docker DNS: {NOT_MEASURED}"],
        "restart": [f"restart policy: {c['text']}" for c in a["restart"]["comparisons"][:1]
                    if c["verdict"] != NOT_MEASURED or not a["restart"]["policy"]]
                   + policy_line(a["restart"]["policy"]),
        "exit": [f"removal on exit: {c['text']}" if c["verdict"] != NOT_MEASURED else
                 f"removal on exit: {NOT_MEASURED} here (`SUITE=compose make demo` measures it)"
                 for c in a["exit"]["comparisons"][:1]],
        "presets": [f"presets: {c['text']}" for c in a["presets"]["comparisons"]],
    }


def headlines(data: Mapping[str, Any]) -> list[str]:
    """A few terminal lines: the answers' lines without the presets' (on the page)."""
    by_question = answer_lines(data)
    return [line for key, lines in by_question.items() if key != "presets" for line in lines]


def summary_section(data: Mapping[str, Any], href: str) -> Section:
    """The answers page's section on the compose runtime: each question and its answer's lines, and a
    link to the page (`href`, relative to the answers page)."""
    html = environment().get_template("compose_summary.html.j2").render(
        questions=data["questions"], lines=answer_lines(data), href=href)
    return Section("The compose runtime (the seed's own stack)", html)


def render_compose(data: Mapping[str, Any], generated: str = "") -> str:
    """The page's HTML (`generated`: when, for its footer)."""
    return environment().get_template("compose.html.j2").render(**data, generated=generated)


# --- shell ----------------------------------------------------------------------------------------------

def _json(path: Path, fix: str = "") -> Any:
    """A JSON file's data; None when it cannot be read, or, given `fix`, a one-line LabError."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        if fix:
            raise LabError(f"{path}: cannot be read ({err.__class__.__name__}); {fix}") from None
        return None


def read_runs(matrix_json: Path | None, out: Path) -> list[Run]:
    """The completed runs of a matrix (none without one), each with the lab it ran (meta.json);
    links relative to the page `out`."""
    if matrix_json is None:
        return []
    data = _json(matrix_json, "give a suite's matrix.json (reports/matrix/<ts>-<suite>/)")
    entries = data.get("cells") or []
    dirs = {Path(e["run_dir"]).name: Path(e["run_dir"]) for e in entries if e.get("run_dir")}
    return [Run(cell, flatten((_json(dirs[cell.run_id] / "meta.json") or {}).get("lab") or {}))
            for cell in load_cells(matrix_json, out.parent)]


def write_compose(compose_json: Path | None, seed_json: Path | None, reference_json: Path | None,
                  deploy_json: Path | None, out: Path) -> tuple[Path, dict[str, Any]]:
    """Write the page to `out`; its path and data."""
    deploy = _json(deploy_json, "run `SUITE=compose make demo`, or leave it out") if deploy_json else None
    data = compose_answers(read_runs(compose_json, out), read_runs(seed_json, out),
                           read_runs(reference_json, out), deploy)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_compose(data, dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")))
    return out, data
