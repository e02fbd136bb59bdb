"""The ``errorentropy`` command line. ``main(argv)`` is callable in-process and returns the exit code.

Every failure a user can cause ends as one line ``errorentropy: error: ...`` on stderr and a
non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UserError

# Modules that add their own subcommands through ``add_commands(subparsers, common)``.
COMMAND_MODULES: tuple[str, ...] = ("sweep", "fitting_cli", "report", "demo")


def integer(text: str) -> int:
    """Argparse type: any integer, with a clear message otherwise."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _integer_at_least(text: str, minimum: int) -> int:
    value = integer(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    return _integer_at_least(text, 0)


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UserError` (one line) instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if len(message) > 300:  # argparse echoes the offending value; keep the line readable
            message = message[:300] + "..."
        command = (
            self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        )  # "errorentropy: error: " comes first
        raise UserError(f"{command}{message} (see --help)")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options naming and placing a model."""
    parser.add_argument(
        "--model", required=True, help="hub id (EleutherAI/pythia-160m) or local model folder"
    )
    parser.add_argument(
        "--revision",
        default=None,
        help="hub branch/tag (Pythia: step1000) or a local checkpoints/NAME folder",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights dtype; auto = checkpoint dtype on GPU, float32 on CPU",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--device-map",
        default=None,
        help="pass 'auto' to spread a model too large for one GPU over all GPUs",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a hub model's own Python code (only for models you trust)",
    )


def add_data_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Options naming and sampling a corpus."""
    parser.add_argument(
        "--data",
        required=required,
        help="wikipedia | c4 | github | builtin:prose | builtin:code | FILE.jsonl | FILE.parquet | FILE.txt | FOLDER",
    )
    parser.add_argument(
        "--text-field", default="text", help="JSON/parquet field holding the text (default: text)"
    )
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="documents to take after shuffling (presets: 1000)",
    )
    parser.add_argument("--seed", type=integer, default=None, help="shuffle seed (presets: 42)")


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """Options turning documents into scored tokens."""
    parser.add_argument(
        "--max-length", type=integer, default=512, help="tokens per window (default 512)"
    )
    parser.add_argument(
        "--window",
        default="truncate",
        choices=["truncate", "stride"],
        help="truncate: first max-length tokens (the paper); stride: every token once",
    )
    parser.add_argument(
        "--stride",
        type=integer,
        default=None,
        help="with --window stride: tokens between window starts (< max-length)",
    )
    parser.add_argument(
        "--bos",
        default="auto",
        choices=["auto", "always", "never"],
        help="auto: tokenizer default; always: prepend BOS (or EOS) so the first token is scored",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, help="windows per forward pass"
    )
    parser.add_argument(
        "--head",
        default="auto",
        choices=["auto", "chunked", "fused", "full"],
        help="auto: our own output head when verified against the model's logits (the fused Triton kernel on CUDA, else torch chunks), else full logits",
    )
    parser.add_argument(
        "--vocab-chunk",
        type=positive_int,
        default=8192,
        help="vocabulary entries per chunk of the output head",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also accumulate the sorted-probability profile (paper Fig. 5)",
    )


def scoring_options(args: argparse.Namespace) -> Any:
    from .engine import ScoreOptions

    return ScoreOptions(
        max_length=args.max_length,
        window=args.window,
        stride=args.stride,
        bos=args.bos,
        batch_size=args.batch_size,
        head=args.head,
        vocab_chunk=args.vocab_chunk,
        profile=args.profile,
    )


def check_out_folder(out: Path) -> None:
    """Refuse an --out that cannot become a result folder, before any work is done.

    The folder is written beside itself and renamed into place, so its parent must be writable;
    an existing folder is replaced whole, so it may hold nothing but an earlier result's files.
    """
    from .results import RESULT_FILES

    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RESULT_FILES)
        if foreign:
            raise UserError(
                f"--out {out} already holds other files ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); pass a new folder or an earlier result folder"
            )
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"--out {out} lies inside {existing}, which is a file; pass a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: cannot write in {existing}; pass a folder you can write to")


def run_score(args: argparse.Namespace) -> int:
    """Errorentropy score: one model over one corpus, written to --out."""
    from .corpus import load_corpus
    from .distributed import init_distributed, is_main_process, shard_and_score
    from .models import load_model
    from .results import summarize, write_result
    from .storage import commit_folder
    from .windows import check_window_options

    check_window_options(args.max_length, args.window, args.stride)
    out = Path(args.out)
    check_out_folder(out)
    corpus = load_corpus(
        args.data, samples=args.samples, seed=args.seed, text_field=args.text_field
    )
    launch = init_distributed(
        args.device
    )  # under torchrun: join the group, shard documents, rank 0 writes
    model, tokenizer = load_model(
        args.model,
        revision=args.revision,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        device_map=args.device_map,
    )
    started = time.perf_counter()
    result = shard_and_score(
        model, tokenizer, corpus.documents, scoring_options(args), progress=not args.quiet
    )
    elapsed = time.perf_counter() - started
    if result.histogram.n_tokens == 0:
        raise UserError(
            f"every document of {args.data} was skipped (fewer than 2 tokens each: {result.histogram.n_skipped} documents); use longer documents or --bos always"
        )
    if not is_main_process():
        return 0
    settings = {
        "model": args.model,
        "revision": args.revision,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "device": str(next(model.parameters()).device),
        **corpus.settings(),
        **scoring_options(args).settings(),
        "head_path": result.head_path,
        "notes": result.notes,
        "n_windows": result.n_windows,
        "processes": launch.world_size if launch else 1,
        "elapsed_s": round(elapsed, 3),
        "tokens_per_s": round(result.histogram.n_tokens / elapsed, 1) if elapsed > 0 else None,
    }
    summary = summarize(result.histogram, settings)

    # The whole folder appears at once: never a new histogram beside an old summary.
    try:
        commit_folder(
            out.parent, out.name, lambda directory: write_result(directory, result, summary)
        )
    except OSError as exc:
        raise UserError(
            f"could not write the result to --out {out}: {exc.strerror or exc}; free disk space or pass a folder you can write to"
        ) from exc
    print(json.dumps(summary))
    return 0


def run_decompose(args: argparse.Namespace) -> int:
    """Errorentropy decompose: merge saved histograms and print their decomposition."""
    from .results import merge_saved, summarize

    histogram, settings = merge_saved(args.results, allow_mixed=args.allow_mixed)
    print(json.dumps(summarize(histogram, settings)))
    return 0


def run_params(args: argparse.Namespace) -> int:
    """Errorentropy params: parameter counts from the config alone."""
    from .models import count_parameters_from_config

    counts = count_parameters_from_config(args.model, args.revision, args.trust_remote_code)
    print(json.dumps({"model": args.model, **counts.as_dict()}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full parser; subcommand help comes from the functions' docstrings."""
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    top.add_argument("--quiet", action="store_true", help="no progress bars")
    # The same options after the subcommand; SUPPRESS keeps a subcommand's default from
    # overwriting `errorentropy --quiet score ...`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks instead of one-line errors",
    )
    common.add_argument(
        "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )
    parser = _Parser(
        prog="errorentropy",
        description="What scales in cross-entropy: split a language model's corpus cross-entropy exactly into Error-Entropy + Self-Alignment - Confidence, sweep models and checkpoints, fit scaling laws, report.",
        epilog="Start with `errorentropy demo`; `errorentropy COMMAND --help` for each command.",
        parents=[top],
    )
    parser.add_argument("--version", action="version", version=f"errorentropy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    score = sub.add_parser(
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

    decompose = sub.add_parser(
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

    params = sub.add_parser(
        "params",
        parents=[common],
        help="parameter counts (total, embedding, non_embedding)",
        description=run_params.__doc__,
    )
    params.add_argument("model", help="hub id or local model folder")
    params.add_argument("--revision", default=None)
    params.add_argument("--trust-remote-code", action="store_true")
    params.set_defaults(func=run_params)

    for name in COMMAND_MODULES:
        importlib.import_module(f"errorentropy.{name}").add_commands(sub, common)
    return parser


def one_line(message: str) -> str:
    """A message as one line: any line breaks it picked up from user data become spaces."""
    return " ".join(message.split("\n")).replace("\r", " ")


def silence_library_progress() -> None:
    """--quiet: no progress bars from transformers/datasets either (weights loading, downloads)."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = (
        "1"  # read when transformers/datasets are first imported
    )
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()


def conclude(status: int) -> int:
    """Under torchrun, agree on the exit status with the other processes and leave the group
    together (see :func:`errorentropy.distributed.conclude`); otherwise ``status``. A command that
    never loaded torch (decompose, fit, report) pays nothing for this."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return status
    from .distributed import conclude as agree_and_leave

    global _LEFT_GROUP
    _LEFT_GROUP = True
    return agree_and_leave(status)


_LEFT_GROUP = False  # set once this process has left a torchrun process group


def run() -> None:
    """The console script: :func:`main`, then exit. A process that left a torchrun group exits
    at once (``os._exit``, after flushing its output): its results are written and the group is
    gone, and the C++ teardown of gloo's threads at interpreter exit can abort a process
    ("terminate called without an active exception"), which makes torchrun kill the others."""
    status = main()
    if _LEFT_GROUP:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 1 internal error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "quiet", False):
            silence_library_progress()
        func: Callable[[argparse.Namespace], int] = args.func
        return conclude(func(args))
    except UserError as exc:
        if debug:
            raise
        print(f"errorentropy: error: {one_line(str(exc))}", file=sys.stderr)
        try:
            return conclude(2)
        except Exception:  # noqa: BLE001 - a peer already gone: the error above is the answer
            return 2
    except KeyboardInterrupt:
        print("errorentropy: interrupted; finished results are kept", file=sys.stderr)
        return 130
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0) if isinstance(exc.code, int) else 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a one-line error
        if debug or os.environ.get("ERRORENTROPY_DEBUG"):
            raise
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"errorentropy: internal error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    run()
