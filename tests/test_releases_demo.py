"""`fab demo --suite releases`: each release's job in turn, one VM at a time, the VM brought down
whatever happens, with fakes for everything that would boot or measure (no VM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnslab import releases_demo, tasks
from lab.model.errors import ActionFailed, LabError
from lab.model.parse import parse_lab
from lab.ssh.endpoint import Endpoint


class FakeConn:
    def __enter__(self) -> FakeConn:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def calls(tmp_path, monkeypatch):
    """Every stage the demo reaches, as (stage, release), with the lab's state under tmp_path."""
    import lab.ops.deploy
    import lab.providers
    import reports.answers
    from lab.providers import qemu

    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("DNSLAB_RUNS", str(tmp_path / "reports" / "runs"))
    monkeypatch.setattr(qemu.QemuProvider, "pid", lambda self: None)
    seen: list[tuple[str, str]] = []

    def record(stage: str, result: object = None):
        def fake(lab, *args, **kwargs):
            seen.append((stage, lab.vm.release))
            return result
        return fake

    class Image:
        qcow2 = Path("dnslab.qcow2")

    class Deployed:
        changed = 0

    endpoint = Endpoint(host="127.0.0.1", port=2222, user="root", key="", known_hosts=())
    monkeypatch.setattr(lab.providers, "lab_image", record("image", Image()))
    monkeypatch.setattr(lab.providers, "bring_up", record("up", endpoint))
    monkeypatch.setattr(lab.providers, "open_lab", lambda e: FakeConn())
    monkeypatch.setattr(lab.providers, "take_down", record("down"))
    monkeypatch.setattr(lab.ops.deploy, "deploy", record("deploy", Deployed()))

    def probe(lab, conn, experiment, *, tag=""):
        assert tag == lab.vm.release  # remembered per release
        seen.append((f"probe {experiment}", tag))
        return tmp_path / tag / f"{experiment}.json"

    def suite(lab, conn, name, *, tag=""):
        assert name == "releases" and tag == lab.vm.release
        seen.append(("suite", tag))
        return tmp_path / tag / "matrix.json"

    def answers(matrix_json, probe_json, lab, runs, out, cost_json):
        seen.append(("answers", lab.vm.release))
        assert out.name == f"answers-{lab.vm.release}.html"
        return out, reports.answers.answer([], None, lab)

    monkeypatch.setattr(releases_demo, "probe", probe)
    monkeypatch.setattr(releases_demo, "run_suite", suite)
    monkeypatch.setattr(reports.answers, "write_answers", answers)
    monkeypatch.setattr(releases_demo, "read_release", lambda name, *a: name)

    def side_by_side(done, lab, out):
        seen.append(("side by side", ",".join(done)))
        return out
    monkeypatch.setattr(releases_demo, "write_releases", side_by_side)
    return seen


def per_release(release: str) -> list[tuple[str, str]]:
    return [(stage, release) for stage in ("image", "up", "deploy", "probe sysctl-namespaces",
                                           "probe check-cost", "suite", "down", "answers")]


def test_each_release_runs_up_to_down_before_the_next_one_starts(raw_lab, calls, capsys):
    page = releases_demo.run_releases_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == [*per_release("bookworm"), *per_release("trixie"), ("side by side", "bookworm,trixie")]
    assert page.name == "releases.html"
    out = capsys.readouterr()
    assert "bookworm: answers" in out.out and f"releases: {page}" in out.out
    assert "The lab is down" in out.err
    for stage in ("bookworm: up", "trixie: experiments", "trixie: down", "side by side", "total"):
        assert stage in out.err, stage


@pytest.mark.parametrize("error", [ActionFailed("a cell broke the lab"), KeyboardInterrupt()])
def test_the_vm_goes_down_when_a_stage_fails_or_is_interrupted(raw_lab, calls, monkeypatch, error):
    def broken(lab, conn, name, *, tag=""):
        calls.append(("suite", tag))
        raise error

    monkeypatch.setattr(releases_demo, "run_suite", broken)
    with pytest.raises(type(error)):
        releases_demo.run_releases_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == per_release("bookworm")[:6] + [("down", "bookworm")]  # trixie never starts


def test_a_failed_boot_still_brings_the_vm_down(raw_lab, calls, monkeypatch):
    import lab.providers

    def no_ssh(lab):
        calls.append(("up", lab.vm.release))
        raise ActionFailed("the lab VM did not answer SSH")

    monkeypatch.setattr(lab.providers, "bring_up", no_ssh)
    with pytest.raises(ActionFailed):
        releases_demo.run_releases_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == [("image", "bookworm"), ("up", "bookworm"), ("down", "bookworm")]


def test_refused_while_a_lab_vm_is_up_or_with_another_provider(raw_lab, calls, monkeypatch):
    from lab.providers import qemu

    monkeypatch.setattr(qemu.QemuProvider, "pid", lambda self: 4242)
    with pytest.raises(LabError, match=r"^a lab VM is up: the releases demo brings each release's VM up "
                                       r"in turn; `fab down` first$"):
        releases_demo.run_releases_demo(parse_lab(raw_lab, "lab.toml"))
    raw_lab["vm"]["provider"] = "vagrant"
    with pytest.raises(LabError, match=r"lab.toml: \[vm\] provider: the releases demo .* not vagrant"):
        releases_demo.run_releases_demo(parse_lab(raw_lab, "lab.toml"))
    assert calls == []


def test_fab_demo_runs_the_per_release_job_only_for_the_releases_suite(monkeypatch):
    import dnslab.demo

    monkeypatch.setattr(releases_demo, "run_releases_demo", lambda lab, lab_file: Path("releases.html"))
    monkeypatch.setattr(dnslab.demo, "run_demo", lambda lab, suite, lab_file: Path(f"{suite}.html"))
    monkeypatch.setattr(tasks, "lab_model", lambda lab, provider: None)
    assert tasks.demo(None, None, "releases") == Path("releases.html")
    assert tasks.demo(None, None, "standard") == Path("standard.html")
