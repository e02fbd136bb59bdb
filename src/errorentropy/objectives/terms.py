"""The batch grouped by rank, and the terms of an objective as plain numbers for logging."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

__all__ = ["ObjectiveTerms", "RankGroups", "group_by_rank"]


@dataclass(frozen=True)
class ObjectiveTerms:
    """The loss of one batch and the quantities it is made of, as plain floats for logging.

    ``cross_entropy``, ``error_entropy``, ``self_alignment`` and ``confidence`` are the exact
    batch decomposition (``cross_entropy == error_entropy + self_alignment - confidence``);
    ``error_entropy_binned`` is the EE of the exact ranks over the soft histogram's bins (what
    ``soft_error_entropy`` tends to as ``tau, bandwidth -> 0``). A term the objective did not
    compute is None.
    """

    loss: float
    n_tokens: int
    cross_entropy: float
    error_entropy: float
    self_alignment: float
    confidence: float
    soft_error_entropy: float | None = None
    error_entropy_binned: float | None = None
    soft_log_rank: float | None = None
    soft_neg_log_rbp: float | None = None

    def as_dict(self) -> dict[str, float]:
        """The computed terms by name (``n_tokens`` as a float), for a logger."""
        return {f.name: float(v) for f in fields(self) if (v := getattr(self, f.name)) is not None}


class RankGroups(NamedTuple):
    """The batch grouped by rank (float64): CE, Conf, and per observed rank ``n_e`` and
    ``log Q_e``; differentiable in the log-probabilities."""

    ce: torch.Tensor
    conf: torch.Tensor
    counts: torch.Tensor
    log_q: torch.Tensor

    def exact_terms(self) -> tuple[float, float, float]:
        """EE, SA and Conf as floats: ``-sum p log p``, ``sum p log(p / q)``, ``log C``."""
        p = self.counts / self.counts.sum()
        log_p = p.log()
        conf = self.conf.detach()
        ee = -(p * log_p).sum()
        sa = (p * (log_p - (self.log_q.detach() - conf))).sum()
        return ee.item(), sa.item(), conf.item()


def group_by_rank(logprob: torch.Tensor, rank: torch.Tensor) -> RankGroups:
    """Group the tokens by rank: CE, ``Conf = logsumexp_e log Q_e``, with ``log Q_e`` the mean
    log-probability at rank e."""
    _, inverse = torch.unique(rank, return_inverse=True)
    counts = torch.bincount(inverse).to(logprob.dtype)
    sums = torch.zeros_like(counts).index_add(0, inverse, logprob)
    log_q = sums / counts
    return RankGroups(-logprob.sum() / logprob.numel(), torch.logsumexp(log_q, 0), counts, log_q)
