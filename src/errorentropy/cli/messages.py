"""What the command line says: errors in its own terms (the keyword names of an
:class:`~errorentropy.errors.ArgumentError` become the flags that set them), and no library
progress bar before a one-line error."""

from __future__ import annotations

import re

from errorentropy.errors import ArgumentError, UserError
from errorentropy.options import OPTIONS

# A keyword and the flag that sets it: every scoring option's own (from its field definition),
# and the few whose flag is named otherwise.
FLAGS: dict[str, str] = {
    **{option.name: option.cli_flag for option in OPTIONS},
    "spec": "--data",
    "name": "--model",
    "rbp_ks": "--rbp-k",
    "spec_path": "SPEC",
    "sweep_dir": "SWEEP_DIR",
    "out_dir": "--out",
}

# Seconds before a library's progress bar shows: work that ends (or fails) sooner prints none.
PROGRESS_DELAY_S = 2.0


def flag_of(name: str) -> str:
    """The flag of keyword ``name``: ``max_length`` is ``--max-length``."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def for_command_line(exc: UserError) -> str:
    """``exc``'s message with each keyword it names written as its flag: ``max_length=1`` as
    ``--max-length 1``, ``window='stride'`` as ``--window stride``, ``profile=True`` as
    ``--profile``, a bare ``max_length`` as ``--max-length``."""
    text = str(exc)
    if not isinstance(exc, ArgumentError) or not exc.names:
        return text
    # One pass over every name, so that a value written as a flag is never read again.
    names = "|".join(re.escape(name) for name in sorted(exc.names, key=len, reverse=True))
    pattern = rf"(?<![\w'\-])({names})(?:(=True)\b|='([^']*)'|(=)|(?![\w]))"
    return re.sub(pattern, _as_flag, text)


def _as_flag(match: re.Match[str]) -> str:
    """One keyword (bare, ``=True``, ``='value'`` or ``=value``) as its flag."""
    flag = flag_of(match.group(1))
    if match.group(3) is not None:
        return f"{flag} {match.group(3)}"
    return f"{flag} " if match.group(4) else flag


def delay_library_progress(seconds: float = PROGRESS_DELAY_S) -> None:
    """transformers' own bars (loading weights) appear only after ``seconds``: a quick load
    prints none, so an error raised right after it stays the one line on stderr."""
    from transformers.utils import logging

    set_hook = getattr(logging, "set_tqdm_hook", None)
    if set_hook is not None:
        set_hook(lambda factory, args, kwargs: factory(*args, **{"delay": seconds, **kwargs}))
