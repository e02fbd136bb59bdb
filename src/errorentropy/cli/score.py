"""The ``score``, ``decompose`` and ``params`` commands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from errorentropy.cli.args import (
    add_data_options,
    add_model_options,
    add_scoring_options,
    scoring_options,
)
from errorentropy.cli.messages import delay_library_progress
from errorentropy.data.corpus import load_corpus
from errorentropy.errors import UserError
from errorentropy.scoring.results import RESULT_FILES, merge_saved, summarize, write_result
from errorentropy.stats.convergence import Convergence
from errorentropy.storage import commit_folder


def check_out_folder(out: Path) -> None:
    """Refuse an --out that cannot become a result folder, before any work is done.

    The folder is written beside itself and renamed into place, so its parent must be writable;
    an existing folder is replaced whole, so it may hold nothing but an earlier result's files.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RESULT_FILES)
        if foreign:
            raise UserError(
                f"--out {out} already holds other files "
                f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                "pass a new folder or an earlier result folder"
            )
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out} lies inside {existing}, which is a file; pass a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write in {existing}; pass a folder you can write to")


def run_score(args: argparse.Namespace) -> int:
    """errorentropy score: one model over one corpus, written to --out."""
    from errorentropy.models.loading import load_model
    from errorentropy.scoring.api import score_corpus
    from errorentropy.scoring.distributed import init_distributed, is_main_process

    options = scoring_options(args)  # every option checked before data or a model is loaded
    out = Path(args.out)
    check_out_folder(out)
    corpus = load_corpus(
        args.data, samples=args.samples, seed=args.seed, text_field=args.text_field
    )
    init_distributed(args.device)  # under torchrun: join the group, shard documents, rank 0 writes
    delay_library_progress()
    model, tokenizer = load_model(
        args.model,
        revision=args.revision,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        device_map=args.device_map,
    )
    scored = score_corpus(
        model,
        tokenizer,
        corpus.documents,
        options,
        model_name=args.model,
        revision=args.revision,
        data_settings=corpus.settings(),
        data_label=args.data,
        progress=not args.quiet,
    )
    if not is_main_process():
        return 0
    summary = scored.summary

    # The whole folder appears at once: never a new histogram beside an old summary.
    try:
        commit_folder(
            out.parent, out.name, lambda directory: write_result(directory, scored, summary)
        )
    except OSError as exc:
        raise UserError(
            f"could not write the result to --out {out}: {exc.strerror or exc}; "
            "free disk space or pass a folder you can write to"
        ) from exc
    # The bias left in EE on stderr, then the summary: its JSON line stays stdout's last line.
    statement = Convergence.from_dict(summary["ee_convergence"]).describe()
    print(f"errorentropy score: {statement}", file=sys.stderr, flush=True)
    print(json.dumps(summary))
    return 0


def run_decompose(args: argparse.Namespace) -> int:
    """errorentropy decompose: merge saved histograms and print their decomposition."""
    histogram, settings = merge_saved(args.results, allow_mixed=args.allow_mixed)
    print(json.dumps(summarize(histogram, settings)))
    return 0


def run_params(args: argparse.Namespace) -> int:
    """errorentropy params: parameter counts from the config alone."""
    from errorentropy.models.loading import count_parameters_from_config

    counts = count_parameters_from_config(args.model, args.revision, args.trust_remote_code)
    print(json.dumps({"model": args.model, **counts.as_dict()}))
    return 0


def add_commands(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add score, decompose and params."""
    score = subparsers.add_parser(
        "score",
        parents=[common],
        help="score a model over a corpus and decompose its cross-entropy",
        description=run_score.__doc__,
    )
    add_model_options(score)
    add_data_options(score)
    add_scoring_options(score)
    score.add_argument(
        "--out", required=True, help="result folder (histogram.json, tokens.npz, summary.json)"
    )
    score.set_defaults(func=run_score)

    decompose = subparsers.add_parser(
        "decompose",
        parents=[common],
        help="merge saved histograms and decompose",
        description=run_decompose.__doc__,
    )
    decompose.add_argument("results", nargs="+", help="result folders or histogram.json files")
    decompose.add_argument(
        "--allow-mixed",
        action="store_true",
        help="merge results of different models or scoring settings anyway",
    )
    decompose.set_defaults(func=run_decompose)

    params = subparsers.add_parser(
        "params",
        parents=[common],
        help="parameter counts (total, embedding, non_embedding)",
        description=run_params.__doc__,
    )
    params.add_argument("model", help="hub id or local model folder")
    params.add_argument(
        "--revision",
        default=None,
        help="hub branch/tag (Pythia: step1000) or a local checkpoints/NAME folder",
    )
    params.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a hub model's own Python code (only for models you trust)",
    )
    params.set_defaults(func=run_params)
