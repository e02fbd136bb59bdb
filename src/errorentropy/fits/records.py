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
from typing import Any, cast

from errorentropy.fits.convergence import CellConvergence, ExponentConvergence, read_cells
from errorentropy.stats.quantities import QUANTITIES

FITS_FORMAT = "errorentropy-fits"
FITS_VERSION = 1
ALL_GROUP = "All"  # the group holding every model of a dataset, beside one group per family

Interval = tuple[float, float]


def _interval(value: Any) -> Interval | None:
    """``[lo, hi]`` from a file as a tuple of floats (None stays None)."""
    if value is None:
        return None
    lo, hi = value
    return (float(lo), float(hi))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _jsonable(value: Any) -> Any:
    """The file form of a field: rows as dicts, tuples as lists, intervals as ``[lo, hi]``."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class _Row:
    """Rows whose file form is one key per field."""

    def to_dict(self) -> dict[str, Any]:
        """The row as it stands in fits.json."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(cast(Any, self))}


@dataclass(frozen=True)
class Component(_Row):
    """One quantity of one cell: its value, centred bootstrap interval and resampling shift.

    ``resampling_shift`` is the mean bootstrap replicate minus ``value``: the shift the interval
    was moved by (see :func:`errorentropy.stats.bootstrap.centred_interval`).
    """

    value: float | None
    ci: Interval | None = None
    resampling_shift: float | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Component:
        """Read the file form."""
        return cls(
            _float(raw["value"]), _interval(raw.get("ci")), _float(raw.get("resampling_shift"))
        )


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

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CellFit:
        """Read the file form."""
        return cls(
            cell_id=str(raw["cell_id"]),
            model=str(raw["model"]),
            revision=raw.get("revision"),
            dataset=str(raw["dataset"]),
            family=str(raw["family"]),
            step=raw.get("step"),
            non_embedding_params=int(raw["non_embedding_params"]),
            total_params=int(raw["total_params"]),
            final=bool(raw["final"]),
            n_tokens=raw.get("n_tokens"),
            n_documents=raw.get("n_documents"),
            components={q: Component.from_dict(c) for q, c in raw["components"].items()},
        )


