"""`python -m chaos check FILE... [--lab FILE]`: validate experiment files without a VM.

Each file (or shipped experiment name) is loaded exactly as `fab chaos` loads it: its structure,
the resolvers and sysctls it names, and every argument against the annotation of the function it
goes to, on the lab file's model. A `suites.yaml` is checked suite by suite, every cell with it.
Prints `FILE: ok (...)` or the same one-line error `fab chaos` gives; exits 2 when any file is bad.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.model.config import Lab
from lab.model.errors import EXIT_USAGE, ExperimentError, LabError, cli_guard, error_line
from lab.model.parse import load_lab


def check_file(name: str, lab: Lab) -> str:
    """What `name` holds, when it is valid (a LabError otherwise)."""
    from chaos.experiment import lab_for, load_experiment

    path = Path(name)
    if path.name == "suites.yaml":
        return _check_suites(path, lab)
    experiment = load_experiment(name, lab)
    lab_for(experiment, lab)
    return (f"{experiment.title!r}: {len(experiment.method)} method step(s), "
            f"{len(experiment.rollbacks)} rollback(s), {len(experiment.hypothesis)} steady-state probe(s)")


def _check_suites(path: Path, lab: Lab) -> str:
    from chaos.experiment import read_yaml
    from chaos.matrix import cells, check_cells, load_suite

    data, _ = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ExperimentError(f"{path}: must map suite names to {{runs: [...]}}")
    count = 0
    for suite in data:
        suite_cells = cells(load_suite(suite, path))
        check_cells(lab, suite_cells)
        count += len(suite_cells)
    return f"{len(data)} suite(s), {count} cell(s)"


@cli_guard
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate experiment files (no VM needed)")
    check.add_argument("files", nargs="+", metavar="FILE", help="experiment file or shipped experiment name")
    check.add_argument("--lab", help="lab file (default: lab.toml)")
    args = parser.parse_args(argv)
    lab = load_lab(args.lab)
    bad = 0
    for name in args.files:
        try:
            print(f"{name}: ok ({check_file(name, lab)})")
        except LabError as err:
            print(error_line(err), file=sys.stderr)
            bad += 1
    return EXIT_USAGE if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
