"""The convergence records of ``fits.json``: the bias left in each cell's EE measured against the
spread of EE across the sweep's models, and whether EE's exponent has settled per (dataset,
group).

A bias matters for a scaling law in two ways. Its size against the spread of EE across the
models (:class:`CellConvergence`, ``relative_bias``) says whether EE's *level* still depends on
how many documents were scored; whether the exponent fitted on half the documents differs from
the one fitted on all of them (:class:`ExponentConvergence`,
:func:`errorentropy.stats.entropy.exponent_settled`) says whether the *slope* still does. An
exponent can be stable while the level still drifts (the bias shifts every model alike), so the
report states both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from errorentropy.stats.convergence import Convergence, is_legacy
from errorentropy.stats.entropy import ExponentCheck

Interval = tuple[float, float]


@dataclass(frozen=True)
class CellConvergence:
    """The bias left in one cell's EE (:func:`errorentropy.stats.convergence.ee_convergence`);
    ``final`` as in :class:`~errorentropy.fits.records.CellFit`. ``spread``: the spread (max -
    min) of EE across the dataset's final models (:func:`errorentropy.stats.entropy.sweep_spread`;
    None with fewer than 2), the yardstick of :meth:`relative`."""

    cell_id: str
    model: str
    dataset: str
    non_embedding_params: int
    final: bool
    check: Convergence
    spread: float | None = None

    def relative(self) -> tuple[float, Interval] | None:
        """The bias and its interval as fractions of ``spread`` (None without both)."""
        bias, interval = self.check.bias, self.check.interval
        if self.spread is None or self.spread <= 0 or bias is None or interval is None:
            return None
        return bias / self.spread, (interval[0] / self.spread, interval[1] / self.spread)

    def to_dict(self) -> dict[str, Any]:
        """The file form: the cell's names and spread, the check's fields, the relative bias."""
        head = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "check"}
        relative = self.relative()
        tail = {
            "relative_bias": None if relative is None else relative[0],
            "relative_interval": None if relative is None else list(relative[1]),
        }
        return head | self.check.to_dict() | tail

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CellConvergence:
        """Read the file form."""
        spread = raw.get("spread")
        return cls(
            str(raw["cell_id"]),
            str(raw["model"]),
            str(raw["dataset"]),
            int(raw["non_embedding_params"]),
            bool(raw["final"]),
            Convergence.from_dict(raw),
            None if spread is None else float(spread),
        )


def read_cells(raw: Iterable[Mapping[str, Any]]) -> tuple[CellConvergence, ...]:
    """The rows of a file's ``convergence``; rows of the old criterion (``settled``: EE on half
    the documents inside its bootstrap interval, a file written before the bias check) are
    left out: they say nothing about the size of the bias (rerun ``errorentropy fit``)."""
    return tuple(CellConvergence.from_dict(r) for r in raw if not is_legacy(r))


@dataclass(frozen=True)
class ExponentConvergence:
    """Whether EE's exponent has settled in one (dataset, group): alpha fitted on all documents
    and on ``n_halves`` random halves of them (:func:`errorentropy.stats.entropy.sweep_entropies`,
    ``seed``), judged against ``alpha_ci``'s half-width: the fit's bootstrap interval of EE's
    alpha when it has one (``interval_source`` ``"fit"``), else a document bootstrap of the
    halves' own (``"halves"``; ``alpha_ci`` None)."""

    dataset: str
    group: str
    models: tuple[str, ...]
    non_embedding_params: tuple[int, ...]
    alpha_ci: Interval | None
    interval_source: str
    n_halves: int
    seed: int
    check: ExponentCheck

    @property
    def settled(self) -> bool | None:
        """The verdict (None: no interval to judge by)."""
        return self.check.settled

    def describe(self) -> str:
        """One sentence: ``EE's exponent has settled: alpha = ... on all documents, ...``."""
        c = self.check
        head = {True: "has settled", False: "has NOT settled", None: "was not judged"}
        ci = "" if self.alpha_ci is None else " [{:.3f}, {:.3f}]".format(*self.alpha_ci)
        text = (
            f"EE's exponent {head[c.settled]} ({self.dataset}, {self.group}): alpha = "
            f"{c.alpha_all:.3f}{ci} on all documents, mean shift on half the documents "
            f"{c.shift:+.4f} (with its Monte Carlo error at most {c.shift_bound:.4f}, "
            f"{self.n_halves} halves)"
        )
        if c.alpha_halfwidth is None:
            return text + ", no bootstrap interval to judge it by"
        where = "within" if c.settled else "beyond"
        allowed = c.tolerance * c.alpha_halfwidth
        return f"{text}: {where} {c.tolerance:g} x the half-width of its interval ({allowed:.4f})"

    def to_dict(self) -> dict[str, Any]:
        """The file form: the group's names, then the check's fields."""
        head = {
            "dataset": self.dataset,
            "group": self.group,
            "models": list(self.models),
            "non_embedding_params": list(self.non_embedding_params),
            "alpha_ci": None if self.alpha_ci is None else list(self.alpha_ci),
            "interval_source": self.interval_source,
            "n_halves": self.n_halves,
            "seed": self.seed,
        }
        return head | self.check.to_dict()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExponentConvergence:
        """Read the file form."""
        ci = raw["alpha_ci"]
        return cls(
            str(raw["dataset"]),
            str(raw["group"]),
            tuple(str(m) for m in raw["models"]),
            tuple(int(n) for n in raw["non_embedding_params"]),
            None if ci is None else (float(ci[0]), float(ci[1])),
            str(raw["interval_source"]),
            int(raw["n_halves"]),
            int(raw["seed"]),
            ExponentCheck.from_dict(raw),
        )