@dataclass(frozen=True)
class SaturatingResult:
    """The saturating law ``M = a N^(-alpha) + E`` beside a power law, or why it failed.

    When ``converged`` is False the numbers are None and ``reason`` says why; ``warning`` holds
    a non-fatal remark of a converged fit.
    """

    converged: bool
    n_points: int
    a: float | None = None
    alpha: float | None = None
    e: float | None = None
    r2: float | None = None
    warning: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The file form: parameters and R^2 when converged, else the reason."""
        if not self.converged:
            return {"converged": False, "reason": self.reason, "n_points": self.n_points}
        return {
            "converged": True,
            "a": self.a,
            "alpha": self.alpha,
            "E": self.e,
            "r2": self.r2,
            "n_points": self.n_points,
            "warning": self.warning,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SaturatingResult:
        """Read the file form."""
        if not raw["converged"]:
            return cls(False, int(raw["n_points"]), reason=raw.get("reason"))
        return cls(
            True,
            int(raw["n_points"]),
            a=_float(raw.get("a")),
            alpha=_float(raw.get("alpha")),
            e=_float(raw.get("E")),
            r2=_float(raw.get("r2")),
            warning=raw.get("warning"),
        )


@dataclass(frozen=True)
class FitRow:
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
    alpha: float | None = None
    c: float | None = None
    r2: float | None = None
    alpha_ci: Interval | None = None
    r2_ci: Interval | None = None
    delta_alpha_vs_ce: float | None = None
    delta_alpha_ci: Interval | None = None
    delta_alpha_signed: float | None = None
    delta_alpha_signed_ci: Interval | None = None
    n_boot_valid: int = 0
    saturating: SaturatingResult | None = None
    skipped: str | None = None
    notes: tuple[str, ...] = ()
    conf_sign_change: bool = False

    @property
    def fitted(self) -> bool:
        """Whether there is a line (the fit was not skipped)."""
        return self.alpha is not None and self.c is not None

    def to_dict(self) -> dict[str, Any]:
        """The file form (``conf_sign_change`` is present only when true)."""
        out = {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}
        if not self.conf_sign_change:
            del out["conf_sign_change"]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FitRow:
        """Read the file form."""
        saturating = raw.get("saturating")
        return cls(
            dataset=str(raw["dataset"]),
            group=str(raw["group"]),
            quantity=str(raw["quantity"]),
            n_models=int(raw["n_models"]),
            models=tuple(raw["models"]),
            non_embedding_params=tuple(int(n) for n in raw["non_embedding_params"]),
            values=tuple(_float(v) for v in raw["values"]),
            alpha=_float(raw.get("alpha")),
            c=_float(raw.get("c")),
            r2=_float(raw.get("r2")),
            alpha_ci=_interval(raw.get("alpha_ci")),
            r2_ci=_interval(raw.get("r2_ci")),
            delta_alpha_vs_ce=_float(raw.get("delta_alpha_vs_ce")),
            delta_alpha_ci=_interval(raw.get("delta_alpha_ci")),
            delta_alpha_signed=_float(raw.get("delta_alpha_signed")),
            delta_alpha_signed_ci=_interval(raw.get("delta_alpha_signed_ci")),
            n_boot_valid=int(raw.get("n_boot_valid", 0)),
            saturating=None if saturating is None else SaturatingResult.from_dict(saturating),
            skipped=raw.get("skipped"),
            notes=tuple(raw.get("notes", ())),
            conf_sign_change=bool(raw.get("conf_sign_change", False)),
        )


@dataclass(frozen=True)
class HeldOut(_Row):
    """One held-out model of an extrapolation: |M| (``actual``), the prediction and its error."""

    model: str
    non_embedding_params: int
    actual: float
    predicted: float
    relative_error: float

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> HeldOut:
        """Read the file form."""
        return cls(
            str(raw["model"]),
            int(raw["non_embedding_params"]),
            float(raw["actual"]),
            float(raw["predicted"]),
            float(raw["relative_error"]),
        )


@dataclass(frozen=True)
class ExtrapolationRow:
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
        names = self._HEAD if self.skipped else [f.name for f in fields(self)]
        return {name: _jsonable(getattr(self, name)) for name in names}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExtrapolationRow:
        """Read the file form."""
        return cls(
            dataset=str(raw["dataset"]),
            group=str(raw["group"]),
            quantity=str(raw["quantity"]),
            holdout=int(raw["holdout"]),
            skipped=raw.get("skipped"),
            fit_models=tuple(raw.get("fit_models", ())),
            alpha=_float(raw.get("alpha")),
            c=_float(raw.get("c")),
            r2=_float(raw.get("r2")),
            heldout=tuple(HeldOut.from_dict(h) for h in raw.get("heldout", ())),
            mean_abs_relative_error=_float(raw.get("mean_abs_relative_error")),
            mean_abs_relative_error_ci=_interval(raw.get("mean_abs_relative_error_ci")),
        )


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

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExtrapolationComparison:
        """Read the file form."""
        return cls(
            str(raw["dataset"]),
            str(raw["group"]),
            int(raw["holdout"]),
            float(raw["ce_mean_abs_relative_error"]),
            float(raw["ee_mean_abs_relative_error"]),
            float(raw["difference_ce_minus_ee"]),
            _interval(raw.get("difference_ci")),
            bool(raw["ee_extrapolates_better"]),
            _float(raw.get("p_ee_better")),
        )


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

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> R2Comparison:
        """Read the file form."""
        return cls(
            str(raw["dataset"]),
            str(raw["group"]),
            int(raw["n_models"]),
            float(raw["ee_r2"]),
            float(raw["ce_r2"]),
            float(raw["difference_ee_minus_ce"]),
            _interval(raw.get("difference_ci")),
        )


@dataclass(frozen=True)
class FitNote(_Row):
    """Something the fit could not do or wants read with care; ``kind`` names it (docs/fit.md)."""

    kind: str
    dataset: str | None
    group: str | None
    quantity: str | None
    message: str

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FitNote:
        """Read the file form."""
        return cls(
            str(raw["kind"]),
            raw.get("dataset"),
            raw.get("group"),
            raw.get("quantity"),
            str(raw["message"]),
        )


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
    rbp_ks: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The file form (``rbp_ks`` only when set, so older files read back unchanged)."""
        out = super().to_dict()
        if self.rbp_ks is None:
            del out["rbp_ks"]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> FitSettings:
        """Read the file form."""
        ks = raw.get("rbp_ks")
        return cls(
            int(raw["n_boot"]),
            int(raw["seed"]),
            raw.get("holdout"),
            float(raw["level"]),
            int(raw["min_models"]),
            None if ks is None else tuple(int(k) for k in ks),
        )


