"""The full-logits path: score logits the model already produced, in float32 row blocks.

The fallback for output heads that were not verified (and the path :func:`token_stats` takes on
logits a user already has). Rank is ``#{v : z_v > z_target}`` on float32 logits; the
log-probability is the float32 target logit minus a float64-accurate log-sum-exp.
"""

from __future__ import annotations

import torch

from errorentropy.head.logits import (
    ROW_MULTIPLE,
    TokenScores,
    check_finite,
    default_chunk_elements,
    empty_scores,
)


@torch.no_grad()
def score_rows(
    z: torch.Tensor, tgt: torch.Tensor, buf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target logit ``[R, 1]``, float64 log-sum-exp, rank and tie count of targets ``tgt [R]``
    under float32 ``z [R, V]``, in few passes over ``z`` and without temporaries as large as it
    (``buf`` is scratch space shaped like ``z``).

    The log-sum-exp is :func:`errorentropy.head.logits.row_logsumexp`'s arithmetic (its bits),
    written into ``buf``. The counts come from ``sign(z - t)``, which is exact: a float
    difference is 0 only between equal floats and keeps the sign otherwise (an overflow to inf
    too). Its row sum is ``G - L`` (entries above and below the target) and the sum of its
    absolute values ``G + L``; float32 sums of integers below 2^24 are exact in any order.
    """
    t = z.gather(1, tgt[:, None])
    top = z.amax(dim=-1)
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # as row_logsumexp
    torch.sub(z, shift[:, None], out=buf)
    lse = shift.double() + buf.exp_().sum(dim=-1).double().log()
    check_finite(lse, t)
    torch.sub(z, t, out=buf)
    balance = buf.sign_().sum(dim=-1)
    nonzero = buf.abs_().sum(dim=-1)
    rank = ((balance + nonzero) / 2).long()
    tied = (z.shape[1] - 1 - nonzero).long()
    return t, lse, rank, tied


@torch.no_grad()
def score_logits(
    logits: torch.Tensor, targets: torch.Tensor, *, topk: int = 0, token_block: int | None = None
) -> TokenScores:
    """Score from full logits ``[T, V]`` (any dtype) against ``targets [T]``, in float32."""
    if logits.ndim != 2 or targets.shape != logits.shape[:1]:
        raise ValueError("logits must be [T, V] and targets [T]")
    vocab = logits.shape[1]
    block = token_block or max(
        ROW_MULTIPLE,
        default_chunk_elements(logits.device) // max(vocab, 1) // ROW_MULTIPLE * ROW_MULTIPLE,
    )
    parts = []
    for start in range(0, logits.shape[0], block):
        z = logits[start : start + block].float()
        tgt = targets[start : start + block].to(z.device)
        rows = z.shape[0]
        if rows % ROW_MULTIPLE:
            # A one-row sum is split across threads (another summation order than a row among
            # many): zero rows make every block reduce row by row, so a token's bits do not
            # depend on how many tokens share its block. Dropped below.
            pad = -rows % ROW_MULTIPLE
            z = torch.cat([z, z.new_zeros(pad, vocab)])
            tgt = torch.cat([tgt, tgt.new_zeros(pad)])
        t, lse, rank, tied = score_rows(z, tgt, torch.empty_like(z))
        top = None
        if topk:
            top = z.topk(min(topk, vocab), dim=-1).values.double() - lse[:, None]
        parts.append(
            TokenScores(
                rank[:rows],
                t[:rows, 0].double() - lse[:rows],
                tied[:rows],
                None if top is None else top[:rows],
            )
        )
    if not parts:
        return empty_scores(logits.device, topk)
    return TokenScores.cat(parts)
