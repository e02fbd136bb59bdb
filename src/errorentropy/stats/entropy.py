"""Entropy estimators for Error-Entropy, the bias left in a cell's EE, and whether EE's exponent
has settled. numpy and scipy only.

EE is the plug-in entropy (nats) of the ranks of the ground-truth token. Over a vocabulary-sized
support with a heavy tail (``p(r) ~ (r + 1)^-a``, a near 1) the plug-in value is biased low, and
the bias falls slowly with the number of tokens N: more slowly than Miller-Madow's
``(K - 1) / (2 N)`` says, because rare ranks are still being discovered.

Estimators, each a function of a count vector ``n_e``: :func:`plugin_entropy`,
:func:`miller_madow`, :func:`chao_shen` (coverage-adjusted Horvitz-Thompson, Chao and Shen 2003),
:func:`grassberger` (Grassberger 2003) and :func:`zhang` (Zhang 2012, in its closed form
``sum_e p_e (psi(N) - psi(n_e))``).

Which to use: on synthetic Zipf ranks over 50,257 ranks (benchmarks/study_entropy_bias.py),
Chao-Shen is closest to the truth at small N under heavy tails (a = 1.1: error -0.24 nats at 8k
tokens, plug-in -0.68, Miller-Madow -0.53) but over-corrects once the tail is sampled (+0.09 at
512k); Grassberger is never the worst and is the closest from ~128k tokens on (-0.005 at 512k).

**The bias left in a cell's EE** (:func:`bias_from_halves`). R random halves of the documents
(each a prefix of a seeded document permutation, the one whose token count n_h is closest to
N/2). For half r, the drift ``EE_all - EE_half`` scaled to an exact half, ``d_r = (EE_all -
EE_half) n_h / (N - n_h)``, estimates the bias at N if the bias falls as 1/N. Under heavy tails
it falls more slowly and ``mean d_r`` under-estimates (by 1.8-3.3x at a = 1.1 and 2.3-3.4x at a
= 1.5, 8k-512k tokens; the interval "mean d +- t s" misses the true bias in 89% of those
cells' seeds). The drift is therefore scaled by how much of Miller-Madow's own bias at N its
drift from N/2 to N represents,
``f = MM(N) / mean_r[(MM(n_h) - MM(N)) n_h / (N - n_h)]`` with ``MM(n) = (K(n) - 1) / (2 n)``
(f = 1 when the support is saturated; f grows while K(n) still grows). On synthetic Zipf ranks
the true bias lies between ``mean d`` and ``f mean d`` (empirically, not a theorem), so:

* ``estimate = sqrt(f) mean d`` (the middle of that bracket on a log scale);
* ``interval = [min(d, f d) - t s, max(d, f d) + t s]`` with ``s`` the standard deviation of
  the ``d_r`` and ``t = t_{R-1}`` quantile times ``sqrt(1 + 1/R)`` (a prediction interval).

It brackets the true bias of the plug-in EE in 313 of 320 (law, N, seed) runs of the study, 18-20
of 20 in every cell, and that of Miller-Madow and Grassberger in 155 and 155 of 160. It is not
valid for Chao-Shen, whose bias changes sign as N grows (0-3 of 10 in 6 of 8 heavy-tail cells).

Why ``s`` and not ``s / sqrt(R)``: the quantity to bracket is the bias *realised in this sample*,
``H - EE``, whose random part has the standard deviation of EE itself. Given the sample, a random
half's EE varies about as much as EE does between samples (half without replacement: variance
``sigma^2 (2/N - 1/N) = sigma^2 / N``), so ``s`` measures that noise. The halves are correlated
(they share the sample), so ``s / sqrt(R)`` is only the Monte Carlo error of the mean over
halves, not an uncertainty of the bias.

**Has EE's exponent settled** (:func:`exponent_settled`). Fit ``log EE = c + alpha log N`` on all
documents and on each half; the shift ``delta_r = alpha_half_r - alpha_all``. Its mean over
halves estimates the systematic drift of alpha from N/2 to N (its noise averages out, Monte
Carlo standard error ``sd / sqrt(R)``; a single half's shift has about the spread of alpha_all
itself, which is why "inside the interval" flips with the seed). **Settled** when ``|mean delta|
+ t_{R-1} sd / sqrt(R) <= tolerance * w``, w the half-width of alpha_all's bootstrap interval
and ``tolerance = 0.5``: the drift is at most half the statistical uncertainty (about one
standard deviation of alpha), so if the bias left equals the drift, alpha's 95% interval still
covers with probability at least 0.83. Under heavy tails the bias left can be a few times the
drift (as for EE above), so "settled" says alpha no longer moves much with the data, not that
it is unbiased. No verdict (None) without a half-width.

Examples:
    >>> counts = np.array([4, 2, 3, 0, 2, 4, 0, 0, 2, 1, 1])
    >>> round(plugin_entropy(counts), 4), round(miller_madow(counts), 4)
    (1.9684, 2.1526)
    >>> round(chao_shen(counts), 4), round(grassberger(counts), 4), round(zhang(counts), 4)
    (2.2011, 2.1446, 2.1705)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy import stats as sps
from scipy.special import digamma

from errorentropy.errors import UserError
from errorentropy.storage import from_record, to_record

Estimator = Callable[[np.ndarray], float]
Interval = tuple[float, float]

N_HALVES = 50  # halves for a cell's bias: its interval uses their spread, not the mean's error
N_HALVES_SWEEP = 100  # halves for the exponent: its verdict uses the mean's Monte Carlo error
SEED = 0
LEVEL = 0.95
TOLERANCE = 0.5
N_BOOT = 200
MIN_MODELS = 3
CHUNK_ELEMENTS = 4_000_000  # bound on replicates x ranks held dense at once


# --- estimators -----------------------------------------------------------------------------


def _counts(counts: npt.ArrayLike) -> np.ndarray:
    """The positive entries of a valid count vector, as float64."""
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise UserError(f"counts must be a non-empty 1-D vector, got shape {c.shape}")
    if c.dtype.kind not in "iuf" or not np.all(np.isfinite(c)):
        raise UserError("counts must be finite numbers")
    if np.any(c < 0) or np.any(c != np.round(c)):
        raise UserError("counts must be non-negative whole numbers")
    c = c[c > 0].astype(np.float64)
    if c.size == 0:
        raise UserError("counts are all zero: no tokens, no entropy")
    return c


def counts_from_ranks(rank: npt.ArrayLike, minlength: int = 0) -> np.ndarray:
    """The count vector n_e of a vector of ranks (n_e = number of tokens at rank e).

    Args:
        rank: rank of the ground truth per token, whole numbers >= 0.
        minlength: least length of the result.
    """
    r = _ranks(rank)
    return np.bincount(r, minlength=minlength)


def plugin_entropy(counts: npt.ArrayLike) -> float:
    """The plug-in (maximum-likelihood) entropy ``-sum p_e log p_e`` in nats; EE itself."""
    c = _counts(counts)
    n = c.sum()
    return float(np.log(n) - (c * np.log(c)).sum() / n)


def miller_madow(counts: npt.ArrayLike) -> float:
    """The plug-in entropy plus Miller-Madow's first-order correction ``(K - 1) / (2 N)``."""
    c = _counts(counts)
    return plugin_entropy(c) + float(c.size - 1) / (2.0 * float(c.sum()))


