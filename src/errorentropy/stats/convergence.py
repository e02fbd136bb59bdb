"""Has a cell's Error-Entropy settled? EE on nested subsets of its documents.

The plug-in entropy of a rank distribution whose support is vocabulary-sized is biased low at
small samples: roughly by (K - 1) / (2 N) for K observed ranks and N tokens, and K keeps growing
with N while rare ranks are still being discovered. So an EE computed on too few documents moves
when documents are added. :func:`ee_convergence` measures that on a cell's own token table.

The criterion, exactly:

1. The cell's D documents are put in a seeded random order (``numpy.random.default_rng([seed,
   1])``), and the subsets are the first ``ceil(f * D)`` of them for f in ``FRACTIONS`` (1/8, 1/4,
   1/2, all): nested, each holds the one before. The plug-in EE and the Miller-Madow EE
   (``EE + (K - 1) / (2 N)``) of the tokens of each subset are computed as a summary computes them
   (the subset "all" gives the cell's own values).
2. The cell's bootstrap interval of EE: ``n_boot`` replicates drawing the D documents with
   replacement (``numpy.random.default_rng(seed)``), the 95% percentile interval centred on the
   estimate, :func:`errorentropy.stats.bootstrap.bootstrap_cell`. Call it ``[lo, hi]`` around
   ``EE_all``.
3. **Settled** when EE on half the documents lies inside that interval, ``lo <= EE_half <=
   hi``: the change from half to all documents, ``EE_all - EE_half``, is no larger than the
   interval reaches from the estimate on that side. With nested halves ``EE_half - EE_all`` has
   about the standard deviation of ``EE_all`` itself, so without any drift it stays inside the 95%
   interval about 95% of the time; a systematic drift larger than the statistical spread (the
   plug-in bias of a support still being discovered) puts it outside. The Miller-Madow verdict
   applies the same offsets to the Miller-Madow values: ``lo - EE_all <= MM_half - MM_all <= hi -
   EE_all``.

A cell with fewer than 2 documents has no interval and no verdict (None).

Examples:
    >>> import numpy as np
    >>> from errorentropy.stats.tokens import TokenTable
    >>> rng = np.random.default_rng(0)
    >>> n_docs, length = 400, 50
    >>> rank = rng.geometric(0.5, n_docs * length) - 1  # a light tail: EE settles quickly
    >>> table = TokenTable(np.repeat(np.arange(n_docs), length), np.tile(np.arange(length),
    ...     n_docs), rank, np.full(rank.size, -1.0))
    >>> check = ee_convergence(table)
    >>> check.n_documents, check.settled
    ((50, 100, 200, 400), True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from errorentropy.stats import bootstrap as bs
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.quantities import EE
from errorentropy.stats.tokens import TokenTable

FRACTIONS = (0.125, 0.25, 0.5, 1.0)  # nested subsets of the documents: 1/8, 1/4, 1/2, all
N_BOOT = 200  # bootstrap replicates of the cell's EE interval
SEED = 0
LEVEL = 0.95
HALF = FRACTIONS.index(0.5)

Interval = tuple[float, float]


@dataclass(frozen=True)
class Convergence:
    """EE of a cell on nested subsets of its documents, and whether it has settled.

    Sequences run over ``fractions`` (the last is 1: every document). ``interval`` is the
    cell's centred bootstrap interval of EE (None with fewer than 2 documents); ``settled`` and
    ``settled_miller_madow`` are the verdicts of the module's criterion (None without an
    interval).
    """

    fractions: tuple[float, ...]
    n_documents: tuple[int, ...]
    n_tokens: tuple[int, ...]
    error_entropy: tuple[float, ...]
    error_entropy_miller_madow: tuple[float, ...]
    interval: Interval | None
    settled: bool | None
    settled_miller_madow: bool | None
    n_boot: int = N_BOOT
    seed: int = SEED
    level: float = LEVEL

    @property
    def change(self) -> float:
        """EE of every document minus EE of half of them (positive: still rising)."""
        return self.error_entropy[-1] - self.error_entropy[HALF]

    @property
    def change_miller_madow(self) -> float:
        """The same change of the Miller-Madow EE."""
        return self.error_entropy_miller_madow[-1] - self.error_entropy_miller_madow[HALF]

    def describe(self) -> str:
        """The verdict in one line, e.g. ``EE has settled: ...``."""
        if self.settled is None or self.interval is None:
            return (
                f"EE settling not assessed: {self.n_documents[-1]} document(s), resampling needs "
                "at least 2"
            )
        lo, hi = self.interval
        head = "EE has settled" if self.settled else "EE has NOT settled"
        mm = "settled" if self.settled_miller_madow else "not settled"
        tail = "" if self.settled else "; score more documents"
        return (
            f"{head}: {self.error_entropy[HALF]:.4f} on half the documents "
            f"({self.n_documents[HALF]}), {self.error_entropy[-1]:.4f} on all "
            f"{self.n_documents[-1]} (change {self.change:+.4f}; bootstrap "
            f"{100 * self.level:.0f}% interval [{lo:.4f}, {hi:.4f}]); Miller-Madow "
            f"{self.change_miller_madow:+.4f}, {mm}{tail}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a summary's ``ee_convergence``; tuples as lists)."""
        return {
            "fractions": list(self.fractions),
            "n_documents": list(self.n_documents),
            "n_tokens": list(self.n_tokens),
            "error_entropy": list(self.error_entropy),
            "error_entropy_miller_madow": list(self.error_entropy_miller_madow),
            "interval": None if self.interval is None else list(self.interval),
            "settled": self.settled,
            "settled_miller_madow": self.settled_miller_madow,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "level": self.level,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Convergence:
        """Inverse of :meth:`to_dict`; KeyError, TypeError or ValueError when malformed."""
        interval = raw["interval"]
        return cls(
            fractions=tuple(float(f) for f in raw["fractions"]),
            n_documents=tuple(int(n) for n in raw["n_documents"]),
            n_tokens=tuple(int(n) for n in raw["n_tokens"]),
            error_entropy=tuple(float(v) for v in raw["error_entropy"]),
            error_entropy_miller_madow=tuple(float(v) for v in raw["error_entropy_miller_madow"]),
            interval=None if interval is None else (float(interval[0]), float(interval[1])),
            settled=_verdict(raw["settled"]),
            settled_miller_madow=_verdict(raw["settled_miller_madow"]),
            n_boot=int(raw["n_boot"]),
            seed=int(raw["seed"]),
            level=float(raw["level"]),
        )


def _verdict(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise TypeError(f"a verdict is true, false or null, not {value!r}")


def nested_subsets(
    doc: np.ndarray, fractions: Sequence[float] = FRACTIONS, seed: int = SEED
) -> list[np.ndarray]:
    """Boolean token masks of nested random subsets of the documents in ``doc``: the first
    ``ceil(f * D)`` documents of one seeded order, for each fraction f (ascending, in (0, 1])."""
    if list(fractions) != sorted(fractions) or not 0 < fractions[0] <= fractions[-1] <= 1:
        raise ValueError(f"fractions must ascend within (0, 1], got {fractions!r}")
    docs = np.unique(np.asarray(doc))
    order = np.random.default_rng([seed, 1]).permutation(docs)
    return [np.isin(doc, order[: max(1, int(np.ceil(f * docs.size)))]) for f in fractions]


def ee_convergence(
    table: TokenTable,
    *,
    fractions: Sequence[float] = FRACTIONS,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
) -> Convergence:
    """EE (plug-in and Miller-Madow) of ``table`` on nested subsets of its documents, its
    bootstrap interval and the verdicts (the criterion is in this module's docstring).

    ``fractions`` must hold 0.5 and end at 1 (the criterion compares half with all).
    """
    fractions = tuple(float(f) for f in fractions)
    if 0.5 not in fractions or fractions[-1] != 1.0:
        raise ValueError(f"fractions must hold 0.5 and end at 1, got {fractions!r}")
    if table.rank.size == 0:
        raise ValueError("the token table is empty: there is no EE to follow")
    masks = nested_subsets(table.doc, fractions, seed)
    decs = [RankHistogram.from_tokens(table.rank[m], table.logprob[m]).decompose() for m in masks]
    sizes = [np.unique(table.doc[m]).size for m in masks]
    ee = tuple(d.error_entropy for d in decs)
    mm = tuple(d.error_entropy_miller_madow for d in decs)
    interval = _interval(table, n_boot, seed, level)
    half = fractions.index(0.5)
    settled = settled_mm = None
    if interval is not None:
        lo, hi = interval[0] - ee[-1], interval[1] - ee[-1]
        settled = bool(lo <= ee[half] - ee[-1] <= hi)
        settled_mm = bool(lo <= mm[half] - mm[-1] <= hi)
    return Convergence(
        fractions=fractions,
        n_documents=tuple(int(n) for n in sizes),
        n_tokens=tuple(d.n_tokens for d in decs),
        error_entropy=ee,
        error_entropy_miller_madow=mm,
        interval=interval,
        settled=settled,
        settled_miller_madow=settled_mm,
        n_boot=n_boot,
        seed=seed,
        level=level,
    )


def _interval(table: TokenTable, n_boot: int, seed: int, level: float) -> Interval | None:
    """The centred bootstrap interval of the table's EE, or None with fewer than 2 documents."""
    if n_boot < 1 or np.unique(table.doc).size < 2:
        return None
    cell = bs.bootstrap_cell(
        table.doc, table.rank, table.logprob, n_boot=n_boot, seed=seed, level=level
    )
    j = bs.COMPONENTS.index(EE.key)
    lo, hi = (float(v) for v in cell.interval[:, j])
    return (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else None
