"""How far a cell's Error-Entropy has converged: the bias left in it, with an interval, and
bias-corrected EE beside it.

The plug-in entropy of a rank distribution whose support is vocabulary-sized is biased low, and
under the heavy-tailed ranks of real models the bias falls more slowly than the statistical
spread: a test of "does EE still move from half to all documents" answers yes however many
documents are scored. What a scaling-law user needs instead is how large the bias left is:

* **The bias left** (``bias``, nats; positive: the plug-in EE reads low) and its ``interval``,
  from :func:`errorentropy.stats.entropy.bias_from_halves`: R = 50 random halves of the
  documents (``numpy.random.default_rng([seed, 2])``), the drift from each half to all
  documents scaled to an exact half, times a heavy-tail factor from Miller-Madow (that module's
  docstring has the construction and its validation: the interval brackets the true bias in
  313 of 320 synthetic Zipf runs). ``corrected`` = EE + bias.
* **Bias-corrected estimators** of the same counts: Miller-Madow, Grassberger (the closest from
  ~128k tokens on) and Chao-Shen (the closest at small N under heavy tails, but it over-corrects
  once the tail is sampled).

Whether the bias matters depends on what it is compared with: the fits divide it by the spread
of EE across the sweep's models (:func:`errorentropy.stats.entropy.relative_bias`), and ask
separately whether EE's exponent has settled (:func:`errorentropy.stats.entropy.exponent_settled`).

A cell with fewer than 2 documents has no halves: ``bias`` and ``interval`` are None.

Records written before this check (``settled``, ``settled_miller_madow``, EE on nested subsets
and a bootstrap interval) are recognised by :func:`is_legacy` and not read.

Examples:
    >>> import numpy as np
    >>> from errorentropy.stats.tokens import TokenTable
    >>> rng = np.random.default_rng(0)
    >>> n_docs, length = 400, 50
    >>> rank = rng.geometric(0.5, n_docs * length) - 1  # a light tail: hardly any bias left
    >>> table = TokenTable(np.repeat(np.arange(n_docs), length), np.tile(np.arange(length),
    ...     n_docs), rank, np.full(rank.size, -1.0))
    >>> check = ee_convergence(table)
    >>> check.n_documents, check.n_halves, abs(check.bias) < 0.002
    (400, 50, True)
    >>> check.interval[0] < check.bias < check.interval[1]
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from errorentropy.errors import UserError
from errorentropy.stats import entropy
from errorentropy.stats.tokens import TokenTable
from errorentropy.storage import from_record, to_record

N_HALVES = entropy.N_HALVES
SEED = entropy.SEED
LEVEL = entropy.LEVEL

Interval = tuple[float, float]


def is_legacy(raw: Mapping[str, Any]) -> bool:
    """Whether ``raw`` is a record of the old criterion (EE on half the documents inside the
    bootstrap interval: ``settled``), which says nothing about the size of the bias."""
    return "settled" in raw and "bias" not in raw


def corrected_estimates(counts: np.ndarray) -> dict[str, float | None]:
    """Grassberger and Chao-Shen EE of a rank count vector under a summary's keys
    (``error_entropy_grassberger``, ``error_entropy_chao_shen``); None without tokens."""
    c = np.asarray(counts)
    if c.size == 0 or not np.any(c > 0):
        return {"error_entropy_grassberger": None, "error_entropy_chao_shen": None}
    return {
        "error_entropy_grassberger": entropy.grassberger(c),
        "error_entropy_chao_shen": entropy.chao_shen(c),
    }


@dataclass(frozen=True)
class Convergence:
    """The bias left in one cell's plug-in EE and bias-corrected estimates of it (nats).

    ``bias`` and ``interval``: the estimate and its ``level`` interval from ``n_halves`` random
    halves (None with fewer than 2 documents); ``drift``: the mean drift half-to-all scaled to an
    exact half (the bias if it fell as 1/N); ``factor``: the heavy-tail factor f >= 1;
    ``noise``: the spread of the per-half drifts.
    """

    n_tokens: int
    n_documents: int
    error_entropy: float
    error_entropy_miller_madow: float
    error_entropy_grassberger: float
    error_entropy_chao_shen: float
    bias: float | None
    interval: Interval | None
    drift: float | None
    factor: float | None
    noise: float | None
    n_halves: int = N_HALVES
    seed: int = SEED
    level: float = LEVEL

    @property
    def corrected(self) -> float | None:
        """The plug-in EE with the estimated bias added back (None without an estimate)."""
        return None if self.bias is None else self.error_entropy + self.bias

    def describe(self) -> str:
        """The statement in one line, e.g. ``bias left in EE: +0.0123 nats ...``."""
        others = (
            f"Miller-Madow {self.error_entropy_miller_madow:.4f}, Grassberger "
            f"{self.error_entropy_grassberger:.4f}, Chao-Shen {self.error_entropy_chao_shen:.4f}"
        )
        if self.bias is None or self.interval is None:
            return (
                f"bias left in EE not assessed: {self.n_documents} document(s), random halves "
                f"need at least 2 (EE {self.error_entropy:.4f}; {others})"
            )
        lo, hi = self.interval
        return (
            f"bias left in EE: {self.bias:+.4f} nats, {100 * self.level:.0f}% interval "
            f"[{lo:+.4f}, {hi:+.4f}], from {self.n_halves} random halves of "
            f"{self.n_documents} documents (EE {self.error_entropy:.4f}, corrected "
            f"{self.corrected:.4f}; {others})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a summary's ``ee_convergence``): one key per field."""
        return to_record(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Convergence:
        """Inverse of :meth:`to_dict`; KeyError, TypeError or ValueError when malformed (a
        legacy record, :func:`is_legacy`, lacks ``bias``: KeyError)."""
        return from_record(cls, raw)


def ee_convergence(
    table: TokenTable,
    *,
    n_halves: int = N_HALVES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Convergence:
    """The bias left in ``table``'s plug-in EE (module docstring) and its bias-corrected values.

    Raises:
        ValueError: the table is empty.
    """
    if table.rank.size == 0:
        raise ValueError("the token table is empty: there is no EE to assess")
    counts = entropy.counts_from_ranks(table.rank)
    decomposition = table.histogram().decompose()  # EE and Miller-Madow exactly as summarised
    n_documents = int(np.unique(table.doc).size)
    bias: entropy.BiasEstimate | None = None
    if n_documents >= 2:
        try:
            bias = entropy.bias_from_halves(
                table.doc, table.rank, n_halves=n_halves, seed=seed, level=level
            )
        except UserError:
            bias = None  # e.g. every token in one document after all
    return Convergence(
        n_tokens=int(table.rank.size),
        n_documents=n_documents,
        error_entropy=decomposition.error_entropy,
        error_entropy_miller_madow=decomposition.error_entropy_miller_madow,
        error_entropy_grassberger=entropy.grassberger(counts),
        error_entropy_chao_shen=entropy.chao_shen(counts),
        bias=None if bias is None else bias.estimate,
        interval=None if bias is None else bias.interval,
        drift=None if bias is None else bias.drift,
        factor=None if bias is None else bias.factor,
        noise=None if bias is None else bias.noise,
        n_halves=n_halves,
        seed=seed,
        level=level,
    )
