"""Shared fixtures: the repo's lab description as plain data."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def raw_lab() -> dict:
    """lab.toml at the repo root, as plain data (a fresh copy per test)."""
    return tomllib.loads((REPO / "lab.toml").read_text())
