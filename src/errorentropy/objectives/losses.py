"""Training objectives built from CE = EE + SA - Conf, and their anchored mixtures.

On a batch with ranks ``e_i`` and log-probabilities ``log s_i`` of its N labelled tokens, group
by rank: ``p_e = n_e / N``, ``log Q_e`` the mean ``log s_i`` at rank e, ``C = sum_e Q_e``,
``q_e = Q_e / C``. Then exactly ``CE = EE + SA - Conf`` with ``EE = -sum p_e log p_e``,
``SA = KL(p || q)`` and ``Conf = log C``. Ranks are piecewise constant, so EE has no gradient
and every weighting of the exact terms trains like ``CE + lam * Conf``: the gradient on
``log s_i`` is ``-(1/N)(1 - lam q_e / p_e)``. EE itself is trained through a relaxation (soft
ranks and a soft histogram, :mod:`.soft_rank`), anchored by CE, the mean soft log-rank or a soft
``-log RBP_k`` against its degenerate minima. See ``docs/objectives.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import torch

from ..errors import UserError, check_bool, check_int
from . import soft_rank as sr
from . import sums as bs
from .inputs import (
    check_inputs,
    check_positive,
    check_real,
    targets_and_mask,
)
from .terms import ObjectiveTerms, group_by_rank
from .token_terms import Plan, TokenTerms, compute_dtype, token_terms

__all__ = [
    "DEFAULT_BANDWIDTH",
    "DEFAULT_TAU",
    "Objective",
    "ce_conf_from_tokens",
    "ce_conf_loss",
    "mixture",
    "soft_error_entropy",
    "soft_ranks",
]

DEFAULT_TAU = 0.1  # logit units: logits within a few tau of the label's count fractionally
DEFAULT_BANDWIDTH = 0.05  # log(1 + rank) units; the narrowest default bin is 0.51 wide


@dataclass(frozen=True)
class Objective:
    """A loss on causal-LM logits: a weighted sum of batch statistics of the labelled tokens.

    ``ce * CE + conf * Conf + soft_ee * softEE + soft_log_rank * mean log(1 + soft rank)
    + soft_rbp * (-log softRBP_k)``. Call it as ``loss = objective(logits, labels)`` or
    ``loss, terms = objective(logits, labels, return_terms=True)``.

    Attributes:
        ce: weight of the cross-entropy (nats per token).
        conf: weight of Confidence ``log C`` (``ce=1, conf=1`` is EE + SA: Confidence dropped).
        soft_ee: weight of the relaxed Error-Entropy (entropy of the soft rank histogram).
        soft_log_rank: weight of the mean ``log(1 + soft rank)``.
        soft_rbp: weight of the relaxed ``-log RBP_k``, ``k = rbp_k``.
        tau: temperature of the soft rank, in logit units (> 0).
        bandwidth: scale of the soft bin assignment, in ``log(1 + rank)`` units (> 0).
        bins: integer rank edges ``0 = b_0 < b_1 < ...``; None: ``0, 1, 2, 4, ...`` below V.
        rbp_k: the k of ``RBP_k`` (>= 1; 1 is top-1 accuracy).
        ignore_index: the label value of positions without a label.
        shift: True for Hugging Face causal-LM labels (``logits[:, t]`` predicts
            ``labels[:, t + 1]``); False when ``labels[:, t]`` is the target of ``logits[:, t]``.
        chunk_size: vocabulary entries read at a time; None: the whole vocabulary.
        global_batch: under ``torch.distributed`` (DDP, FSDP, the Trainer or Lightning on
            several processes), the statistic of the whole step's batch over every process of
            the default group instead of each process's own shard: one all-reduce of the
            batch's sums in forward, none in backward; the gradient is scaled so that DDP's
            mean over processes is the whole batch's gradient. Every process must call the
            objective on every step. Without an initialised process group, the local batch.
    """

    ce: float = 1.0
    conf: float = 0.0
    soft_ee: float = 0.0
    soft_log_rank: float = 0.0
    soft_rbp: float = 0.0
    tau: float = DEFAULT_TAU
    bandwidth: float = DEFAULT_BANDWIDTH
    bins: tuple[int, ...] | None = None
    rbp_k: int = 1
    ignore_index: int = -100
    shift: bool = True
    chunk_size: int | None = None
    global_batch: bool = False

    def __post_init__(self) -> None:
        for name in ("ce", "conf", "soft_ee", "soft_log_rank", "soft_rbp"):
            check_real(name, getattr(self, name))
        if not any(getattr(self, name) for name in _WEIGHTS):
            raise UserError(
                "every objective weight is 0; give at least one of ce, conf, soft_ee, "
                "soft_log_rank, soft_rbp a non-zero weight"
            )
        check_positive("tau", self.tau)
        check_positive("bandwidth", self.bandwidth)
        check_int(self.rbp_k, "rbp_k", 1)
        check_int(self.ignore_index, "ignore_index", None)
        check_int(self.chunk_size, "chunk_size", 1, optional=True)
        check_bool(self.shift, "shift")
        check_bool(self.global_batch, "global_batch")
        if self.bins is not None:
            try:
                object.__setattr__(self, "bins", sr.check_bins(self.bins))
            except (ValueError, TypeError) as err:
                raise UserError(f"bins: {err}; e.g. bins=(0, 1, 2, 4, 8)") from None

    @property
    def name(self) -> str:
        """The objective in the form :func:`~errorentropy.objectives.parse_objective` reads."""
        parts = []
        for weight, term in (
            (self.ce, "ce"),
            (self.conf, "conf"),
            (self.soft_ee, "soft-ee"),
            (self.soft_log_rank, "logrank"),
            (self.soft_rbp, "rbp" if self.rbp_k == 1 else f"rbp@{self.rbp_k}"),
        ):
            if weight:
                parts.append(term if weight == 1 else f"{weight:g}{term}")
        return "+".join(parts)

    @property
    def needs_soft_rank(self) -> bool:
        """Whether a relaxed term has a non-zero weight."""
        return bool(self.soft_ee or self.soft_log_rank or self.soft_rbp)

    @overload
    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, *, return_terms: Literal[False] = ...
    ) -> torch.Tensor: ...

    @overload
    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, *, return_terms: Literal[True]
    ) -> tuple[torch.Tensor, ObjectiveTerms]: ...

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, *, return_terms: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, ObjectiveTerms]:
        """The loss of one batch (a differentiable scalar), and its terms if asked."""
        vocab = check_inputs(logits, labels)
        targets, valid = targets_and_mask(labels, self.ignore_index, self.shift, vocab)
        world = bs.world_size() if self.global_batch else 1
        # Across processes every one must reduce the same sums, whoever logs the terms.
        exact = bool(return_terms or world > 1)
        plan = Plan(
            want_logprob=bool(self.ce or self.conf or exact),
            want_rank=bool(self.conf or exact),
            tau=self.tau if self.needs_soft_rank else None,
            chunk_size=min(self.chunk_size or vocab, vocab),
        )
        per_token = token_terms(logits, targets, valid, plan)
        sums = _sums(self, per_token, plan, valid, vocab)
        if world > 1:
            sums = bs.all_reduced(sums)
        return _assemble(self, sums, vocab, compute_dtype(logits.dtype), return_terms)


_WEIGHTS = ("ce", "conf", "soft_ee", "soft_log_rank", "soft_rbp")


def mixture(
    ce: float = 1.0,
    soft_ee: float = 0.0,
    soft_log_rank: float = 0.0,
    conf: float = 0.0,
    soft_rbp: float = 0.0,
    *,
    tau: float = DEFAULT_TAU,
    bandwidth: float = DEFAULT_BANDWIDTH,
    bins: Sequence[int] | None = None,
    rbp_k: int = 1,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
    global_batch: bool = False,
) -> Objective:
    """An anchored mixture: the callable ``loss(logits, labels)`` of :class:`Objective`.

    Examples:
        >>> import torch
        >>> from errorentropy.objectives import mixture
        >>> _ = torch.manual_seed(0)
        >>> logits = torch.randn(2, 6, 40, requires_grad=True)
        >>> labels = torch.randint(0, 40, (2, 6))
        >>> objective = mixture(ce=1.0, soft_ee=0.5)
        >>> objective.name
        'ce+0.5soft-ee'
        >>> loss, terms = objective(logits, labels, return_terms=True)
        >>> loss.backward()
        >>> terms.n_tokens, logits.grad.shape
        (10, torch.Size([2, 6, 40]))
        >>> t = terms
        >>> abs(t.cross_entropy - (t.error_entropy + t.self_alignment - t.confidence)) < 1e-9
        True
        >>> sorted(terms.as_dict())[:3]
        ['confidence', 'cross_entropy', 'error_entropy']
    """
    return Objective(
        ce=ce,
        conf=conf,
        soft_ee=soft_ee,
        soft_log_rank=soft_log_rank,
        soft_rbp=soft_rbp,
        tau=tau,
        bandwidth=bandwidth,
        bins=None if bins is None else tuple(bins),
        rbp_k=rbp_k,
        ignore_index=ignore_index,
        shift=shift,
        chunk_size=chunk_size,
        global_batch=global_batch,
    )


@overload
def ce_conf_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    lam: float = ...,
    *,
    ignore_index: int = ...,
    shift: bool = ...,
    chunk_size: int | None = ...,
    global_batch: bool = ...,
    return_terms: Literal[False] = ...,
) -> torch.Tensor: ...


@overload
def ce_conf_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    lam: float = ...,
    *,
    ignore_index: int = ...,
    shift: bool = ...,
    chunk_size: int | None = ...,
    global_batch: bool = ...,
    return_terms: Literal[True],
) -> tuple[torch.Tensor, ObjectiveTerms]: ...


def ce_conf_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    lam: float = 1.0,
    *,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
    global_batch: bool = False,
    return_terms: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, ObjectiveTerms]:
    """The exact ``CE + lam * Conf`` of the batch's labelled tokens (``lam=0``: plain CE,
    ``lam=1``: ``EE + SA``); its gradient on ``log s_i`` is ``-(1/N)(1 - lam q_e / p_e)``.
    ``global_batch``: over every process's batch (:class:`Objective`)."""
    check_real("lam", lam)
    objective = Objective(
        ce=1.0,
        conf=lam,
        ignore_index=ignore_index,
        shift=shift,
        chunk_size=chunk_size,
        global_batch=global_batch,
    )
    if return_terms:
        return objective(logits, labels, return_terms=True)
    return objective(logits, labels)


