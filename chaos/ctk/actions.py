"""dnslab's fault and rollback actions (chaos.actions) with Chaos Toolkit's calling convention.

`kill_resolver(resolver="rs2")` and so on: each returns the event it recorded (events.jsonl's shape).
Within `chaos run` of an experiment that declares the dnslab control, the action runs in that run:
its event and undo go to the run directory. Without it, it connects to the lab itself
(`configuration.dnslab_lab`, else $DNSLAB_LAB, else lab.toml).
"""

from __future__ import annotations

from chaos import actions as _actions
from chaos.ctk.calls import wrap as _wrap
from chaos.ctk.session import act as _act

__all__ = sorted(_actions.ACTIONS)

globals().update({name: _wrap(func, _act, __name__) for name, func in _actions.ACTIONS.items()})
