"""Checks for values that reach a guest shell: experiment arguments against the annotations of the
function they are passed to, and route lines (what `ip route show` prints, replayed by `link_up`).

Pure: each check returns a problem (a short phrase for a one-line error) or None.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Network
from typing import Any

ROUTE_KEYS = {"proto": "word", "scope": "word", "table": "word", "src": "ip", "via": "ip", "metric": "int"}
ROUTE_FLAGS = ("onlink",)
ROUTE_IGNORED = ("linkdown", "dead")  # state flags `ip route show` prints; not part of the route
_WORD = re.compile(r"[A-Za-z0-9_]+")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]*")


def route_tokens(text: str) -> tuple[str, ...]:
    """`ip route` arguments of one route line, checked token by token; ValueError when one is not allowed.

    Accepts `DEST [KEY VALUE]... [onlink]` with DEST `default` or an IPv4 network, KEY one of proto, scope,
    table (a word), src, via (an IPv4 address) or metric (an integer). `dev` is not accepted: the caller
    names the device."""
    words = text.split()
    if not words:
        raise ValueError("empty route")
    dest, rest = words[0], words[1:]
    if dest != "default":
        try:
            IPv4Network(dest, strict=False)
        except ValueError:
            raise ValueError(f"route destination {dest!r} is not 'default' or an IPv4 network") from None
    out = [dest]
    i = 0
    while i < len(rest):
        key = rest[i]
        if key in ROUTE_IGNORED:
            i += 1
            continue
        if key in ROUTE_FLAGS:
            out.append(key)
            i += 1
            continue
        kind = ROUTE_KEYS.get(key)
        if kind is None or i + 1 >= len(rest):
            allowed = ", ".join([*ROUTE_KEYS, *ROUTE_FLAGS])
            raise ValueError(f"route word {key!r} is not allowed (allowed: {allowed}, each with a value)")
        value = rest[i + 1]
        if not _value_ok(kind, value):
            what = {"ip": "an IPv4 address", "int": "an integer", "word": "a word"}[kind]
            raise ValueError(f"route {key} {value!r} is not {what}")
        out += [key, value]
        i += 2
    return tuple(out)


def _value_ok(kind: str, value: str) -> bool:
    if kind == "ip":
        try:
            IPv4Address(value)
        except ValueError:
            return False
        return True
    if kind == "int":
        return value.isascii() and value.isdigit()
    return bool(_WORD.fullmatch(value))


def type_problem(value: Any, annotation: Any) -> str | None:
    """Why `value` does not fit `annotation` (str, int, float, bool, None, list[X], X | Y, Any), or None.

    Numbers must be finite and not negative (no action takes a negative number); strings one line."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        problems = [type_problem(value, option) for option in typing.get_args(annotation)]
        if None in problems:
            return None
        names = " or ".join(_name(option) for option in typing.get_args(annotation))
        return f"must be {names}, got {value!r}"
    if origin is list:
        if not isinstance(value, list):
            return f"must be a list, got {value!r}"
        (item,) = typing.get_args(annotation) or (Any,)
        for i, element in enumerate(value):
            problem = type_problem(element, item)
            if problem:
                return f"item {i}: {problem}"
        return None
    if annotation is type(None):
        return None if value is None else f"must be null, got {value!r}"
    if annotation is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if annotation in (int, float):
        ok_type = isinstance(value, int) or (annotation is float and isinstance(value, float))
        if isinstance(value, bool) or not ok_type:
            return f"must be {'an integer' if annotation is int else 'a number'}, got {value!r}"
        if not math.isfinite(value) or value < 0:
            return f"must be a finite number >= 0, got {value!r}"
        return None
    if annotation is str:
        if not isinstance(value, str):
            return f"must be a string, got {value!r}"
        return None if _TEXT.fullmatch(value) else f"must be one line of text, got {value!r}"
    return f"cannot be checked against {annotation!r}"


def _name(annotation: Any) -> str:
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def argument_problems(func: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, str]:
    """Each argument that does not fit its parameter's annotation, with the problem (by name).

    Arguments collected by `**kwargs` are left to the caller (they need the lab to check)."""
    hints = typing.get_type_hints(func)
    params = inspect.signature(func).parameters
    out = {}
    for name, value in arguments.items():
        param = params.get(name)
        if param is None or param.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        problem = type_problem(value, hints.get(name, Any))
        if problem:
            out[name] = problem
    return out


LINK_FAULTS = ("link_down", "link_up", "netem", "netem_clear")


def runtime_problem(func: str, runtime: str) -> str | None:
    """Why action `func` cannot run on a lab of `runtime`, or None: under compose Docker owns each
    container's interface, so the faults on a resolver's link need the systemd runtime."""
    if func in LINK_FAULTS and runtime == "compose":
        return (f"{func} acts on the resolver's link, which needs the systemd runtime (Docker owns a "
                'container\'s interface); use a process fault or [stack] runtime = "systemd"')
    return None
