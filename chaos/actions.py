"""Fault and rollback actions on the lab, as plain functions over a Connection.

Every action takes a `Target` (anything with `.run(cmd, warn=..., hide=...)`: a Fabric Connection
to the guest, or an invoke Context for local tests; the lab model; the guest layout) and keyword
arguments named in experiment files. It runs chaos/guest/actions.sh on the target (lab.remote), its
values as positional parameters, and returns an `Outcome`: the event to record (its `t_ns` is taken
on the target by the script, right before it acts, so it shares the clock of the query records) and
the undo calls that put back what it changed. Actions on a resolver
carry `detail.real_server` spelled as in ipvs.csv. Undo actions are idempotent ("ensure" semantics).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaos import guest
from chaos.values import route_tokens
from lab.model import layout
from lab.model.config import SYSCTL_RE, Lab
from lab.model.errors import ActionFailed, ExperimentError
from lab.model.parse import sysctl_value, with_overrides
from lab.ssh import remote


@dataclass(frozen=True)
class Layout:
    """How the lab is laid out on the target: unit names, how to find a process, namespaces."""

    resolver_unit: str = layout.resolver_unit("{name}")
    keepalived_unit: str = layout.KEEPALIVED
    pids: str = "systemd"  # where a unit's main PID is: systemd's MainPID, or a directory of UNIT.pid files
    resolver_netns: str = "{name}"


COMPOSE_LAYOUT = Layout(resolver_unit=layout.container_name("{name}"),
                        keepalived_unit=layout.container_name("keepalived"), pids="docker")


def layout_for(lab: Lab) -> Layout:
    """The guest layout of the lab's runtime: systemd units, or the compose project's containers (whose
    network namespaces deploy names after the resolvers, as the systemd runtime's are)."""
    return COMPOSE_LAYOUT if lab.stack.runtime == "compose" else Layout()


@dataclass(frozen=True)
class Target:
    """Where actions run: a connection, the lab model as deployed, and the guest layout (by default the
    one of the lab's runtime)."""

    conn: Any
    lab: Lab
    layout_override: Layout | None = None  # local tests stand in for systemd with a directory of PIDs

    @property
    def layout(self) -> Layout:
        return self.layout_override or layout_for(self.lab)


@dataclass(frozen=True)
class Undo:
    """A call that reverts an action: `ACTIONS[func](target, **arguments)`."""

    func: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What an action did (an events.jsonl object without `kind`) and how to undo it."""

    t_ns: int
    action: str
    target: str
    detail: dict[str, Any]
    undo: tuple[Undo, ...] = ()

    def event(self, kind: str) -> dict[str, Any]:
        return {"t_ns": self.t_ns, "kind": kind, "action": self.action, "target": self.target,
                "detail": self.detail}


_q = shlex.quote  # every value in a command line is quoted: these commands run as root
SCRIPT = guest.script("actions.sh")


class ActionError(ActionFailed):
    """An action's command failed on the target."""


def _run(t: Target, action: str, *args: Any) -> tuple[int, str]:
    """Run `action` of chaos/guest/actions.sh with `args`; (the instant it printed first, the rest of
    its output)."""
    res = remote.run_script(t.conn, SCRIPT, action, *args)
    lines = res.stdout.splitlines()
    if res.exited != 0 or not lines or not lines[0].strip().isdigit():
        err = " ".join((res.stderr or res.stdout).split())[:300]
        said = " ".join([action, *(str(a) for a in args)])[:120]
        raise ActionError(f"action failed (exit {res.exited}): {said}: {err}")
    return int(lines[0]), "\n".join(lines[1:])


def _resolver(t: Target, name: str) -> tuple[str, dict[str, Any]]:
    """(the resolver's unit name; the event detail naming its real server)."""
    r = t.lab.resolver(name)
    return t.layout.resolver_unit.format(name=name), {"real_server": r.real_server, "address": str(r.address)}


def _netns(t: Target, resolver: str) -> str:
    """The network namespace name of the resolver (named again after a container starts anew)."""
    return t.layout.resolver_netns.format(name=resolver)


def _signal(t: Target, resolver: str, sig: str, action: str, undo: tuple[Undo, ...]) -> Outcome:
    unit, detail = _resolver(t, resolver)
    t_ns, pid = _run(t, "signal", t.layout.pids, unit, sig)
    return Outcome(t_ns, action, resolver, {**detail, "signal": sig, "pid": int(pid)}, undo)


# --- resolvers: processes -------------------------------------------------------------------------

def kill_resolver(t: Target, resolver: str) -> Outcome:
    """SIGKILL the resolver's main process (a crash)."""
    return _signal(t, resolver, "KILL", "kill_resolver", (Undo("start_resolver", {"resolver": resolver}),))


def terminate_resolver(t: Target, resolver: str) -> Outcome:
    """SIGTERM the resolver's main process (Unbound exits cleanly, outside systemd's control)."""
    return _signal(t, resolver, "TERM", "terminate_resolver",
                   (Undo("start_resolver", {"resolver": resolver}),))


def stop_resolver(t: Target, resolver: str) -> Outcome:
    """SIGSTOP the resolver (a hung process: its socket stays open, nothing answers)."""
    return _signal(t, resolver, "STOP", "stop_resolver", (Undo("cont_resolver", {"resolver": resolver}),))


def cont_resolver(t: Target, resolver: str) -> Outcome:
    """SIGCONT the resolver (ends a SIGSTOP). A no-op on a running process."""
    unit, detail = _resolver(t, resolver)
    t_ns, _ = _run(t, "cont", t.layout.pids, unit)
    return Outcome(t_ns, "cont_resolver", resolver, {**detail, "signal": "CONT"})


def restart_resolver(t: Target, resolver: str) -> Outcome:
    """`systemctl restart` the resolver's unit (compose: start its container unless its restart policy
    already has; the event says who started it, `started_by` policy or runner, and when, `started_ns`)."""
    unit, detail = _resolver(t, resolver)
    t_ns, out = _run(t, "restart", t.layout.pids, unit, _netns(t, resolver))
    return Outcome(t_ns, "restart_resolver", resolver, {**detail, **started_detail(out)})


def started_detail(out: str) -> dict[str, Any]:
    """`policy 1796...` (the restart action's report under docker) -> started_by and started_ns; {} for
    anything else (systemd prints nothing; a container never started has a StartedAt before 1970)."""
    words = out.split()
    if len(words) != 2 or words[0] not in ("policy", "runner") or not words[1].isdigit():
        return {}
    return {"started_by": words[0], "started_ns": int(words[1])}


def start_resolver(t: Target, resolver: str) -> Outcome:
    """Make sure the resolver runs and is not stopped: SIGCONT it, start its unit when inactive."""
    unit, detail = _resolver(t, resolver)
    t_ns, _ = _run(t, "ensure", t.layout.pids, unit, _netns(t, resolver))
    return Outcome(t_ns, "start_resolver", resolver, detail)


def unit_stop_resolver(t: Target, resolver: str) -> Outcome:
    """`systemctl stop` the resolver's unit (a clean, announced shutdown)."""
    unit, detail = _resolver(t, resolver)
    t_ns, _ = _run(t, "unit_stop", t.layout.pids, unit)
    return Outcome(t_ns, "unit_stop_resolver", resolver, detail,
                   (Undo("start_resolver", {"resolver": resolver}),))


# --- resolvers: network -----------------------------------------------------------------------------

def _iface(t: Target, resolver: str) -> tuple[str, str]:
    """(netns, interface) holding the resolver's address."""
    if t.layout.pids == "docker":
        raise ExperimentError(f"network faults on {resolver}'s link need the systemd runtime (under compose "
                              "the container's interface is Docker's); use a process fault")
    ns = _netns(t, resolver)
    addr = str(t.lab.resolver(resolver).address)
    res = remote.run(t.conn, f"ip -n {_q(ns)} -o -4 addr show")
    for line in res.stdout.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[3].split("/")[0] == addr:
            return ns, fields[1].split("@")[0]
    raise ActionError(f"no interface with {addr} in netns {_q(ns)}; is the lab deployed (`fab deploy`)?")


def link_down(t: Target, resolver: str) -> Outcome:
    """Take the resolver's interface down in its namespace (network loss). Keeps its routes for undo."""
    ns, dev = _iface(t, resolver)
    listed = remote.run(t.conn, f"ip -n {_q(ns)} -4 route show dev {_q(dev)}").stdout
    routes = [" ".join(route_tokens(r)) for r in listed.splitlines() if r.strip() and _is_route(r)]
    _, detail = _resolver(t, resolver)
    t_ns, _ = _run(t, "link_down", ns, dev)
    return Outcome(t_ns, "link_down", resolver, {**detail, "dev": dev},
                   (Undo("link_up", {"resolver": resolver, "routes": routes}),))


def _is_route(text: str) -> bool:
    try:
        route_tokens(text)
    except ValueError:
        return False
    return True


def link_up(t: Target, resolver: str, routes: list[str] | None = None) -> Outcome:
    """Bring the resolver's interface up and put back the routes it had (idempotent).

    Each route is checked word by word (`chaos.values.route_tokens`) and every word is quoted."""
    try:
        checked = [route_tokens(r) for r in routes or ()]
    except ValueError as err:
        raise ActionError(f"link_up {resolver}: {err}") from None
    ns, dev = _iface(t, resolver)
    _, detail = _resolver(t, resolver)
    t_ns, _ = _run(t, "link_up", ns, dev, *(" ".join(words) for words in checked))
    return Outcome(t_ns, "link_up", resolver, {**detail, "dev": dev})


def netem(t: Target, resolver: str, delay_ms: float = 0.0, loss_pct: float = 0.0,
          jitter_ms: float = 0.0) -> Outcome:
    """Add delay and/or loss to everything the resolver sends (netem on its interface)."""
    delay_ms, loss_pct, jitter_ms = (_number(x, name) for x, name in (
        (delay_ms, "delay_ms"), (loss_pct, "loss_pct"), (jitter_ms, "jitter_ms")))
    ns, dev = _iface(t, resolver)
    _, detail = _resolver(t, resolver)
    jitter = [f"{jitter_ms:g}ms"] if jitter_ms else []
    spec = ["delay", f"{delay_ms:g}ms", *jitter, "loss", f"{loss_pct:g}%"]
    t_ns, _ = _run(t, "netem", ns, dev, *spec)
    return Outcome(t_ns, "netem", resolver,
                   {**detail, "dev": dev, "delay_ms": delay_ms, "loss_pct": loss_pct,
                    "jitter_ms": jitter_ms},
                   (Undo("netem_clear", {"resolver": resolver}),))


def netem_clear(t: Target, resolver: str) -> Outcome:
    """Remove any netem qdisc from the resolver's interface (idempotent)."""
    ns, dev = _iface(t, resolver)
    _, detail = _resolver(t, resolver)
    t_ns, _ = _run(t, "netem_clear", ns, dev)
    return Outcome(t_ns, "netem_clear", resolver, {**detail, "dev": dev})


# --- director ---------------------------------------------------------------------------------------

def _number(value: Any, name: str) -> float:
    """A finite number >= 0 for a command line (experiment files are checked; direct calls too)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ExperimentError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _director(t: Target, cmd: str) -> str:
    ns = t.lab.network.director_netns
    return layout.in_ns(ns, cmd)


def kill_keepalived(t: Target) -> Outcome:
    """SIGKILL Keepalived's main process: the IPVS table stays as it was, nobody checks any more."""
    t_ns, _ = _run(t, "signal", t.layout.pids, t.layout.keepalived_unit, "KILL")
    return Outcome(t_ns, "kill_keepalived", "keepalived", {"signal": "KILL"},
                   (Undo("start_keepalived"),))


def restart_keepalived(t: Target) -> Outcome:
    """`systemctl restart` Keepalived."""
    t_ns, _ = _run(t, "restart", t.layout.pids, t.layout.keepalived_unit)
    return Outcome(t_ns, "restart_keepalived", "keepalived", {})


def start_keepalived(t: Target) -> Outcome:
    """Make sure Keepalived runs (idempotent)."""
    t_ns, _ = _run(t, "ensure_active", t.layout.pids, t.layout.keepalived_unit)
    return Outcome(t_ns, "start_keepalived", "keepalived", {})


def reload_keepalived(t: Target) -> Outcome:
    """SIGHUP Keepalived: it rereads its configuration and reconciles the IPVS table."""
    t_ns, _ = _run(t, "signal", t.layout.pids, t.layout.keepalived_unit, "HUP")
    return Outcome(t_ns, "reload_keepalived", "keepalived", {"signal": "HUP"})


def set_sysctl(t: Target, name: str, value: str | int) -> Outcome:
    """Set a sysctl in the director's namespace; the undo puts the previous value back."""
    text = sysctl_value(value)
    if not SYSCTL_RE.fullmatch(str(name)) or text is None:
        raise ExperimentError(f"set_sysctl: not a net.* sysctl name and value: {name!r} = {value!r}")
    t_ns, out = _run(t, "sysctl", t.lab.network.director_netns or "", name, text)
    previous = out.strip()
    return Outcome(t_ns, "set_sysctl", "director",
                   {"name": name, "value": str(value), "previous": previous, "netns": _ns_name(t)},
                   (Undo("set_sysctl", {"name": name, "value": previous}),))


def _ns_name(t: Target) -> str:
    return t.lab.network.director_netns or "root"


def set_udp_timeout(t: Target, seconds: int) -> Outcome:
    """`ipvsadm --set` the UDP timeout (tcp and tcpfin kept); the undo restores the previous one."""
    t_ns, out = _run(t, "udp_timeout", t.lab.network.director_netns or "", int(seconds))
    tcp, tcpfin, udp = out.split()
    return Outcome(t_ns, "set_udp_timeout", "director",
                   {"udp_timeout": int(seconds), "previous": int(udp), "tcp": int(tcp),
                    "tcpfin": int(tcpfin)},
                   (Undo("set_udp_timeout", {"seconds": int(udp)}),))


def flush_conntrack(t: Target) -> Outcome:
    """Flush the director namespace's conntrack table (IPVS connections stay)."""
    t_ns, _ = _run(t, "flush_conntrack", t.lab.network.director_netns or "")
    return Outcome(t_ns, "flush_conntrack", "director", {"netns": _ns_name(t)})


def switch_check(t: Target, **check: Any) -> Outcome:
    """Change Keepalived's check type or timers in place (deploy with overrides: a reload).

    Arguments are [check] keys of lab.toml (type, misc_tool, delay_loop, retry, ...).
    """
    from lab.ops.deploy import deploy

    target_lab = with_overrides(t.lab, {"check": check})
    previous = {k: getattr(t.lab.check, k) for k in check}
    t_ns, _ = _run(t, "now")
    deploy(target_lab, t.conn, clear_faults=False)  # the experiment's other faults stay
    return Outcome(t_ns, "switch_check", "keepalived", {"check": dict(check), "previous": previous},
                   (Undo("switch_check", previous),))


ActionFunc = Callable[..., Outcome]

ACTIONS: dict[str, ActionFunc] = {f.__name__: f for f in (
    kill_resolver, terminate_resolver, stop_resolver, cont_resolver, restart_resolver, start_resolver,
    unit_stop_resolver, link_down, link_up, netem, netem_clear, kill_keepalived, restart_keepalived,
    start_keepalived, reload_keepalived, set_sysctl, set_udp_timeout, flush_conntrack, switch_check,
)}

RESTORES = frozenset({"cont_resolver", "restart_resolver", "start_resolver", "link_up", "netem_clear",
                      "start_keepalived"})


def kind_in_method(func: str) -> str:
    """The events.jsonl kind of an action in the method: restoring actions are rollbacks."""
    return "rollback" if func in RESTORES else "fault"


def planned_undo(t: Target, func: str, arguments: Mapping[str, Any]) -> tuple[Undo, ...]:
    """The undo of action `func` known before it runs: the runner writes it to its undo log first, so a
    runner killed while the action runs still leaves it for `fab recover`. The same calls as the
    action's own `Outcome.undo`, except where that holds what the action reads as it acts: `link_up`
    without routes (the address brings its own route back), and `set_sysctl` / `set_udp_timeout` back
    to the value the lab deploys (for a sysctl the lab does not set, its value now)."""
    a = dict(arguments)
    if func in ("kill_resolver", "terminate_resolver", "unit_stop_resolver"):
        return (Undo("start_resolver", {"resolver": a["resolver"]}),)
    simple = {"stop_resolver": "cont_resolver", "netem": "netem_clear"}
    if func in simple:
        return (Undo(simple[func], {"resolver": a["resolver"]}),)
    if func == "link_down":
        return (Undo("link_up", {"resolver": a["resolver"], "routes": []}),)
    if func == "kill_keepalived":
        return (Undo("start_keepalived"),)
    if func == "set_udp_timeout":
        return (Undo("set_udp_timeout", {"seconds": t.lab.ipvs.udp_timeout}),)
    if func == "switch_check":
        return (Undo("switch_check", {k: getattr(t.lab.check, k) for k in a}),)
    if func == "set_sysctl":
        name = str(a["name"])
        value = dict(t.lab.sysctl).get(name)
        if value is None and SYSCTL_RE.fullmatch(name):
            res = remote.run(t.conn, _director(t, f"sysctl -n {_q(name)}"))
            value = " ".join(res.stdout.split()) if res.exited == 0 else None
        return (Undo("set_sysctl", {"name": name, "value": value}),) if value else ()
    return ()


def run_undo(t: Target, undo: Undo) -> Outcome:
    """Run one undo call."""
    return ACTIONS[undo.func](t, **undo.arguments)
