"""Golden files of the error messages: the exact one-line text of each config, experiment, suite and
command-line error, one case a line in tests/golden/errors/*.txt (`INPUT => MESSAGE`).

`DNSLAB_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden_errors.py` rewrites the messages (the
inputs and comments stay as written).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.experiment import load_experiment
from chaos.matrix import cells, check_cells, load_suite
from lab.model.errors import LabError
from lab.model.parse import merge, parse_lab
from tests.conftest import REPO
from tests.golden_files import GOLDEN, compare

ERRORS = GOLDEN / "errors"
ARROW = " => "
FAB = str(Path(sys.executable).with_name("fab"))
NO_ERROR = "(no error)"


def cases(name: str) -> list[str]:
    """The inputs of a golden file, in order (comments and blank lines skipped)."""
    lines = (ERRORS / name).read_text().splitlines()
    out = []
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        assert ARROW in line, f"{name}: no ' => ' in {line!r}"
        out.append(line.split(ARROW, 1)[0])
    return out


def check_golden(name: str, message_of: Callable[[str], str]) -> None:
    """Compute the message of every case and compare the whole file with its golden text."""
    lines = []
    for line in (ERRORS / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            lines.append(line)
            continue
        given = line.split(ARROW, 1)[0]
        message = message_of(given).replace(str(REPO), "REPO")  # no machine's path in a golden file
        assert message != NO_ERROR, f"{name}: {given!r} is accepted: a case must be an error"
        assert message and "\n" not in message, f"{given!r}: not one line: {message!r}"
        lines.append(f"{given}{ARROW}{message}")
    compare("\n".join(lines) + "\n", ERRORS / name)


def unescape(text: str) -> str:
    r"""OLD/NEW as written in a golden file: \n and \t stand for a newline and a tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")


def edit(base: str, given: str) -> str:
    """`OLD | NEW`: the base text with the first OLD replaced by NEW."""
    old, sep, new = given.partition(" | ")
    assert sep, f"no ' | ' in {given!r}"
    old, new = unescape(old), unescape(new)
    assert old in base, f"{old!r} is not in the base file"
    return base.replace(old, new, 1)


def lab_error(raw: dict, given: str) -> str:
    try:
        parse_lab(merge(raw, tomllib.loads(given)), "lab.toml")
    except LabError as err:
        return str(err)
    return NO_ERROR


def test_config_errors(raw_lab):
    check_golden("lab.txt", lambda given: lab_error(raw_lab, given))


def test_experiment_errors(raw_lab, tmp_path, monkeypatch):
    base = (ERRORS / "experiment.yaml").read_text()
    lab = parse_lab(raw_lab, "lab.toml")
    load_experiment(str(ERRORS / "experiment.yaml"), lab)  # the base itself is valid
    monkeypatch.chdir(tmp_path)

    def message(given: str) -> str:
        Path("exp.yaml").write_text(edit(base, given))
        try:
            load_experiment("exp.yaml", lab)
        except LabError as err:
            return str(err)
        return NO_ERROR

    check_golden("experiments.txt", message)


def test_suite_errors(raw_lab, tmp_path, monkeypatch):
    base = (ERRORS / "suites.yaml").read_text()
    lab = parse_lab(raw_lab, "lab.toml")
    check_cells(lab, cells(load_suite("good", ERRORS / "suites.yaml")))  # the base itself is valid
    monkeypatch.chdir(tmp_path)

    def message(given: str) -> str:
        Path("suites.yaml").write_text(edit(base, given))
        try:
            check_cells(lab, cells(load_suite("good", Path("suites.yaml"))))
        except LabError as err:
            return str(err)
        return NO_ERROR

    check_golden("suites.txt", message)


def cli_files(root: Path) -> None:
    """The files the command-line cases name, written in their working directory."""
    lab_toml = (REPO / "lab.toml").read_text()
    (root / "malformed.toml").write_text("[network\nvip = 1\n")
    (root / "vlan9999.toml").write_text(lab_toml.replace("vlan_id = 53", "vlan_id = 9999"))
    (root / "a-file").write_text("keep me")
    exp = (ERRORS / "experiment.yaml").read_text()
    (root / "rs9.yaml").write_text(exp.replace("{resolver: rs2}", "{resolver: rs9}", 1))
    (root / "x y;id.yaml").write_text(exp)
    suites = (ERRORS / "suites.yaml").read_text()
    (root / "suites.yaml").write_text(suites.replace("[fresh, reuse]", "[fresh, pool]"))


def test_command_line_errors(tmp_path):
    """`python -m MODULE ARGS` or `fab TASK ARGS` from a directory holding `cli_files`: exit status and
    the stderr line; nothing is written (no run directory, --out left alone)."""
    cli_files(tmp_path)
    env = {**os.environ, "DNSLAB_STATE": str(tmp_path / "state"), "DNSLAB_RUNS": str(tmp_path / "runs")}

    def message(given: str) -> str:
        argv = shlex.split(given)
        argv = [FAB, "-r", str(REPO), *argv[1:]] if argv[0] == "fab" else [sys.executable, *argv[1:]]
        result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        return f"[exit {result.returncode}] {result.stderr.strip()}"

    check_golden("cli.txt", message)
    assert (tmp_path / "a-file").read_text() == "keep me"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["lab.txt", "experiments.txt", "suites.txt", "cli.txt"])
def test_every_golden_case_is_distinct(name):
    inputs = cases(name)
    assert len(inputs) == len(set(inputs)), [x for x in inputs if inputs.count(x) > 1]
