"""What each Fabric task does (fabfile.py parses the options and prints what these return).

The imports other than the model's are made inside each function so that `fab --list` stays quick.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from lab.model.config import Lab
from lab.model.errors import LabError, cli_guard
from lab.model.parse import lab_path

__all__ = ["cli_guard", "LabError", "lab_model", "connection", "image", "up", "down", "ssh", "info",
           "deploy", "status", "teardown", "load", "chaos", "recover", "matrix", "report", "demo"]


def lab_model(lab: str | None, provider: str | None = None) -> Lab:
    """The lab model; the provider is --provider, else the one the lab was brought up with."""
    from lab.providers import running_lab

    return running_lab(lab, provider)


def connection(model: Lab) -> Any:
    """A Fabric connection to the lab's guest."""
    from lab.providers import connect_lab

    return connect_lab(model)


def image(lab: str | None, provider: str | None, force: bool) -> str:
    """Build (or reuse) the lab image; what was built, in words."""
    from lab.providers import lab_image

    return lab_image(lab_model(lab, provider), force=force).describe()


def up(lab: str | None, provider: str | None, accept_host_key: bool) -> str:
    """Bring the lab up; the line that tells how to reach it over SSH."""
    from lab.local.runlock import lab_lock
    from lab.providers import bring_up
    from lab.ssh.hostkeys import ssh_options

    with lab_lock("up"):
        endpoint = bring_up(lab_model(lab, provider), accept_host_key=accept_host_key)
    key = ["-i", endpoint.key] if endpoint.key else []
    command = ["ssh", "-p", str(endpoint.port), *key, *ssh_options(endpoint),
               f"{endpoint.user}@{endpoint.host}"]
    return f"lab is up: {shlex.join(command)}"


def down(lab: str | None, provider: str | None) -> None:
    """Stop the lab VM and everything the provider started for it."""
    from lab.local.runlock import lab_lock
    from lab.providers import take_down

    with lab_lock("down"):
        take_down(lab_model(lab, provider))


def ssh(cmd: str | None, lab: str | None) -> int:
    """Run `cmd` in the guest with its output shown; its exit status."""
    if not cmd:
        raise LabError("fab ssh: give a command, e.g. `fab ssh 'uname -a'`")
    return connection(lab_model(lab)).run(cmd, warn=True, hide=False, pty=False).exited


def info(lab: str | None, as_json: bool) -> str:
    """Provider, endpoint, image and kernel, as lines or JSON."""
    from lab.providers import get_provider

    data = get_provider(lab_model(lab)).info()
    return json.dumps(data, indent=2) if as_json else "\n".join(f"{k:10} {v}" for k, v in data.items())


def deploy(lab: str | None) -> bool:
    """Deploy the stack; True when a step failed."""
    from lab.ops.deploy import deploy as run_deploy

    model = lab_model(lab)
    return bool(run_deploy(model, connection(model)).failed)


def status(lab: str | None, as_json: bool) -> str:
    """The stack's state in the guest, as text or JSON."""
    from lab.ops.status import format_status, read_status

    model = lab_model(lab)
    data = read_status(model, connection(model))
    return json.dumps(data, indent=2) if as_json else format_status(data)


def teardown(lab: str | None) -> bool:
    """Remove what deploy made; True when a step failed."""
    from lab.ops.deploy import teardown as run_teardown

    model = lab_model(lab)
    return bool(run_teardown(model, connection(model)).failed)


def load(lab: str | None, seconds: Any, rate: Any) -> Path:
    """Load the VIP for `seconds` (default 30) at `rate` (default: the lab's); the run directory."""
    from chaos.execute import run_load_only
    from lab.model.parse import option_number

    length = option_number("fab load --seconds", 30 if seconds is None else seconds)
    qps = None if rate is None else option_number("fab load --rate", rate, zero=True)
    model = lab_model(lab)
    return run_load_only(model, connection(model), seconds=length, rate=qps)


def chaos(lab: str | None, experiment: str) -> Path:
    """Run one experiment; its run directory. A bad experiment file fails before the lab is touched."""
    from chaos.execute import run_experiment
    from chaos.experiment import prepare

    model = lab_model(lab)
    prepare(experiment, model)
    return run_experiment(model, connection(model), experiment)


def recover(lab: str | None) -> str:
    """Finish a run that died; what was done, in words."""
    from chaos.recover import recover_lab

    return recover_lab(lab_model(lab))


def matrix(lab: str | None, suite: str, releases: str | None = None) -> Path:
    """Run a suite over its grid of settings (on each guest release in `releases` in turn: up,
    suite, down); the comparison report's path."""
    from chaos.matrix import run_matrix

    model = lab_model(lab)
    if releases:
        from chaos.releases import parse_releases, run_releases

        return run_releases(model, suite, parse_releases(releases))
    return run_matrix(model, connection(model), suite)


def report(run: str | None) -> None:
    """Write report.html for a run (default: the latest) and print its JSON summary."""
    from reports.cli import report_latest

    report_latest(run)


def demo(lab: str | None, provider: str | None, suite: str) -> Path:
    """The whole job; the answers page's path (with the `releases` suite: on each guest release in
    turn, and the side-by-side page's path; with the `compose` suite: the compose runtime's page)."""
    from dnslab import compose_demo, releases_demo
    from dnslab.demo import run_demo

    if suite == releases_demo.SUITE:
        return releases_demo.run_releases_demo(lab_model(lab, provider), lab_file=str(lab_path(lab)))
    if suite == compose_demo.SUITE:
        return compose_demo.run_compose_demo(lab_model(lab, provider), lab_file=str(lab_path(lab)))

    return run_demo(lab_model(lab, provider), suite=suite, lab_file=str(lab_path(lab)))
