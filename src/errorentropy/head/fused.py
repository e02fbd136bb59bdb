"""The fused output head: one Triton kernel per batch that scores tokens without writing logits.

Each program takes a block of tokens and a slice of the vocabulary. For every ``[tokens, vocab]``
tile it multiplies the hidden states by the head rows (float32 accumulation), adds the bias,
applies the soft-cap, and folds the tile into four running values per token: the maximum and the
(float64) sum of exponentials, the count of logits strictly greater than the target's, and the
count equal to it. Nothing of the tile leaves the chip. A few lines of torch then merge the
vocabulary slices into a log-sum-exp and a rank.

The target logit is computed first by a second kernel with the same tile shapes and reduction
order, and the main kernel checks that the target's own column of its tile has exactly those
bits (``seen``). A token where it does not (a compiler that reorders one product and not the
other) is rescored by :func:`errorentropy.head.chunked.score_hidden`, the chunked reference, so a
rank is never counted against a target logit computed differently from its competitors.

Triton is optional: :func:`available` says whether this path can run (CUDA tensors, or any tensor
under ``TRITON_INTERPRET=1``, which the test suite uses on CPU).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch

from errorentropy.head.chunked import score_hidden
from errorentropy.head.logits import TokenScores, check_finite

BLOCK_T = 64
BLOCK_V = 128
BLOCK_D = 64


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def available(device: torch.device | str) -> str | None:
    """None when the fused kernel can run on ``device``; else why not, as a short phrase."""
    device = torch.device(device)
    if device.type != "cuda" and not interpreting():
        return f"the fused kernel needs a CUDA device (got {device.type})"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "the fused kernel needs Triton (pip install triton)"
    return None


def _splits(n_tokens: int, vocab: int, device: torch.device) -> int:
    """Vocabulary slices per token block: enough programs to fill the GPU when tokens are few."""
    if device.type != "cuda":
        return 1
    programs = torch.cuda.get_device_properties(device).multi_processor_count * 4
    blocks = -(-n_tokens // BLOCK_T)
    return max(1, min(-(-programs // blocks), vocab // (8 * BLOCK_V) or 1))


@torch.no_grad()
def score_hidden_fused(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    softcap: float | None = None,
    splits: int | None = None,
    stats: dict[str, int] | None = None,
) -> TokenScores:
    """Score hidden states ``[T, H]`` through head ``weight [V, H]`` with the fused kernel.

    Same contract as :func:`errorentropy.head.chunked.score_hidden` (strict ``>`` rank, ties counted
    apart, float64 log-probabilities), with products of the model's dtype accumulated in float32.
    ``splits``: vocabulary slices per token block (default: enough programs to fill the GPU).
    ``stats``: if given, ``stats["tokens"]`` and ``stats["rescored"]`` (tokens the safety net
    sent to the chunked head) are increased.
    """
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError("hidden must be [T, H] and weight [V, H]")
    n_tokens, vocab = hidden.shape[0], weight.shape[0]
    device = weight.device
    if n_tokens == 0:
        return score_hidden(hidden, weight, targets, bias=bias, softcap=softcap)
    targets = targets.to(device).long().contiguous()
    if int(targets.min()) < 0 or int(targets.max()) >= vocab:
        raise ValueError(f"target ids must lie in [0, {vocab}): the head has {vocab} rows")
    hidden = hidden.to(device=device, dtype=weight.dtype).contiguous()
    operands = _Operands(
        hidden,
        weight if weight.stride(1) == 1 else weight.contiguous(),
        bias.contiguous() if bias is not None else hidden,  # any pointer: unused without HAS_BIAS
        targets,
        float(softcap) if softcap else 1.0,
        dict(
            HAS_BIAS=bias is not None,
            HAS_CAP=bool(softcap),
            INTERPRET=interpreting(),
            BT=BLOCK_T,
            BV=BLOCK_V,
            BD=BLOCK_D,
        ),
    )
    # Triton launches on the current CUDA device: make it the head's (cuda:1 under device_map).
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        target_logit = _target_logit(operands)
        tiles = _head_tiles(operands, target_logit, splits or _splits(n_tokens, vocab, device))
    scores = tiles.merge(target_logit)
    stray = (tiles.seen.sum(0) != 1).nonzero()[:, 0]
    if stats is not None:
        stats["tokens"] = stats.get("tokens", 0) + n_tokens
        stats["rescored"] = stats.get("rescored", 0) + int(stray.numel())
    if stray.numel():  # the target logit's bits differ from its tile's: rescore those exactly
        exact = score_hidden(hidden[stray], weight, targets[stray], bias=bias, softcap=softcap)
        scores.rank[stray], scores.logprob[stray], scores.tied[stray] = (
            exact.rank.to(device),
            exact.logprob.to(device),
            exact.tied.to(device),
        )
    return scores


# Triton's current default, stated: 3.10 changes it.
_LAUNCH = {"enable_fp_fusion": True}


@dataclass(frozen=True)
class _Operands:
    """What both kernels read: hidden states and head rows (rows contiguous), the bias (any
    tensor when there is none), the targets, the soft-cap (1.0 when none) and the kernels'
    compile-time flags."""

    hidden: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    targets: torch.Tensor
    cap: float
    flags: dict[str, Any]


@dataclass(frozen=True)
class _Tiles:
    """The head kernel's running values per (vocabulary slice, token): maximum logit, float64
    sum of exponentials below it, logits greater than and equal to the target's, and how often
    the target's own column was met with the target logit's exact bits."""

    maxima: torch.Tensor
    sums: torch.Tensor
    greater: torch.Tensor
    equal: torch.Tensor
    seen: torch.Tensor

    def merge(self, target_logit: torch.Tensor) -> TokenScores:
        """The slices merged: one log-sum-exp, rank and tie count per token."""
        top = self.maxima.max(dim=0).values.double()
        lse = top + torch.log((self.sums * torch.exp(self.maxima.double() - top)).sum(dim=0))
        check_finite(lse, target_logit)
        return TokenScores(
            self.greater.sum(0).long(), target_logit.double() - lse, self.equal.sum(0).long()
        )


def _target_logit(ops: _Operands) -> torch.Tensor:
    """Every target's logit, with the head kernel's tile shapes and reduction order."""
    from errorentropy.head import fused_kernels as kernels

    n_tokens, dim = ops.hidden.shape
    target_logit = torch.empty(n_tokens, dtype=torch.float32, device=ops.weight.device)
    group = min(BLOCK_T, BLOCK_V)
    kernels.target_kernel[(-(-n_tokens // group),)](
        ops.hidden,
        ops.weight,
        ops.bias,
        ops.targets,
        target_logit,
        n_tokens,
        dim,
        ops.hidden.stride(0),
        ops.weight.stride(0),
        ops.cap,
        **ops.flags,
        **_LAUNCH,
    )
    return target_logit


def _head_tiles(ops: _Operands, target_logit: torch.Tensor, splits: int) -> _Tiles:
    """Run the head kernel over the vocabulary in about ``splits`` slices per token block."""
    from errorentropy.head import fused_kernels as kernels

    n_tokens, dim = ops.hidden.shape
    vocab = ops.weight.shape[0]
    per_split = -(-vocab // splits)
    per_split = -(-per_split // BLOCK_V) * BLOCK_V
    n_splits = -(-vocab // per_split)
    shape, device = (n_splits, n_tokens), ops.weight.device
    tiles = _Tiles(
        torch.empty(shape, dtype=torch.float32, device=device),
        torch.empty(shape, dtype=torch.float64, device=device),
        torch.empty(shape, dtype=torch.int32, device=device),
        torch.empty(shape, dtype=torch.int32, device=device),
        torch.empty(shape, dtype=torch.int32, device=device),
    )
    grid = (-(-n_tokens // BLOCK_T), n_splits)
    kernels.head_kernel[grid](
        ops.hidden,
        ops.weight,
        ops.bias,
        ops.targets,
        target_logit,
        tiles.maxima,
        tiles.sums,
        tiles.greater,
        tiles.equal,
        tiles.seen,
        n_tokens,
        vocab,
        dim,
        per_split,
        ops.hidden.stride(0),
        ops.weight.stride(0),
        ops.cap,
        **ops.flags,
        **_LAUNCH,
    )
    return tiles
