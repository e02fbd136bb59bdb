"""Documents to model inputs: tokenization, windows of at most ``max_length`` tokens, batches.

Scoring convention: inside a window, the token at position ``j >= 1`` is predicted from
positions ``< j``. With ``truncate`` (the paper) a document keeps its first ``max_length``
tokens; with ``stride K`` windows start every K tokens and each token after the document's
first is scored exactly once, by the first window that reaches it, with the overlap as context.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from errorentropy.errors import ArgumentError
from errorentropy.options import BosMode, WindowMode, check_window_options


@dataclass(frozen=True)
class Window:
    """A slice of document ``doc`` starting at token ``offset``; targets from ``score_from`` on are
    scored."""

    doc: int
    offset: int
    input_ids: tuple[int, ...]
    score_from: int

    @property
    def n_scored(self) -> int:
        """How many of the window's targets are scored."""
        return len(self.input_ids) - self.score_from


def tokenize(tokenizer: Any, documents: Sequence[str], bos: BosMode = "auto") -> list[list[int]]:
    """Token ids per document: the tokenizer's default special tokens (``auto``), none
    (``never``), or none plus a leading BOS, or EOS where there is no BOS (``always``)."""
    if bos not in ("auto", "always", "never"):
        raise ArgumentError(f"unknown bos={bos!r}; choose auto, always or never", "bos")
    prefix: list[int] = []
    if bos == "always":
        start = (
            tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
        if start is None:
            raise ArgumentError(
                "bos='always' needs a BOS or EOS token, and this tokenizer has neither; "
                "use bos='auto' or bos='never'",
                "bos",
            )
        prefix = [int(start)]
    # A process of a launch with more processes than documents (tokenizers refuse []).
    if not documents:
        return []
    encoded = tokenizer(list(documents), add_special_tokens=(bos == "auto"), verbose=False)[
        "input_ids"
    ]
    return [
        prefix + list(ids) if prefix and (not ids or ids[0] != prefix[0]) else list(ids)
        for ids in encoded
    ]


def make_windows(
    token_ids: Sequence[Sequence[int]],
    max_length: int,
    window: WindowMode = "truncate",
    stride: int | None = None,
) -> tuple[list[Window], int]:
    """Cut documents into windows; returns the windows and the number of documents skipped
    for having fewer than 2 tokens."""
    check_window_options(max_length, window, stride)
    windows: list[Window] = []
    skipped = 0
    for doc, ids in enumerate(token_ids):
        if len(ids) < 2:
            skipped += 1
            continue
        if window == "truncate":
            windows.append(Window(doc, 0, tuple(ids[:max_length]), 1))
            continue
        assert stride is not None
        end = 0  # one past the last position scored so far (position 0 is never a target)
        start = 0
        while True:
            stop = min(start + max_length, len(ids))
            score_from = max(1, end - start)
            windows.append(Window(doc, start, tuple(ids[start:stop]), score_from))
            end = stop
            if stop >= len(ids):
                break
            start += stride
    return windows, skipped


@dataclass
class Batch:
    """Right-padded inputs for a group of windows."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    windows: list[Window]


def padded_length(length: int, max_length: int) -> int:
    """The width a window of ``length`` tokens is padded to: 8, 16, 32, 64, then multiples of 64.

    It depends on the window alone, never on its batch-mates, so a token's numbers are the
    same bits whatever the batch size (float kernels round differently at other widths).
    """
    bucket = 8
    while bucket < min(length, 64):
        bucket *= 2
    if length > 64:
        bucket = -(-length // 64) * 64
    return max(length, min(bucket, max_length))


def batches(
    windows: Sequence[Window], batch_size: int, pad_id: int = 0, max_length: int | None = None
) -> Iterator[Batch]:
    """Right-padded batches of windows that share a padded width (:func:`padded_length`), longest
    first."""
    if batch_size < 1:
        raise ArgumentError(f"batch_size must be at least 1 (got {batch_size})", "batch_size")
    limit = max_length or max((len(w.input_ids) for w in windows), default=1)
    width_of = [padded_length(len(w.input_ids), limit) for w in windows]
    order = sorted(range(len(windows)), key=lambda i: (-width_of[i], -len(windows[i].input_ids), i))
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < batch_size and width_of[groups[-1][0]] == width_of[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    for members in groups:
        group = [windows[i] for i in members]
        width = width_of[members[0]]
        ids = torch.full((len(group), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for row, w in enumerate(group):
            ids[row, : len(w.input_ids)] = torch.tensor(w.input_ids, dtype=torch.long)
            mask[row, : len(w.input_ids)] = 1
        yield Batch(ids, mask, group)
