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

import torch

from .chunked import score_hidden
from .logits import TokenScores, check_finite

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
        return f"the fused head needs a CUDA device (got {device.type})"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "the fused head needs Triton (pip install triton)"
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
    n_tokens, vocab, dim = hidden.shape[0], weight.shape[0], weight.shape[1]
    device = weight.device
    if n_tokens == 0:
        return score_hidden(hidden, weight, targets, bias=bias, softcap=softcap)
    targets = targets.to(device).long().contiguous()
    if int(targets.min()) < 0 or int(targets.max()) >= vocab:
        raise ValueError(f"target ids must lie in [0, {vocab}): the head has {vocab} rows")
    from . import fused_kernels as kernels

    hidden = hidden.to(device=device, dtype=weight.dtype).contiguous()
    weight_c = weight if weight.stride(1) == 1 else weight.contiguous()
    bias_arg = (
        bias.contiguous() if bias is not None else hidden
    )  # any pointer: unused without HAS_BIAS
    cap = float(softcap) if softcap else 1.0
    flags = dict(
        HAS_BIAS=bias is not None,
        HAS_CAP=bool(softcap),
        INTERPRET=interpreting(),
        BT=BLOCK_T,
        BV=BLOCK_V,
        BD=BLOCK_D,
    )
    launch = dict(enable_fp_fusion=True)  # Triton's current default, stated: 3.10 changes it
    n_splits = splits or _splits(n_tokens, vocab, device)
    per_split = -(-vocab // n_splits)
    per_split = -(-per_split // BLOCK_V) * BLOCK_V
    n_splits = -(-vocab // per_split)
    shape = (n_splits, n_tokens)
    target_logit = torch.empty(n_tokens, dtype=torch.float32, device=device)
    maxima = torch.empty(shape, dtype=torch.float32, device=device)
    sums = torch.empty(shape, dtype=torch.float64, device=device)
    greater = torch.empty(shape, dtype=torch.int32, device=device)
    equal = torch.empty(shape, dtype=torch.int32, device=device)
    seen = torch.empty(shape, dtype=torch.int32, device=device)
    group = min(BLOCK_T, BLOCK_V)
    # Triton launches on the current CUDA device: make it the head's (cuda:1 under device_map).
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        kernels.target_kernel[(-(-n_tokens // group),)](
            hidden,
            weight_c,
            bias_arg,
            targets,
            target_logit,
            n_tokens,
            dim,
            hidden.stride(0),
            weight_c.stride(0),
            cap,
            **flags,
            **launch,
        )
        grid = (-(-n_tokens // BLOCK_T), n_splits)
        kernels.head_kernel[grid](
            hidden,
            weight_c,
            bias_arg,
            targets,
            target_logit,
            maxima,
            sums,
            greater,
            equal,
            seen,
            n_tokens,
            vocab,
            dim,
            per_split,
            hidden.stride(0),
            weight_c.stride(0),
            cap,
            **flags,
            **launch,
        )
    top = maxima.max(dim=0).values.double()
    lse = top + torch.log((sums * torch.exp(maxima.double() - top)).sum(dim=0))
    check_finite(lse, target_logit)
    scores = TokenScores(greater.sum(0).long(), target_logit.double() - lse, equal.sum(0).long())
    stray = (seen.sum(0) != 1).nonzero()[:, 0]
    if stats is not None:
        stats["tokens"] = stats.get("tokens", 0) + n_tokens
        stats["rescored"] = stats.get("rescored", 0) + int(stray.numel())
    if (
        stray.numel()
    ):  # the target logit's bits differ from its tile's: rescore those tokens exactly
        exact = score_hidden(hidden[stray], weight, targets[stray], bias=bias, softcap=softcap)
        scores.rank[stray], scores.logprob[stray], scores.tied[stray] = (
            exact.rank.to(device),
            exact.logprob.to(device),
            exact.tied.to(device),
        )
    return scores
