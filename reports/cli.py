"""Command line: `python -m reports RUN_DIR`, `... compare RUN_DIR... [--out FILE]`, `... index`,
`... compose --compose MATRIX_JSON --seed MATRIX_JSON --reference MATRIX_JSON [--deploy JSON]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab.local.state import runs_dir
from lab.model.errors import LabError, cli_guard
from reports.build import build_report
from reports.index import write_index


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "queries.csv").is_file()


def latest_run(base: Path) -> Path:
    """The most recently written run directory under `base`."""
    runs = [p for p in base.iterdir() if is_run_dir(p)] if base.is_dir() else []
    if not runs:
        raise LabError(
            f"{base}: no run directories (with queries.csv) yet; run `fab chaos` or `fab load` first"
        )
    return max(runs, key=lambda p: ((p / "queries.csv").stat().st_mtime, p.name))


def report_latest(run: str | None = None) -> Path:
    """`fab report [RUN]`: report RUN (default: the latest run), print its JSON summary, refresh the index."""
    base = runs_dir()
    run_dir = Path(run) if run else latest_run(base)
    print(json.dumps(build_report(run_dir), indent=2))
    if run_dir.resolve().parent == base.resolve():
        index = write_index(base, base.parent / "index.html")
        print(f"report: {run_dir / 'report.html'}\nindex: {index}", file=sys.stderr)
    return run_dir / "report.html"


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description)


@cli_guard
def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m reports`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "compare":
        from reports.compare import write_comparison

        p = _parser("python -m reports compare", "Compare runs side by side: settings, metrics and charts.")
        p.add_argument("runs", nargs="+", type=Path, help="run directories")
        p.add_argument("--out", type=Path, default=None, help="output HTML (default: reports/compare.html)")
        opts = p.parse_args(args[1:])
        out = opts.out or runs_dir().parent / "compare.html"
        print(write_comparison(opts.runs, out))
        return 0
    if args and args[0] == "index":
        p = _parser("python -m reports index", "Write an HTML index listing every run.")
        p.add_argument("--runs", type=Path, default=None, help="runs directory (default: reports/runs)")
        p.add_argument("--out", type=Path, default=None, help="output HTML (default: reports/index.html)")
        opts = p.parse_args(args[1:])
        base = opts.runs or runs_dir()
        print(write_index(base, opts.out or base.parent / "index.html"))
        return 0
    if args and args[0] == "compose":
        from reports.compose_page import write_compose

        p = _parser("python -m reports compose", "The compose runtime's answers page from the matrix "
                    "directories of the compose and seed-compose suites and a systemd reference.")
        for name in ("compose", "seed", "reference"):
            p.add_argument(f"--{name}", type=Path, default=None, help=f"matrix.json of the {name} suite")
        p.add_argument("--deploy", type=Path, default=None, help="the demo's compose-deploy.json")
        p.add_argument("--out", type=Path, default=None, help="output HTML (default: reports/compose.html)")
        opts = p.parse_args(args[1:])
        print(write_compose(opts.compose, opts.seed, opts.reference, opts.deploy,
                            opts.out or runs_dir().parent / "compose.html")[0])
        return 0
    p = _parser(
        "python -m reports",
        "Write RUN_DIR/report.html and print the run's JSON summary. "
        "Also: `python -m reports compare RUN_DIR...`, `python -m reports index`, "
        "`python -m reports compose --compose M --seed M --reference M`.",
    )
    p.add_argument("run", type=Path, help="run directory (reports/runs/<run-id>)")
    p.add_argument("--journal", type=Path, default=None,
                   help="Chaos Toolkit journal to show with it (default: RUN_DIR/ctk-journal.json if any)")
    opts = p.parse_args(args)
    print(json.dumps(build_report(opts.run, opts.journal), indent=2))
    return 0
