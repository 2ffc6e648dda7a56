"""Experiment files: chaos/experiments/NAME.yaml, Chaos Toolkit experiments that `fab chaos` also runs.

Loading is pure and strict: a missing file, malformed YAML, an unknown key, module, function or
argument, or a resolver the lab does not have is a one-line `LabError` naming the file, the line
and the key, raised before anything touches the lab. `chaos validate` accepts the same files
(tests/test_ctk.py): what only dnslab's runner reads lives in the `dnslab` entry of `extensions`,
which Chaos Toolkit carries without reading; providers name `chaos.ctk.actions` / `chaos.ctk.probes`
(Chaos Toolkit's calling convention, chaos/ctk/), which map one to one onto chaos.actions and the probes.

    title: Kill one resolver
    description: ...
    extensions:
      - name: dnslab
        overrides: {sysctl: {...}, check: {...}, network: {...}}   # lab.toml shape, deployed first
        load: {rate: 300, socket_mode: fresh}                      # the [load] profile for this run
        timing: {warmup_s: 2, steady_s: 8, recover_s: 10}
        repeat: {times: 5, settle_s: 3, rotate: [rs2, rs3, rs1]}   # chaos/repeat.py
        window_s: 3                                                # steady-state window (seconds)
    controls:                                                      # `chaos run` drives dnslab's run
      - {name: dnslab, provider: {type: python, module: chaos.ctk.control}}
    runtime: {rollbacks: {strategy: always}}
    steady-state-hypothesis:
      title: queries keep being answered
      probes:
        - {type: probe, name: success ratio, tolerance: [0.999, 1.0],
           provider: {type: python, module: chaos.ctk.probes, func: success_ratio}}
    method:                       # the timeline: Chaos Toolkit's pauses (seconds)
      - {type: action, name: kill rs2, pauses: {after: 2.5},
         provider: {type: python, module: chaos.ctk.actions, func: kill_resolver, arguments: {resolver: rs2}}}
    rollbacks:
      - {type: action, name: restart rs2, provider: {...}}
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.repeat import KEYS as REPEAT_KEYS
from chaos.repeat import Repeat, expand
from chaos.values import argument_problems, route_tokens, runtime_problem
from chaos.yaml_doc import Where, read_yaml
from lab.model.config import SYSCTL_RE, Lab
from lab.model.errors import ExperimentError, LabError
from lab.model.parse import check_id, sysctl_value, with_overrides

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"
TOP_KEYS = ("title", "description", "tags", "contributions", "configuration", "secrets", "extensions",
            "controls", "runtime", "steady-state-hypothesis", "method", "rollbacks")
EXTENSION = "dnslab"  # the name of dnslab's entry in `extensions`
EXTENSION_KEYS = ("name", "overrides", "load", "timing", "repeat", "window_s")
TIMING_KEYS = ("warmup_s", "steady_s", "recover_s")
ACTIVITY_KEYS = ("type", "name", "provider", "pauses", "tolerance", "background", "controls")
PROVIDER_KEYS = ("type", "module", "func", "arguments")
HYPOTHESIS_KEYS = ("title", "probes", "controls")
ACTIONS_MODULE, PROBES_MODULE = "chaos.ctk.actions", "chaos.ctk.probes"
# Keys of the format before Chaos Toolkit could validate it, and where they went.
MOVED = {
    **{("configuration", k): f"moved to the `{EXTENSION}` entry of `extensions`"
       for k in ("overrides", "load", "timing", "repeat")},
    ("steady-state-hypothesis", "window_s"): f"moved to the `{EXTENSION}` entry of `extensions`",
    ("at",): "use Chaos Toolkit's pauses: {before: S, after: S} (the next activity runs `after` "
             "seconds later)",
}
OLD_MODULES = {"chaos.actions": ACTIONS_MODULE, "chaos.probes": PROBES_MODULE,
               "chaos.sysctl_probe": PROBES_MODULE, "chaos.check_cost": PROBES_MODULE}


@dataclass(frozen=True)
class Call:
    """A python provider: `module.func(target, **arguments)`."""

    module: str
    func: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self) -> Callable[..., Any]:
        return registry()[(self.module, self.func)]


@dataclass(frozen=True)
class Activity:
    """One entry of `method` or `rollbacks`: an action or a probe, and when it runs."""

    type: str
    name: str
    call: Call
    at: float | None = None
    before: float = 0.0
    after: float = 0.0


@dataclass(frozen=True)
class Tolerance:
    """A steady-state probe over the query records and the range its value must fall in."""

    name: str
    call: Call
    low: float
    high: float


@dataclass(frozen=True)
class Timing:
    warmup_s: float = 2.0
    steady_s: float = 8.0
    recover_s: float = 10.0


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    title: str
    description: str
    overrides: Mapping[str, Any]
    load: Mapping[str, Any] | None
    timing: Timing
    window_s: float
    hypothesis: tuple[Tolerance, ...]
    method: tuple[Activity, ...]  # with its repetitions (`repeat`) laid out
    rollbacks: tuple[Activity, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    repeat: Repeat = Repeat()

    @property
    def uses_load(self) -> bool:
        return self.load is not None


def registry() -> dict[tuple[str, str], Callable[..., Any]]:
    """Every function an experiment may name, keyed by the (module, func) the file spells: dnslab's own
    function (a `Target` or the query records first), which chaos/ctk/ wraps for Chaos Toolkit."""
    from chaos import actions

    out: dict[tuple[str, str], Callable[..., Any]] = {
        (ACTIONS_MODULE, name): func for name, func in actions.ACTIONS.items()}
    out.update({(PROBES_MODULE, name): func for name, func in {**steady_probes(), **method_probes()}.items()})
    return out


def steady_probes() -> dict[str, Callable[..., Any]]:
    """Steady-state probes: functions of a window of query records."""
    from chaos import probes

    return dict(probes.PROBES)


def method_probes() -> dict[str, Callable[..., Any]]:
    """Probes a method may run: functions of a `Target` that return a JSON document."""
    from chaos import check_cost, sysctl_probe

    return {**sysctl_probe.PROBES, **check_cost.PROBES}


def experiment_path(name: str) -> Path:
    """chaos/experiments/NAME.yaml, or NAME itself when it is a path to a file."""
    is_path = name.endswith((".yaml", ".yml")) or "/" in name
    path = Path(name) if is_path else EXPERIMENTS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available())
        raise ExperimentError(f"no experiment {name!r} ({path} does not exist); known: {known}")
    return path


def available() -> list[str]:
    """Names of the experiments shipped in chaos/experiments/."""
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def load_experiment(name: str, lab: Lab) -> Experiment:
    """Read, parse and validate an experiment against the lab it will run on."""
    path = experiment_path(name)
    try:
        check_id(path.stem, "experiment name")
    except LabError as err:
        raise ExperimentError(f"{path}: {err}; rename the file") from None
    data, lines = read_yaml(path)
    return parse_experiment(data, lab, source=str(path), lines=lines, name=path.stem)


def parse_experiment(data: Any, lab: Lab, *, source: str = "<experiment>",
                     lines: Mapping[tuple[Any, ...], int] | None = None, name: str = "") -> Experiment:
    """Validate plain data (a parsed experiment file) against the lab into an `Experiment`."""
    w = Where(source, lines or {}, MOVED)
    top = w.mapping(data, (), TOP_KEYS)
    title = top.get("title")
    if not isinstance(title, str) or not title.strip():
        raise w.error(("title",), "required: a one-line title")
    cfg = w.mapping(top.get("configuration"), ("configuration",), tuple(top.get("configuration") or ()))
    for key in cfg:
        if ("configuration", key) in MOVED:
            raise w.error(("configuration", key), MOVED[("configuration", key)])
    at, ext = _extension(w, top.get("extensions"))
    overrides = w.mapping(ext.get("overrides"), at + ("overrides",),
                          ("network", "resolvers", "check", "ipvs", "sysctl", "load"))
    load = ext.get("load", {})
    if load is not False:
        w.mapping(load, at + ("load",), _load_keys())
    try:
        target = with_overrides(lab, _lab_overrides(overrides, load), source=source)
    except LabError as err:
        raise w.error(at + ("overrides",), str(err).split(": ", 1)[-1]) from None
    tm = w.mapping(ext.get("timing"), at + ("timing",), TIMING_KEYS)
    timing = Timing(**{k: w.number(v, at + ("timing", k)) for k, v in tm.items()})
    window_s = w.number(ext.get("window_s", 3.0), at + ("window_s",), zero=False)

    hyp = w.mapping(top.get("steady-state-hypothesis"), ("steady-state-hypothesis",), HYPOTHESIS_KEYS)
    probes = hyp.get("probes", [])
    if not isinstance(probes, list):
        raise w.error(("steady-state-hypothesis", "probes"), "must be a list of probes")
    hypothesis = tuple(_tolerance(w, p, ("steady-state-hypothesis", "probes", i), target)
                       for i, p in enumerate(probes))

    if not isinstance(top.get("method"), list):
        raise w.error(("method",), "required: a list of actions and probes (may be empty: [])")
    method = _activities(w, top.get("method"), "method", target)
    repeat = _repeat(w, ext.get("repeat"), at, target)
    rollbacks = _activities(w, top.get("rollbacks", []), "rollbacks", target)
    for i, act in enumerate(rollbacks):
        if act.before or act.after:
            raise w.error(("rollbacks", i), "rollbacks run right away: remove `pauses`")
    from chaos.timeline import schedule

    try:
        schedule(method)
    except ValueError as err:
        raise w.error(("method",), str(err)) from None
    if repeat.times > 1 and not method:
        raise w.error(at + ("repeat",), "there is no method to repeat; remove `repeat`")
    return Experiment(
        name=name or Path(source).stem, path=Path(source), title=title.strip(),
        description=str(top.get("description", "")).strip(), overrides=overrides,
        load=None if load is False else dict(load or {}), timing=timing, window_s=window_s,
        hypothesis=hypothesis, method=expand(method, repeat), rollbacks=rollbacks, raw=data, repeat=repeat,
    )


def _extension(w: Where, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """dnslab's entry of `extensions` (Chaos Toolkit's place for tool data) and its key path; the
    other entries belong to other tools."""
    if value is None:
        return ("extensions",), {}
    if not isinstance(value, list):
        raise w.error(("extensions",), f"must be a list of {{name: ..., ...}} entries, got {value!r}")
    found: tuple[tuple[Any, ...], dict[str, Any]] | None = None
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise w.error(("extensions", i), "must be a mapping with a `name` (Chaos Toolkit's rule)")
        if entry["name"] == EXTENSION:
            if found:
                raise w.error(("extensions", i), f"a second `{EXTENSION}` entry; merge them into one")
            found = ("extensions", i), w.mapping(entry, ("extensions", i), EXTENSION_KEYS)
    return found or (("extensions",), {})


def _repeat(w: Where, value: Any, at: tuple[Any, ...], lab: Lab) -> Repeat:
    path = at + ("repeat",)
    r = w.mapping(value, path, REPEAT_KEYS)
    times = r.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= 1000:
        raise w.error(path + ("times",), f"must be a whole number from 1 to 1000, got {times!r}")
    rotate = r.get("rotate", [])
    names = [x.name for x in lab.resolvers]
    if not isinstance(rotate, list) or any(x not in names for x in rotate):
        raise w.error(path + ("rotate",), f"must be a list of the lab's resolvers ({', '.join(names)}), "
                      f"got {rotate!r}")
    return Repeat(times=times, settle_s=w.number(r.get("settle_s", 0), path + ("settle_s",)),
                  rotate=tuple(rotate))


def _load_keys() -> tuple[str, ...]:
    from lab.model.config import Load

    return tuple(Load.__dataclass_fields__)


def _lab_overrides(overrides: Mapping[str, Any], load: Any) -> dict[str, Any]:
    """The experiment's lab overrides with its load profile merged into [load]."""
    out = dict(overrides)
    if isinstance(load, dict) and load:
        out["load"] = {**dict(out.get("load", {})), **load}
    return out


