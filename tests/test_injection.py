"""No injection: values from lab.toml and experiment files never become shell or config syntax.

The deploy steps and chaos actions run as root (on a real host with the ssh provider), so each value
is validated where it is read and quoted where it is used; these tests try both layers.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos import actions
from chaos.experiment import load_experiment
from lab.model.errors import LabError
from lab.model.layout import EXIT_WATCHER, NETWORK_SCRIPT
from lab.model.parse import load_lab, parse_lab
from lab.render.files import render_files
from lab.render.netplan import sysctl_step
from tests.conftest import REPO

PWN = "1'; touch pwned; echo '"


@pytest.fixture
def lab(raw_lab):
    return parse_lab(raw_lab, "lab.toml")


# --- lab.toml ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [PWN, "1\nnet.ipv4.ip_forward = 0", "1;id", "$(id)", "a b", "", 1.5, True,
                                   "1 2\n3"])
def test_sysctl_values_are_integers_or_one_word(raw_lab, value):
    raw_lab["sysctl"]["net.ipv4.vs.conntrack"] = value
    message = r'\[sysctl\] "net.ipv4.vs.conntrack": value must be an integer'
    with pytest.raises(LabError, match=message) as err:
        parse_lab(raw_lab, "lab.toml")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [1, -1, "4096 87380 6291456", "4096\t87380", "bbr", "fq_codel", "1.5"])
def test_real_sysctl_values_are_accepted(raw_lab, value):
    raw_lab["sysctl"]["net.ipv4.tcp_rmem"] = value
    assert dict(parse_lab(raw_lab).sysctl)["net.ipv4.tcp_rmem"] == str(value)


def test_a_newline_cannot_add_lines_to_the_sysctl_file(raw_lab):
    raw_lab["sysctl"]["net.ipv4.vs.conntrack"] = "1\nkernel.panic = 1"
    with pytest.raises(LabError):
        parse_lab(raw_lab)


def test_sysctl_step_quotes_the_value_when_it_runs(lab, tmp_path):
    """Defence in depth: even a value that bypassed validation stays one word in the step's check."""
    bad = dataclasses.replace(lab, sysctl=(("net.ipv4.vs.conntrack", PWN),))
    step = sysctl_step(bad, *bad.sysctl[0])
    for command in (step.check,):  # `check` is what deploy runs first, on every step
        subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, timeout=10)
    assert not (tmp_path / "pwned").exists()
    assert subprocess.run(["bash", "-n", "-c", step.apply]).returncode == 0


@pytest.mark.parametrize(("table", "key", "value", "message"), [
    ("resolvers", "name", "rs3\n", r"\[resolvers.2\] name: 'rs3\\n'"),
    ("sysctl", "net.ipv4.vs.conntrack\n", 1, r'\[sysctl\] "net.ipv4.vs.conntrack\\n": not a net'),
    ("network", "parent", "eth0\n", r"\[network\] parent: not an interface name"),
])
def test_a_trailing_newline_does_not_pass_a_pattern(raw_lab, table, key, value, message):
    if table == "resolvers":
        raw_lab["resolvers"][2][key] = value
    else:
        raw_lab[table][key] = value
    with pytest.raises(LabError, match=message) as err:
        parse_lab(raw_lab, "lab.toml")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("table", "key"), [("check", "connect_timeout"), ("check", "delay_loop"),
                                            ("load", "rate"), ("load", "timeout_ms"), ("load", "tcp_share")])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_nan_and_inf_are_rejected(raw_lab, table, key, value):
    raw_lab.setdefault(table, {})[key] = value
    with pytest.raises(LabError, match=rf"\[{table}\] {key}: must be"):
        parse_lab(raw_lab, "lab.toml")


def test_lab_render_with_inf_is_one_line(tmp_path):
    bad = tmp_path / "lab.toml"
    bad.write_text((REPO / "lab.toml").read_text().replace("[check]", "[check]\nconnect_timeout = inf", 1)
                   .replace("connect_timeout = 0.5", "", 1))
    argv = [sys.executable, "-m", "lab", "render", "--lab", str(bad), "--out", str(tmp_path / "o")]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (f"dnslab: error: {bad}: [check] connect_timeout: must be a finite number, "
                                   "got inf")


