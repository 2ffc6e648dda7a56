"""How a value of the wrong type is named in a one-line config error: the kind in words and a TOML
example of a good value (pure)."""

from __future__ import annotations

from typing import Any


def _unquoted(text: str, kind: type) -> bool:
    """Is `text` a good value of `kind` written as a string ("22", "true")?"""
    if kind is bool:
        return text.strip().lower() in ("true", "false")
    try:
        kind(text)
    except ValueError:
        return False
    return True


# How a type is named in a one-line error, with a TOML example of a good value.
KIND_WORDS: dict[type, tuple[str, str]] = {int: ("a whole number", "3"), float: ("a number", "1.5"),
                                           bool: ("true or false (unquoted)", "true"),
                                           str: ("a quoted string", '"text"')}


def wrong_kind(key: str, kind: type, value: Any) -> str:
    """'must be a whole number, got '22'; write e.g. port = 22' for `key` = `value` of the wrong kind."""
    word, example = KIND_WORDS.get(kind, (kind.__name__, "..."))
    if isinstance(value, str) and kind in (int, float, bool) and _unquoted(value, kind):
        example = value.strip().lower()  # the right value, quoted: say so
    return f"must be {word}, got {value!r}; write e.g. {key} = {example}"
