"""What every head path shares: the per-token result, the logit map after ``h @ W.T``, and a
float64-accurate log-sum-exp.

A model's logits are ``z = map(h @ W.T)``, where the map adds the head's bias, multiplies by a
logit scale (Cohere), divides by a logit divisor (Granite) and soft-caps (Gemma 2), each where the
model has it, in that order. :class:`LogitMap` is that map, written once for every torch path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from errorentropy.errors import ArgumentError

ROW_MULTIPLE = 16  # row counts of every product and reduction: CPU kernels round odd rows apart
# float32 elements in one [token_block, vocab_chunk] tile: 4 MiB, small enough to stay in cache
# between the passes over a tile (matmul, log-sum-exp, two comparisons); 64 MiB tiles were ~2x
# slower on CPU (benchmarks/RESULTS.md).
DEFAULT_CHUNK_ELEMENTS = 1 << 20
# On a GPU each tile costs a few kernel launches whatever its size, so tiles are 64x larger
# (256 MiB): 4 MiB tiles would leave a 151,936-entry head launch-bound.
CUDA_CHUNK_ELEMENTS = 1 << 26


def default_chunk_elements(device: torch.device) -> int:
    """float32 elements per ``[token block, vocab chunk]`` tile on ``device`` when none is asked
    for."""
    return CUDA_CHUNK_ELEMENTS if device.type == "cuda" else DEFAULT_CHUNK_ELEMENTS


@dataclass
class TokenScores:
    """Per-token results: rank (int64), log-probability (float64), tie count (int64).

    ``top_logprobs`` holds the ``k`` largest log-probabilities in descending order when asked
    for (used for the sorted-probability profile), else ``None``.
    """

    rank: torch.Tensor
    logprob: torch.Tensor
    tied: torch.Tensor
    top_logprobs: torch.Tensor | None = None

    @staticmethod
    def cat(parts: list[TokenScores]) -> TokenScores:
        """Concatenate along tokens."""
        tops = [p.top_logprobs for p in parts]
        return TokenScores(
            rank=torch.cat([p.rank for p in parts]),
            logprob=torch.cat([p.logprob for p in parts]),
            tied=torch.cat([p.tied for p in parts]),
            top_logprobs=None if any(t is None for t in tops) else torch.cat(tops),  # type: ignore[arg-type]
        )


NON_FINITE_MESSAGE = (
    "the model produced NaN or inf logits; run in dtype='float32', or check the weights (a "
    "half-precision overflow is the usual cause)"
)


def check_finite(lse: torch.Tensor, target: torch.Tensor) -> None:
    """Raise the one-line NaN/inf error unless every log-sum-exp and target logit is finite."""
    if not (torch.isfinite(lse).all() and torch.isfinite(target).all()):
        raise ArgumentError(NON_FINITE_MESSAGE, "dtype")


def row_logsumexp(z: torch.Tensor) -> torch.Tensor:
    """float64 log-sum-exp of each row of float32 ``z``: the (exact) row maximum plus the log of
    the float32 sum of ``exp(z - max)``. ``torch.logsumexp`` rounds its float32 result, an error
    of ~2e-6 where the value is near 40; this keeps ~1e-7 whatever the value, and is no slower."""
    top = z.amax(dim=-1)
    # A row of -inf (a chunk of the vocabulary masked by its bias) is shifted by 0, not by -inf,
    # and gives -inf rather than NaN; a row holding +inf or NaN stays non-finite and is reported.
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return shift.double() + torch.exp(z - shift[:, None]).sum(dim=-1).double().log()


@dataclass(frozen=True)
class LogitMap:
    """The model's steps from ``h @ W.T`` to its logits: bias, scale, divisor, soft-cap."""

    bias: torch.Tensor | None = None
    softcap: float | None = None
    logit_scale: float | None = None  # multiplied after the head (Cohere's config.logit_scale)
    logit_divisor: float | None = None  # divided after the head (Granite's config.logits_scaling)

    @property
    def scaled(self) -> bool:
        """True when a scale or divisor follows the head (the fused kernel applies neither)."""
        return self.logit_scale is not None or self.logit_divisor is not None

    def apply(self, z: torch.Tensor, columns: slice | torch.Tensor | None = None) -> torch.Tensor:
        """Logits from float32 products ``z``, whose last axis holds vocabulary entries
        ``columns`` (a slice of a chunk, or one target id per row; all entries when None)."""
        if self.bias is not None:
            z = z + (self.bias if columns is None else self.bias[columns]).float()
        if self.logit_scale is not None:
            z = z * self.logit_scale
        if self.logit_divisor is not None:
            z = z / self.logit_divisor
        if self.softcap is not None:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z


def empty_scores(device: torch.device, topk: int) -> TokenScores:
    """Scores of zero tokens."""
    return TokenScores(
        torch.zeros(0, dtype=torch.long, device=device),
        torch.zeros(0, dtype=torch.float64, device=device),
        torch.zeros(0, dtype=torch.long, device=device),
        torch.zeros(0, topk, dtype=torch.float64, device=device) if topk else None,
    )
