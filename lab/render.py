"""Rendering: pure functions from the lab model to the text of every file deploy installs."""

from __future__ import annotations

from collections.abc import Sequence

import jinja2

from lab.config import Lab, Resolver

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("lab", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def render_unbound(
    lab: Lab,
    resolver: Resolver,
    *,
    port: int = 53,
    threads: int = 1,
    username: str = "unbound",
    extra_allow: Sequence[str] = (),
) -> str:
    """unbound.conf for one resolver: its own address only, the lab zone only, never recursing."""
    return _ENV.get_template("unbound.conf.j2").render(
        name=resolver.name,
        address=str(resolver.address),
        port=port,
        threads=threads,
        username=username,
        allow=[str(lab.network.subnet), *extra_allow],
        source=lab.source,
    )
