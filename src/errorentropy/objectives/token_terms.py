"""Per-token log-probability, exact rank and soft rank of the labels, read from the logits in
blocks of rows and chunks of the vocabulary.

One custom autograd function reads the logits once forward and once backward. It saves only
the logits (which the caller's graph already holds) and ``O(B*T)`` vectors, and recomputes the
softmax and the sigmoids in backward, so no extra ``[B, T, V]`` tensor lives between forward and
backward; the temporaries are one block (about a million entries on a CPU) at a time.

For a labelled row with logits ``z`` and label ``t`` (computed in float32, float64 for float64
logits):

* ``logprob = z_t - logsumexp(z)`` (differentiable);
* ``rank = #{v : z_v > z_t}`` (strict ``>``, ties in the label's favour; not differentiable);
* ``soft_rank = sum_{v != t} sigmoid((z_v - z_t) / tau)`` (differentiable), which tends to
  ``rank`` as ``tau -> 0`` when no logit ties the label's (a tie counts 1/2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch.autograd.function import once_differentiable

from errorentropy.head.chunked import cpu_workers, run_blocks

__all__ = ["Plan", "TokenTerms", "token_terms"]

CPU_BLOCK_ELEMENTS = 1 << 20  # 4 MiB float32 blocks: one per worker thread, in its caches
CUDA_BLOCK_ELEMENTS = 1 << 25  # a GPU wants large kernels; 128 MiB per float32 temporary


@dataclass(frozen=True)
class Plan:
    """What to compute per token and how to read the logits.

    ``tau`` is the soft rank's temperature (None: no soft rank); ``chunk_size`` the vocabulary
    entries read at a time; ``block_elements`` the entries of one block of rows (rows times the
    chunk width), None for the device's default.
    """

    want_logprob: bool
    want_rank: bool
    tau: float | None
    chunk_size: int
    block_elements: int | None = None

    def rows_per_block(self, vocab: int, device: torch.device) -> int:
        """Rows read together, so that one block holds about ``block_elements`` entries."""
        budget = self.block_elements or (
            CUDA_BLOCK_ELEMENTS if device.type == "cuda" else CPU_BLOCK_ELEMENTS
        )
        return max(1, budget // min(self.chunk_size, vocab))


class TokenTerms(NamedTuple):
    """Flat ``[B*T]`` per-position results; only the labelled positions mean anything.

    ``logprob`` and ``soft_rank`` are in the compute dtype (float32, or float64 for float64
    logits), ``rank`` is int64; a quantity the plan did not ask for is an empty tensor.
    """

    logprob: torch.Tensor
    rank: torch.Tensor
    soft_rank: torch.Tensor


def token_terms(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, plan: Plan
) -> TokenTerms:
    """The per-token terms of ``logits`` (``[B, T, V]``) at flat ``targets`` (``[B*T]``, any
    in-vocabulary id where ``valid`` is False), differentiable where the plan says so."""
    out = _TokenTermsFunction.apply(logits, targets, valid, plan)
    return TokenTerms(*out)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Float64 for float64 logits, float32 for every other floating dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _row_slabs(logits: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """The logits as 2-D ``[rows, V]`` views with the flat index of their first row: one view
    when the strides allow it, else one per sequence (never a copy of the whole tensor)."""
    vocab = logits.shape[-1]
    try:
        return [(0, logits.view(-1, vocab))]
    except RuntimeError:
        length = logits.shape[-2]
        return [(b * length, logits[b]) for b in range(logits.shape[0])]


class _Block(NamedTuple):
    """Rows ``start : start + len(z)`` of the flat logits, and which of them have a label."""

    start: int
    z: torch.Tensor
    any_label: bool
    unlabelled: torch.Tensor | None  # row indices within the block, on the device; None: all


def _blocks(logits: torch.Tensor, valid: torch.Tensor, plan: Plan) -> list[_Block]:
    """The blocks of rows, with their labels read once from a CPU copy of ``valid`` (one device
    synchronisation per call, none per block)."""
    rows = plan.rows_per_block(logits.shape[-1], logits.device)
    valid_cpu = valid.cpu()
    blocks = []
    for offset, slab in _row_slabs(logits):
        for start in range(0, slab.shape[0], rows):
            z = slab[start : start + rows]
            mask = valid_cpu[offset + start : offset + start + z.shape[0]]
            missing = (~mask).nonzero()[:, 0]
            unlabelled = missing.to(logits.device) if missing.numel() else None
            blocks.append(_Block(offset + start, z, bool(mask.any()), unlabelled))
    return blocks


def _scratch(z: torch.Tensor, plan: Plan, cdtype: torch.dtype) -> torch.Tensor:
    """A buffer for one chunk of a block's rows."""
    width = min(plan.chunk_size, z.shape[1])
    return torch.empty(z.shape[0], width, dtype=cdtype, device=z.device)


