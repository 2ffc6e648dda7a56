"""dnslab's Fabric tasks. Thin: each parses its arguments and calls into lab/, chaos/, loadtest/,
reports/. Run `fab --list` for the list and `fab --help TASK` for a task's options."""

from __future__ import annotations

import json

from fabric import task

from lab.local.runlock import lab_lock
from lab.model.config import Lab
from lab.model.errors import LabError, cli_guard
from lab.model.parse import lab_path


def _lab(lab: str | None, provider: str | None = None) -> Lab:
    """The lab model; the provider is --provider, else the one the lab was brought up with."""
    from lab.providers import running_lab

    return running_lab(lab, provider)


def _connection(model: Lab):
    from lab.providers import connect_lab

    return connect_lab(model)


@task(help={"provider": "qemu | vagrant | ssh (default: [vm] provider in lab.toml)",
            "force": "rebuild even when the cached image matches its inputs",
            "lab": "lab file (default: lab.toml)"})
@cli_guard
def image(c, provider=None, force=False, lab=None):
    """Build (or reuse) the Debian 12 lab image: mmdebstrap base, packer layer, Vagrant box."""
    from lab.providers import lab_image

    print(lab_image(_lab(lab, provider), force=force).describe())


@task(help={"provider": "qemu | vagrant | ssh", "lab": "lab file (default: lab.toml)",
            "accept-host-key": "ssh provider: pin the host's key when none is pinned yet (check it first)"})
@cli_guard
def up(c, provider=None, lab=None, accept_host_key=False):
    """Bring the lab VM up (building the image when needed) and wait for SSH."""
    import shlex

    from lab.providers import bring_up
    from lab.ssh.hostkeys import ssh_options

    with lab_lock("up"):
        endpoint = bring_up(_lab(lab, provider), accept_host_key=accept_host_key)
    key = ["-i", endpoint.key] if endpoint.key else []
    command = ["ssh", "-p", str(endpoint.port), *key, *ssh_options(endpoint),
               f"{endpoint.user}@{endpoint.host}"]
    print(f"lab is up: {shlex.join(command)}")


@task(help={"provider": "qemu | vagrant | ssh", "lab": "lab file (default: lab.toml)"})
@cli_guard
def down(c, provider=None, lab=None):
    """Stop the lab VM and everything the provider started for it."""
    from lab.providers import take_down

    with lab_lock("down"):
        take_down(_lab(lab, provider))


@task(positional=["cmd"], help={"cmd": "command to run in the lab VM", "lab": "lab file"})
@cli_guard
def ssh(c, cmd=None, lab=None):
    """Run a command in the lab VM: `fab ssh 'ip -br addr'`."""
    if not cmd:
        raise LabError("fab ssh: give a command, e.g. `fab ssh 'uname -a'`")
    result = _connection(_lab(lab)).run(cmd, warn=True, hide=False, pty=False)
    raise SystemExit(result.exited)


@task(help={"json": "print JSON", "lab": "lab file"})
@cli_guard
def info(c, json_=False, lab=None):
    """Provider, endpoint, image and kernel of the lab."""
    from lab.providers import get_provider

    data = get_provider(_lab(lab)).info()
    print(json.dumps(data, indent=2) if json_ else "\n".join(f"{k:10} {v}" for k, v in data.items()))


@task(help={"lab": "lab file (default: lab.toml)"})
@cli_guard
def deploy(c, lab=None):
    """Build the IPVS / Keepalived / Unbound stack in the lab from lab.toml. Idempotent."""
    from lab.ops.deploy import deploy as run_deploy

    model = _lab(lab)
    summary = run_deploy(model, _connection(model))
    if summary.failed:
        raise SystemExit(1)


@task(help={"json": "print JSON", "lab": "lab file"})
@cli_guard
def status(c, json_=False, lab=None):
    """IPVS table, check states, resolver units and sysctls in force."""
    from lab.ops.status import format_status, read_status

    model = _lab(lab)
    data = read_status(model, _connection(model))
    print(json.dumps(data, indent=2) if json_ else format_status(data))


@task(help={"lab": "lab file"})
@cli_guard
def teardown(c, lab=None):
    """Remove everything deploy made, leaving the VM as the image booted."""
    from lab.ops.deploy import teardown as run_teardown

    model = _lab(lab)
    if run_teardown(model, _connection(model)).failed:
        raise SystemExit(1)


@task(help={"seconds": "how long to load (default 30; may be fractional)",
            "rate": "queries/s (default: [load] rate; 0: closed model)", "lab": "lab file"})
@cli_guard
def load(c, seconds=None, rate=None, lab=None):
    """Run the Locust DNS user against the VIP from the client namespace; keep the records."""
    from chaos.runner import run_load_only
    from lab.model.parse import option_number

    length = option_number("fab load --seconds", 30 if seconds is None else seconds)
    qps = None if rate is None else option_number("fab load --rate", rate, zero=True)
    model = _lab(lab)
    print(run_load_only(model, _connection(model), seconds=length, rate=qps))


@task(help={"experiment": "experiment name (chaos/experiments/NAME.yaml) or a file path",
            "lab": "lab file"})
@cli_guard
def chaos(c, experiment="kill-one", lab=None):
    """Run one chaos experiment while load runs; write reports/runs/<run-id>/."""
    from chaos.experiment import prepare
    from chaos.runner import run_experiment

    model = _lab(lab)
    prepare(experiment, model)  # a bad experiment file fails here, before the lab is touched
    run_dir = run_experiment(model, _connection(model), experiment)
    print(run_dir)


@task(help={"lab": "lab file"})
@cli_guard
def recover(c, lab=None):
    """Finish a run that died (killed, lab lost): roll back its faults, stop its probes, keep its data."""
    from chaos.recover import recover_lab

    print(recover_lab(_lab(lab)))


@task(help={"suite": "suite name (chaos/suites.yaml)", "lab": "lab file"})
@cli_guard
def matrix(c, suite="standard", lab=None):
    """Run a suite of experiments over a grid of settings, then the comparison report."""
    from chaos.matrix import run_matrix

    model = _lab(lab)
    print(run_matrix(model, _connection(model), suite))


@task(help={"run": "run directory (default: the latest under reports/runs/)"})
@cli_guard
def report(c, run=None):
    """Write report.html for a run and print its JSON summary."""
    from reports.cli import report_latest

    report_latest(run)


@task(help={"provider": "qemu | vagrant", "suite": "experiment suite", "lab": "lab file"})
@cli_guard
def demo(c, provider=None, suite="standard", lab=None):
    """The whole job: image, VM, deploy, experiment suite, answers report."""
    from lab.demo import run_demo

    run_demo(_lab(lab, provider), suite=suite, lab_file=str(lab_path(lab)))
