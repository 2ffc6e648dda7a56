"""`python -m lab check|render`: validate the lab file; render every file deploy installs."""

from __future__ import annotations

import argparse

from lab.config import load_lab
from lab.errors import cli_guard


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
        from lab.render import write_tree

        for path in write_tree(lab, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
