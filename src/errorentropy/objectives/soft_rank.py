"""Relaxed rank statistics: soft ranks placed in rank bins by smoothed indicators (the soft
histogram, whose entropy :mod:`.sums` takes from the batch's sums).

Bins are ranges of ranks ``[b_k, b_{k+1})`` given by integer edges ``0 = b_0 < b_1 < ...``, the
last bin open-ended; the default edges ``0, 1, 2, 4, 8, ...`` separate rank 0, rank 1, ranks 2-3,
4-7, and so on. A token of soft rank ``r`` is placed in the bins by a smoothed indicator in
``u = log(1 + r)``: its weight in bin k is the probability that ``u + epsilon`` falls between the
bin's edges, with ``epsilon`` logistic noise of scale ``h`` (the bandwidth) and the edges at half
integers, ``a_k = log(1 + b_k - 1/2)``:

    w_k(r) = F((a_{k+1} - u) / h) - F((a_k - u) / h),  F = sigmoid,  a_0 = -inf,  a_K = +inf.

The weights of a token are positive and sum to 1, so the soft histogram ``P_k = mean_i w_k(r_i)``
is a distribution. Log-spaced bins with a kernel in log space soften every edge alike relative
to its rank: an edge at rank b is blurred over about ``b * h`` ranks either side. So ``h -> 0``
gives the hard histogram of the binned ranks once ``h`` is well below ``1 / (2 b)`` for the
largest edge b the ranks reach (the distance from an integer rank to the nearest half-integer
edge is ``log((b + 1) / (b + 1/2))``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "bin_weights",
    "check_bins",
    "default_bins",
    "smoothed_below",
]

TINY = 1e-300  # P_k is floored here inside the log: -P log P and its gradient stay finite


def default_bins(vocab: int) -> tuple[int, ...]:
    """The edges ``0, 1, 2, 4, ...`` up to the largest power of two below ``vocab`` (ranks run
    from 0 to ``vocab - 1``)."""
    edges = [0]
    power = 1
    while power < vocab:
        edges.append(power)
        power *= 2
    return tuple(edges)


def check_bins(bins: Sequence[int]) -> tuple[int, ...]:
    """The edges as a tuple, or ValueError saying what is wrong with them."""
    edges = tuple(bins)
    if len(edges) < 2:
        raise ValueError(f"needs at least two edges (two bins), got {list(edges)}")
    if any(isinstance(b, bool) or not isinstance(b, int) for b in edges):
        raise ValueError(f"edges must be integers (ranks), got {list(edges)}")
    if edges[0] != 0:
        raise ValueError(f"the first edge must be 0 (rank 0 opens the first bin), got {edges[0]}")
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be strictly increasing, got {list(edges)}")
    return edges


def _inner_edges(bins: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """``log(1 + b_k - 1/2)`` for the edges after the first, as a tensor like ``like``."""
    return torch.tensor([math.log(b + 0.5) for b in bins[1:]], dtype=like.dtype, device=like.device)


def bin_weights(soft_rank: torch.Tensor, bins: Sequence[int], bandwidth: float) -> torch.Tensor:
    """``[N, K]`` weights of each token in each of the K bins (rows sum to 1)."""
    u = torch.log1p(soft_rank)
    below = torch.sigmoid((_inner_edges(bins, u)[None, :] - u[:, None]) / bandwidth)
    zeros = torch.zeros_like(u)[:, None]
    ones = torch.ones_like(u)[:, None]
    cdf = torch.cat([zeros, below, ones], dim=1)
    return cdf[:, 1:] - cdf[:, :-1]


def smoothed_below(soft_rank: torch.Tensor, k: int, bandwidth: float) -> torch.Tensor:
    """Each token's smoothed indicator of ``rank < k``: ``log(1 + r) < log(k + 1/2)``."""
    return torch.sigmoid((math.log(k + 0.5) - torch.log1p(soft_rank)) / bandwidth)
