"""The ``report`` command: figures, tables and report.html of a sweep folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from errorentropy.cli.args import non_negative_int
from errorentropy.errors import UserError
from errorentropy.report.page import build_report


def run_report(args: argparse.Namespace) -> int:
    """errorentropy report: the paper's figures and tables from a sweep folder, as report.md and
    a self-contained report.html."""
    sweep_dir = Path(args.sweep_dir)
    if not sweep_dir.is_dir():
        raise UserError(
            f"{sweep_dir} is not a folder; pass the --out folder of `errorentropy sweep`"
        )
    result = build_report(sweep_dir, run_fit=not args.no_fit, n_boot=args.n_boot, seed=args.seed)
    print(
        json.dumps(
            {k: v for k, v in result.items() if k != "figures"}
            | {"n_figures": len(result["figures"]) // 2}
        )
    )
    return 0


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``errorentropy report DIR [--no-fit]``."""
    parser = subparsers.add_parser(
        "report",
        parents=[common],
        help="figures, tables and a summary from a sweep folder (report.md, report.html)",
        description=run_report.__doc__,
    )
    parser.add_argument("sweep_dir", help="a sweep folder (the --out of `errorentropy sweep`)")
    parser.add_argument(
        "--no-fit",
        action="store_true",
        help="skip the bootstrap: plain least-squares fits without intervals "
        "(a fits.json current for the cells is read instead, whatever its settings)",
    )
    parser.add_argument(
        "--n-boot",
        type=non_negative_int,
        default=1000,
        help="document-level bootstrap resamples for the intervals (0: none; default 1000)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="bootstrap seed, >= 0 (default 0)"
    )
    parser.set_defaults(func=run_report)
