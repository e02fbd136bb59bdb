"""Rank and log-probability of every labelled token, from logits a user already has.

The accumulator behind :meth:`errorentropy.stats.histogram.RankHistogram.update`: any evaluation
loop
that holds a causal LM's ``[B, T, V]`` logits and its labels gets the numbers the scoring engine
computes, by the same float32 arithmetic (:func:`errorentropy.head.full.score_rows`, which
:func:`~errorentropy.head.full.score_logits` uses too): the rank is
``#{v : z_v > z_label}`` on float32 logits (Eq. 1 of the paper; ties count in the label's
favour), the log-probability is the float32 label logit minus a float64-accurate log-sum-exp.

Labels follow Hugging Face causal-LM conventions: ``ignore_index`` (-100) marks a position
without a label, and with ``shift=True`` the labels are the input ids, so the logits at position
``t`` predict ``labels[:, t + 1]``. The logits are read in row blocks of about 4 MiB on a CPU,
256 MiB on CUDA (16-bit ones upcast to float32 a block at a time); no second ``[B, T, V]``
tensor is built, and blocks with no label are not read at all.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from errorentropy.errors import ArgumentError, check_bool, type_name
from errorentropy.head.chunked import cpu_workers, run_blocks
from errorentropy.head.full import score_rows
from errorentropy.head.logits import ROW_MULTIPLE, default_chunk_elements

__all__ = [
    "TIE_SHARE",
    "TiedLogitsWarning",
    "TokenStats",
    "token_stats",
    "token_stats_with_ties",
    "warn_ties",
]

LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
MAX_VOCAB = 1 << 24  # counts are float32 sums of +-1, exact below 2^24
# A share of tied tokens above this means rounded (16-bit) logits: float32 logits of a trained
# model tie almost never, and the scoring engine's float32 head found none in 1,008 tokens where
# the same model's bfloat16 logits tied 401.
TIE_SHARE = 0.01
_WARNED: set[str] = set()  # the places that have warned in this process


class TiedLogitsWarning(UserWarning):
    """More than :data:`TIE_SHARE` of the scored tokens had a logit tied with another entry's."""


def warn_ties(n_tied: int, n_tokens: int, where: str) -> bool:
    """Warn (once per process for each ``where``) when more than :data:`TIE_SHARE` of
    ``n_tokens`` tie: ranks count ties in the label's favour, so rounded logits raise top-1 and
    change EE from what float32 logits give. Returns whether it warned."""
    if n_tokens == 0 or n_tied <= TIE_SHARE * n_tokens or where in _WARNED:
        return False
    _WARNED.add(where)
    warnings.warn(
        f"{where}: {n_tied} of {n_tokens} scored tokens ({n_tied / n_tokens:.1%}) have a logit "
        "exactly equal to another vocabulary entry's, the mark of 16-bit logits; their ranks and "
        "EE differ from `errorentropy score`'s. Pass float32 logits from a float32 head: "
        "errorentropy.integrations.common.float32_logits(model, hidden_states)",
        TiedLogitsWarning,
        stacklevel=3,
    )
    return True


class TokenStats(NamedTuple):
    """Per-position results, shaped like the labels (``[B, T]``, or ``[T]``), on the logits' device.

    ``rank`` (int64) is the number of vocabulary entries whose float32 logit is strictly greater
    than the label's (0: the label was the top choice); ``logprob`` (float64) is the label's
    log-probability. Positions without a label hold rank -1 and logprob NaN: select the labelled
    ones with ``stats.labelled`` (``stats.rank >= 0``).
    """

    rank: torch.Tensor
    logprob: torch.Tensor

    @property
    def labelled(self) -> torch.Tensor:
        """Boolean mask of the positions that had a label (``rank >= 0``)."""
        return self.rank >= 0


