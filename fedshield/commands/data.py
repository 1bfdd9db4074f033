"""``fedshield data``: fetch (with checksum verification) or decode-and-cache the datasets.

``fedshield data download mnist fmnist cifar10 [--data-dir DIR] [--mirror URL]`` and
``fedshield data prepare cifar10 [--cifar10-source auto|pickle|jpeg|exact]``
(``python -m fedshield data ...`` is the same command). The downloads, checksums and decoding are
:mod:`fedshield.data`'s (:func:`~fedshield.data.download`, :func:`~fedshield.data.load_dataset`);
this module only parses the arguments and prints.
"""
from __future__ import annotations

import argparse

from ..data import CIFAR10_SOURCES, DATASETS, cache_root, canonical_name, data_dir, download, load_dataset


def _add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="COMMAND")
    d = sub.add_parser("download", help="download datasets from the official sources")
    d.add_argument("names", nargs="+", help=f"datasets: {', '.join(DATASETS)}")
    d.add_argument("--data-dir", default=None, help="target directory (default: $FEDSHIELD_DATA or ./data)")
    d.add_argument("--mirror", action="append", default=None,
                   help="URL prefix to fetch from instead of the official ones (repeatable)")
    q = sub.add_parser("prepare", help="decode both splits once and cache them")
    q.add_argument("names", nargs="+", help=f"datasets: {', '.join(DATASETS)}")
    q.add_argument("--data-dir", default=None, help="data directory (default: $FEDSHIELD_DATA or ./data)")
    q.add_argument("--cifar10-source", default="auto", choices=CIFAR10_SOURCES)


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="download or prepare the datasets",
                       description="Fetch (with checksum verification) or decode-and-cache fedshield's datasets.")
    _add_arguments(p)
    p.set_defaults(func=_run, data_parser=p)


def _run(args) -> int:
    if not args.data_command:
        args.data_parser.print_help()
        return 2
    if args.data_command == "download":
        download(args.names, args.data_dir, mirrors=args.mirror)
        print(f"{', '.join(args.names)}: verified files in {data_dir(args.data_dir)}")
        return 0
    for nm in args.names:
        for split in ("train", "test"):
            x, y = load_dataset(nm, split, args.data_dir, cifar10_source=args.cifar10_source)
            print(f"{canonical_name(nm)} {split}: {tuple(x.shape)}, {int(y.max()) + 1} classes")
    print(f"cache: {cache_root(args.data_dir)}")
    return 0

