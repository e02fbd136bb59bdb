"""The ``sweep`` and ``merge`` commands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..sweep import EXIT_CELLS_FAILED, format_states, merge_sweeps, run_sweep


def run_sweep_command(args: argparse.Namespace) -> int:
    """errorentropy sweep: score every (model, revision, dataset) cell of a TOML spec into --out,
    resumably."""
    from ..distributed import is_main_process, launch_from_env

    outcome = run_sweep(
        args.spec,
        args.out,
        dry_run=args.dry_run,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
    )
    launch = launch_from_env()
    if not is_main_process() or (launch is not None and not launch.is_main):
        return 0  # rank 0 reports for the launch (a dry run joins no process group)
    if args.dry_run:
        print(format_states(outcome.states))
        print(outcome.summary_line())
        return 0
    print(outcome.summary_line(), file=sys.stderr)
    return 0 if outcome.ok else EXIT_CELLS_FAILED


def run_merge_command(args: argparse.Namespace) -> int:
    """errorentropy merge: unite the cells of sweep folders from several machines into OUT."""
    outcome = merge_sweeps(args.out, args.sources)
    print(
        f"merge {outcome.out_dir}: {len(outcome.copied)} cells copied, "
        f"{len(outcome.present)} already there, {len(outcome.failures)} failure records "
        "copied",
        file=sys.stderr,
    )
    return 0


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """The ``sweep`` and ``merge`` subcommands."""
    sweep = subparsers.add_parser(
        "sweep",
        parents=[common],
        help="run every (model, revision, dataset) cell of a TOML spec, resumably",
        description=run_sweep_command.__doc__,
    )
    sweep.add_argument("spec", help="sweep spec (TOML; see docs/sweep.md)")
    sweep.add_argument(
        "--out",
        required=True,
        help="sweep folder: cells/<cell_id>/ per finished cell, a copy of the spec",
    )
    sweep.add_argument(
        "--dry-run",
        action="store_true",
        help="list every cell as done, failed or pending; load nothing",
    )
    sweep.add_argument(
        "--retry-failed", action="store_true", help="also recompute cells recorded as failed"
    )
    sweep.set_defaults(func=run_sweep_command)
    merge = subparsers.add_parser(
        "merge",
        parents=[common],
        help="unite sweep folders from several machines",
        description=run_merge_command.__doc__,
    )
    merge.add_argument("out", help="the merged sweep folder (created if absent)")
    merge.add_argument("sources", nargs="+", help="sweep folders to copy cells from")
    merge.set_defaults(func=run_merge_command)