def test_the_lab_files_path_stays_on_one_comment_line(tmp_path):
    weird = tmp_path / "x\nid > pwned; echo $(id) \\ \u00e9"
    weird.mkdir()
    path = weird / "lab.toml"
    path.write_text((REPO / "lab.toml").read_text())
    files = render_files(load_lab(path))
    copied = {EXIT_WATCHER: REPO / "lab" / "guest" / "dnslab-exit-watch.py"}  # scripts copied as they are
    for guest, file in files.items():
        if guest.startswith("/opt/"):
            continue
        if guest in copied:
            assert file.content == copied[guest].read_bytes(), guest
            continue
        text = file.content.decode()
        assert "\nid > pwned" not in text, guest
        comment = next(line for line in text.splitlines() if "Rendered by lab/render/files.py" in line)
        assert "x\\nid > pwned; echo $(id) \\\\ \\xe9" in comment, guest
    script = tmp_path / "net.sh"
    script.write_bytes(files[NETWORK_SCRIPT].content)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    conf = tmp_path / "keepalived.conf"
    conf.write_bytes(files["/etc/keepalived/keepalived.conf"].content)
    assert subprocess.run(["keepalived", "--config-test", "--use-file", str(conf)],
                          capture_output=True, timeout=60).returncode == 0


# --- experiment files --------------------------------------------------------------------------------

EXPERIMENT = """\
title: t
method:
  - type: action
    name: act
    provider: {type: python, module: chaos.ctk.actions, func: FUNC, arguments: ARGS}
"""


def _experiment(tmp_path: Path, func: str, args: str, name: str = "exp.yaml") -> str:
    path = tmp_path / name
    path.write_text(EXPERIMENT.replace("FUNC", func).replace("ARGS", args))
    return str(path)


@pytest.mark.parametrize(("func", "args", "message"), [
    ("netem", '{resolver: rs2, delay_ms: "1ms; id > x; echo "}',
     r"arguments\.delay_ms: netem: must be a number, got '1ms; id > x; echo '"),
    ("netem", "{resolver: rs2, delay_ms: .nan}", r"arguments\.delay_ms: netem: must be a finite number"),
    ("netem", "{resolver: rs2, loss_pct: 150}", r"arguments\.loss_pct: must be at most 100"),
    ("netem", "{resolver: rs2, jitter_ms: -1}", r"arguments\.jitter_ms: netem: must be a finite number >= 0"),
    ("link_up", '{resolver: rs2, routes: ["192.168.100.0/24; id > x"]}',
     r"arguments\.routes\[0\]: route destination '192.168.100.0/24;' is not"),
    ("link_up", '{resolver: rs2, routes: ["192.168.100.0/24 dev eth0"]}', r"route word 'dev' is not allowed"),
    ("link_up", '{resolver: rs2, routes: ["default via $(id)"]}', r"route via '\$\(id\)' is not an IPv4"),
    ("link_up", '{resolver: rs2, routes: "192.168.100.0/24"}', r"link_up: must be list or null, got '192"),
    ("set_sysctl", f'{{name: net.ipv4.vs.conntrack, value: "{PWN}"}}', r"value: must be an integer"),
    ("set_sysctl", '{name: "net.ipv4.vs.conntrack\\n", value: 1}', r"name: set_sysctl: must be one line"),
    ("set_udp_timeout", '{seconds: "5; id"}', r"arguments\.seconds: set_udp_timeout: must be an integer"),
    ("kill_resolver", '{resolver: "rs2\\n"}', r"arguments\.resolver: kill_resolver: must be one line"),
    ("kill_resolver", "{resolver: [rs2]}", r"arguments\.resolver: kill_resolver: must be a string"),
])
def test_arguments_are_checked_against_the_actions_annotations(tmp_path, lab, func, args, message):
    with pytest.raises(LabError, match=message) as err:
        load_experiment(_experiment(tmp_path, func, args), lab)
    assert "\n" not in str(err.value)


