"""Reading a lab file's tables: TOML, and the file it `extends` merged under it. No validation here
(lab.model.parse checks every table and key)."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lab.model.errors import ConfigError

EXTENDS_RE = re.compile(r"(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+\.toml")
MAX_DEPTH = 4


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into a copy of `base` (tables merge, other values replace)."""
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_tables(p: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A lab file's tables. `extends = "OTHER.toml"` (relative to the file) starts from that file's
    tables and merges this file's over them (tables merge key by key, other values replace)."""
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such lab file; copy lab.toml from the repo root") from None
    except OSError as err:
        raise ConfigError(f"{p}: cannot read: {err.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from None
    if "extends" not in raw:
        return raw
    base = raw.pop("extends")
    if not isinstance(base, str) or not EXTENDS_RE.fullmatch(base):
        raise ConfigError(f"{p}: extends: must name a lab file relative to this one, e.g. \"seed.toml\" or "
                          f"\"../lab.toml\"; got {base!r}")
    parent = p.parent / base
    if parent.resolve() in seen or parent.resolve() == p.resolve() or len(seen) >= MAX_DEPTH:
        raise ConfigError(f"{p}: extends: {base} extends this file again (a cycle); remove one extends")
    return merge(read_tables(parent, (*seen, p.resolve())), raw)
