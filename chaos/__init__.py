"""Chaos: break the lab on purpose while load runs, and record what was done and when.

- `chaos.experiment`: experiment files (Chaos Toolkit shape) loaded and validated before anything runs.
- `chaos.timeline`: the method's activities placed on a time axis (pure).
- `chaos.actions`: fault and rollback actions over a Connection; each returns an event and its undo.
- `chaos.guest`: the shell scripts actions and probes run in the guest (lab.remote.run_script).
- `chaos.probes`: the in-guest IPVS sampler, Keepalived's log, lab health, steady-state probes.
- `chaos.sysctl_probe`: are `net.ipv4.vs.*` sysctls per network namespace?
- `chaos.journal`: journal.json, in the Chaos Toolkit journal spirit.
- `chaos.runner`: one experiment end to end into reports/runs/<run-id>/; it emits `chaos.events` to
  its subscribers (`chaos.progress` on the console, the journal, events.jsonl) and leans on
  `chaos.rundir` (naming), `chaos.recording` (the guest recorders) and `chaos.collect` (the data).
- `chaos.matrix`: a suite of experiments over a grid of settings, then the comparison report.
- `chaos.ctk`: the same experiments under Chaos Toolkit (`chaos validate`, `chaos run`,
  `chaos discover dnslab`).
"""


def discover(discover_system: bool = True) -> dict:
    """What `chaos discover dnslab --no-install` lists (Chaos Toolkit finds it in the dnslab
    distribution's `chaos` package): dnslab's actions and probes, chaos/ctk/."""
    from chaos.ctk import discover as ctk_discover

    return ctk_discover(discover_system)
