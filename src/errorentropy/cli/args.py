"""Argument types and option groups shared by the commands; scoring flags come from
:data:`errorentropy.options.OPTIONS`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from errorentropy.errors import UserError
from errorentropy.options import OPTIONS, ScoreOptions


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


def positive_float(text: str) -> float:
    """Argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """Argparse type: an integer >= 1."""
    return _integer_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """Argparse type: an integer >= 0."""
    return _integer_at_least(text, 0)


class Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UserError` (one line) instead of printing usage and exiting."""

    # typeshed declares error() -> NoReturn; raising is just as final.
    def error(self, message: str) -> None:  # type: ignore[override]
        """Raise the parse error as a one-line :class:`UserError` naming the subcommand."""
        if len(message) > 300:  # argparse echoes the offending value; keep the line readable
            message = message[:300] + "..."
        # "errorentropy: error: " comes first.
        command = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
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
        help="wikipedia | c4 | github | hf:PATH[:CONFIG[:SPLIT]] (any hub dataset) | "
        "builtin:prose | builtin:code | FILE.jsonl | FILE.parquet | FILE.txt | FOLDER",
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
    """Options turning documents into scored tokens: one flag per field of ScoreOptions."""
    for option in OPTIONS:
        if not option.flag:
            continue
        if option.kind is bool:
            parser.add_argument(option.cli_flag, action="store_true", help=option.help)
            continue
        kind: Any = option.kind
        shown = option.default
        if option.kind is int:
            kind = integer if option.minimum is None else _bounded(option.minimum)
        elif option.kind is tuple:
            kind = integer_list
            shown = ",".join(map(str, option.default))
        default = "" if option.default is None else f" (default {shown})"
        parser.add_argument(
            option.cli_flag,
            type=kind,
            default=option.default,
            choices=option.choices,
            help=option.help + default,
        )


def integer_list(text: str) -> tuple[int, ...]:
    """Argparse type: comma-separated integers (``1,10,100``); their bounds are the option's to
    check."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    return tuple(integer(item) for item in items)


def _bounded(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        return _integer_at_least(text, minimum)

    parse.__name__ = f"integer >= {minimum}"
    return parse


def scoring_options(args: argparse.Namespace) -> ScoreOptions:
    """The ScoreOptions of parsed command-line arguments."""
    values = {o.name: getattr(args, o.name) for o in OPTIONS if o.flag}
    return ScoreOptions.from_mapping(values, "score")
