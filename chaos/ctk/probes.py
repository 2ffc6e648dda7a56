"""dnslab's probes with Chaos Toolkit's calling convention; each returns a measured value.

Steady-state probes (a `tolerance` judges them): `success_ratio`, `latency_ms(percentile)` and
`query_count` over the last `window_s` seconds of query records (the dnslab extension's window),
taken when Chaos Toolkit checks the hypothesis: after the steady window, and after the recovery.
They need the run the dnslab control drives. Method probes (`probe_sysctl_namespaces`,
`probe_check_cost`) return their JSON document and keep it in the run directory.
"""

from __future__ import annotations

from chaos.ctk.calls import wrap as _wrap
from chaos.ctk.session import method_probe as _method_probe
from chaos.ctk.session import steady_probe as _steady_probe
from chaos.experiment import method_probes as _method_probes
from chaos.experiment import steady_probes as _steady_probes

_STEADY, _METHOD = _steady_probes(), _method_probes()
__all__ = sorted([*_STEADY, *_METHOD])

globals().update({name: _wrap(func, _steady_probe, __name__, returns=float)
                  for name, func in _STEADY.items()})
globals().update({name: _wrap(func, _method_probe, __name__) for name, func in _METHOD.items()})