def lab_for(experiment: Experiment, lab: Lab, cell: Mapping[str, Any] | None = None) -> Lab:
    """The lab as this experiment runs it: its overrides and load profile, then a suite cell's overrides
    on top (a cell that varies a setting the experiment also sets wins)."""
    out = with_overrides(lab, _lab_overrides(experiment.overrides, experiment.load or {}))
    return with_overrides(out, cell) if cell else out


def prepare(name: str, lab: Lab, cell: Mapping[str, Any] | None = None) -> tuple[Experiment, Lab]:
    """Experiment `name` loaded against the lab with a suite cell's overrides, and the lab it runs on."""
    base = with_overrides(lab, cell) if cell else lab
    experiment = load_experiment(name, base)
    return experiment, lab_for(experiment, base, cell)


def _provider(w: Where, value: Any, path: tuple[Any, ...]) -> Call:
    p = w.mapping(value, path, PROVIDER_KEYS)
    if p.get("type", "python") != "python":
        raise w.error(path + ("type",), f"only python providers are supported, got {p.get('type')!r}")
    module, func = p.get("module"), p.get("func")
    funcs = registry()
    modules = sorted({m for m, _ in funcs})
    if module in OLD_MODULES:
        raise w.error(path + ("module",), f"{module} takes dnslab's own arguments; name "
                      f"{OLD_MODULES[module]} (Chaos Toolkit's calling convention, the same functions)")
    if module not in modules:
        raise w.error(path + ("module",), f"unknown module {module!r}; known: {', '.join(modules)}")
    if (module, func) not in funcs:
        known = ", ".join(sorted(f for m, f in funcs if m == module))
        raise w.error(path + ("func",), f"unknown function {func!r} in {module}; known: {known}")
    arguments = w.mapping(p.get("arguments"), path + ("arguments",),
                          tuple(p.get("arguments") or {}))
    try:
        inspect.signature(funcs[(module, func)]).bind(None, **arguments)
    except TypeError as err:
        raise w.error(path + ("arguments",), f"{func}: {err}") from None
    for key, problem in argument_problems(funcs[(module, func)], arguments).items():
        raise w.error(path + ("arguments", key), f"{func}: {problem}")
    return Call(module=module, func=func, arguments=dict(arguments))


