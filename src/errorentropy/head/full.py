"""The full-logits path: score logits the model already produced, in float32 row blocks.

The fallback for output heads that were not verified (and the path :func:`token_stats` takes on
logits a user already has). Rank is ``#{v : z_v > z_target}`` on float32 logits; the
log-probability is the float32 target logit minus a float64-accurate log-sum-exp.
"""

from __future__ import annotations

import torch

from .logits import (
    ROW_MULTIPLE,
    TokenScores,
    check_finite,
    default_chunk_elements,
    empty_scores,
    row_logsumexp,
)


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
        t = z.gather(1, tgt[:, None])
        lse = row_logsumexp(z)
        check_finite(lse, t)
        rank = (z > t).sum(-1)
        tied = (z == t).sum(-1) - 1
        top = None
        if topk:
            top = z.topk(min(topk, vocab), dim=-1).values.double() - lse[:, None]
        parts.append(
            TokenScores(
                rank[:rows].long(),
                t[:rows, 0].double() - lse[:rows],
                tied[:rows].long(),
                None if top is None else top[:rows],
            )
        )
    if not parts:
        return empty_scores(logits.device, topk)
    return TokenScores.cat(parts)
