"""A fake sweep folder from synthetic per-token data with known scaling laws (no models needed).

Each model's ranks are geometric, ``p_e = (1 - r) r^e``, with r solved so that the population
Error-Entropy is ``EE(N) = ee_a * N^ee_alpha`` (natural log) exactly. Every token at rank e gets
log-probability ``log Q_e`` plus zero-mean noise, with ``Q_e = C q_e``, ``q_e ∝ p_e^beta`` and
``log C = Conf(N)`` (a chosen law). So, in the population, EE follows the power law exactly, Conf
follows its law, SA = KL(p || q) and CE = EE + SA - Conf. Sample values differ from these by
finite-sample noise (and the plug-in bias of entropy, ~ (observed ranks - 1) / (2 tokens)).

Usage (also for the report's tests)::

    from synthetic_sweep import build_synthetic_sweep   # tests/ is on sys.path under pytest
    truth = build_synthetic_sweep(tmp_path / "sweep")
    truth["laws"]["A"]["ee_alpha"]      # the exponent fits should recover
    truth["cells"][cell_id]["EE"]       # a cell's population values

Families, sizes, datasets and revisions are arguments; the defaults make 2 families x 4 models
on one dataset, plus training-dynamics revisions of one model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq

from errorentropy.scoring.results import summarize
from errorentropy.stats.tokens import TokenTable
from errorentropy.sweep.cells import CellKey, cell_path, write_cell_record

DEFAULT_FAMILIES: dict[str, dict[str, Any]] = {
    "A": {"sizes": [1e6, 4e6, 1.6e7, 6.4e7], "ee_a": 12.0, "ee_alpha": -0.09},
    "B": {"sizes": [2e6, 8e6, 3.2e7, 1.28e8, 5.12e8], "ee_a": 9.0, "ee_alpha": -0.07},
}
NOISE = 0.05  # half-width of the uniform log-prob noise around log Q_e


def geometric_entropy(r: float) -> float:
    """Entropy (nats) of p_e = (1 - r) r^e, e = 0, 1, ..."""
    return float((-(1 - r) * np.log1p(-r) - r * np.log(r)) / (1 - r))


def solve_ratio(entropy: float) -> float:
    """The geometric ratio r with the given entropy."""
    return float(brentq(lambda r: geometric_entropy(r) - entropy, 1e-9, 1 - 1e-12))


def population(r: float, log_c: float, beta: float, max_rank: int = 100_000) -> dict[str, Any]:
    """Population p_e, log Q_e and CE, EE, SA, Conf for ratio r (ranks truncated where
    p_e < 1e-300)."""
    e = np.arange(max_rank)
    log_p = np.log1p(-r) + e * np.log(r)
    keep = log_p > -690
    e, log_p = e[keep], log_p[keep]
    p = np.exp(log_p)
    p /= p.sum()
    log_p = np.log(p)
    log_q = beta * log_p - np.logaddexp.reduce(beta * log_p)
    ee = float(-(p * log_p).sum())
    sa = float((p * (log_p - log_q)).sum())
    return {
        "p": p,
        "log_Q": log_q + log_c,
        "EE": ee,
        "SA": sa,
        "Conf": log_c,
        "CE": ee + sa - log_c,
    }


def _default_conf(n: float) -> float:
    return 0.05 * (n / 1e6) ** 0.1  # positive, rising with size


def sign_changing_conf(n: float) -> float:
    """A Confidence law crossing zero inside the default size range."""
    return 0.1 - 0.05 * np.log10(n / 1e6)


def build_synthetic_sweep(
    directory: Path | str,
    *,
    families: dict[str, dict[str, Any]] | None = None,
    datasets: tuple[str, ...] = ("synth",),
    n_docs: int = 120,
    doc_len: int = 60,
    beta: float = 1.3,
    conf_law: Callable[[float], float] = _default_conf,
    dynamics: bool = True,
    write_tokens: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Write cells for every (family model, dataset); return the population truth.

    ``families`` maps a family name to ``{"sizes": [N...], "ee_a": a, "ee_alpha": alpha}``
    (EE = a N^alpha). With ``dynamics``, the first family's largest model also gets revisions
    ``step10`` and ``step100`` (a worse model: EE of a 100x smaller one) and its final revision is
    ``step1000`` (the law's values); all other models have revision None. Returns
    ``{"laws": families, "cells": {cell_id: {"CE", "EE", "SA", "Conf", "N", "final"}}}``.
    """
    families = DEFAULT_FAMILIES if families is None else families
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    truth: dict[str, Any] = {"laws": families, "cells": {}, "beta": beta}
    first = next(iter(families))
    for dataset in datasets:
        for family, law in families.items():
            for i, size in enumerate(law["sizes"]):
                model = f"{family}-{i}"
                revisions: list[tuple[str | None, float, bool]] = [(None, size, True)]
                if dynamics and family == first and i == len(law["sizes"]) - 1:
                    revisions = [
                        ("step10", size / 1e4, False),
                        ("step100", size / 1e2, False),
                        ("step1000", size, True),
                    ]
                for revision, effective, final in revisions:
                    ee = law["ee_a"] * effective ** law["ee_alpha"]
                    pop = population(solve_ratio(ee), conf_law(effective), beta)
                    if pop["log_Q"].max() > -NOISE:
                        raise ValueError(
                            f"synthetic law gives Q_0 >= 1 for {model}; lower Conf or beta"
                        )
                    key = CellKey(model, revision, dataset)
                    _write_cell(
                        directory, key, family, int(size), pop, n_docs, doc_len, rng, write_tokens
                    )
                    truth["cells"][key.cell_id] = {
                        q: pop[q] for q in ("CE", "EE", "SA", "Conf")
                    } | {"N": int(size), "final": final}
    return truth


def _write_cell(
    directory: Path,
    key: CellKey,
    family: str,
    n_params: int,
    pop: dict[str, Any],
    n_docs: int,
    doc_len: int,
    rng: np.random.Generator,
    write_tokens: bool,
) -> None:
    n_tokens = n_docs * doc_len
    cdf = np.cumsum(pop["p"])
    rank = np.minimum(
        np.searchsorted(cdf, rng.random(n_tokens) * cdf[-1], side="right"), cdf.size - 1
    )
    logprob = pop["log_Q"][rank] + rng.uniform(-NOISE, NOISE, n_tokens)
    table = TokenTable(
        doc=np.repeat(np.arange(n_docs, dtype=np.int32), doc_len),
        position=np.tile(np.arange(1, doc_len + 1, dtype=np.int32), n_docs),
        rank=rank.astype(np.int32),
        logprob=logprob,
    )
    folder = cell_path(directory, key)
    folder.mkdir(parents=True, exist_ok=True)
    histogram = table.histogram(n_documents=n_docs)
    histogram.save(folder / "histogram.json")
    if write_tokens:
        table.save(folder / "tokens.npz")
    summary = summarize(
        histogram, {"model": key.model, "revision": key.revision, "synthetic": True}
    )
    write_cell_record(
        folder,
        key,
        family=family,
        non_embedding_params=n_params,
        total_params=n_params + 1000,
        summary=summary,
    )