def _run_blocks(run: Callable[[_Block], None], blocks: list[_Block], device: torch.device) -> None:
    """``run(block)`` for every block, spread over the head's worker threads on a CPU, each block
    at one thread (:func:`errorentropy.head.chunked.run_blocks` says why)."""
    wrapped = _without_grad(run)
    run_blocks(lambda i: wrapped(blocks[i]), range(len(blocks)), cpu_workers(device))


def _without_grad(run: Callable[[_Block], None]) -> Callable[[_Block], None]:
    """``run`` under ``torch.no_grad()``: grad mode is per thread, and a worker's is on."""

    def wrapped(block: _Block) -> None:
        with torch.no_grad():
            run(block)

    return wrapped


def _chunks(vocab: int, plan: Plan) -> list[slice]:
    return [slice(c, min(c + plan.chunk_size, vocab)) for c in range(0, vocab, plan.chunk_size)]


class _TokenTermsFunction(torch.autograd.Function):
    """Forward: the per-token terms. Backward: their gradient with respect to the logits,
    recomputed block by block from the saved logits."""

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, plan: Plan
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cdtype = compute_dtype(logits.dtype)
        n, device = targets.numel(), logits.device
        picked = torch.full((n,), float("nan"), dtype=cdtype, device=device)
        lse = torch.empty(n if plan.want_logprob else 0, dtype=cdtype, device=device)
        rank = torch.empty(n if plan.want_rank else 0, dtype=torch.int64, device=device)
        soft = torch.empty(n if plan.tau is not None else 0, dtype=cdtype, device=device)

        def run(block: _Block) -> None:
            if not block.any_label:
                return
            rows = slice(block.start, block.start + block.z.shape[0])
            zt, block_lse, block_rank, block_soft = _forward_block(
                block.z, targets[rows], plan, cdtype
            )
            picked[rows] = zt
            if block_lse is not None:
                lse[rows] = block_lse
            if block_rank is not None:
                rank[rows] = block_rank
            if block_soft is not None:
                soft[rows] = block_soft

        _run_blocks(run, _blocks(logits, valid, plan), device)
        logprob = picked - lse if plan.want_logprob else lse
        ctx.save_for_backward(logits, targets, valid, picked, lse)
        ctx.plan = plan
        ctx.mark_non_differentiable(rank)
        ctx.set_materialize_grads(False)
        return logprob, rank, soft

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any,
        grad_logprob: torch.Tensor | None,
        _grad_rank: torch.Tensor | None,
        grad_soft: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, None, None, None]:
        if grad_logprob is None and grad_soft is None:
            return None, None, None, None
        logits, targets, valid, picked, lse = ctx.saved_tensors
        plan: Plan = ctx.plan
        zero = torch.zeros((), dtype=picked.dtype, device=picked.device)
        w = None if grad_logprob is None else torch.where(valid, grad_logprob.to(zero), zero)
        h = None if grad_soft is None else torch.where(valid, grad_soft.to(zero), zero)
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        flat = grad.view(-1, logits.shape[-1])

        def run(block: _Block) -> None:
            rows = slice(block.start, block.start + block.z.shape[0])
            out = flat[rows]
            if not block.any_label:
                out.zero_()
                return
            w_lse = None if w is None else (w[rows], lse[rows])
            h_rows = None if h is None else h[rows]
            _backward_block(block.z, targets[rows], picked[rows], w_lse, h_rows, plan, out)
            if block.unlabelled is not None:
                out.index_fill_(0, block.unlabelled, 0.0)

        _run_blocks(run, _blocks(logits, valid, plan), logits.device)
        return grad, None, None, None