def test_good_arguments_still_load(tmp_path, lab):
    args = "{resolver: rs2, delay_ms: 150, loss_pct: 0.5}"
    exp = load_experiment(_experiment(tmp_path, "netem", args), lab)
    assert exp.method[0].call.arguments == {"resolver": "rs2", "delay_ms": 150, "loss_pct": 0.5}
    routes = '{resolver: rs2, routes: ["192.168.100.0/24 proto kernel scope link src 192.168.100.12"]}'
    assert load_experiment(_experiment(tmp_path, "link_up", routes), lab).method[0].call.func == "link_up"


@pytest.mark.parametrize("name", ["x y;id.yaml", ".hidden.yaml", "a$(id).yaml", "-x.yaml"])
def test_experiment_names_are_plain(tmp_path, lab, name):
    path = _experiment(tmp_path, "kill_resolver", "{resolver: rs2}", name=name)
    with pytest.raises(LabError, match=r"experiment name .*use only letters, digits") as err:
        load_experiment(path, lab)
    assert "\n" not in str(err.value)


def test_run_ids_are_plain(lab, tmp_path, monkeypatch):
    from chaos.runner import Run

    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path))
    exp = load_experiment(_experiment(tmp_path, "kill_resolver", "{resolver: rs2}"), lab)
    with pytest.raises(LabError, match=r"run id 'x y;id'"):
        Run(lab, None, exp, run_id="x y;id")
    with pytest.raises(LabError, match=r"run id '\.\.'"):
        Run(lab, None, exp, run_id="..")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_timing_and_tolerances_reject_nan_and_inf(tmp_path, lab, value):
    text = textwrap.dedent(f"""\
        title: t
        extensions: [{{name: dnslab, timing: {{steady_s: {'.nan' if value != value else '.inf'}}}}}]
        method: []
        """)
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    with pytest.raises(LabError, match=r"timing\.steady_s: must be a number >= 0"):
        load_experiment(str(path), lab)


# --- the checks themselves, and the actions they guard ------------------------------------------------

def test_route_tokens_accept_what_ip_route_prints():
    from chaos.values import route_tokens

    assert route_tokens("192.168.100.0/24 proto kernel scope link src 192.168.100.12 linkdown") == (
        "192.168.100.0/24", "proto", "kernel", "scope", "link", "src", "192.168.100.12")
    assert route_tokens("default via 10.0.0.1 metric 100 onlink") == (
        "default", "via", "10.0.0.1", "metric", "100", "onlink")


def test_type_problem_follows_the_annotation():
    from chaos.values import type_problem

    assert type_problem(1, float) is None and type_problem(True, float)
    assert type_problem("1", int) and type_problem(None, list[str] | None) is None
    assert type_problem(["a", 1], list[str]) == "item 1: must be a string, got 1"


class _Recorder:
    """A connection that records commands and answers like a guest with rs2 on dl-rs2."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, cmd: str, **_: object):
        self.commands.append(cmd)
        out = "5: dl-rs2@if2    inet 192.168.100.12/24 scope global dl-rs2\n" if "addr show" in cmd \
            else "1767225600000000000\n"
        return SimpleNamespace(exited=0, stdout=out, stderr="")


@pytest.mark.parametrize(("func", "kwargs"), [
    (actions.netem, {"delay_ms": "1ms; id > x; echo "}),
    (actions.link_up, {"routes": ["192.168.100.0/24; id > x"]}),
])
def test_actions_refuse_bad_values_before_running_anything(lab, func, kwargs):
    conn = _Recorder()
    with pytest.raises(LabError):
        func(actions.Target(conn, lab), resolver="rs2", **kwargs)
    assert not any("id > x" in c for c in conn.commands)


def test_set_sysctl_refuses_a_value_that_is_not_a_sysctl_value(lab):
    conn = _Recorder()
    with pytest.raises(LabError, match="set_sysctl"):
        actions.set_sysctl(actions.Target(conn, lab), name="net.ipv4.vs.conntrack", value=PWN)
    assert conn.commands == []


def test_routes_are_replayed_word_by_word_quoted(lab):
    conn = _Recorder()
    actions.link_up(actions.Target(conn, lab), resolver="rs2",
                    routes=["198.51.100.0/24 proto static scope link"])
    assert "ip -n rs2 route replace 198.51.100.0/24 proto static scope link dev dl-rs2" in conn.commands[-1]