def soft_error_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    tau: float = DEFAULT_TAU,
    bins: Sequence[int] | None = None,
    *,
    bandwidth: float = DEFAULT_BANDWIDTH,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
    global_batch: bool = False,
) -> torch.Tensor:
    """The relaxed Error-Entropy of the batch: the entropy (nats) of the soft histogram of soft
    ranks over rank ``bins``. Not a loss on its own (see :func:`mixture` for anchors).
    ``global_batch``: over every process's batch (:class:`Objective`)."""
    objective = mixture(
        ce=0.0,
        soft_ee=1.0,
        tau=tau,
        bins=bins,
        bandwidth=bandwidth,
        ignore_index=ignore_index,
        shift=shift,
        chunk_size=chunk_size,
        global_batch=global_batch,
    )
    return objective(logits, labels)


def soft_ranks(
    logits: torch.Tensor,
    labels: torch.Tensor,
    tau: float = DEFAULT_TAU,
    *,
    ignore_index: int = -100,
    shift: bool = True,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """The soft rank ``sum_{v != t} sigmoid((z_v - z_t) / tau)`` of each label, shaped like the
    labels (NaN where there is none); differentiable, and the exact rank as ``tau -> 0``."""
    check_positive("tau", tau)
    check_int(ignore_index, "ignore_index", None)
    check_int(chunk_size, "chunk_size", 1, optional=True)
    vocab = check_inputs(logits, labels)
    targets, valid = targets_and_mask(labels, ignore_index, shift, vocab)
    plan = Plan(False, False, tau, min(chunk_size or vocab, vocab))
    soft = token_terms(logits, targets, valid, plan).soft_rank
    return torch.where(valid, soft, torch.full_like(soft, float("nan"))).view(labels.shape)


def ce_conf_from_tokens(
    logprobs: torch.Tensor, ranks: torch.Tensor, lam: float = 1.0
) -> torch.Tensor:
    """``CE + lam * Conf`` of tokens given by their log-probabilities (differentiable, any float
    dtype; the sums run in float64) and integer ranks, e.g. those of
    :func:`errorentropy.token_stats`."""
    check_real("lam", lam)
    if logprobs.shape != ranks.shape or logprobs.numel() == 0:
        raise UserError(
            f"logprobs {tuple(logprobs.shape)} and ranks {tuple(ranks.shape)} must have one "
            "shape with at least one token"
        )
    groups = group_by_rank(logprobs.reshape(-1).double(), ranks.reshape(-1))
    return (groups.ce + lam * groups.conf).to(logprobs.dtype)


def _sums(
    objective: Objective, per_token: TokenTerms, plan: Plan, valid: torch.Tensor, vocab: int
) -> bs.BatchSums:
    """The batch's sums over its labelled tokens, of what the plan computed."""
    logprob, rank, soft = per_token
    return bs.batch_sums(
        logprob[valid] if plan.want_logprob else None,
        rank[valid] if plan.want_rank else None,
        soft[valid] if plan.tau is not None else None,
        vocab,
        bins=(objective.bins or sr.default_bins(vocab)) if objective.soft_ee else None,
        bandwidth=objective.bandwidth,
        rbp_k=objective.rbp_k,
    )


def _assemble(
    objective: Objective,
    sums: bs.BatchSums,
    vocab: int,
    dtype: torch.dtype,
    return_terms: bool,
) -> torch.Tensor | tuple[torch.Tensor, ObjectiveTerms]:
    """The weighted loss from the batch's sums (float64), and the terms if asked."""
    if not sums.n.item():
        raise UserError(
            "the batch has no labelled token (every label is ignore_index, or only the first "
            "position is labelled and shift=True); skip such batches"
        )
    bs.check_sums(sums)
    parts = bs.parts(sums)
    loss = torch.zeros((), dtype=torch.float64, device=sums.n.device)
    for name in _WEIGHTS:
        weight = getattr(objective, name)
        if weight:
            loss = loss + weight * parts[name]
    loss = loss.to(dtype)
    if not return_terms:
        return loss
    return loss, _terms(objective, loss, parts, sums, vocab)


def _terms(
    objective: Objective,
    loss: torch.Tensor,
    parts: dict[str, torch.Tensor],
    sums: bs.BatchSums,
    vocab: int,
) -> ObjectiveTerms:
    """The logged terms: the exact decomposition of the batch, and the relaxed terms that were
    computed."""
    ee, sa, conf = bs.rank_groups(sums).exact_terms()

    def value(name: str) -> float | None:
        return parts[name].item() if getattr(objective, name) else None

    binned = None
    if "soft_ee" in parts:
        binned = bs.binned_entropy(sums, objective.bins or sr.default_bins(vocab))
    return ObjectiveTerms(
        loss=loss.item(),
        n_tokens=int(sums.n.item()),
        cross_entropy=parts["ce"].item(),
        error_entropy=ee,
        self_alignment=sa,
        confidence=conf,
        soft_error_entropy=value("soft_ee"),
        error_entropy_binned=binned,
        soft_log_rank=value("soft_log_rank"),
        soft_neg_log_rbp=value("soft_rbp"),
    )