def token_stats(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    shift: bool = True,
    attention_mask: torch.Tensor | None = None,
) -> TokenStats:
    """Rank (Eq. 1 of the paper) and log-probability of each label under ``logits``.

    Args:
        logits: ``[B, T, V]`` (or ``[T, V]``) float32, bfloat16 or float16 logits, on a CPU or
            a GPU; 16-bit logits are upcast to float32, so ranks come from the 16-bit values.
            Logits that require grad are detached; nothing is recorded for autograd.
        labels: integer tensor shaped like ``logits`` without its last axis: vocabulary ids, or
            ``ignore_index`` where a position has no label (padding, a prompt).
        ignore_index: the label value of positions not scored.
        shift: True for Hugging Face causal-LM labels (the input ids): ``result[:, t]`` scores
            ``labels[:, t + 1]`` under ``logits[:, t]``, and the last position has no label.
            False when ``labels[:, t]`` is already the target of ``logits[:, t]``.
        attention_mask: the batch's mask, shaped like the labels (1: a token, 0: padding), or
            None. Where given, a label is scored only if the position whose logits predict it
            (``t`` for ``labels[:, t + 1]`` with ``shift``) and its own position are tokens: with
            left padding, a row's first real token would otherwise be scored from a pad.

    Only the labels that are scored must lie in the vocabulary (the first position's, which the
    shift never uses, and masked ones may hold anything).

    Returns:
        :class:`TokenStats` of ``[B, T]`` (or ``[T]``) tensors on the logits' device: rank int64,
        logprob float64; -1 and NaN where there is no label (``stats.labelled`` is the mask).

    Raises:
        ArgumentError: (a UserError and a ValueError) arguments of the wrong type, shapes or
            dtypes that do not fit, or a label outside the vocabulary.
        UserError: NaN or inf logits (the head's one-line error).

    Examples:
        >>> import torch
        >>> from errorentropy.head.token_stats import token_stats
        >>> _ = torch.manual_seed(0)
        >>> logits = torch.randn(2, 5, 11)
        >>> labels = torch.randint(0, 11, (2, 5))
        >>> labels[1, 3:] = -100  # padding
        >>> stats = token_stats(logits, labels)
        >>> stats.rank.shape, stats.rank.dtype, stats.logprob.dtype
        (torch.Size([2, 5]), torch.int64, torch.float64)
        >>> stats.labelled.sum().item()  # 4 targets in row 0, 2 in row 1 (the last has none)
        6
        >>> stats.rank[:, -1].tolist()
        [-1, -1]
        >>> expected = torch.log_softmax(logits[0, :-1].double(), -1).gather(1, labels[0, 1:, None])
        >>> torch.allclose(stats.logprob[0, :-1], expected[:, 0])
        True
        >>> top1 = logits[0, :-1].argmax(-1) == labels[0, 1:]
        >>> torch.equal(stats.rank[0, :-1] == 0, top1)
        True
    """
    check_bool(shift, "shift")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ArgumentError(
            f"ignore_index must be an integer, got {type_name(ignore_index)}", "ignore_index"
        )
    stats, _ = token_stats_with_ties(
        logits, labels, ignore_index=ignore_index, shift=shift, attention_mask=attention_mask
    )
    return stats


