"""One error type for bad input and failed operations, and the CLI guard that prints it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USAGE = 2


class LabError(Exception):
    """An error the operator can fix: its message is one line naming the file, the key and the fix."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def error_line(message: object) -> str:
    """The one line an error is printed as: `dnslab: error: MESSAGE`, whitespace folded."""
    return "dnslab: error: " + " ".join(str(message).split())


def fail(message: str, exit_code: int = EXIT_USAGE) -> None:
    """Print a one-line error to stderr and exit, with no traceback."""
    print(error_line(message), file=sys.stderr)
    raise SystemExit(exit_code)


def cli_guard(func: Callable[P, R]) -> Callable[P, R]:
    """Run a command-line entry point; turn LabError and Ctrl-C into one-line messages."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LabError as err:
            fail(str(err), err.exit_code)
        except KeyboardInterrupt as err:  # SIGINT, or chaos.interrupts.Interrupted (SIGTERM, SIGHUP too)
            fail(str(err) or "interrupted", getattr(err, "exit_code", 130))
        raise AssertionError("unreachable")

    return wrapper