def _forward_block(
    z: torch.Tensor, tgt: torch.Tensor, plan: Plan, cdtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Label logit, log-sum-exp, exact rank and soft rank of the rows of one block."""
    zt = z.gather(1, tgt[:, None]).to(cdtype)
    lse = rank = soft = None
    scratch = _scratch(z, plan, cdtype)
    for cols in _chunks(z.shape[1], plan):
        zc = z[:, cols].to(cdtype)
        buf = scratch[:, : zc.shape[1]]
        if plan.want_logprob:
            top = zc.amax(1, keepdim=True)
            total = torch.sub(zc, top, out=buf).exp_().sum(1).log_().add_(top[:, 0])
            lse = total if lse is None else torch.logaddexp(lse, total)
        if plan.want_rank:
            count = torch.gt(zc, zt, out=buf).sum(1)  # float sums of 0/1: exact below 2**24
            rank = count if rank is None else rank + count
        if plan.tau is not None:
            part = torch.sub(zc, zt, out=buf).div_(plan.tau).sigmoid_().sum(1)
            soft = part if soft is None else soft + part
    if soft is not None:
        soft = soft - 0.5  # the label's own term, sigmoid(0)
    return zt[:, 0], lse, None if rank is None else rank.long(), soft


def _backward_block(
    z: torch.Tensor,
    tgt: torch.Tensor,
    zt: torch.Tensor,
    w_lse: tuple[torch.Tensor, torch.Tensor] | None,
    h: torch.Tensor | None,
    plan: Plan,
    out: torch.Tensor,
) -> None:
    """Write into ``out`` the gradient of one block's rows.

    With ``w = dL/dlogprob`` and ``h = dL/dsoft_rank``:
    ``dL/dz_v = w (1[v = t] - softmax_v) + (h / tau) d_v`` for ``v != t`` and
    ``dL/dz_t = w (1 - softmax_t) - (h / tau) sum_{v != t} d_v``, where
    ``d_v = sigmoid'((z_v - z_t) / tau)``.
    """
    cdtype, tau = zt.dtype, plan.tau or 1.0
    direct = out.dtype == cdtype
    scratch = _scratch(z, plan, cdtype)
    h_tau = None if h is None else (h / tau)[:, None]
    d_sum = None
    for cols in _chunks(z.shape[1], plan):
        zc = z[:, cols].to(cdtype)
        dst = out[:, cols] if direct else scratch[:, : zc.shape[1]]
        if w_lse is not None:
            w, lse = w_lse
            torch.sub(zc, lse[:, None], out=dst).exp_().mul_(-w[:, None])
        if h_tau is not None:
            s = torch.sub(zc, zt[:, None]).div_(tau).sigmoid_()
            d = torch.addcmul(s, s, s, value=-1.0)  # sigmoid' = s (1 - s)
            part = d.sum(1)
            d_sum = part if d_sum is None else d_sum + part
            if w_lse is None:
                torch.mul(d, h_tau, out=dst)
            else:
                dst.addcmul_(d, h_tau)
        if not direct:
            out[:, cols].copy_(dst)
    # The label's own column: + w from the one-hot, - (h / tau) sum_{v != t} d_v; the sums
    # above gave it (h / tau) d_t with d_t = sigmoid'(0) = 1/4, so subtract (h / tau) d_sum.
    correction = torch.zeros_like(zt)
    if w_lse is not None:
        correction += w_lse[0]
    if h_tau is not None and d_sum is not None:
        correction -= h_tau[:, 0] * d_sum
    index = tgt[:, None]
    current = out.gather(1, index).to(cdtype)
    out.scatter_(1, index, (current + correction[:, None]).to(out.dtype))
