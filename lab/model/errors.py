"""The errors an operator can fix (a base class and one subclass per kind, each with its exit
status), and the CLI guard that prints them as one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FAILED = 1  # an operation failed
EXIT_USAGE = 2  # bad input: the lab file, an experiment, an option
EXIT_UNREACHABLE = 3  # the lab host does not answer, or is not the host we pinned
EXIT_BUSY = 75  # EX_TEMPFAIL: another task holds the lab; try again later


class LabError(Exception):
    """An error the operator can fix: its message is one line naming the file, the key and the fix.
    Each subclass sets the exit status the command line ends with."""

    exit_code = EXIT_USAGE


class ConfigError(LabError):
    """Bad input: lab.toml, a command-line option or argument."""


class ExperimentError(LabError):
    """A bad experiment, suite or matrix file, or a bad argument in one."""


class GuestUnreachable(LabError):
    """The lab host cannot be reached over SSH, the connection was lost, or it is not the pinned host."""

    exit_code = EXIT_UNREACHABLE


class ActionFailed(LabError):
    """An operation on this machine or on the lab host failed (a build, a boot, a command, an action)."""

    exit_code = EXIT_FAILED


class LabBusy(LabError):
    """Another task holds the lab."""

    exit_code = EXIT_BUSY


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
