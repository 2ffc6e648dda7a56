"""dnslab as a Chaos Toolkit extension: `chaos validate` / `chaos run` / `chaos discover dnslab`.

- `chaos.ctk.actions`, `chaos.ctk.probes`: dnslab's actions and probes with Chaos Toolkit's calling
  convention (keyword arguments plus `configuration` / `secrets`), made from the same functions
  `fab chaos` runs (chaos.actions, chaos.probes, chaos.sysctl_probe, chaos.check_cost).
- `chaos.ctk.control`: the control the experiment files declare: it drives dnslab's `Run` (deploy,
  health, load, IPVS sampler, timeline, rollback, collection into reports/runs/<id>/).
- `chaos.ctk.session`: the run in progress that the actions and probes act in.

The lab is the `dnslab_lab` configuration value (a lab file), else $DNSLAB_LAB, else lab.toml.
"""

from __future__ import annotations

from typing import Any

__all__ = ["discover"]
__version__ = "0.1.0"


def discover(discover_system: bool = True) -> dict[str, Any]:
    """What `chaos discover dnslab --no-install` lists: every action and probe, with its arguments."""
    from chaoslib.discovery.discover import discover_actions, discover_probes, initialize_discovery_result

    discovery = initialize_discovery_result("dnslab", __version__, "dnslab")
    discovery["activities"].extend(discover_actions("chaos.ctk.actions"))
    discovery["activities"].extend(discover_probes("chaos.ctk.probes"))
    return discovery
