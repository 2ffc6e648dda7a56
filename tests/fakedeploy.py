"""A deploy's Summary as the demos read it (changed, failed, seconds, the time of each step), for the demo
tests that fake everything that would boot or measure."""

from __future__ import annotations

UP = "compose: project up with the current compose.yaml, every container running"
READY = "ready: IPVS lists every real server (and, after a change, every resolver answers)"


class Deployed:
    """A deploy that changed `changed` steps (60 s) or none (5 s); `failed` makes Docker's daemon step fail.
    Its compose steps: `docker-compose up -d` 20 s, then 3 s until the VIP answers."""

    def __init__(self, changed: int, failed: int = 0) -> None:
        self.changed, self.failed, self.seconds = changed, failed, 60.0 if changed else 5.0
        self.step_seconds = {"docker: daemon running": 4.0, UP: 20.0, "netns: rs1": 1.0, READY: 2.0}
        self.failed_step, self.error = ("docker: daemon running", "no daemon") if failed else (None, "")

    def changed_steps(self) -> list[str]:
        return [UP] if self.changed else []
