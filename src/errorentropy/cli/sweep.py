"""The ``sweep`` and ``merge`` commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from errorentropy.cli.args import positive_float, positive_int
from errorentropy.errors import UserError
from errorentropy.sweep.launch import run_workers, worker_devices
from errorentropy.sweep.merge import merge_sweeps
from errorentropy.sweep.plan import EXIT_CELLS_FAILED, format_states
from errorentropy.sweep.run import run_sweep, survey
from errorentropy.sweep.spec import load_spec


def run_sweep_command(args: argparse.Namespace) -> int:
    """errorentropy sweep: score every (model, revision, dataset) cell of a TOML spec into --out,
    resumably; any number of these may work on one --out at once (docs/scale.md)."""
    from errorentropy.scoring.distributed import is_main_process, launch_from_env

    if args.workers > 1 and not args.dry_run:
        return _run_workers(args)
    outcome = run_sweep(
        args.spec,
        args.out,
        dry_run=args.dry_run,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        lease_s=args.lease,
    )
    launch = launch_from_env()
    if not is_main_process() or (launch is not None and not launch.is_main):
        return 0  # rank 0 reports for the launch (a dry run joins no process group)
    if args.dry_run:
        print(format_states(outcome.states, outcome.tokens))
        legend = tokens_legend([s.cell.cell_id for s in outcome.states], outcome.tokens)
        if legend:
            print(legend)
        for note in outcome.notes():
            print(note)
        print(outcome.summary_line())
        return 0
    for note in outcome.notes():
        print(f"sweep: {note}", file=sys.stderr)
    print(outcome.summary_line(), file=sys.stderr)
    return 0 if outcome.ok else EXIT_CELLS_FAILED


def tokens_legend(cells: list[str], tokens: dict[str, Any]) -> str:
    """The dry run's key to the marks its TOKENS column uses for ``cells`` ("" when none):
    ``~`` for an estimate from characters, ``?`` for a cell with no count."""
    marks = []
    if any(getattr(t, "how", None) == "characters" for t in tokens.values()):
        marks.append("~ estimated from characters (the tokenizer is not on disk)")
    if any(cell not in tokens for cell in cells):
        marks.append("? not known (the dataset could not be read; running the cell says why)")
    return "TOKENS: " + "; ".join(marks) if marks else ""


def _run_workers(args: argparse.Namespace) -> int:
    """``--workers K``: K worker processes on this machine, then one summary line."""
    from errorentropy.scoring.distributed import launch_from_env

    if launch_from_env() is not None:
        raise UserError(
            "--workers starts its own processes; under torchrun, leave it out (each torchrun "
            "launch is one worker)"
        )
    spec = load_spec(args.spec)
    devices = worker_devices(args.workers, spec.run.device, spec.run.device_map)
    command = [sys.executable, "-m", "errorentropy", "sweep", str(args.spec), "--out", args.out]
    if args.quiet:
        command.append("--quiet")
    if args.retry_failed:
        command.append("--retry-failed")
    if args.lease is not None:
        command += ["--lease", str(args.lease)]
    codes = run_workers(command, devices)
    outcome = survey(spec, Path(args.out), lease_s=args.lease, estimate=False)
    for note in outcome.notes():
        print(f"sweep: {note}", file=sys.stderr)
    print(
        f"{outcome.summary_line()}; {len(codes)} workers ended with "
        f"{', '.join(str(c) for c in codes)}",
        file=sys.stderr,
    )
    if outcome.count("failed"):
        return EXIT_CELLS_FAILED
    return 0 if outcome.ok else max((c for c in codes if c), default=1)


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
        help="list every cell as done, running (by which worker), failed or pending, with the "
        "tokens it scores and the time left; loads tokenizers, no model, and writes nothing",
    )
    sweep.add_argument(
        "--retry-failed", action="store_true", help="also recompute cells recorded as failed"
    )
    sweep.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="K",
        help="start K worker processes on this machine, each on its own GPU (or with cores/K "
        "threads on a CPU); default 1",
    )
    sweep.add_argument(
        "--lease",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="how long a worker's claim on a cell outlives its last heartbeat before another "
        "worker takes the cell over (default: $ERRORENTROPY_LEASE_S or 300)",
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
