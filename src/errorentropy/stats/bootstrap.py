"""Document-level bootstrap of a cell's decomposition (CE, EE, SA, Conf).

Documents, not tokens, are the independent units, so a replicate draws documents with
replacement. Drawing D documents with replacement is the same as giving document d the weight
``w_d ~ Multinomial(D, 1/D)``; the replicate's rank histogram is then ``sum_d w_d h_d`` with
``h_d`` document d's own sparse rank histogram. All replicates of a chunk are one sparse-dense
matrix product, and the decomposition of every replicate is computed at once in float64.

For a sweep, one weight matrix per dataset is drawn over the dataset's document ids and applied
to every model: each replicate resamples the same documents for every model, which keeps the
pairing between models that a scaling fit relies on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import logsumexp

from errorentropy.stats.quantities import QUANTITIES

COMPONENTS = tuple(q.key for q in QUANTITIES)  # column order of every components array here
# Bound on replicates x observed ranks held dense at once: each dense float64 array of a chunk is
# 8 MiB, and components_from_dense holds about nine (a cell's bootstrap in every summary).
CHUNK_ELEMENTS = 1_000_000


@dataclass(frozen=True)
class DocumentHistograms:
    """Per-document rank histograms of one cell, as sparse matrices over a document id space.

    Row i belongs to document id ``doc_space[i]``; column j to rank ``ranks[j]`` (observed ranks
    only). ``counts[i, j]`` is that document's n_e and ``sums[i, j]`` its S_e.
    """

    doc_space: np.ndarray
    ranks: np.ndarray
    counts: sparse.csr_matrix
    sums: sparse.csr_matrix

    @property
    def n_documents(self) -> int:
        """Documents in the id space (rows), including any without tokens in this cell."""
        return int(self.doc_space.size)


def document_histograms(
    doc: np.ndarray, rank: np.ndarray, logprob: np.ndarray, doc_space: np.ndarray | None = None
) -> DocumentHistograms:
    """Sparse per-document histograms from per-token ``doc``, ``rank`` and ``logprob`` arrays.

    ``doc_space`` (sorted unique document ids) fixes the rows so several cells share one
    resampling; it must contain every id in ``doc``. By default it is this cell's own ids.
    """
    doc = np.asarray(doc).astype(np.int64, copy=False).ravel()
    rank = np.asarray(rank).astype(np.int64, copy=False).ravel()
    logprob = np.asarray(logprob, dtype=np.float64).ravel()
    if not (doc.size == rank.size == logprob.size):
        raise ValueError("doc, rank and logprob must have equal lengths")
    space = np.unique(doc) if doc_space is None else np.asarray(doc_space, dtype=np.int64)
    rows = np.searchsorted(space, doc)
    if doc.size and (rows.max() >= space.size or not np.array_equal(space[rows], doc)):
        raise ValueError("doc_space does not contain every document id of the cell")
    ranks, cols = np.unique(rank, return_inverse=True)
    shape = (int(space.size), int(ranks.size))
    counts = sparse.csr_matrix(
        (np.ones(doc.size), (rows, cols)), shape=shape
    )  # duplicates are summed
    sums = sparse.csr_matrix((logprob, (rows, cols)), shape=shape)
    counts.sum_duplicates()
    sums.sum_duplicates()
    return DocumentHistograms(space, ranks, counts, sums)


def resample_weights(n_documents: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights, shape (n_boot, n_documents): how often each document is drawn."""
    if n_documents < 1:
        raise ValueError("cannot resample zero documents")
    return rng.multinomial(
        n_documents, np.full(n_documents, 1.0 / n_documents), size=n_boot
    ).astype(np.float64)


