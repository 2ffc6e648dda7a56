"""`fab demo --suite compose`: one fresh VM, two timed deploys, three suites, the VM brought down
whatever happens, then the page; with fakes for everything that would boot or measure (no VM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dnslab import compose_demo, tasks
from lab.model.errors import ActionFailed, LabError
from lab.model.parse import parse_lab
from lab.ssh.endpoint import Endpoint
from tests.fakedeploy import UP, Deployed


class FakeConn:
    def __enter__(self) -> FakeConn:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def calls(tmp_path, monkeypatch):
    """Every stage the demo reaches, as (stage, the lab file's runtime), with state under tmp_path."""
    import lab.ops.deploy
    import lab.providers
    from lab.providers import qemu

    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path / "reports" / "runs"))
    monkeypatch.setattr(qemu.QemuProvider, "pid", lambda self: None)
    seen: list[tuple[str, str]] = []
    deploys = iter([Deployed(12), Deployed(0)])

    def record(stage: str, result: object = None):
        def fake(lab, *args, **kwargs):
            seen.append((stage, lab.stack.runtime))
            return result
        return fake

    class Image:
        qcow2 = Path("dnslab.qcow2")

    endpoint = Endpoint(host="127.0.0.1", port=2222, user="root", key="", known_hosts=())
    monkeypatch.setattr(lab.providers, "lab_image", record("image", Image()))
    monkeypatch.setattr(lab.providers, "bring_up", record("up", endpoint))
    monkeypatch.setattr(lab.providers, "open_lab", lambda e: FakeConn())
    monkeypatch.setattr(lab.providers, "take_down", record("down"))

    def deploy(lab, conn):
        seen.append(("deploy", lab.stack.runtime))
        return next(deploys)
    monkeypatch.setattr(lab.ops.deploy, "deploy", deploy)

    def suite(lab, conn, name, *, tag=""):
        seen.append((f"suite {name}", f"{lab.stack.runtime} {len(lab.resolvers)}"))
        return tmp_path / name / "matrix.json"
    monkeypatch.setattr(compose_demo, "run_suite", suite)

    def page(compose, seed, reference, deploy, out):
        seen.append(("page", f"{compose.parent.name} {seed.parent.name} {reference.parent.name}"))
        assert json.loads(deploy.read_text())["compose_up_s"] == 20.0
        out.write_text("page")
        return out, {"answers": {}}
    monkeypatch.setattr(compose_demo, "write_compose", page)
    monkeypatch.setattr(compose_demo, "headlines", lambda data: ["a headline"])
    return seen


MEASURED = [("image", "compose"), ("up", "compose"), ("deploy", "compose"), ("deploy", "compose"),
            ("suite compose", "compose 3"), ("suite seed-compose", "compose 2"),
            ("suite compose-reference", "systemd 3"), ("down", "compose")]


def test_the_demo_deploys_twice_runs_three_suites_goes_down_then_writes_the_page(raw_lab, calls, capsys,
                                                                               tmp_path):
    page = compose_demo.run_compose_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == [*MEASURED, ("page", "compose seed-compose compose-reference")]
    assert page == tmp_path / "reports" / "compose.html"
    figures = json.loads((tmp_path / "reports" / "compose-deploy.json").read_text())
    assert figures == {"fresh_s": 60.0, "again_s": 5.0, "again_changed": 0, "compose_up_s": 20.0,
                       "ready_s": 3.0, "changed_steps": [UP], "fresh_vm": True}
    out = capsys.readouterr()
    assert f"compose answers: {page}\na headline" in out.out and "The lab is down" in out.err


@pytest.mark.parametrize("error", [ActionFailed("a cell broke the lab"), KeyboardInterrupt()])
def test_the_vm_goes_down_when_a_suite_fails_or_is_interrupted(raw_lab, calls, monkeypatch, error):
    def broken(lab, conn, name, *, tag=""):
        calls.append((f"suite {name}", "broken"))
        raise error
    monkeypatch.setattr(compose_demo, "run_suite", broken)
    with pytest.raises(type(error)):
        compose_demo.run_compose_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == [*MEASURED[:4], ("suite compose", "broken"), ("down", "compose")]  # no page


def test_a_failed_deploy_stops_the_demo_in_one_line_and_brings_the_vm_down(raw_lab, calls, monkeypatch):
    import lab.ops.deploy

    monkeypatch.setattr(lab.ops.deploy, "deploy", lambda lab, conn: Deployed(1, failed=1))
    with pytest.raises(ActionFailed, match=r"compose.toml: deploy failed at docker: daemon running: "
                                           r"no daemon$"):
        compose_demo.run_compose_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == [*MEASURED[:2], ("down", "compose")]


def test_refused_while_a_vm_is_up_with_another_provider_or_a_compose_reference(raw_lab, calls, monkeypatch):
    from lab.providers import qemu

    monkeypatch.setattr(qemu.QemuProvider, "pid", lambda self: 4242)
    with pytest.raises(LabError, match=r"^a lab VM is up: the compose demo times a deploy on a fresh VM"):
        compose_demo.run_compose_demo(parse_lab(raw_lab, "lab.toml"))
    network = {**raw_lab["network"], "ipvlan_mode": "l3"}  # bookworm's Docker has no l3s
    compose = {**raw_lab, "stack": {"runtime": "compose"}, "network": network}
    with pytest.raises(LabError, match=r"^compose.toml: \[stack\] runtime: the compose demo's reference runs "
                                       r"on systemd, not compose; give a systemd lab file \(lab.toml\)$"):
        compose_demo.run_compose_demo(parse_lab(compose, "compose.toml"))
    raw_lab["vm"]["provider"] = "vagrant"
    with pytest.raises(LabError, match=r"lab.toml: \[vm\] provider: the compose demo .* not vagrant"):
        compose_demo.run_compose_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == []


def test_fab_demo_runs_the_compose_job_for_the_compose_suite(monkeypatch):
    import dnslab.demo

    monkeypatch.setattr(compose_demo, "run_compose_demo", lambda lab, lab_file: Path("compose.html"))
    monkeypatch.setattr(dnslab.demo, "run_demo", lambda lab, suite, lab_file: Path(f"{suite}.html"))
    monkeypatch.setattr(tasks, "lab_model", lambda lab, provider: None)
    assert tasks.demo(None, None, "compose") == Path("compose.html")
    assert tasks.demo(None, None, "seed-compose") == Path("seed-compose.html")
