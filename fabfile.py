"""dnslab's Fabric tasks. Thin: each parses its options, calls the application layer (dnslab/tasks.py)
and prints what it returns. Run `fab --list` for the list and `fab --help TASK` for a task's options."""

from __future__ import annotations

from fabric import task

from dnslab import tasks as app
from dnslab.tasks import cli_guard


@task(help={"provider": "qemu | vagrant | ssh (default: [vm] provider in lab.toml)",
            "force": "rebuild even when the cached image matches its inputs",
            "lab": "lab file (default: lab.toml)"})
@cli_guard
def image(c, provider=None, force=False, lab=None):
    """Build (or reuse) the lab image of [vm] release: mmdebstrap base, packer layer, Vagrant box."""
    print(app.image(lab, provider, force))


@task(help={"provider": "qemu | vagrant | ssh", "lab": "lab file (default: lab.toml)",
            "accept-host-key": "ssh provider: pin the host's key when none is pinned yet (check it first)"})
@cli_guard
def up(c, provider=None, lab=None, accept_host_key=False):
    """Bring the lab VM up (building the image when needed) and wait for SSH."""
    print(app.up(lab, provider, accept_host_key))


@task(help={"provider": "qemu | vagrant | ssh", "lab": "lab file (default: lab.toml)"})
@cli_guard
def down(c, provider=None, lab=None):
    """Stop the lab VM and everything the provider started for it."""
    app.down(lab, provider)


@task(positional=["cmd"], help={"cmd": "command to run in the lab VM", "lab": "lab file"})
@cli_guard
def ssh(c, cmd=None, lab=None):
    """Run a command in the lab VM: `fab ssh 'ip -br addr'`."""
    raise SystemExit(app.ssh(cmd, lab))


@task(help={"json": "print JSON", "lab": "lab file"})
@cli_guard
def info(c, json_=False, lab=None):
    """Provider, endpoint, image and kernel of the lab."""
    print(app.info(lab, json_))


@task(help={"lab": "lab file (default: lab.toml)"})
@cli_guard
def deploy(c, lab=None):
    """Build the IPVS / Keepalived / Unbound stack in the lab from lab.toml. Idempotent."""
    if app.deploy(lab):
        raise SystemExit(1)


@task(help={"json": "print JSON", "lab": "lab file"})
@cli_guard
def status(c, json_=False, lab=None):
    """IPVS table, check states, resolver units and sysctls in force."""
    print(app.status(lab, json_))


@task(help={"lab": "lab file"})
@cli_guard
def teardown(c, lab=None):
    """Remove everything deploy made, leaving the VM as the image booted."""
    if app.teardown(lab):
        raise SystemExit(1)


@task(help={"seconds": "how long to load (default 30; may be fractional)",
            "rate": "queries/s (default: [load] rate; 0: closed model)", "lab": "lab file"})
@cli_guard
def load(c, seconds=None, rate=None, lab=None):
    """Run the Locust DNS user against the VIP from the client namespace; keep the records."""
    print(app.load(lab, seconds, rate))


@task(help={"experiment": "experiment name (chaos/experiments/NAME.yaml) or a file path",
            "lab": "lab file"})
@cli_guard
def chaos(c, experiment="kill-one", lab=None):
    """Run one chaos experiment while load runs; write reports/runs/<run-id>/."""
    print(app.chaos(lab, experiment))


@task(help={"lab": "lab file"})
@cli_guard
def recover(c, lab=None):
    """Finish a run that died (killed, lab lost): roll back its faults, stop its probes, keep its data."""
    print(app.recover(lab))


@task(help={"suite": "suite name (chaos/suites.yaml)", "lab": "lab file",
            "releases": "the suite on each guest release in turn (up, suite, down): bookworm,trixie"})
@cli_guard
def matrix(c, suite="standard", lab=None, releases=None):
    """Run a suite of experiments over a grid of settings, then the comparison report."""
    print(app.matrix(lab, suite, releases))


@task(help={"run": "run directory (default: the latest under reports/runs/)"})
@cli_guard
def report(c, run=None):
    """Write report.html for a run and print its JSON summary."""
    app.report(run)


@task(help={"provider": "qemu | vagrant", "lab": "lab file",
            "suite": "experiment suite; releases: the whole job on each guest release in turn (qemu); "
                     "compose: the compose runtime's answers on one fresh VM (qemu)"})
@cli_guard
def demo(c, provider=None, suite="standard", lab=None):
    """The whole job: image, VM, deploy, experiment suite, answers report."""
    app.demo(lab, provider, suite)