def chao_shen(counts: npt.ArrayLike) -> float:
    """Chao-Shen's coverage-adjusted Horvitz-Thompson entropy estimator (Chao and Shen 2003).

    Good-Turing coverage ``C = 1 - f1 / N`` (f1: ranks seen once; ``f1 = N - 1`` when every token
    is a singleton, as the R package entropy does), ``pa = C n_e / N``, and
    ``H = -sum pa log pa / (1 - (1 - pa)^N)``.
    """
    c = _counts(counts)
    n = c.sum()
    f1 = float(np.count_nonzero(c == 1))
    if f1 == n:
        f1 = n - 1.0
    pa = (1.0 - f1 / n) * c / n
    with np.errstate(divide="ignore"):  # pa = 1 (one rank, no singleton): log1p(-1) = -inf
        inclusion = -np.expm1(n * np.log1p(-pa))  # 1 - (1 - pa)^N without cancellation
    return float(-(pa * np.log(pa) / inclusion).sum())


def grassberger(counts: npt.ArrayLike) -> float:
    """Grassberger's (2003) estimator ``log N - (1/N) sum n_e G(n_e)``.

    ``G(n) = psi(n) + (-1)^n / 2 (psi((n + 1) / 2) - psi(n / 2))`` (his Eq. 35).
    """
    c = _counts(counts)
    sign = np.where(c % 2 == 0, 1.0, -1.0)
    g = digamma(c) + 0.5 * sign * (digamma((c + 1) / 2) - digamma(c / 2))
    return float(np.log(c.sum()) - (c * g).sum() / c.sum())


