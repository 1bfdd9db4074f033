"""``fedshield`` command line: ``train``, ``attack``, ``reproduce``, ``data``.

Each sub-command lives in :mod:`fedshield.commands` (one module each, exposing
``add_parser(subparsers)`` that sets ``func``). Bad input prints one line and exits 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import FedshieldError

COMMANDS = ["train", "attack", "reproduce", "data"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedshield",
        description="Defend federated learning against gradient leakage (Wang et al., INFOCOM 2022): "
                    "simulate, attack, reproduce the paper's book.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"fedshield.commands.{name}")
        except ModuleNotFoundError as e:  # a command not built yet
            if e.name != f"fedshield.commands.{name}":
                raise
            continue
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FedshieldError as e:
        print(f"fedshield {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (finished results are cached; re-run to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
