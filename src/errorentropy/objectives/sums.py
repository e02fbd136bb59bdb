"""A batch as sums over its labelled tokens, and every objective's terms as functions of them.

CE, Conf, the soft EE and the other relaxed terms are all functions ``f(S)`` of sums over
tokens (:class:`BatchSums`). Sums add across processes, so the statistic of a data-parallel
step's whole batch is ``f`` of the all-reduced sums: :func:`all_reduced` gives every process
those sums, with a gradient that makes DDP's mean over processes the gradient of ``f(S)`` (each
process's sums enter with weight ``world_size``: ``S_eff = S + W (S_r - stop_grad(S_r))``, so
``grad f(S_eff) = W (df/dS) grad S_r``, and the mean over the W processes is ``(df/dS) grad S``).
No collective runs in backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from . import soft_rank as sr
from .inputs import check_finite
from .terms import RankGroups

__all__ = [
    "BatchSums",
    "all_reduced",
    "batch_sums",
    "binned_entropy",
    "parts",
    "rank_groups",
    "world_size",
]


class BatchSums(NamedTuple):
    """Float64 sums over a batch's labelled tokens (an empty tensor: not computed).

    ``n``: labelled tokens; ``logprob``: ``sum log s_i``; ``rank_n`` and ``rank_logprob``: per
    rank ``e`` of the vocabulary (``[V]``), the tokens of rank ``e`` and the sum of their
    ``log s``; ``soft_bins``: per rank bin (``[K]``) the soft histogram's mass ``sum_i w_k(r_i)``;
    ``soft_log_rank``: ``sum log(1 + r_i)``; ``soft_top``: the smoothed count of soft ranks below
    ``rbp_k``.
    """

    n: torch.Tensor
    logprob: torch.Tensor
    rank_n: torch.Tensor
    rank_logprob: torch.Tensor
    soft_bins: torch.Tensor
    soft_log_rank: torch.Tensor
    soft_top: torch.Tensor


def batch_sums(
    logprob: torch.Tensor | None,
    rank: torch.Tensor | None,
    soft: torch.Tensor | None,
    vocab: int,
    *,
    bins: Sequence[int] | None,
    bandwidth: float,
    rbp_k: int,
) -> BatchSums:
    """The sums over the labelled tokens (flat tensors of equal length, None: not computed;
    ``bins=None``: no soft histogram)."""
    given = [t for t in (logprob, rank, soft) if t is not None]
    f64, device = torch.float64, given[0].device
    empty = torch.zeros(0, dtype=f64, device=device)
    sums = dict.fromkeys(BatchSums._fields, empty)
    sums["n"] = torch.tensor(float(len(given[0])), dtype=f64, device=device)
    if logprob is not None:
        logprob = logprob.double()
        sums["logprob"] = logprob.sum()
        if rank is not None:
            zeros = torch.zeros(vocab, dtype=f64, device=device)
            sums["rank_n"] = zeros.index_add(0, rank, torch.ones_like(logprob))
            sums["rank_logprob"] = zeros.index_add(0, rank, logprob)
    if soft is not None:
        soft = soft.double()
        if bins is not None:
            sums["soft_bins"] = sr.bin_weights(soft, bins, bandwidth).sum(0)
        sums["soft_log_rank"] = torch.log1p(soft).sum()
        sums["soft_top"] = sr.smoothed_below(soft, rbp_k, bandwidth).sum()
    return BatchSums(**sums)


def world_size() -> int:
    """The number of processes of the default group (1 without an initialised one)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduced(sums: BatchSums) -> BatchSums:
    """The sums over every process of the default group, on every process, with gradient
    ``world_size`` times this process's own (module docstring); one all-reduce."""
    import torch.distributed as dist

    world = dist.get_world_size()
    flat = torch.cat([t.detach().reshape(-1) for t in sums])
    dist.all_reduce(flat)
    out, start = [], 0
    for local in sums:
        total = flat[start : start + local.numel()].reshape(local.shape)
        start += local.numel()
        out.append(total + world * (local - local.detach()) if local.requires_grad else total)
    return BatchSums(*out)


def check_sums(sums: BatchSums) -> None:
    """UserError when a sum is not finite (NaN or inf logits at a labelled position)."""
    for value in (sums.logprob, sums.soft_log_rank, sums.soft_bins):
        check_finite(value)


def rank_groups(sums: BatchSums) -> RankGroups:
    """CE, Conf and the observed ranks' ``n_e`` and ``log Q_e`` (needs the rank sums)."""
    seen = sums.rank_n > 0
    counts = sums.rank_n[seen]
    log_q = sums.rank_logprob[seen] / counts
    return RankGroups(-sums.logprob / sums.n, torch.logsumexp(log_q, 0), counts, log_q)


def parts(sums: BatchSums) -> dict[str, torch.Tensor]:
    """Every term the sums allow: ``ce``, ``conf``, ``soft_ee``, ``soft_log_rank``,
    ``soft_rbp`` (float64 scalars, differentiable)."""
    out: dict[str, torch.Tensor] = {}
    if sums.logprob.numel():
        out["ce"] = -sums.logprob / sums.n
    if sums.rank_n.numel():
        out["conf"] = rank_groups(sums).conf
    if sums.soft_bins.numel():
        p = sums.soft_bins / sums.n
        out["soft_ee"] = -(p * torch.log(p.clamp_min(sr.TINY))).sum()
    if sums.soft_log_rank.numel():
        out["soft_log_rank"] = sums.soft_log_rank / sums.n
        out["soft_rbp"] = -torch.log((sums.soft_top / sums.n).clamp_min(sr.TINY))
    return out


def binned_entropy(sums: BatchSums, bins: Sequence[int]) -> float:
    """Entropy (nats) of the exact ranks' histogram over ``bins`` (what the soft EE tends to as
    ``tau, bandwidth -> 0``), from the per-rank counts."""
    counts = sums.rank_n.detach()
    edges = torch.tensor(bins[1:], dtype=torch.int64, device=counts.device)
    index = torch.bucketize(torch.arange(len(counts), device=counts.device), edges, right=True)
    binned = torch.zeros(len(bins), dtype=counts.dtype, device=counts.device)
    binned = binned.index_add(0, index, counts)
    p = binned[binned > 0] / binned.sum()
    return float(-(p * p.log()).sum())