def components_from_dense(counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """(CE, EE, SA, Conf) for each row of dense per-rank ``counts`` and ``sums`` (shape (B, R)).

    Ranks with zero count are unobserved in that row and left out, as in
    :func:`errorentropy.stats.histogram.decompose_arrays`. Rows with no tokens give NaN.
    """
    counts = np.asarray(counts, dtype=np.float64)
    sums = np.asarray(sums, dtype=np.float64)
    total = counts.sum(axis=1)
    observed = counts > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        p = counts / total[:, None]
        log_p = np.where(observed, np.log(np.where(observed, p, 1.0)), 0.0)
        log_q_unnorm = np.where(observed, sums / np.where(observed, counts, 1.0), -np.inf)
        log_c = logsumexp(log_q_unnorm, axis=1)
        ee = -np.sum(p * log_p, axis=1)
        sa = np.sum(np.where(observed, p * (log_p - (log_q_unnorm - log_c[:, None])), 0.0), axis=1)
        ce = -sums.sum(axis=1) / total
    out = np.stack([ce, ee, sa, log_c], axis=1)
    out[total <= 0] = np.nan
    return out


def replicate_components(hists: DocumentHistograms, weights: np.ndarray) -> np.ndarray:
    """(CE, EE, SA, Conf) of each weighted replicate; ``weights`` has shape (B, n_documents)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if weights.shape[1] != hists.n_documents:
        raise ValueError(
            f"weights cover {weights.shape[1]} documents, the histograms {hists.n_documents}"
        )
    n_boot = weights.shape[0]
    chunk = max(1, CHUNK_ELEMENTS // max(1, hists.ranks.size))
    counts_t = hists.counts.T.tocsr()
    sums_t = hists.sums.T.tocsr()
    out = np.empty((n_boot, len(COMPONENTS)))
    for start in range(0, n_boot, chunk):
        w = weights[start : start + chunk].T  # (D, b)
        out[start : start + chunk] = components_from_dense((counts_t @ w).T, (sums_t @ w).T)
    return out


def replicate_rbp(
    hists: DocumentHistograms, weights: np.ndarray, ks: tuple[int, ...]
) -> np.ndarray:
    """RBP_k (share of tokens ranked below k) of each weighted replicate, shape (B, len(ks)).

    Document d's tokens below rank k are summed once (``hits[d, j]``); a replicate's RBP_k is
    ``w @ hits[:, j] / w @ tokens``. Replicates with no tokens give NaN.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if weights.shape[1] != hists.n_documents:
        raise ValueError(
            f"weights cover {weights.shape[1]} documents, the histograms {hists.n_documents}"
        )
    below = (hists.ranks[:, None] < np.asarray(ks, dtype=np.int64)[None, :]).astype(np.float64)
    hits = np.asarray(hists.counts @ below)  # (D, K)
    tokens = np.asarray(hists.counts.sum(axis=1)).ravel()  # (D,)
    total = weights @ tokens
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (weights @ hits) / total[:, None]
    out[total <= 0] = np.nan
    return out


def percentile_interval(replicates: np.ndarray, level: float = 0.95, axis: int = 0) -> np.ndarray:
    """Percentile bootstrap interval ``[lo, hi]`` along ``axis`` (NaN replicates ignored).

    The result has a leading axis of length 2. All-NaN input gives NaN bounds.
    """
    tail = 100.0 * (1.0 - level) / 2.0
    replicates = np.asarray(replicates, dtype=np.float64)
    finite = np.isfinite(replicates)
    if finite.all():
        return np.percentile(replicates, [tail, 100.0 - tail], axis=axis)
    masked = np.where(finite, replicates, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", RuntimeWarning
        )  # 'All-NaN slice': NaN bounds already say it
        return np.nanpercentile(masked, [tail, 100.0 - tail], axis=axis)


def centred_interval(point: np.ndarray, replicates: np.ndarray, level: float = 0.95) -> np.ndarray:
    """The percentile interval moved by ``point - mean(replicates)``: the spread of the statistic
    at this corpus size, centred on the estimate.

    Resampling documents with replacement repeats documents and so loses rare ranks: the
    replicates of a plug-in entropy (EE, and so SA and Conf) sit systematically below the estimate,
    and a plain percentile interval can exclude it. Removing that shift gives intervals that
    cover the expected corpus-level value at the nominal rate far better (tests/test_bootstrap.py);
    for CE, a mean, the shift is negligible and nothing changes.
    """
    return percentile_interval(centred_replicates(point, replicates), level)


def centred_replicates(point: np.ndarray, replicates: np.ndarray) -> np.ndarray:
    """Replicates moved by ``point - mean(replicates)`` (per column): the resampling spread
    around the estimate, without the resampling shift. Fits refitted on these replicates give
    intervals around the fitted values; refitted on raw replicates, a shift that differs between
    models (larger for small models, which have more rare ranks) tilts every slope."""
    replicates = np.asarray(replicates, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        shift = np.asarray(point, dtype=np.float64) - np.nanmean(replicates, axis=0)
    return replicates + shift


@dataclass(frozen=True)
class CellBootstrap:
    """A cell's components (CE, EE, SA, Conf), their replicates and centred intervals
    (:func:`centred_interval`)."""

    point: np.ndarray  # (4,)
    replicates: np.ndarray  # (B, 4)
    interval: np.ndarray  # (2, 4): lower row, upper row
    level: float

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{"CE": {"value": x, "ci": [lo, hi]}, ...}``."""
        return {
            name: {
                "value": float(self.point[j]),
                "ci": [float(self.interval[0, j]), float(self.interval[1, j])],
            }
            for j, name in enumerate(COMPONENTS)
        }


def bootstrap_cell(
    doc: np.ndarray,
    rank: np.ndarray,
    logprob: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> CellBootstrap:
    """Bootstrap one cell on its own documents (for a sweep, share weights with
    :func:`replicate_components`)."""
    hists = document_histograms(doc, rank, logprob)
    weights = resample_weights(hists.n_documents, n_boot, np.random.default_rng(seed))
    point = replicate_components(hists, np.ones((1, hists.n_documents)))[0]
    reps = replicate_components(hists, weights)
    return CellBootstrap(point, reps, centred_interval(point, reps, level), level)


def reindex(hists: DocumentHistograms, doc_space: np.ndarray) -> DocumentHistograms:
    """The same histograms with rows over a wider ``doc_space`` (sorted ids, a superset)."""
    doc_space = np.asarray(doc_space, dtype=np.int64)
    new_rows = np.searchsorted(doc_space, hists.doc_space)
    if hists.doc_space.size and (
        new_rows.max() >= doc_space.size or not np.array_equal(doc_space[new_rows], hists.doc_space)
    ):
        raise ValueError("doc_space does not contain every document id of the cell")
    shape = (int(doc_space.size), int(hists.ranks.size))

    def move(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
        coo = matrix.tocoo()
        return sparse.csr_matrix((coo.data, (new_rows[coo.row], coo.col)), shape=shape)

    return DocumentHistograms(doc_space, hists.ranks, move(hists.counts), move(hists.sums))