@torch.no_grad()
def token_stats_with_ties(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    shift: bool = True,
    attention_mask: torch.Tensor | None = None,
) -> tuple[TokenStats, torch.Tensor]:
    """:func:`token_stats` and, shaped like it, the number of other vocabulary entries whose
    logit exactly equals the label's (int64; 0 where there is no label)."""
    vocab = _check(logits, labels)
    targets = _targets(labels, ignore_index, shift, vocab, attention_mask)
    device = logits.device
    block = max(
        ROW_MULTIPLE, default_chunk_elements(device) // vocab // ROW_MULTIPLE * ROW_MULTIPLE
    )
    jobs = [
        job
        for offset, rows in _row_views(logits.detach())
        for job in _jobs(
            rows, targets[offset : offset + rows.shape[0]], offset, ignore_index, block
        )
    ]
    scratch = threading.local()  # one buffer per worker thread, dropped with this call

    def run(i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z, tgt = jobs[i].logits(device)
        need = z.numel()
        buf = getattr(scratch, "buf", None)
        if buf is None or buf.numel() < need:
            buf = scratch.buf = torch.empty(need, dtype=torch.float32, device=device)
        t, lse, rank, tied = score_rows(z, tgt, buf[:need].view(z.shape))
        return rank, t[:, 0].double() - lse, tied

    parts = run_blocks(run, range(len(jobs)), cpu_workers(device))
    n = targets.numel()
    rank = torch.full((n,), -1, dtype=torch.int64, device=device)
    logprob = torch.full((n,), float("nan"), dtype=torch.float64, device=device)
    tied = torch.zeros(n, dtype=torch.int64, device=device)
    for job, (r, lp, tie) in zip(jobs, parts):
        out, k = job.out(device), job.n_rows
        rank[out], logprob[out], tied[out] = r[:k], lp[:k], tie[:k]
    shape = labels.shape
    return TokenStats(rank.view(shape), logprob.view(shape)), tied.view(shape)


@dataclass(frozen=True)
class _Job:
    """One block of logits rows to score: ``rows[start:stop]``, or the rows ``picked`` (their
    indices in ``rows``) of a partly labelled block, padded to a multiple of ROW_MULTIPLE rows."""

    rows: torch.Tensor
    targets: torch.Tensor  # on the CPU, one per scored row (padding included)
    offset: int  # flat index of rows[0]
    start: int
    stop: int
    picked: torch.Tensor | None  # CPU indices into rows, padded; None: all of start:stop
    n_rows: int  # rows with a label (the first n_rows of the result)

    def logits(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The float32 logits rows and their targets, on ``device``."""
        if self.picked is None:
            z = self.rows[self.start : self.stop]
        else:
            z = self.rows.index_select(0, self.picked.to(device))
        z = z.float()
        if z.stride(-1) != 1:  # vocabulary not contiguous: a block copy, summed as usual
            z = z.contiguous()
        return z, self.targets.to(device)

    def out(self, device: torch.device) -> slice | torch.Tensor:
        """Where the first ``n_rows`` results go in the flat output."""
        if self.picked is None:
            return slice(self.offset + self.start, self.offset + self.stop)
        return (self.picked[: self.n_rows] + self.offset).to(device)


def _check(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """The vocabulary size, after refusing logits and labels that do not fit together."""
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise ArgumentError("logits and labels must be torch tensors; convert with torch.as_tensor")
    if logits.ndim not in (2, 3) or logits.shape[-1] == 0:
        raise ArgumentError(
            f"logits must be [B, T, V] or [T, V] with V >= 1, got shape {tuple(logits.shape)}; "
            "reshape them (one row per sequence)"
        )
    if logits.shape[-1] >= MAX_VOCAB:
        raise ArgumentError(
            f"a vocabulary of {logits.shape[-1]} entries is beyond what ranks are counted for "
            f"(< {MAX_VOCAB}); check that the last axis of the logits is the vocabulary"
        )
    if logits.dtype not in LOGIT_DTYPES:
        raise ArgumentError(
            f"logits must be float32, bfloat16 or float16, got {logits.dtype}; "
            "pass logits.float() (ranks come from float32 logits)"
        )
    if labels.shape != logits.shape[:-1]:
        raise ArgumentError(
            f"labels of shape {tuple(labels.shape)} do not match logits of shape "
            f"{tuple(logits.shape)}; labels must be the logits' shape without the vocabulary axis"
        )
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ArgumentError(
            f"labels must be integer token ids, got {labels.dtype}; pass labels.long()"
        )
    return int(logits.shape[-1])


def _targets(
    labels: torch.Tensor,
    ignore_index: int,
    shift: bool,
    vocab: int,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The target of every logits row, flattened (``ignore_index`` where none), on the CPU; only
    the targets kept are checked against the vocabulary."""
    ids = labels.detach().to("cpu", torch.int64)
    if attention_mask is not None:
        ids = ids.masked_fill(~_mask(attention_mask, labels.shape), ignore_index)
    if shift:
        shifted = torch.full_like(ids, ignore_index)
        shifted[..., :-1] = ids[..., 1:]
        ids = shifted
        if attention_mask is not None:  # the predicting position must be a token too
            ids = ids.masked_fill(~_mask(attention_mask, labels.shape), ignore_index)
    bad = (ids != ignore_index) & ((ids < 0) | (ids >= vocab))
    if bool(bad.any()):
        value = int(ids[bad][0])
        raise ArgumentError(
            f"label {value} is outside the vocabulary of {vocab} entries (0..{vocab - 1}); "
            f"mark positions not to score with ignore_index={ignore_index}"
        )
    return ids.reshape(-1)


def _mask(attention_mask: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``attention_mask`` as a boolean CPU tensor (True: a token), checked against ``shape``."""
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != shape:
        got = getattr(attention_mask, "shape", type(attention_mask).__name__)
        raise ArgumentError(
            f"attention_mask of shape {tuple(got) if isinstance(got, torch.Size) else got} does "
            f"not match labels of shape {tuple(shape)}; pass the batch's own attention_mask",
            "attention_mask",
        )
    return attention_mask.detach().to("cpu") != 0


def _row_views(logits: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``[rows, V]`` views covering the logits in order, with the flat index of their first row:
    one view when the layout allows it, else one per sequence (never a copy)."""
    if logits.ndim == 2:
        return [(0, logits)]
    try:
        return [(0, logits.view(-1, logits.shape[-1]))]
    except RuntimeError:  # strides that do not flatten, e.g. a slice along T
        return [(b * logits.shape[1], logits[b]) for b in range(logits.shape[0])]


def _jobs(
    rows: torch.Tensor, targets: torch.Tensor, offset: int, ignore_index: int, block: int
) -> list[_Job]:
    """The labelled rows of ``rows`` (``[n, V]``, targets ``[n]``) as jobs of at most ``block``
    rows: a fully labelled block as a view, the labelled rows of another by index (copied);
    blocks without a label are left out."""
    jobs = []
    for start in range(0, rows.shape[0], block):
        stop = min(start + block, rows.shape[0])
        tgt = targets[start:stop]
        labelled = tgt != ignore_index
        count = int(labelled.sum())
        if count == stop - start and count % ROW_MULTIPLE == 0:
            jobs.append(_Job(rows, tgt, offset, start, stop, None, count))
        elif count:
            picked = labelled.nonzero()[:, 0] + start
            # Row counts of a multiple of ROW_MULTIPLE give every row the same bits whatever its
            # block-mates (CPU reductions treat odd row counts apart): pad with a labelled row.
            picked = torch.cat([picked, picked[:1].expand(-count % ROW_MULTIPLE)])
            jobs.append(_Job(rows, targets[picked], offset, start, stop, picked, count))
    return jobs
