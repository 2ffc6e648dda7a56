"""`python -m lab check|render`: validate the lab file; render every file deploy installs."""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.model.config import Lab
from lab.model.errors import ConfigError, cli_guard
from lab.model.parse import load_lab


@cli_guard
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate the lab file")
    check.add_argument("--lab", help="lab file (default: lab.toml)")
    render = sub.add_parser("render", help="write every file deploy would install under --out")
    render.add_argument("--lab", help="lab file (default: lab.toml)")
    render.add_argument("--out", required=True, help="directory to write into")
    args = parser.parse_args(argv)
    lab = load_lab(args.lab)
    if args.command == "check":
        print(f"{lab.source}: ok ({len(lab.resolvers)} resolvers, VIP {lab.network.vip})")
    else:
        for path in _render(lab, Path(args.out)):
            print(path)
    return 0


def _render(lab: Lab, out: Path) -> list[Path]:
    """write_tree with one-line errors for an --out that is not a writable directory."""
    from lab.render.files import write_tree

    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: not a directory; give a directory (created when missing)")
        return write_tree(lab, out)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write {err.filename or out}: {err.strerror}; "
                          "give a directory you can write to") from None


if __name__ == "__main__":
    raise SystemExit(main())