def _check_targets(w: Where, call: Call, path: tuple[Any, ...], lab: Lab) -> None:
    """Arguments that name lab objects must name ones that exist."""
    args = call.arguments
    names = [r.name for r in lab.resolvers]
    if "resolver" in args and args["resolver"] not in names:
        raise w.error(path + ("arguments", "resolver"),
                      f"no resolver named {args['resolver']!r}; the lab has {', '.join(names)}")
    if (problem := runtime_problem(call.func, lab.stack.runtime)) is not None:
        raise w.error(path + ("func",), problem)
    if call.func == "set_sysctl" and not SYSCTL_RE.fullmatch(str(args.get("name", ""))):
        raise w.error(path + ("arguments", "name"), f"not a net.* sysctl name: {args.get('name')!r}")
    if call.func == "set_sysctl" and sysctl_value(args.get("value")) is None:
        raise w.error(path + ("arguments", "value"), "must be an integer, integers separated by spaces "
                      f"or one word of A-Z a-z 0-9 _ . -, got {args.get('value')!r}")
    if call.func == "netem" and args.get("loss_pct", 0) > 100:
        raise w.error(path + ("arguments", "loss_pct"), f"must be at most 100, got {args['loss_pct']!r}")
    for i, route in enumerate(args.get("routes") or () if call.func == "link_up" else ()):
        try:
            route_tokens(route)
        except ValueError as err:
            raise w.error(path + ("arguments", "routes", i), str(err)) from None
    if call.func == "switch_check":
        try:
            with_overrides(lab, {"check": dict(args)})
        except LabError as err:
            raise w.error(path + ("arguments",), str(err).split(": ", 1)[-1]) from None


