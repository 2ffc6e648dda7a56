"""Golden files: compare text with a file under tests/golden/, or rewrite it with DNSLAB_UPDATE_GOLDEN=1."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("DNSLAB_UPDATE_GOLDEN") == "1"
HINT = "if the change is intended: DNSLAB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden_*.py"


def compare(actual: str, expected_path: Path) -> None:
    """Fail with a unified diff when `actual` differs from the golden file (rewrite it when updating)."""
    if UPDATE:
        expected_path.write_text(actual)
        return
    if not expected_path.exists():
        pytest.fail(f"{expected_path} is missing; {HINT}")
    expected = expected_path.read_text()
    if actual != expected:
        diff = difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                    str(expected_path), "now")
        pytest.fail(f"{expected_path} differs ({HINT}):\n{''.join(diff)}", pytrace=False)
