"""The ``errorentropy`` command line. ``main(argv)`` is callable in-process and returns the exit
code.

Every failure a user can cause ends as one line ``errorentropy: error: ...`` on stderr and a
non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from errorentropy.cli import demo, fit, report, score, sweep
from errorentropy.cli.args import Parser
from errorentropy.cli.messages import for_command_line
from errorentropy.errors import UserError
from errorentropy.version import __version__


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
    parser = Parser(
        prog="errorentropy",
        description="What scales in cross-entropy: split a language model's corpus cross-entropy "
        "exactly into Error-Entropy + Self-Alignment - Confidence, sweep models and "
        "checkpoints, fit scaling laws, report.",
        epilog="Start with `errorentropy demo`; `errorentropy COMMAND --help` for each command.",
        parents=[top],
    )
    parser.add_argument("--version", action="version", version=f"errorentropy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    for module in (score, sweep, fit, report, demo):
        module.add_commands(sub, common)
    return parser


def one_line(message: str) -> str:
    """A message as one line: any line breaks it picked up from user data become spaces."""
    return " ".join(message.split("\n")).replace("\r", " ")


def silence_library_progress() -> None:
    """--quiet: no progress bars from transformers/datasets either (weights loading, downloads)."""
    # Read when transformers/datasets are first imported.
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()


def conclude(status: int) -> int:
    """Under torchrun, agree on the exit status with the other processes and leave the group
    together (see :func:`errorentropy.scoring.distributed.conclude`); otherwise ``status``. A
    command that
    never loaded torch (decompose, fit, report) pays nothing for this."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return status
    from errorentropy.scoring.distributed import conclude as agree_and_leave

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
        print(f"errorentropy: error: {one_line(for_command_line(exc))}", file=sys.stderr)
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
            f"errorentropy: internal error: {type(exc).__name__}: {text} (rerun with "
            "--debug for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    run()
