"""The chunked head: final hidden states to (rank, log-probability) per token, never full logits.

:func:`score_hidden` applies the output head itself, in vocabulary chunks, in float32, carrying a
running log-sum-exp, the ground truth's logit and the count of strictly greater logits, so a
``[tokens, vocab]`` float32 tensor is never built (only ``[token_block, vocab_chunk]``). On float32
models it gives the numbers :func:`errorentropy.head.full.score_logits` gives from the model's own
logits; on 16-bit models it computes float32 logits where the model rounds them to 16 bits.

Rank follows Eq. 1 of the paper: ``#{v : z_v > z_target}`` with strict ``>``, so ties count in
the ground truth's favour; ``tied`` counts the other entries exactly equal to the target logit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

from errorentropy.head.logits import (
    ROW_MULTIPLE,
    LogitMap,
    TokenScores,
    check_finite,
    default_chunk_elements,
    empty_scores,
    row_logsumexp,
)
from errorentropy.options import DEFAULT_VOCAB_CHUNK


def cpu_workers(device: torch.device) -> int:
    """Threads the chunked head spreads its token blocks over: torch's intra-op thread count on a
    CPU (1 inside a worker, so pools never nest), 1 elsewhere (a GPU runs each tile whole)."""
    return torch.get_num_threads() if device.type == "cpu" else 1


# float32 copies of 16-bit head chunks held by the workers at once (256 MiB)
WORKER_COPY_BYTES = 1 << 28
_POOLS: dict[int, ThreadPoolExecutor] = {}
# A forked child inherits the pools but not their threads: it must start its own.
os.register_at_fork(after_in_child=_POOLS.clear)


Block = TypeVar("Block")


def run_blocks(block: Callable[[int], Block], starts: range, workers: int) -> list[Block]:
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
        # Back to `before`, not `workers`: a 16-bit head may run fewer workers than threads.
        torch.set_num_threads(before)


TARGET_BLOCK = 256


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
    logit_map: LogitMap,
    vocab_chunk: int,
    topk: int,
) -> TokenScores:
    """One block of tokens through the whole head, one ``[tokens, vocab_chunk]`` tile at a time."""
    vocab = weight.shape[0]
    h = hidden.float()
    t = logit_map.apply(_target_logits(h, weight[tgt].float()), tgt)
    # The running log-sum-exp is carried in float64: float32 drifts by ~1e-5 over many chunks.
    lse = torch.full(t.shape, float("-inf"), dtype=torch.float64, device=t.device)
    greater = torch.zeros_like(tgt)
    tied = torch.zeros_like(tgt)
    top = torch.empty(h.shape[0], 0, device=h.device)  # the topk largest rival logits so far
    for v0 in range(0, vocab, vocab_chunk):
        w = weight[v0 : v0 + vocab_chunk].float()
        z = logit_map.apply(h @ w.T, slice(v0, v0 + vocab_chunk))
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
            top = torch.cat([top, z.topk(min(topk, z.shape[1]), dim=-1).values], dim=1)
            top = top.topk(min(topk, top.shape[1]), dim=-1).values
    check_finite(lse, t)
    top_logprobs = top.double() - lse[:, None] if topk else None
    return TokenScores(greater, t.double() - lse, tied, top_logprobs)


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
    where a 4 MiB tile stays in cache, and 2^26 on CUDA). The target logit is the float32 dot
    product of the hidden state with the target's head row; the target's own column is excluded from
    the greater/tied counts, so the rank is exact up to ties within float32 round-off of that dot
    product. Logits are then multiplied by ``logit_scale``, divided by ``logit_divisor`` and
    soft-capped at ``softcap``, each where given, in that order (as Cohere, Granite and Gemma 2 do).
    """
    if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError("hidden must be [T, H] and weight [V, H]")
    n_tokens, vocab = hidden.shape[0], weight.shape[0]
    if n_tokens == 0:
        return empty_scores(hidden.device, topk)
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
        # A real target: finite wherever the real ones are.
        targets = torch.cat([targets, targets[:1].expand(padding)])
    workers = cpu_workers(hidden.device)
    if weight.dtype != torch.float32:
        # Each worker holds a float32 copy of its head chunk: keep them within WORKER_COPY_BYTES.
        workers = max(1, min(workers, WORKER_COPY_BYTES // (vocab_chunk * weight.shape[1] * 4)))
    if workers > 1:
        # Enough blocks for every worker (still a multiple of ROW_MULTIPLE rows: the same bits).
        token_block = min(
            token_block, -(-n_tokens // workers // ROW_MULTIPLE) * ROW_MULTIPLE or ROW_MULTIPLE
        )

    logit_map = LogitMap(bias, softcap, logit_scale, logit_divisor)

    def block(t0: int) -> TokenScores:
        rows = slice(t0, t0 + token_block)
        return _score_block(hidden[rows], targets[rows], weight, logit_map, vocab_chunk, topk)

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