def zhang(counts: npt.ArrayLike) -> float:
    """Zhang's (2012) estimator, whose bias falls exponentially in N for a finite support.

    Her series ``sum_v Z_v / v`` sums in closed form to ``sum_e (n_e/N) (psi(N) - psi(n_e))``.
    """
    c = _counts(counts)
    n = c.sum()
    return float((c / n * (digamma(n) - digamma(c))).sum())


ESTIMATORS: dict[str, Estimator] = {
    f.__name__: f for f in (plugin_entropy, miller_madow, chao_shen, grassberger, zhang)
}


# --- token tables ---------------------------------------------------------------------------


def _ranks(rank: npt.ArrayLike) -> np.ndarray:
    r = np.asarray(rank)
    if r.ndim != 1 or r.size == 0:
        raise UserError(f"rank must be a non-empty 1-D vector, got shape {r.shape}")
    if r.dtype.kind not in "iu":
        if r.dtype.kind != "f" or not np.all(np.isfinite(r)) or np.any(r != np.round(r)):
            raise UserError("rank must hold whole numbers")
    if np.any(r < 0):
        raise UserError("rank must be >= 0 (0 is the top-1 prediction)")
    return r.astype(np.int64)


def _document_matrix(
    doc: npt.ArrayLike, rank: npt.ArrayLike
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Per-document rank counts (documents x ranks, sparse) and the sorted document ids."""
    d = np.asarray(doc)
    r = _ranks(rank)
    if d.ndim != 1 or d.shape != r.shape:
        raise UserError(f"doc and rank must be 1-D of one length, got {d.shape} and {r.shape}")
    if d.dtype.kind not in "iu":
        raise UserError("doc must hold integer document ids")
    ids, row = np.unique(d, return_inverse=True)
    if ids.size < 2:
        raise UserError(f"need at least 2 documents, got {ids.size}")
    ones = np.ones(r.size, dtype=np.float64)
    matrix = sparse.csr_matrix((ones, (row.ravel(), r)), shape=(ids.size, int(r.max()) + 1))
    return matrix, ids


def _weighted_counts(weights: np.ndarray, matrix: sparse.csr_matrix) -> np.ndarray:
    """Rank counts of weighted documents, one row per row of ``weights`` (replicates x ranks)."""
    return np.asarray(matrix.T.dot(weights.T).T)


def _half_masks(lengths: np.ndarray, n_halves: int, seed: int) -> np.ndarray:
    """0/1 document masks, one per half: the prefix of a seeded permutation closest to N/2
    tokens, at least one document and at most all but one."""
    rng = np.random.default_rng([seed, 2])
    total = lengths.sum()
    masks = np.zeros((n_halves, lengths.size))
    for i in range(n_halves):
        order = rng.permutation(lengths.size)
        cum = np.cumsum(lengths[order])[:-1]
        k = int(np.argmin(np.abs(cum - total / 2))) + 1
        masks[i, order[:k]] = 1.0
    return masks


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise UserError(f"level must lie strictly between 0 and 1, got {level}")


def _check_count(name: str, value: int, least: int) -> None:
    if int(value) != value or value < least:
        raise UserError(f"{name} must be a whole number >= {least}, got {value}")


# --- (a) the bias left in a cell's EE -------------------------------------------------------


@dataclass(frozen=True)
class BiasEstimate:
    """The bias left in a cell's EE (nats; positive: the estimator reads low), from halves.

    ``value`` is the cell's EE with ``estimator``; ``drifts`` the per-half drifts ``d_r``
    scaled to an exact half; ``drift`` their mean (the bias if it fell as 1/N); ``factor`` the
    Miller-Madow heavy-tail factor f >= 1; ``estimate`` = ``sqrt(f) drift``; ``interval`` the
    bracket ``[min(d, f d) - t s, max(d, f d) + t s]`` at ``level`` (module docstring).
    """

    estimator: str
    value: float
    estimate: float
    interval: Interval
    drift: float
    factor: float
    noise: float
    drifts: tuple[float, ...]
    n_tokens: int
    n_documents: int
    n_halves: int
    level: float
    seed: int

    @property
    def corrected(self) -> float:
        """The cell's EE with the estimated bias added back."""
        return self.value + self.estimate

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: one key per field (:func:`errorentropy.storage.to_record`)."""
        return to_record(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BiasEstimate:
        """The inverse of :meth:`to_dict`."""
        try:
            return from_record(cls, data)
        except KeyError as err:
            raise UserError(f"bias estimate record lacks the field {err.args[0]!r}") from None


def _mm_bias(counts: np.ndarray) -> np.ndarray:
    """Miller-Madow's bias ``(K - 1) / (2 N)`` per row of a replicates x ranks count matrix."""
    return (np.count_nonzero(counts, axis=1) - 1) / (2.0 * counts.sum(axis=1))


def _heavy_tail_factor(full: np.ndarray, halves: np.ndarray, scale: np.ndarray) -> float:
    """f = MM bias at N over MM's mean drift from a half to N, scaled like the drifts; >= 1."""
    at_n = float(_mm_bias(full[None, :])[0])
    mm_drift = float(np.mean((_mm_bias(halves) - at_n) * scale))
    if at_n <= 0.0 or mm_drift <= 0.0:
        return 1.0
    return max(1.0, at_n / mm_drift)


def bias_from_halves(
    doc: npt.ArrayLike,
    rank: npt.ArrayLike,
    *,
    n_halves: int = N_HALVES,
    seed: int = SEED,
    level: float = LEVEL,
    estimator: Estimator = plugin_entropy,
) -> BiasEstimate:
    """The bias left in a cell's EE, estimated from random document halves (module docstring).

    Args:
        doc: document id per token (integers).
        rank: rank of the ground truth per token (whole numbers >= 0).
        n_halves: number R of random halves, >= 2.
        seed: seed of the halves (``numpy.random.default_rng([seed, 2])``).
        level: level of the interval.
        estimator: the entropy estimator whose bias is wanted: :func:`plugin_entropy`,
            :func:`miller_madow` or :func:`grassberger` (validated); not :func:`chao_shen`.

    Raises:
        UserError: empty or mismatched inputs, negative ranks, fewer than 2 documents.
    """
    _check_count("n_halves", n_halves, 2)
    _check_level(level)
    matrix, ids = _document_matrix(doc, rank)
    lengths = np.asarray(matrix.sum(axis=1)).ravel()
    n = float(lengths.sum())
    full = np.asarray(matrix.sum(axis=0)).ravel()
    masks = _half_masks(lengths, n_halves, seed)
    halves = _weighted_counts(masks, matrix)
    n_half = halves.sum(axis=1)
    scale = n_half / (n - n_half)
    value = estimator(full)
    drifts = np.array([value - estimator(h) for h in halves]) * scale
    drift = float(drifts.mean())
    factor = _heavy_tail_factor(full, halves, scale)
    noise = float(drifts.std(ddof=1))
    reach = float(sps.t.ppf((1 + level) / 2, n_halves - 1)) * noise * math.sqrt(1 + 1 / n_halves)
    low, high = sorted((drift, factor * drift))
    return BiasEstimate(
        estimator=getattr(estimator, "__name__", repr(estimator)),
        value=float(value),
        estimate=math.sqrt(factor) * drift,
        interval=(low - reach, high + reach),
        drift=drift,
        factor=factor,
        noise=noise,
        drifts=tuple(float(x) for x in drifts),
        n_tokens=int(n),
        n_documents=int(ids.size),
        n_halves=n_halves,
        level=level,
        seed=seed,
    )


def sweep_spread(values: npt.ArrayLike) -> float:
    """The spread ``max - min`` of EE across a sweep's models, a yardstick for a bias."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)):
        raise UserError("a spread needs at least 2 finite values in a 1-D vector")
    return float(v.max() - v.min())


def relative_bias(bias: BiasEstimate, spread: float) -> tuple[float, Interval]:
    """The bias estimate and its interval as fractions of ``spread`` (e.g. :func:`sweep_spread`).

    Raises:
        UserError: ``spread`` is not a positive finite number.
    """
    if not (math.isfinite(spread) and spread > 0):
        raise UserError(f"spread must be a positive finite number, got {spread}")
    lo, hi = bias.interval
    return bias.estimate / spread, (lo / spread, hi / spread)


# --- (c) has EE's exponent settled? ---------------------------------------------------------


@dataclass(frozen=True)
class ExponentCheck:
    """Whether EE's scaling exponent has settled: alpha on all documents and on random halves.

    ``shift`` is the mean of ``alpha_half - alpha_all`` over halves and ``shift_bound`` =
    ``|shift| + t sd / sqrt(R)``; ``settled`` is ``shift_bound <= tolerance * alpha_halfwidth``
    (None without a half-width).
    """

    alpha_all: float
    alpha_halves: tuple[float, ...]
    shift: float
    shift_bound: float
    alpha_halfwidth: float | None
    tolerance: float
    level: float
    settled: bool | None
    n_models: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: one key per field (:func:`errorentropy.storage.to_record`)."""
        return to_record(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExponentCheck:
        """The inverse of :meth:`to_dict`."""
        try:
            return from_record(cls, data)
        except KeyError as err:
            raise UserError(f"exponent check record lacks the field {err.args[0]!r}") from None


def fit_exponent(n_params: npt.ArrayLike, ee: npt.ArrayLike) -> float:
    """The slope alpha of the least-squares line ``log EE = c + alpha log N``.

    Raises:
        UserError: fewer than 3 models, mismatched lengths, non-positive values.
    """
    x = np.asarray(n_params, dtype=np.float64)
    y = np.asarray(ee, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise UserError(f"n_params and EE must be 1-D of one length, got {x.shape}, {y.shape}")
    if x.size < MIN_MODELS:
        raise UserError(f"an exponent needs at least {MIN_MODELS} models, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.any(x <= 0) or np.any(y <= 0):
        raise UserError("n_params and EE must be positive finite numbers (their logs are fitted)")
    if np.ptp(np.log(x)) == 0:
        raise UserError("n_params are all equal: no slope to fit")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def exponent_settled(
    n_params: npt.ArrayLike,
    ee_all: npt.ArrayLike,
    ee_halves: npt.ArrayLike,
    alpha_halfwidth: float | None,
    *,
    tolerance: float = TOLERANCE,
    level: float = LEVEL,
) -> ExponentCheck:
    """Has EE's exponent settled? A pure function of EE per model (module docstring).

    Args:
        n_params: non-embedding parameters per model, shape (M,).
        ee_all: EE per model on all documents, shape (M,).
        ee_halves: EE per model on each random half of the documents, shape (R, M), R >= 2
            (the same half of the documents for every model).
        alpha_halfwidth: half-width of the bootstrap interval of alpha_all; None: no verdict.
        tolerance: the drift allowed, as a fraction of ``alpha_halfwidth``.
        level: level of the Monte Carlo bound on the mean shift.

    The Monte Carlo term ``t sd / sqrt(R)`` is about ``1.1 w / sqrt(R)``: with R = 20 it takes
    a quarter of the tolerance and verdicts near the boundary flip with the seed; use R >= 100
    (:func:`sweep_entropies` does).

    Raises:
        UserError: shapes disagree, fewer than 3 models or 2 halves, non-positive values.
    """
    _check_level(level)
    halves = np.asarray(ee_halves, dtype=np.float64)
    m = np.asarray(ee_all).size
    if halves.ndim != 2 or halves.shape[1] != m or halves.shape[0] < 2:
        raise UserError(f"ee_halves must have shape (R >= 2, {m}), got {halves.shape}")
    if alpha_halfwidth is not None and not (math.isfinite(alpha_halfwidth) and alpha_halfwidth > 0):
        raise UserError(f"alpha_halfwidth must be positive and finite, got {alpha_halfwidth}")
    alpha_all = fit_exponent(n_params, ee_all)
    alpha_halves = np.array([fit_exponent(n_params, h) for h in halves])
    shifts = alpha_halves - alpha_all
    r = shifts.size
    t = float(sps.t.ppf((1 + level) / 2, r - 1))
    bound = abs(float(shifts.mean())) + t * float(shifts.std(ddof=1)) / math.sqrt(r)
    settled = None if alpha_halfwidth is None else bool(bound <= tolerance * alpha_halfwidth)
    return ExponentCheck(
        alpha_all=alpha_all,
        alpha_halves=tuple(float(a) for a in alpha_halves),
        shift=float(shifts.mean()),
        shift_bound=bound,
        alpha_halfwidth=None if alpha_halfwidth is None else float(alpha_halfwidth),
        tolerance=tolerance,
        level=level,
        settled=settled,
        n_models=m,
    )


@dataclass(frozen=True)
class SweepEntropies:
    """EE per model on all documents and on R random halves, and alpha_all's bootstrap
    half-width: the inputs of :func:`exponent_settled` built from token tables."""

    ee_all: np.ndarray
    ee_halves: np.ndarray
    alpha_halfwidth: float | None


def _sweep_matrices(
    tables: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
) -> tuple[list[sparse.csr_matrix], np.ndarray]:
    """Per-model document x rank matrices over one shared space of document ids."""
    parts = [_document_matrix(d, r) for d, r in tables]
    space = np.unique(np.concatenate([ids for _, ids in parts]))
    out = []
    for matrix, ids in parts:
        lift = sparse.csr_matrix(
            (np.ones(ids.size), (np.searchsorted(space, ids), np.arange(ids.size))),
            shape=(space.size, ids.size),
        )
        out.append(sparse.csr_matrix(lift @ matrix))
    return out, space


def _entropies(weights: np.ndarray, matrix: sparse.csr_matrix, estimator: Estimator) -> np.ndarray:
    """The estimator on the weighted rank counts of each row of ``weights``, in chunks."""
    chunk = max(1, CHUNK_ELEMENTS // matrix.shape[1])
    out: list[float] = []
    for start in range(0, weights.shape[0], chunk):
        counts = _weighted_counts(weights[start : start + chunk], matrix)
        out.extend(estimator(np.rint(c)) if c.sum() > 0 else np.nan for c in counts)
    return np.array(out)


def sweep_entropies(
    n_params: npt.ArrayLike,
    tables: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
    *,
    n_halves: int = N_HALVES_SWEEP,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
    estimator: Estimator = plugin_entropy,
) -> SweepEntropies:
    """EE per model on all documents and on random halves, and a document bootstrap of alpha.

    Every model sees the same halves and the same bootstrap draws of document ids, which keeps
    the pairing between models. The half-width is half the width of the percentile interval of
    the bootstrap slopes; None when fewer than half the replicates give a finite slope.

    Args:
        n_params: non-embedding parameters per model, shape (M,).
        tables: per model, its token table ``(doc, rank)``.
        n_halves: number R of random halves (half the document ids each), >= 2.
        n_boot: bootstrap replicates, >= 2; 0: no bootstrap (``alpha_halfwidth`` None, for a
            caller that has an interval of alpha already).
        seed: seed of the halves (``[seed, 3]``) and of the bootstrap (``[seed, 4]``).
        level: level of the bootstrap interval.
        estimator: the entropy estimator used for EE.
    """
    _check_count("n_halves", n_halves, 2)
    if n_boot != 0:
        _check_count("n_boot", n_boot, 2)
    _check_level(level)
    matrices, space = _sweep_matrices(tables)
    d = space.size
    masks = np.zeros((n_halves, d))
    rng = np.random.default_rng([seed, 3])
    for i in range(n_halves):
        masks[i, rng.permutation(d)[: d // 2]] = 1.0
    weights = np.random.default_rng([seed, 4]).multinomial(d, np.full(d, 1.0 / d), size=n_boot)
    ee_all = np.array([estimator(np.asarray(m.sum(axis=0)).ravel()) for m in matrices])
    ee_halves = np.column_stack([_entropies(masks, m, estimator) for m in matrices])
    if n_boot == 0:
        return SweepEntropies(ee_all, ee_halves, None)
    boots = np.column_stack([_entropies(weights.astype(float), m, estimator) for m in matrices])
    return SweepEntropies(ee_all, ee_halves, _bootstrap_halfwidth(n_params, boots, level))


def _bootstrap_halfwidth(n_params: npt.ArrayLike, boots: np.ndarray, level: float) -> float | None:
    """Half the width of the percentile interval of the slopes of bootstrap replicates."""
    slopes = []
    for row in boots:
        if np.all(np.isfinite(row)) and np.all(row > 0):
            slopes.append(fit_exponent(n_params, row))
    if len(slopes) < max(2, boots.shape[0] // 2):
        return None
    lo, hi = np.quantile(slopes, [(1 - level) / 2, (1 + level) / 2])
    return float(hi - lo) / 2 if hi > lo else None
