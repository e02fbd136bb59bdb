"""Independent references: the decomposition and token scoring straight from the definitions,
one rank / one document at a time, in float64 (no code shared with the package)."""

from __future__ import annotations

import math

import numpy as np
import torch


def naive_decompose(ranks, logprobs) -> dict[str, float]:
    """CE, EE, SA, Conf from per-token ranks and log-probs, with math.fsum over Python floats."""
    ranks = [int(r) for r in np.asarray(ranks).ravel()]
    logprobs = [float(x) for x in np.asarray(logprobs).ravel()]
    n = len(ranks)
    groups: dict[int, list[float]] = {}
    for r, lp in zip(ranks, logprobs):
        groups.setdefault(r, []).append(lp)
    p = {e: len(v) / n for e, v in groups.items()}
    big_q = {e: math.exp(math.fsum(v) / len(v)) for e, v in groups.items()}
    c = math.fsum(big_q.values())
    q = {e: big_q[e] / c for e in groups}
    return {
        "cross_entropy": -math.fsum(logprobs) / n,
        "error_entropy": -math.fsum(p[e] * math.log(p[e]) for e in groups),
        "self_alignment": math.fsum(p[e] * math.log(p[e] / q[e]) for e in groups),
        "confidence": math.log(c),
    }


@torch.no_grad()
def naive_token_scores(model, token_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Rank and log-prob of tokens 1..L-1 of one document: full logits, float64 log-softmax."""
    ids = torch.tensor([token_ids], dtype=torch.long)
    logits = model(input_ids=ids).logits[0, :-1].double()
    targets = ids[0, 1:]
    target_logit = logits.gather(1, targets[:, None])
    ranks = (logits > target_logit).sum(-1).numpy()
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0].numpy()
    return ranks, logprobs
