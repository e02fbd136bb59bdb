"""Scoring options, each defined once: name, type, default, allowed values and help.

The ``score`` command's flags, a sweep spec's ``[scoring]`` keys and :func:`errorentropy.score`'s
keyword arguments all come from the fields of :class:`ScoreOptions` (see :data:`OPTIONS`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, NoReturn

from errorentropy.errors import ArgumentError, UserError

WindowMode = Literal["truncate", "stride"]
BosMode = Literal["auto", "always", "never"]
HeadMode = Literal["auto", "chunked", "fused", "full"]
DEFAULT_VOCAB_CHUNK = 8192
DEFAULT_RBP_KS = (1, 10, 100, 1000)  # the k of a summary's rbp_at: RBP_k, tokens ranked below k


def check_window_options(max_length: int, window: str, stride: int | None) -> None:
    """Reject impossible windowing options, in keyword names (the command line shows flags)."""
    if max_length < 2:
        raise ArgumentError(
            f"max_length must be at least 2 (got {max_length}): one token of context "
            "and one to score",
            "max_length",
        )
    if window not in ("truncate", "stride"):
        raise ArgumentError(f"unknown window {window!r}; choose truncate or stride", "window")
    if window == "stride":
        if stride is None:
            raise ArgumentError(
                "window='stride' needs stride=K (1 <= K < max_length)",
                "window",
                "stride",
                "max_length",
            )
        if not 1 <= stride < max_length:
            raise ArgumentError(
                f"stride must be between 1 and max_length - 1 = {max_length - 1} (got "
                f"{stride}) so windows overlap by at least one token",
                "stride",
                "max_length",
            )


def _option(
    default: Any,
    help: str,
    *,
    kind: type = int,
    choices: tuple[str, ...] | None = None,
    minimum: int | None = None,
    flag: bool = True,
    recorded: bool = True,
) -> Any:
    """A dataclass field that carries its command-line help, type and bounds, and whether a
    summary records it (``recorded``)."""
    meta = {
        "help": help,
        "kind": kind,
        "choices": choices,
        "minimum": minimum,
        "flag": flag,
        "recorded": recorded,
    }
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ScoreOptions:
    """How documents become scored tokens, and which ``rbp_at`` a summary derives from them
    (``rbp_k`` changes no scored number: a sweep's settings digest leaves it out)."""

    max_length: int = _option(512, "tokens per window (at least 2; checked with the window)")
    window: WindowMode = _option(
        "truncate",
        "truncate: each document's first max-length tokens (the paper); stride: every token once",
        kind=str,
        choices=("truncate", "stride"),
    )
    stride: int | None = _option(
        None, "with window stride: tokens between window starts (< max-length)"
    )
    bos: BosMode = _option(
        "auto",
        "auto: the tokenizer's default; always: prepend BOS (or EOS) so the first token is "
        "scored too; never: no special tokens",
        kind=str,
        choices=("auto", "always", "never"),
    )
    batch_size: int = _option(8, "windows per forward pass", minimum=1)
    head: HeadMode = _option(
        "auto",
        "auto: our own output head when verified against the model's logits (the fused Triton "
        "kernel on CUDA, else torch chunks), else full logits",
        kind=str,
        choices=("auto", "chunked", "fused", "full"),
    )
    vocab_chunk: int = _option(
        DEFAULT_VOCAB_CHUNK, "vocabulary entries per chunk of the output head", minimum=1
    )
    chunk_elements: int | None = _option(
        None,
        "float32 elements per head tile (default: 2^20 on a CPU, 2^26 on CUDA)",
        minimum=1,
        flag=False,
    )
    profile: bool = _option(
        False, "also accumulate the sorted-probability profile (paper Fig. 5)", kind=bool
    )
    rbp_k: tuple[int, ...] = _option(
        DEFAULT_RBP_KS,
        "the k of the summary's rbp_at, comma-separated: RBP_k is the share of tokens whose "
        "ground truth the model ranks among its top k",
        kind=tuple,
        minimum=1,
        recorded=False,
    )

    def __post_init__(self) -> None:
        """Every field checked against its definition, then the window together: a ScoreOptions
        that exists is a valid one (errors name the keyword; the command line shows its flag)."""
        for option in OPTIONS:
            value = option.check(getattr(self, option.name))
            object.__setattr__(self, option.name, value)  # rbp_k: sorted, without repeats
        check_window_options(self.max_length, self.window, self.stride)

    def settings(self) -> dict[str, Any]:
        """The options a summary records: not ``chunk_elements`` (it changes speed, never
        results) nor ``rbp_k`` (the summary's ``rbp_at`` names its ks)."""
        return {o.name: getattr(self, o.name) for o in OPTIONS if o.recorded}

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], source: str = "scoring options"
    ) -> ScoreOptions:
        """Options from ``{name: value}``, each checked against its definition; ``source`` names
        where they came from in the one-line error (a spec table, a function call)."""
        for name in values:
            if name not in BY_NAME:
                close = difflib.get_close_matches(name, BY_NAME, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                known = ", ".join(BY_NAME)
                raise UserError(f"{source}: unknown option {name!r}; {hint}known: {known}")
        try:
            return cls(**values)
        except ArgumentError as exc:
            raise ArgumentError(f"{source}: {exc}", *exc.names) from None


@dataclass(frozen=True)
class Option:
    """One field of :class:`ScoreOptions` as the CLI and the sweep spec see it."""

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None
    minimum: int | None
    flag: bool  # offered as a command-line flag
    recorded: bool = True  # written into a summary by ScoreOptions.settings()

    @property
    def cli_flag(self) -> str:
        """The command-line spelling: ``--max-length``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, source: str | None = None) -> Any:
        """``value`` if it is of this option's type, among its choices and above its minimum,
        else a one-line :class:`ArgumentError` naming the option (and ``source``, if given)."""
        if value is None and self.default is None:
            return None
        if self.kind is tuple:
            return self._check_ints(value, source)
        exact_int = self.kind is int and isinstance(value, int) and not isinstance(value, bool)
        if not (exact_int or (self.kind is not int and isinstance(value, self.kind))):
            expected = {int: "an integer", str: "a string", bool: "true or false"}[self.kind]
            none = " or None" if self.default is None else ""
            self._fail(f"must be {expected}{none}, got {value!r}", source)
        if self.choices is not None and value not in self.choices:
            self._fail(f"must be one of {', '.join(self.choices)}, got {value!r}", source)
        if self.minimum is not None and value < self.minimum:
            self._fail(f"must be >= {self.minimum}, got {value}", source)
        return value

    def _fail(self, problem: str, source: str | None) -> NoReturn:
        """Raise ``problem`` about this option as an :class:`ArgumentError`."""
        where = f"{source}: " if source else ""
        raise ArgumentError(f"{where}{self.name} {problem}", self.name)

    def _check_ints(self, value: Any, source: str | None) -> tuple[int, ...]:
        """A non-empty list or tuple of integers (each >= the minimum) as a sorted tuple without
        repeats, else a one-line :class:`ArgumentError`."""
        items = list(value) if isinstance(value, (list, tuple)) else None
        if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            self._fail(f"must be a non-empty list of integers, got {value!r}", source)
        low = min(items)
        if self.minimum is not None and low < self.minimum:
            self._fail(f"must hold integers >= {self.minimum}, got {low}", source)
        return tuple(sorted(set(items)))


OPTIONS: tuple[Option, ...] = tuple(
    Option(
        f.name,
        f.metadata["kind"],
        f.default,
        f.metadata["help"],
        f.metadata["choices"],
        f.metadata["minimum"],
        f.metadata["flag"],
        f.metadata["recorded"],
    )
    for f in fields(ScoreOptions)
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

# Every option at its default (a frozen value, safe to share as a default argument).
DEFAULT_OPTIONS = ScoreOptions()
