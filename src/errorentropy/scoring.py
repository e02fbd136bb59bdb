"""Token scoring: from a model's output to (rank, log-probability) per scored token.

Two paths give the same numbers on float32 models (on 16-bit models :func:`score_logits` reads
logits the model rounded to 16 bits, where :func:`score_hidden` computes them in float32):

* :func:`score_hidden` applies the output head itself, in vocabulary chunks, in float32, carrying
  a running log-sum-exp, the ground truth's logit and the count of strictly greater logits, so a
  ``[tokens, vocab]`` float32 tensor is never built (only ``[token_block, vocab_chunk]``).
* :func:`score_logits` reads logits the model already produced (the fallback for heads that
  have not been verified), in float32 chunks over positions.

Rank follows Eq. 1 of the paper: ``#{v : z_v > z_target}`` with strict ``>``, so ties count in
the ground truth's favour; ``tied`` counts the other entries exactly equal to the target logit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from .errors import UserError

DEFAULT_VOCAB_CHUNK = 8192
# float32 elements in one [token_block, vocab_chunk] tile: 4 MiB, small enough to stay in cache
# between the passes over a tile (matmul, log-sum-exp, two comparisons); 64 MiB tiles were ~2x
# slower on CPU (benchmarks/RESULTS.md).
DEFAULT_CHUNK_ELEMENTS = 1 << 20
# On a GPU each tile costs a few kernel launches whatever its size, so tiles are 64x larger
# (256 MiB): 4 MiB tiles would leave a 151,936-entry head launch-bound.
CUDA_CHUNK_ELEMENTS = 1 << 26


def default_chunk_elements(device: torch.device) -> int:
    """float32 elements per ``[token block, vocab chunk]`` tile on ``device`` when none is asked for."""
    return CUDA_CHUNK_ELEMENTS if device.type == "cuda" else DEFAULT_CHUNK_ELEMENTS


def cpu_workers(device: torch.device) -> int:
    """Threads the chunked head spreads its token blocks over: torch's intra-op thread count on a
    CPU (1 inside a worker, so pools never nest), 1 elsewhere (a GPU runs each tile whole)."""
    return torch.get_num_threads() if device.type == "cpu" else 1


WORKER_COPY_BYTES = (
    1 << 28
)  # float32 copies of 16-bit head chunks held by the workers at once (256 MiB)
_POOLS: dict[int, ThreadPoolExecutor] = {}
# A forked child inherits the pools but not their threads: it must start its own.
os.register_at_fork(after_in_child=_POOLS.clear)


def run_blocks(
    block: Callable[[int], TokenScores], starts: range, workers: int
) -> list[TokenScores]:
    """``block(start)`` for every start, in order, each at one intra-op thread; with ``workers`` > 1
    the blocks run on that many threads at once.

    A CPU tile of the head (a few MiB) is too small to split across OpenMP threads: every operation
    ends in a barrier, and where another job holds a core a descheduled thread stalls each barrier
    (2 threads ran up to 20x slower than 1 on this project's shared 2-core machine). Whole blocks
    on separate threads share no barrier, torch releases the GIL inside each operation, and every
    block is computed as at one thread, so the bits do not depend on the thread count.
    """
    if workers <= 1:
        return [block(s) for s in starts]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if len(starts) == 1:
            return [block(starts[0])]
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(
                workers,
                thread_name_prefix="errorentropy-head",
                initializer=torch.set_num_threads,
                initargs=(1,),
            )
        return list(pool.map(block, starts))
    finally:
        torch.set_num_threads(
            before
        )  # not `workers`: a 16-bit head may run fewer workers than threads


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


NON_FINITE_MESSAGE = "the model produced NaN or inf logits; run in --dtype float32, or check the weights (a half-precision overflow is the usual cause)"


def _check_finite(lse: torch.Tensor, target: torch.Tensor) -> None:
    if not (torch.isfinite(lse).all() and torch.isfinite(target).all()):
        raise UserError(NON_FINITE_MESSAGE)


def row_logsumexp(z: torch.Tensor) -> torch.Tensor:
    """float64 log-sum-exp of each row of float32 ``z``: the (exact) row maximum plus the log of
    the float32 sum of ``exp(z - max)``. ``torch.logsumexp`` rounds its float32 result, an error
    of ~2e-6 where the value is near 40; this keeps ~1e-7 whatever the value, and is no slower."""
    top = z.amax(dim=-1)
    # A row of -inf (a chunk of the vocabulary masked by its bias) is shifted by 0, not by -inf,
    # and gives -inf rather than NaN; a row holding +inf or NaN stays non-finite and is reported.
    shift = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    return shift.double() + torch.exp(z - shift[:, None]).sum(dim=-1).double().log()


def _softcap(z: torch.Tensor, cap: float | None) -> torch.Tensor:
    return z if cap is None else torch.tanh(z / cap) * cap


def _rescale(z: torch.Tensor, multiplier: float | None, divisor: float | None) -> torch.Tensor:
    """A logit scale after the head, as the model applies it (Cohere multiplies, Granite divides)."""
    if multiplier is not None:
        z = z * multiplier
    if divisor is not None:
        z = z / divisor
    return z


TARGET_BLOCK = 256
ROW_MULTIPLE = 16


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
        _check_finite(lse, t)
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
        return _empty(logits.device, topk)
    return TokenScores.cat(parts)


def _empty(device: torch.device, topk: int) -> TokenScores:
    return TokenScores(
        torch.zeros(0, dtype=torch.long, device=device),
        torch.zeros(0, dtype=torch.float64, device=device),
        torch.zeros(0, dtype=torch.long, device=device),
        torch.zeros(0, topk, dtype=torch.float64, device=device) if topk else None,
    )


def _target_logits(h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products ``h[i] . rows[i]``, computed as diagonals of small matrix products.

    A matrix product gives the bits the vocabulary tiles (and the model's own head) give for the
    same entry, where an elementwise multiply-and-sum rounds differently; near-ties then compare
    alike and ranks match full logits exactly. Extra work: ``TARGET_BLOCK / vocab`` of the head.
    """
    return torch.cat(
        [
            (h[s : s + TARGET_BLOCK] @ rows[s : s + TARGET_BLOCK].T).diagonal()
            for s in range(0, h.shape[0], TARGET_BLOCK)
        ]
    )


@torch.no_grad()  # grad mode is per thread: a worker would otherwise record the head for autograd
def _score_block(
    hidden: torch.Tensor,
    tgt: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    softcap: float | None,
    vocab_chunk: int,
    topk: int,
    scale: tuple[float | None, float | None] = (None, None),
) -> TokenScores:
    """One block of tokens through the whole head, one ``[tokens, vocab_chunk]`` tile at a time."""
    vocab = weight.shape[0]
    h = hidden.float()
    t = _target_logits(h, weight[tgt].float())
    if bias is not None:
        t = t + bias[tgt].float()
    t = _softcap(_rescale(t, *scale), softcap)
    # The running log-sum-exp is carried in float64: float32 drifts by ~1e-5 over many chunks.
    lse = torch.full(t.shape, float("-inf"), dtype=torch.float64, device=t.device)
    greater = torch.zeros_like(tgt)
    tied = torch.zeros_like(tgt)
    top = torch.empty(h.shape[0], 0, device=h.device) if topk else None
    for v0 in range(0, vocab, vocab_chunk):
        w = weight[v0 : v0 + vocab_chunk].float()
        z = h @ w.T
        if bias is not None:
            z = z + bias[v0 : v0 + vocab_chunk].float()
        z = _softcap(_rescale(z, *scale), softcap)
        lse = torch.logaddexp(lse, row_logsumexp(z))
        inside = (tgt >= v0) & (tgt < v0 + w.shape[0])
        if inside.any():
            # Exclude the target's own column: it is the reference, not a competitor.
            rows = inside.nonzero()[:, 0]
            z[rows, tgt[rows] - v0] = float("-inf")
        # int32 partial sums: summing booleans into int64 first converts the whole tile.
        greater += (z > t[:, None]).sum(-1, dtype=torch.int32)
        tied += (z == t[:, None]).sum(-1, dtype=torch.int32)
        if topk:
            if inside.any():
                z[rows, tgt[rows] - v0] = t[rows]
            top = torch.cat([top, z.topk(min(topk, z.shape[1]), dim=-1).values], dim=1)  # type: ignore[list-item]
            top = top.topk(min(topk, top.shape[1]), dim=-1).values
    _check_finite(lse, t)
    return TokenScores(
        greater, t.double() - lse, tied, (top.double() - lse[:, None]) if topk else None
    )  # type: ignore[union-attr]


@torch.no_grad()
def score_hidden(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    softcap: float | None = None,
    logit_scale: float | None = None,
    logit_divisor: float | None = None,
    vocab_chunk: int = DEFAULT_VOCAB_CHUNK,
    chunk_elements: int | None = None,
    topk: int = 0,
) -> TokenScores:
    """Score final hidden states ``[T, H]`` through head ``weight [V, H]`` (+ ``bias``) in chunks.

    Only tiles of ``[token_block, vocab_chunk]`` float32 logits exist at any time, where
    ``token_block = chunk_elements // vocab_chunk`` (``chunk_elements`` defaults to 2^20 on a CPU,
    where a 4 MiB tile stays in cache, and 2^26 on CUDA). The target logit is the float32 dot product
    of the hidden state with the target's head row; the target's own column is excluded from the
    greater/tied counts, so the rank is exact up to ties within float32 round-off of that dot
    product. Logits are then multiplied by ``logit_scale``, divided by ``logit_divisor`` and
    soft-capped at ``softcap``, each where given, in that order (as Cohere, Granite and Gemma 2 do).
    """
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError("hidden must be [T, H] and weight [V, H]")
    n_tokens, vocab = hidden.shape[0], weight.shape[0]
    if n_tokens == 0:
        return _empty(hidden.device, topk)
    vocab_chunk = max(1, min(vocab_chunk, vocab))
    chunk_elements = chunk_elements or default_chunk_elements(weight.device)
    # Every matrix product gets a row count that is a multiple of ROW_MULTIPLE: CPU kernels round
    # the odd rows of a product differently, which would make a token's bits depend on its
    # batch-mates. Padded rows are zeros and are dropped at the end.
    token_block = max(ROW_MULTIPLE, chunk_elements // vocab_chunk // ROW_MULTIPLE * ROW_MULTIPLE)
    padding = -n_tokens % ROW_MULTIPLE
    targets = targets.to(hidden.device)
    if padding:
        hidden = torch.cat([hidden, hidden.new_zeros(padding, hidden.shape[1])])
        targets = torch.cat(
            [targets, targets[:1].expand(padding)]
        )  # a real target: finite wherever the real ones are
    workers = cpu_workers(hidden.device)
    if weight.dtype != torch.float32:
        # Each worker holds a float32 copy of its head chunk: keep them within WORKER_COPY_BYTES.
        workers = max(1, min(workers, WORKER_COPY_BYTES // (vocab_chunk * weight.shape[1] * 4)))
    if workers > 1:
        # Enough blocks for every worker (still a multiple of ROW_MULTIPLE rows: the same bits).
        token_block = min(
            token_block, -(-n_tokens // workers // ROW_MULTIPLE) * ROW_MULTIPLE or ROW_MULTIPLE
        )

    def block(t0: int) -> TokenScores:
        return _score_block(
            hidden[t0 : t0 + token_block],
            targets[t0 : t0 + token_block],
            weight,
            bias,
            softcap,
            vocab_chunk,
            topk,
            (logit_scale, logit_divisor),
        )

    parts = run_blocks(block, range(0, n_tokens, token_block), workers)
    scores = TokenScores.cat(parts)
    if padding:
        scores = TokenScores(
            scores.rank[:n_tokens],
            scores.logprob[:n_tokens],
            scores.tied[:n_tokens],
            None if scores.top_logprobs is None else scores.top_logprobs[:n_tokens],
        )
    return scores
