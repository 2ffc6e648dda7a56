"""lab.local.atomic: a file is replaced whole or not at all, and nothing of the attempt is left behind."""

from __future__ import annotations

import json
import os

import pytest

from lab.local.atomic import write_atomic, write_json


def test_replaces_the_file_whole(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text("old")
    assert write_json(path, {"a": 1}) == path
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.read_text().endswith("}\n") and oct(path.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_a_crash_before_the_rename_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    path.write_text('{"t_ns": 1}\n')

    def disk_gone(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", disk_gone)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomic(path, '{"t_ns": 1}\n{"t_ns": 2}\n')
    assert path.read_text() == '{"t_ns": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl"]


def test_bytes_and_mode(tmp_path):
    path = write_atomic(tmp_path / "x.bin", b"\x00\x01", mode=0o600)
    assert path.read_bytes() == b"\x00\x01" and path.stat().st_mode & 0o777 == 0o600


def test_demo_state_is_written_with_it(tmp_path, monkeypatch):
    from dnslab import stages
    from lab.local import atomic

    monkeypatch.setenv("DNSLAB_STATE", str(tmp_path))
    written = []
    real = atomic.write_atomic
    monkeypatch.setattr(atomic, "write_atomic",
                        lambda p, d, mode=0o644: written.append(p) or real(p, d, mode))
    stages._remember(matrix_quick="x")
    stages._remember(probe="y")
    assert written == [tmp_path / "demo.json"] * 2
    assert json.loads((tmp_path / "demo.json").read_text()) == {"matrix_quick": "x", "probe": "y"}