def _activities(w: Where, value: Any, key: str, lab: Lab) -> tuple[Activity, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise w.error((key,), "must be a list of activities")
    out = []
    for i, item in enumerate(value):
        path = (key, i)
        a = w.mapping(item, path, ACTIVITY_KEYS)
        kind = a.get("type")
        if kind not in ("action", "probe"):
            raise w.error(path + ("type",), f"must be action or probe, got {kind!r}")
        if not isinstance(a.get("name"), str):
            raise w.error(path + ("name",), "required: a name for this activity")
        call = _provider(w, a.get("provider"), path + ("provider",))
        allowed = {"action": (ACTIONS_MODULE, None), "probe": (PROBES_MODULE, method_probes())}[kind]
        if call.module != allowed[0] or (allowed[1] is not None and call.func not in allowed[1]):
            known = f" ({', '.join(allowed[1])})" if allowed[1] is not None else ""
            raise w.error(path + ("provider",), f"a {kind} in {key} must be a function of {allowed[0]}"
                          f"{known}, got {call.module}.{call.func}")
        _check_targets(w, call, path + ("provider",), lab)
        pauses = w.mapping(a.get("pauses"), path + ("pauses",), ("before", "after"))
        out.append(Activity(
            type=kind, name=a["name"], call=call,
            before=w.number(pauses.get("before", 0), path + ("pauses", "before")),
            after=w.number(pauses.get("after", 0), path + ("pauses", "after")),
        ))
    return tuple(out)


def _tolerance(w: Where, value: Any, path: tuple[Any, ...], lab: Lab) -> Tolerance:
    p = w.mapping(value, path, ACTIVITY_KEYS)
    call = _provider(w, p.get("provider"), path + ("provider",))
    if call.module != PROBES_MODULE or call.func not in steady_probes():
        raise w.error(path + ("provider",), f"a steady-state probe must be one of {PROBES_MODULE}'s "
                      f"{', '.join(steady_probes())}, got {call.module}.{call.func}")
    tol = p.get("tolerance")
    if (not isinstance(tol, list) or len(tol) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                       for x in tol)
            or tol[0] > tol[1]):
        raise w.error(path + ("tolerance",), f"must be a range [low, high], got {tol!r}")
    return Tolerance(name=str(p.get("name", call.func)), call=call, low=float(tol[0]), high=float(tol[1]))