@dataclass(frozen=True)
class RbpFitRow(_Row):
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

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RbpFitRow:
        """Read the file form."""
        return cls(
            dataset=str(raw["dataset"]),
            group=str(raw["group"]),
            k=int(raw["k"]),
            n_models=int(raw["n_models"]),
            models=tuple(raw["models"]),
            non_embedding_params=tuple(int(n) for n in raw["non_embedding_params"]),
            rbp=tuple(_float(v) for v in raw["rbp"]),
            values=tuple(_float(v) for v in raw["values"]),
            alpha=_float(raw.get("alpha")),
            c=_float(raw.get("c")),
            r2=_float(raw.get("r2")),
            alpha_ci=_interval(raw.get("alpha_ci")),
            r2_ci=_interval(raw.get("r2_ci")),
            n_boot_valid=int(raw.get("n_boot_valid", 0)),
            skipped=raw.get("skipped"),
        )


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
    (:mod:`errorentropy.fits.convergence`). These three are left out of the file when empty (a
    file written before them reads back unchanged).
    """

    sweep: str
    settings: FitSettings
    cells: tuple[CellFit, ...] = ()
    fits: tuple[FitRow, ...] = ()
    extrapolation: tuple[ExtrapolationRow, ...] = ()
    extrapolation_ce_vs_ee: tuple[ExtrapolationComparison, ...] = ()
    r2_ee_vs_ce: tuple[R2Comparison, ...] = ()
    notes: tuple[FitNote, ...] = ()
    quantities: Mapping[str, str] = field(default_factory=_default_quantities)
    rbp_fits: tuple[RbpFitRow, ...] = ()
    convergence: tuple[CellConvergence, ...] = ()
    ee_exponent: tuple[ExponentConvergence, ...] = ()

    _OPTIONAL = ("rbp_fits", "convergence", "ee_exponent")

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of fits.json (without its checksum)."""
        return {
            "format": FITS_FORMAT,
            "version": FITS_VERSION,
            **{
                f.name: _jsonable(getattr(self, f.name))
                for f in fields(self)
                if f.name not in self._OPTIONAL or getattr(self, f.name)
            },
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SweepFits:
        """Read the JSON object of fits.json (``format``, ``version`` and ``checksum`` are
        checked by :func:`errorentropy.fits.fit.read_fits`, not here)."""
        return cls(
            sweep=str(raw["sweep"]),
            settings=FitSettings.from_dict(raw["settings"]),
            cells=tuple(CellFit.from_dict(c) for c in raw["cells"]),
            fits=tuple(FitRow.from_dict(r) for r in raw["fits"]),
            extrapolation=tuple(ExtrapolationRow.from_dict(r) for r in raw["extrapolation"]),
            extrapolation_ce_vs_ee=tuple(
                ExtrapolationComparison.from_dict(r) for r in raw["extrapolation_ce_vs_ee"]
            ),
            r2_ee_vs_ce=tuple(R2Comparison.from_dict(r) for r in raw["r2_ee_vs_ce"]),
            notes=tuple(FitNote.from_dict(n) for n in raw["notes"]),
            quantities=dict(raw.get("quantities") or _default_quantities()),
            rbp_fits=tuple(RbpFitRow.from_dict(r) for r in raw.get("rbp_fits", ())),
            convergence=read_cells(raw.get("convergence", ())),
            ee_exponent=tuple(ExponentConvergence.from_dict(r) for r in raw.get("ee_exponent", ())),
        )

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
