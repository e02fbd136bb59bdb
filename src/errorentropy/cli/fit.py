"""The ``fit`` command: scaling-law fits of a sweep folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from errorentropy.cli.args import integer_list, non_negative_int, positive_int
from errorentropy.errors import UserError
from errorentropy.fits.fit import TABLES_DIR, fit_sweep, write_fits
from errorentropy.report.tables import rbp_markdown, table1_markdown, write_tables


def run_fit(args: argparse.Namespace) -> int:
    """errorentropy fit: power-law fits of CE, EE, SA and Conf against non-embedding parameters,
    per family and over all models, with bootstrap intervals, an extrapolation test and a
    saturating fit, the relative-based law of -log RBP_k for each k, the bias left in each cell's
    EE and whether EE's exponent has settled with the documents; writes DIR/fits.json and
    DIR/tables/, prints Table 1 and the RBP_k table."""
    sweep_dir = Path(args.sweep)
    if not sweep_dir.is_dir():
        raise UserError(
            f"{sweep_dir} is not a folder; "
            "pass the sweep folder given to `errorentropy sweep --out`"
        )
    result = fit_sweep(
        sweep_dir, n_boot=args.n_boot, seed=args.seed, holdout=args.holdout, rbp_ks=args.rbp_k
    )
    written = write_fits(sweep_dir, result)
    write_tables(result, sweep_dir / TABLES_DIR)
    print(table1_markdown(result))
    if result.rbp_fits:
        print(rbp_markdown(result))
    for note in result.notes:
        if note.kind != "biased-bootstrap":
            print(f"note: {note.message}")
    if not args.quiet:
        print(f"wrote {written} and tables in {sweep_dir / TABLES_DIR}")
    return 0


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register ``errorentropy fit``."""
    parser = subparsers.add_parser(
        "fit",
        parents=[common],
        help="scaling-law fits of a sweep (Tables 1 and 2, bootstrap intervals, extrapolation)",
        description=run_fit.__doc__,
    )
    parser.add_argument("sweep", metavar="DIR", help="sweep folder (holds cells/)")
    parser.add_argument(
        "--n-boot",
        "--bootstrap",
        dest="n_boot",
        type=non_negative_int,
        default=1000,
        help="document-level bootstrap replicates (0: no intervals; default 1000)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="bootstrap seed, >= 0 (default 0)"
    )
    parser.add_argument(
        "--holdout",
        type=positive_int,
        default=None,
        help="largest models held out in the extrapolation test "
        "(default: about a third of each group, leaving 3 to fit)",
    )
    parser.add_argument(
        "--rbp-k",
        type=integer_list,
        default=None,
        help="k of the -log RBP_k fits, comma-separated (default: the ks the cells' summaries "
        "record, else 1,10,100,1000)",
    )
    parser.set_defaults(func=run_fit)
