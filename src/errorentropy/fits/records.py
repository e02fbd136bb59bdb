"""The typed content of ``fits.json``: :class:`SweepFits` and the rows it is made of.

:func:`errorentropy.fits.fit.fit_sweep` returns a :class:`SweepFits`; ``to_dict()`` is exactly the
JSON ``errorentropy fit`` writes (format ``errorentropy-fits``, version 1; schema: docs/fit.md)
and ``SweepFits.from_dict`` reads it back, so ``from_dict(d).to_dict() == d``. Numbers that are
undefined are None (``null`` in the file). Intervals are ``(lo, hi)`` tuples here and ``[lo, hi]``
lists in the file; every sequence is a tuple here and a list in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from errorentropy.stats.convergence import Convergence, is_legacy
from errorentropy.stats.entropy import ExponentCheck
from errorentropy.stats.quantities import QUANTITIES
from errorentropy.storage import OMIT_DEFAULT, RECORD_KEY, from_record, to_record

FITS_FORMAT = "errorentropy-fits"
FITS_VERSION = 1
ALL_GROUP = "All"  # the group holding every model of a dataset, beside one group per family

Interval = tuple[float, float]
_OMIT_DEFAULT = {OMIT_DEFAULT: True}  # a field left out of the file while it holds its default
RowT = TypeVar("RowT", bound="_Row")
_BESIDE_CHECK = ("cell_id", "model", "dataset", "non_embedding_params", "final", "spread")


class _Row:
    """Rows whose file form is one key per field, read back by their type hints
    (:func:`errorentropy.storage.to_record`, :func:`errorentropy.storage.from_record`)."""

    def to_dict(self) -> dict[str, Any]:
        """The row as it stands in fits.json."""
        return to_record(self)

    @classmethod
    def from_dict(cls: type[RowT], raw: Mapping[str, Any]) -> RowT:
        """Read the file form."""
        return from_record(cls, raw)


@dataclass(frozen=True)
class Component(_Row):
    """One quantity of one cell: its value, centred bootstrap interval and resampling shift.

    ``resampling_shift`` is the mean bootstrap replicate minus ``value``: the shift the interval
    was moved by (see :func:`errorentropy.stats.bootstrap.centred_interval`).
    """

    value: float | None
    ci: Interval | None = None
    resampling_shift: float | None = None


@dataclass(frozen=True)
class CellFit(_Row):
    """One cell (every revision, not only the fitted ones) with its components' intervals.

    ``final`` is True for the revision the fits use; ``components`` maps a quantity key
    (``"CE"``...) to its :class:`Component`.
    """

    cell_id: str
    model: str
    revision: str | None
    dataset: str
    family: str
    step: int | None
    non_embedding_params: int
    total_params: int
    final: bool
    n_tokens: int | None
    n_documents: int | None
    components: Mapping[str, Component]


@dataclass(frozen=True)
class SaturatingResult(_Row):
    """The saturating law ``M = a N^(-alpha) + E`` beside a power law, or why it failed.

    When ``converged`` is False the numbers are None and ``reason`` says why; ``warning`` holds
    a non-fatal remark of a converged fit.
    """

    converged: bool
    n_points: int
    a: float | None = None
    alpha: float | None = None
    e: float | None = field(default=None, metadata={RECORD_KEY: "E"})
    r2: float | None = None
    warning: str | None = None
    reason: str | None = None

    _FAILED = ("converged", "reason", "n_points")

    def to_dict(self) -> dict[str, Any]:
        """The file form: parameters and R^2 when converged, else the reason."""
        if not self.converged:
            return to_record(self, only=self._FAILED)
        return to_record(self, only=[n for n in self.__dataclass_fields__ if n != "reason"])


@dataclass(frozen=True, kw_only=True)
class LineFit(_Row):
    """The fields of a fitted line ``y = c + alpha log N`` shared by :class:`FitRow` and
    :class:`RbpFitRow` (keyword-only, so each row's own points come first): the estimates, their
    95% bootstrap intervals (None without a bootstrap), how many refits were valid, and why the
    fit was ``skipped`` (then ``alpha``, ``c`` and ``r2`` are None)."""

    alpha: float | None = None
    c: float | None = None
    r2: float | None = None
    alpha_ci: Interval | None = None
    r2_ci: Interval | None = None
    n_boot_valid: int = 0
    skipped: str | None = None

    @property
    def fitted(self) -> bool:
        """Whether there is a line (the fit was not skipped)."""
        return self.alpha is not None and self.c is not None


@dataclass(frozen=True)
class FitRow(LineFit):
    """The power law ``log|M| = c + alpha log N`` of one quantity over one group of one dataset.

    The group is a model family or ``"All"``. ``models``, ``non_embedding_params`` and ``values``
    (signed M) are the points, sorted by N. ``alpha``, ``c`` and ``r2`` are None when the fit was
    ``skipped`` (the reason); ``r2`` is None too when every log|M| is equal. The ``delta`` fields
    compare alpha with CE's (None on CE's own row); intervals are 95% bootstrap intervals, or None.
    ``conf_sign_change`` marks a Conf row whose values change sign (the log|Conf| fit hides it).
    """

    dataset: str
    group: str
    quantity: str
    n_models: int
    models: tuple[str, ...]
    non_embedding_params: tuple[int, ...]
    values: tuple[float | None, ...]
    delta_alpha_vs_ce: float | None = None
    delta_alpha_ci: Interval | None = None
    delta_alpha_signed: float | None = None
    delta_alpha_signed_ci: Interval | None = None
    saturating: SaturatingResult | None = None
    notes: tuple[str, ...] = ()
    conf_sign_change: bool = field(default=False, metadata=_OMIT_DEFAULT)  # in the file when true


@dataclass(frozen=True)
class HeldOut(_Row):
    """One held-out model of an extrapolation: |M| (``actual``), the prediction and its error."""

    model: str
    non_embedding_params: int
    actual: float
    predicted: float
    relative_error: float


@dataclass(frozen=True)
class ExtrapolationRow(_Row):
    """A power law fitted on a group's smaller models, judged on its ``holdout`` largest.

    When ``skipped`` (the reason) the other fields are empty and absent from the file.
    ``alpha``, ``c`` and ``r2`` are the fit on ``fit_models``; ``mean_abs_relative_error`` is
    over ``heldout``, with its bootstrap interval.
    """

    dataset: str
    group: str
    quantity: str
    holdout: int
    skipped: str | None = None
    fit_models: tuple[str, ...] = ()
    alpha: float | None = None
    c: float | None = None
    r2: float | None = None
    heldout: tuple[HeldOut, ...] = ()
    mean_abs_relative_error: float | None = None
    mean_abs_relative_error_ci: Interval | None = None

    _HEAD = ("dataset", "group", "quantity", "holdout", "skipped")

    def to_dict(self) -> dict[str, Any]:
        """The file form: the head only when skipped."""
        return to_record(self, only=self._HEAD if self.skipped else None)


@dataclass(frozen=True)
class ExtrapolationComparison(_Row):
    """Does EE extrapolate better than CE in one group? ``difference_ce_minus_ee`` > 0 says yes;
    its bootstrap interval and ``p_ee_better`` (the share of replicates where EE did better)
    say how sure."""

    dataset: str
    group: str
    holdout: int
    ce_mean_abs_relative_error: float
    ee_mean_abs_relative_error: float
    difference_ce_minus_ee: float
    difference_ci: Interval | None
    ee_extrapolates_better: bool
    p_ee_better: float | None


@dataclass(frozen=True)
class R2Comparison(_Row):
    """R^2 of EE's fit against CE's in one group, with the paired bootstrap interval of the
    difference (both fits' replicates come from the same resampled documents)."""

    dataset: str
    group: str
    n_models: int
    ee_r2: float
    ce_r2: float
    difference_ee_minus_ce: float
    difference_ci: Interval | None


@dataclass(frozen=True)
class FitNote(_Row):
    """Something the fit could not do or wants read with care; ``kind`` names it (docs/fit.md)."""

    kind: str
    dataset: str | None
    group: str | None
    quantity: str | None
    message: str


@dataclass(frozen=True)
class FitSettings(_Row):
    """What the fit was run with: bootstrap replicates and seed, models held out in the
    extrapolation (None: about a third), interval level, the fewest models a fit takes, and the
    k of the RBP_k fits (None in a file written before there were any)."""

    n_boot: int
    seed: int
    holdout: int | None
    level: float
    min_models: int
    rbp_ks: tuple[int, ...] | None = field(default=None, metadata=_OMIT_DEFAULT)  # when set


@dataclass(frozen=True)
class RbpFitRow(LineFit):
    """The relative-based scaling law of one k over one group of one dataset:
    ``log(-log RBP_k) = c + alpha log N``, RBP_k being the share of tokens ranked below k.

    arXiv 2510.20387 writes ``-log RBP_k ∝ N^(-alpha)``; here ``alpha`` is the slope, as in
    :class:`FitRow` (negative when -log RBP_k falls with N), so it compares with CE's and EE's
    directly. ``rbp`` and ``values`` (-log RBP_k) are the points, sorted by N. ``alpha``, ``c``
    and ``r2`` are None when the fit was ``skipped`` (the reason: too few models, RBP_k = 1 for a
    model, as when k reaches the vocabulary); intervals are 95% document-bootstrap intervals.
    """

    dataset: str
    group: str
    k: int
    n_models: int
    models: tuple[str, ...]
    non_embedding_params: tuple[int, ...]
    rbp: tuple[float | None, ...]
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class CellConvergence:
    """The bias left in one cell's EE (:func:`errorentropy.stats.convergence.ee_convergence`);
    ``final`` as in :class:`CellFit`. ``spread``: the spread (max - min) of EE across the
    dataset's final models (:func:`errorentropy.stats.entropy.sweep_spread`; None with fewer
    than 2), the yardstick of :meth:`relative`. In the file the check's fields stand beside the
    cell's names, followed by the relative bias."""

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
        relative = self.relative()
        tail = {
            "relative_bias": None if relative is None else relative[0],
            "relative_interval": None if relative is None else list(relative[1]),
        }
        return to_record(self, only=_BESIDE_CHECK) | self.check.to_dict() | tail

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CellConvergence:
        """Read the file form (the check from the same object)."""
        return from_record(cls, {**raw, "check": raw})


@dataclass(frozen=True)
class ExponentConvergence:
    """Whether EE's exponent has settled in one (dataset, group): alpha fitted on all documents
    and on ``n_halves`` random halves of them (:func:`errorentropy.stats.entropy.sweep_entropies`,
    ``seed``), judged against ``alpha_ci``'s half-width: the fit's bootstrap interval of EE's
    alpha when it has one (``interval_source`` ``"fit"``), else a document bootstrap of the
    halves' own (``"halves"``; ``alpha_ci`` None). In the file the check's fields stand beside
    the group's names."""

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
        head = [f.name for f in fields(self) if f.name != "check"]
        return to_record(self, only=head) | self.check.to_dict()

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExponentConvergence:
        """Read the file form (the check from the same object)."""
        return from_record(cls, {**raw, "check": raw})


@dataclass(frozen=True)
class ShareTrend(_Row):
    """How EE's share of CE moves with size over a dataset's final models (its ``"All"``
    group): ``slope`` is the least-squares slope of EE/CE against log10 N, the change of the
    share per tenfold increase in parameters, with the 95% interval of its refits on the
    centred bootstrap replicates (None without a bootstrap). ``shares`` are the points, sorted
    by N. Recorded for a dataset of three or more models of at least two sizes."""

    dataset: str
    n_models: int
    models: tuple[str, ...]
    non_embedding_params: tuple[int, ...]
    shares: tuple[float, ...]
    slope: float | None
    slope_ci: Interval | None = None


def _default_quantities() -> dict[str, str]:
    return {q.key: q.field for q in QUANTITIES}


@dataclass(frozen=True)
class SweepFits:
    """Everything ``errorentropy fit`` finds in a sweep folder (the content of fits.json).

    ``cells``: every cell with its components' intervals; ``fits``: one row per (dataset, group,
    quantity), groups being the families (sorted) then ``"All"``; ``extrapolation``: one row per
    (dataset, group, quantity) of groups with enough models; ``extrapolation_ce_vs_ee`` and
    ``r2_ee_vs_ce``: EE against CE per (dataset, group); ``notes``: what to read with care.
    ``quantities`` maps each quantity key to its summary key. ``rbp_fits``: one row per
    (dataset, group, k) of the relative-based law; ``convergence``: the bias left in each cell's
    EE; ``ee_exponent``: whether EE's exponent has settled per (dataset, group)
    (:mod:`errorentropy.fits.convergence`); ``share_trends``: EE's share of CE against size, per
    dataset. These four are left out of the file when empty (a file written before them reads
    back unchanged, and without ``share_trends`` the report says the trend is not recorded).
    Rows of ``convergence`` written with the old criterion (``settled``: EE on half the
    documents inside its bootstrap interval) are left out on reading: they say nothing about
    the size of the bias (rerun ``errorentropy fit``).
    """

    sweep: str
    settings: FitSettings
    cells: tuple[CellFit, ...]
    fits: tuple[FitRow, ...]
    extrapolation: tuple[ExtrapolationRow, ...]
    extrapolation_ce_vs_ee: tuple[ExtrapolationComparison, ...]
    r2_ee_vs_ce: tuple[R2Comparison, ...]
    notes: tuple[FitNote, ...]
    quantities: Mapping[str, str] = field(default_factory=_default_quantities)
    rbp_fits: tuple[RbpFitRow, ...] = field(default=(), metadata=_OMIT_DEFAULT)
    convergence: tuple[CellConvergence, ...] = field(default=(), metadata=_OMIT_DEFAULT)
    share_trends: tuple[ShareTrend, ...] = field(default=(), metadata=_OMIT_DEFAULT)
    ee_exponent: tuple[ExponentConvergence, ...] = field(default=(), metadata=_OMIT_DEFAULT)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of fits.json (without its checksum)."""
        return {"format": FITS_FORMAT, "version": FITS_VERSION, **to_record(self)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SweepFits:
        """Read the JSON object of fits.json (``format``, ``version`` and ``checksum`` are
        checked by :func:`errorentropy.fits.fit.read_fits`, not here); old-criterion
        convergence rows are left out (:func:`errorentropy.stats.convergence.is_legacy`)."""
        cells = [r for r in raw.get("convergence", ()) if not is_legacy(r)]
        return from_record(cls, {**raw, "convergence": cells})

    def share_trend(self, dataset: str) -> ShareTrend | None:
        """EE's share trend of one dataset, or None when the fits do not record one."""
        return next((t for t in self.share_trends if t.dataset == dataset), None)

    def fit(self, dataset: str, group: str, quantity: str) -> FitRow | None:
        """The row of one (dataset, group, quantity), or None when there is none."""
        for row in self.fits:
            if (row.dataset, row.group, row.quantity) == (dataset, group, quantity):
                return row
        return None

    def rbp_fit(self, dataset: str, group: str, k: int) -> RbpFitRow | None:
        """The RBP_k row of one (dataset, group, k), or None when there is none."""
        for row in self.rbp_fits:
            if (row.dataset, row.group, row.k) == (dataset, group, k):
                return row
        return None

    def fitted_rows(self) -> list[FitRow]:
        """The rows with a line (skipped fits left out), in file order."""
        return [row for row in self.fits if row.fitted]

    def groups(self) -> list[tuple[str, str, dict[str, FitRow]]]:
        """``(dataset, group, {quantity key: row})`` in file order (families, then All)."""
        grouped: dict[tuple[str, str], dict[str, FitRow]] = {}
        for row in self.fits:
            grouped.setdefault((row.dataset, row.group), {})[row.quantity] = row
        return [(d, g, rows) for (d, g), rows in grouped.items()]
