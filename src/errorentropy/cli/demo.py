"""The ``demo`` command: the paper in miniature, offline."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from errorentropy.cli.args import integer, positive_float, positive_int
from errorentropy.demo.objective import objective_names
from errorentropy.demo.pipeline import run_demo
from errorentropy.demo.settings import DEFAULT_SIZES, TINY_SIZES, DemoSettings, tiny_settings
from errorentropy.demo.training import parse_shapes
from errorentropy.errors import UserError


def settings_from_args(args: argparse.Namespace) -> DemoSettings:
    """Demo settings from the command line: ``--tiny`` starts from the CI version, flags
    override."""
    base = (
        tiny_settings(args.seed)
        if args.tiny
        else DemoSettings(shapes=tuple(parse_shapes(DEFAULT_SIZES)), seed=args.seed)
    )
    changes: dict[str, Any] = {}
    if args.sizes:
        changes["shapes"] = tuple(parse_shapes(args.sizes))
    for name in ("batch_size", "block", "lr", "vocab_size", "eval_docs", "max_length", "n_boot"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    settings = replace(base, **changes)
    if args.steps is not None and args.tokens is not None:
        raise UserError(
            "--steps and --tokens both given; pass one (tokens = steps x batch-size x block)"
        )
    if args.steps is not None:
        settings = replace(settings, steps=args.steps)
    if args.tokens is not None:
        per_step = settings.batch_size * settings.block
        settings = replace(settings, steps=max(1, -(-args.tokens // per_step)))
    if settings.lr <= 0:
        raise UserError(f"--lr must be positive (got {settings.lr})")
    if settings.max_length > settings.block:
        raise UserError(
            f"--max-length {settings.max_length} exceeds the models' context (--block "
            f"{settings.block}); pass --max-length <= --block"
        )
    return settings


def run_demo_command(args: argparse.Namespace) -> int:
    """errorentropy demo: train a ladder of small GPT-NeoX models on built-in text, sweep every
    checkpoint on held-out prose and code, fit and report (offline, cached)."""
    settings = settings_from_args(args)
    objectives = objective_names(args.objectives)
    summary = run_demo(
        Path(args.out),
        settings,
        device=args.device,
        progress=not args.quiet,
        analyse=not args.no_analysis,
        objectives=objectives,
    )
    print(
        json.dumps(
            {
                "out": summary["out"],
                "timings": summary["timings"],
                "report": summary.get("analysis", {}).get("report_html"),
            }
        )
    )
    return 0


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``errorentropy demo``."""
    p = subparsers.add_parser(
        "demo",
        parents=[common],
        help="the paper in miniature: train a small GPT-NeoX ladder offline, sweep, fit, report",
        description=run_demo_command.__doc__,
    )
    p.add_argument(
        "--out",
        default="errorentropy-demo",
        help="demo folder (default ./errorentropy-demo); reused on a second run",
    )
    _add_training_options(p)
    _add_analysis_options(p)
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (training and scoring)"
    )
    p.add_argument(
        "--seed",
        type=integer,
        default=0,
        help="seed of the split, the data order and every initialisation (default 0)",
    )
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the seconds-long version (CI): three very small models, a few steps",
    )
    p.add_argument(
        "--no-analysis", action="store_true", help="stop after training and writing sweep.toml"
    )
    p.add_argument(
        "--objectives",
        default="ce",
        help="training objectives, comma-separated (default ce: the demo as it is); e.g. "
        "ce,ce+conf,ce+0.5conf,soft-ee,ce+soft-ee trains one ladder per objective and compares "
        "them in DIR/objectives/sweep/",
    )
    p.set_defaults(func=run_demo_command)


def _add_training_options(p: argparse.ArgumentParser) -> None:
    """The models of the ladder and how they are trained."""
    p.add_argument(
        "--sizes",
        default=None,
        help=f"HIDDENxLAYERS list (default {DEFAULT_SIZES}; --tiny: {TINY_SIZES})",
    )
    p.add_argument(
        "--steps", type=positive_int, default=None, help="optimizer steps per model (default 384)"
    )
    p.add_argument(
        "--tokens",
        type=positive_int,
        default=None,
        help="training tokens per model instead of --steps",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=None, help="blocks per step (default 8)"
    )
    p.add_argument(
        "--block",
        type=positive_int,
        default=None,
        help="tokens per block = model context (default 128)",
    )
    p.add_argument(
        "--lr", type=positive_float, default=None, help="peak learning rate (default 2e-3)"
    )
    p.add_argument(
        "--vocab-size", type=positive_int, default=None, help="BPE entries (default 4096)"
    )


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    """What is scored and how the fits resample."""
    p.add_argument(
        "--eval-docs",
        type=positive_int,
        default=None,
        help="held-out documents scored per corpus (default 64)",
    )
    p.add_argument(
        "--max-length",
        type=positive_int,
        default=None,
        help="tokens scored per held-out document (default 128)",
    )
    p.add_argument(
        "--n-boot",
        type=positive_int,
        default=None,
        help="bootstrap resamples for the fits' intervals (default 1000)",
    )
