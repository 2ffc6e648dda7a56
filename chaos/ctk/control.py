"""The Chaos Toolkit control every shipped experiment declares: `chaos run` then runs dnslab's run.

    controls:
      - name: dnslab
        provider: {type: python, module: chaos.ctk.control}

Hooks (chaoslib calls them around the experiment, hypothesis, method, rollbacks and each activity):
before the experiment, everything `fab chaos` does before the method (a failure stops the experiment:
Chaos Toolkit then rolls back and this control still collects); before each hypothesis, the window of
records its probes judge; around the method, its start and the recovery after it; before each method
activity, its pause to its offset (moved by the slip), and after it, the slip (chaos.timeline.Pace);
after the experiment, the rollbacks and undos not yet played, stop, collect, and Chaos Toolkit's
journal into the run directory.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from chaos.ctk import session as s
from lab.model.errors import LabError, error_line

logger = logging.getLogger("chaostoolkit")


def _stop(err: BaseException) -> None:
    """Log the one-line error and stop the experiment (chaoslib ignores other errors of a control)."""
    from chaoslib.exceptions import InterruptExecution

    line = error_line(err if isinstance(err, LabError) else f"{type(err).__name__}: {err}")
    logger.error(line)
    raise InterruptExecution(line) from None


def validate_control(control: dict[str, Any]) -> None:
    """`chaos validate` calls this with the control entry only; dnslab's own checks (argument types, the
    lab's resolvers, the dnslab extension) need the experiment, which is the `experiment` of chaoslib's
    `validate_controls` frame a few calls up. A problem is Chaos Toolkit's InvalidActivity, in one line."""
    import inspect

    from chaoslib.exceptions import InvalidActivity

    frame = inspect.currentframe()
    experiment = None
    for _ in range(6):
        frame = frame.f_back if frame is not None else None
        candidate = frame.f_locals.get("experiment") if frame is not None else None
        if isinstance(candidate, dict) and "method" in candidate:
            experiment = candidate
            break
    del frame
    if experiment is None:
        return
    try:
        s.experiment_of(experiment, s.lab_of(_plain_configuration(experiment)))
    except LabError as err:
        raise InvalidActivity(" ".join(str(err).split())) from None


def _plain_configuration(experiment: dict[str, Any]) -> dict[str, Any]:
    from chaoslib.configuration import load_configuration

    return load_configuration(experiment.get("configuration") or {})


def before_experiment_control(context: dict[str, Any], configuration: dict[str, Any] | None = None,
                              **_: Any) -> None:
    try:
        s.start(context, configuration)
    except Exception as err:  # noqa: BLE001 - any failure must stop the experiment, in one line
        _stop(err)


def before_hypothesis_control(context: dict[str, Any], **_: Any) -> None:
    session = s.ACTIVE
    if session is not None:
        try:
            s.judge_window(session, "after" if session.method_t0 is not None else "before")
        except Exception as err:  # noqa: BLE001
            _stop(err)


def before_method_control(context: dict[str, Any], **_: Any) -> None:
    session = s.ACTIVE
    if session is not None:
        session.run.note("method_start")
        session.method_t0 = time.monotonic()


def after_method_control(context: dict[str, Any], **_: Any) -> None:
    session = s.ACTIVE
    if session is not None:
        s.end_of_method(session)


def before_rollback_control(context: dict[str, Any], **_: Any) -> None:
    if s.ACTIVE is not None:
        s.ACTIVE.phase = "rollbacks"


def before_activity_control(context: dict[str, Any], **_: Any) -> None:
    if s.ACTIVE is not None:
        try:
            s.before_activity(s.ACTIVE, context)
        except LabError as err:  # the run fell too far behind its plan
            _stop(err)


def after_activity_control(context: dict[str, Any], **_: Any) -> None:
    if s.ACTIVE is not None:
        s.after_activity(s.ACTIVE, context)


def after_experiment_control(context: dict[str, Any], state: dict[str, Any] | None = None, **_: Any) -> None:
    session = s.ACTIVE
    if session is None:
        return
    try:
        run_dir = s.finish(session, state)
    except LabError as err:
        logger.error(error_line(err))
        return
    logger.info(f"dnslab run directory: {run_dir}")


def cleanup_control() -> None:
    """When the experiment ended without `after_experiment_control`: roll back and collect anyway."""
    if s.ACTIVE is not None:
        after_experiment_control({}, None)
