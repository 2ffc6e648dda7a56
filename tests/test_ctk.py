"""Chaos Toolkit: every shipped experiment passes its validator, and dnslab's extension has its calling
convention. Chaos Toolkit is installed by `make setup` (the `ctk` extra), so nothing here is skipped."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chaoslib.exceptions import InvalidActivity
from chaoslib.experiment import ensure_experiment_is_valid

from chaos import actions
from chaos.ctk import actions as ctk_actions
from chaos.ctk import calls, discover
from chaos.ctk import probes as ctk_probes
from chaos.experiment import EXPERIMENTS_DIR, method_probes, steady_probes

CHAOS = Path(sys.executable).parent / "chaos"
FILES = sorted(EXPERIMENTS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_experiment_file_passes_chaostoolkit_validation(path):
    ensure_experiment_is_valid(yaml.safe_load(path.read_text()))


def test_chaos_validate_cli_accepts_kill_one():
    res = subprocess.run([str(CHAOS), "--no-log-file", "validate", str(EXPERIMENTS_DIR / "kill-one.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "look valid" in res.stderr + res.stdout


def _bad(tmp_path: Path, old: str, new: str) -> Path:
    text = (EXPERIMENTS_DIR / "kill-one.yaml").read_text()
    assert old in text
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(("old", "new", "ctk_error", "our_error"), [
    ("func: kill_resolver", "func: kil_resolver", "does not expose a function called 'kil_resolver'",
     "unknown function 'kil_resolver'"),
    ("arguments: {resolver: rs2}", "arguments: {resolver: 2}", "resolver: kill_resolver: must be a string",
     "resolver: kill_resolver: must be a string"),
    ("arguments: {resolver: rs2}", "arguments: {resolver: rs2, signal: 9}",
     "argument 'signal' is not part of the function signature", "unexpected keyword argument 'signal'"),
])
def test_bad_experiment_fails_both_validators_in_one_line(tmp_path, old, new, ctk_error, our_error):
    path = _bad(tmp_path, old, new)
    ctk = subprocess.run([str(CHAOS), "--no-log-file", "validate", str(path)], capture_output=True, text=True,
                         timeout=120)
    ours = subprocess.run([sys.executable, "-m", "chaos", "check", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert ctk.returncode == 1 and ctk_error in ctk.stderr + ctk.stdout
    assert ours.returncode == 2 and our_error in ours.stderr and "Traceback" not in ours.stderr
    assert len(ours.stderr.strip().splitlines()) == 1


def test_the_dnslab_control_rejects_a_wrong_type_with_chaostoolkits_error(tmp_path):
    data = yaml.safe_load(_bad(tmp_path, "{percentile: 99}", "{percentile: high}").read_text())
    with pytest.raises(InvalidActivity, match=r"percentile: latency_ms: must be a number, got 'high'"):
        ensure_experiment_is_valid(data)


def test_each_function_has_chaostoolkits_calling_convention():
    pairs = [(ctk_actions, name, func) for name, func in actions.ACTIONS.items()]
    pairs += [(ctk_probes, name, func) for name, func in {**steady_probes(), **method_probes()}.items()]
    for module, name, func in pairs:
        wrapped = getattr(module, name)
        assert inspect.isfunction(wrapped) and name in module.__all__
        ours = list(inspect.signature(func).parameters)[1:]
        theirs = list(inspect.signature(wrapped).parameters)
        assert [p for p in theirs if p not in ("configuration", "secrets")] == ours
        assert {"configuration", "secrets"} <= set(theirs) and wrapped.__doc__ == func.__doc__


def test_wrapped_call_passes_plain_keyword_arguments(monkeypatch):
    seen = []
    f = calls.wrap(actions.switch_check, lambda func, args, conf: seen.append((func, args, conf)), "m")
    f(type="MISC_CHECK", delay_loop=1, configuration={"dnslab_lab": "x.toml"})
    assert seen == [(actions.switch_check, {"type": "MISC_CHECK", "delay_loop": 1}, {"dnslab_lab": "x.toml"})]
    g = calls.wrap(actions.netem, lambda func, args, conf: args, "m")
    assert g(resolver="rs2", delay_ms=150) == {"resolver": "rs2", "delay_ms": 150}
    with pytest.raises(TypeError):
        g(resolver="rs2", signal=9)


def test_steady_probe_outside_a_run_is_a_one_line_error():
    from lab.model.errors import LabError

    with pytest.raises(LabError, match="no dnslab run in progress; declare the dnslab control"):
        ctk_probes.success_ratio()


def test_discover_lists_every_action_and_probe():
    found = discover(discover_system=False)
    names = {(a["type"], a["name"]) for a in found["activities"]}
    assert {("action", n) for n in actions.ACTIONS} <= names
    assert {("probe", n) for n in [*steady_probes(), *method_probes()]} <= names
    kill = next(a for a in found["activities"] if a["name"] == "kill_resolver")
    assert kill["mod"] == "chaos.ctk.actions"
    assert kill["arguments"][0] == {"name": "resolver", "type": "string"}
    json.dumps(found)


def test_chaos_discover_cli_finds_the_dnslab_distribution(tmp_path):
    out = tmp_path / "discovery.json"
    res = subprocess.run([str(CHAOS), "--no-log-file", "discover", "--no-install", "--no-system-info",
                          "dnslab", "--discovery-path", str(out)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    found = {a["name"] for a in json.loads(out.read_text())["activities"]}
    assert found >= {"kill_resolver", "success_ratio"}
