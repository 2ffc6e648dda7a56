"""Chaos Toolkit callables made from dnslab's functions: the same parameters without the first one
(a `Target` or the query records), plus `configuration` and `secrets`. Signatures, annotations and
docstrings are carried over, so `chaos validate` binds arguments and `chaos discover` lists them
exactly as they are."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

EXTRA = (inspect.Parameter("configuration", inspect.Parameter.KEYWORD_ONLY, default=None,
                           annotation=dict[str, Any] | None),
         inspect.Parameter("secrets", inspect.Parameter.KEYWORD_ONLY, default=None,
                           annotation=dict[str, Any] | None))


def ctk_signature(func: Callable[..., Any], returns: Any) -> inspect.Signature:
    """`func`'s signature without its first parameter, annotations resolved, with keyword-only
    `configuration` and `secrets` (before a `**kwargs`, which must stay last)."""
    hints = typing.get_type_hints(func)
    params = [p.replace(annotation=hints.get(p.name, p.annotation))
              for p in list(inspect.signature(func).parameters.values())[1:]]
    var_kw = [p for p in params if p.kind is inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    return inspect.Signature([*rest, *EXTRA, *var_kw], return_annotation=returns)


def wrap(func: Callable[..., Any], runner: Callable[..., Any], module: str,
         returns: Any = dict[str, Any]) -> Callable[..., Any]:
    """A function named like `func` whose call `f(**arguments, configuration=..., secrets=...)` becomes
    `runner(func, arguments, configuration)`."""

    sig = ctk_signature(func, returns)

    @functools.wraps(func)
    def call(*args: Any, configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None,
             **arguments: Any) -> Any:
        bound = sig.bind(*args, configuration=configuration, secrets=secrets, **arguments)
        given = {k: v for k, v in bound.arguments.items() if k not in ("configuration", "secrets")}
        kwargs = given.pop(next((p.name for p in inspect.signature(func).parameters.values()
                                 if p.kind is inspect.Parameter.VAR_KEYWORD), ""), {})
        return runner(func, {**given, **kwargs}, configuration or {})

    call.__signature__ = sig  # type: ignore[attr-defined]
    call.__module__ = module
    del call.__wrapped__  # inspect.signature must read __signature__, not follow the original
    return call
