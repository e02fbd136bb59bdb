"""``errorentropy fit DIR``: scaling-law fits of a sweep, with bootstrap intervals and tables.

:func:`fit_sweep` is the Python API: it reads a sweep folder, takes each (dataset, model)'s final
revision, fits ``log|M| = c + alpha log N`` for CE, EE, SA and Conf per family and over all
models ("All"), bootstraps every cell and fit over documents, runs the extrapolation test and a
saturating fit, and returns a :class:`~errorentropy.fits.records.SweepFits`, the content of
``DIR/fits.json`` (schema: docs/fit.md). :func:`write_fits` and :func:`read_fits` write and read
it; :func:`is_current` says whether a saved one still describes a sweep's cells.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from errorentropy.errors import UserError
from errorentropy.fits import powerlaw
from errorentropy.fits.convergence import ExponentConvergence
from errorentropy.fits.powerlaw import (
    MIN_MODELS,
    FitInputError,
    SaturatingFit,
    default_holdout,
    extrapolate,
    fit_lines,
    fit_saturating,
    sign_changes,
    split_holdout,
)
from errorentropy.fits.records import (
    ALL_GROUP,
    FITS_FORMAT,
    FITS_VERSION,
    CellConvergence,
    CellFit,
    Component,
    ExtrapolationComparison,
    ExtrapolationRow,
    FitNote,
    FitRow,
    FitSettings,
    HeldOut,
    Interval,
    R2Comparison,
    RbpFitRow,
    SaturatingResult,
    SweepFits,
)
from errorentropy.options import DEFAULT_RBP_KS
from errorentropy.stats import bootstrap as bs
from errorentropy.stats import entropy
from errorentropy.stats.convergence import Convergence, ee_convergence, is_legacy
from errorentropy.stats.quantities import CE, COMPONENTS, CONF, EE, QUANTITIES, Quantity
from errorentropy.storage import read_checked_json, write_checked_json
from errorentropy.sweep.cells import CellRecord, distinct_weights, load_cells, mixed_settings

__all__ = [
    "ALL_GROUP",
    "FITS_FILE",
    "FITS_FORMAT",
    "FITS_VERSION",
    "LEVEL",
    "SweepFits",
    "abs_interval",
    "fit_sweep",
    "is_current",
    "rbp_ks_of",
    "rbp_point",
    "read_fits",
    "select_final",
    "write_fits",
]

FITS_FILE = "fits.json"
TABLES_DIR = "tables"
LEVEL = 0.95
MIN_DOCUMENTS = 2  # resampling one document gives zero-width "intervals"

Replicates = dict[str, np.ndarray | None]  # cell id -> (B, 4) components, columns as QUANTITIES
# cell id -> (B, len(ks)) replicates of RBP_k, the share of tokens ranked below k
RbpReplicates = dict[str, np.ndarray | None]


def abs_interval(interval: np.ndarray) -> np.ndarray:
    """The image of ``[lo, hi]`` under ``|.|``: ``[0, max]`` when it holds 0, else the ends'
    magnitudes, ordered."""
    lo, hi = (float(v) for v in interval)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.array([np.nan, np.nan])
    if lo <= 0.0 <= hi:
        return np.array([0.0, max(-lo, hi)])
    return np.sort(np.abs([lo, hi]))


# ---- small helpers ----------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    """A JSON-safe float: NaN and inf become None."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _ci(pair: Any) -> Interval | None:
    if pair is None:
        return None
    lo, hi = (_num(v) for v in pair)
    return None if lo is None or hi is None else (lo, hi)


def _point(cell: CellRecord) -> np.ndarray:
    """The cell's four quantities, in the column order of its replicates."""
    return np.array([float(cell.summary[q.field]) for q in QUANTITIES])


def _sizes(cells: Sequence[CellRecord]) -> np.ndarray:
    return np.array([float(c.non_embedding_params) for c in cells])


def _values(cells: Sequence[CellRecord], quantity: Quantity) -> np.ndarray:
    return np.array([float(c.summary[quantity.field]) for c in cells])


def _member_replicates(
    members: Sequence[CellRecord], reps: Replicates, quantity: Quantity
) -> np.ndarray | None:
    """One quantity's replicates of every member, shape (B, k); None if a member has none."""
    j = QUANTITIES.index(quantity)
    columns = []
    for c in members:
        found = reps.get(c.key.cell_id)
        if found is None:
            return None
        columns.append(found[:, j])
    return np.stack(columns, axis=1) if columns else None


def _dataset_seed(seed: int, dataset: str) -> np.random.Generator:
    """One reproducible stream per (seed, dataset), independent of which other datasets exist."""
    return np.random.default_rng([int(seed), zlib.crc32(dataset.encode("utf-8"))])


# ---- which cells ------------------------------------------------------------------------------


def _is_main(revision: str | None) -> bool:
    return revision is None or revision == "main"


def select_final(cells: list[CellRecord], notes: list[FitNote]) -> list[CellRecord]:
    """Each (dataset, model)'s final revision: ``main`` (or no revision) if present, else the
    largest step.

    Other revisions (training-dynamics checkpoints) are left to the report. When no revision
    is main and none names a step, the first by name is used and a note says so.
    """
    by_model: dict[tuple[str, str], list[CellRecord]] = defaultdict(list)
    for cell in cells:
        by_model[(cell.key.dataset, cell.key.model)].append(cell)
    finals = []
    for (dataset, model), group in sorted(by_model.items()):
        mains = [c for c in group if _is_main(c.key.revision)]
        stepped = [c for c in group if c.step is not None]
        if mains:
            finals.append(mains[0])
        elif stepped:
            finals.append(max(stepped, key=lambda c: c.step or 0))
        else:
            chosen = sorted(group, key=lambda c: c.key.revision or "")[0]
            finals.append(chosen)
            if len(group) > 1:
                message = (
                    f"{model} on {dataset}: no main revision and no step in its revision names; "
                    f"used {chosen.key.revision!r}"
                )
                notes.append(FitNote("revision", dataset, None, None, message))
    return finals


def _settings_notes(cells: list[CellRecord]) -> list[FitNote]:
    """Notes on cells of one dataset scored with different data, windows, dtype or head."""
    notes = []
    for dataset in sorted({c.key.dataset for c in cells}):
        group = [c for c in cells if c.key.dataset == dataset]
        mixed = mixed_settings(group)
        if mixed:
            message = (
                f"{mixed}: its fits compare unlike numbers; rescore the odd cells or give them "
                "another dataset label"
            )
            notes.append(FitNote("mixed-settings", dataset, None, None, message))
        for key in ("dtype", "head_path"):
            values = sorted({str(c.summary.get(key)) for c in group})
            if len(values) > 1:
                message = (
                    f"{dataset}: cells were scored with {key} {', '.join(values)}; EE counts "
                    "ties, which 16-bit logits make commoner, so compare such cells with care"
                )
                notes.append(FitNote("mixed-settings", dataset, None, None, message))
    return notes


def _fit_members(finals: list[CellRecord], dataset: str, notes: list[FitNote]) -> list[CellRecord]:
    """A dataset's final cells with a positive parameter count, by size; the others are noted."""
    members = []
    for c in finals:
        if c.key.dataset != dataset:
            continue
        if c.non_embedding_params <= 0:
            message = (
                f"{c.key.model} on {dataset}: non-embedding parameter count is "
                f"{c.non_embedding_params}; left out of the fits"
            )
            notes.append(FitNote("no-params", dataset, None, None, message))
            continue
        members.append(c)
    return sorted(members, key=lambda c: (c.non_embedding_params, c.key.model))


# ---- the bootstrap ----------------------------------------------------------------------------


def _document_histograms(
    cell: CellRecord, dataset: str, notes: list[FitNote]
) -> bs.DocumentHistograms | None:
    """A cell's per-document histograms, or None (with a note) when it cannot be resampled."""
    try:
        table = cell.tokens()
    except UserError as exc:
        message = (
            f"{cell.key.cell_id}: no usable per-token data ({exc}); "
            "its bootstrap intervals are missing"
        )
        notes.append(FitNote("no-tokens", dataset, None, None, message))
        return None
    h = bs.document_histograms(table.doc, table.rank, table.logprob)
    if h.n_documents < MIN_DOCUMENTS:
        message = (
            f"{cell.key.cell_id}: {h.n_documents} scored document(s); resampling documents "
            f"needs at least {MIN_DOCUMENTS}, so it has no bootstrap intervals"
        )
        notes.append(FitNote("too-few-documents", dataset, None, None, message))
        return None
    return h


def _bootstrap_dataset(
    cells: list[CellRecord],
    n_boot: int,
    seed: int,
    dataset: str,
    notes: list[FitNote],
    ks: tuple[int, ...],
) -> tuple[Replicates, RbpReplicates]:
    """Replicate components (B, 4) and RBP_k (B, len(ks)) for every cell of one dataset, from
    one shared resampling."""
    hists = {c.key.cell_id: _document_histograms(c, dataset, notes) for c in cells}
    spaces = [h.doc_space for h in hists.values() if h is not None]
    if not spaces:
        return {k: None for k in hists}, {k: None for k in hists}
    doc_space = np.unique(np.concatenate(spaces))
    if any(space.size != doc_space.size for space in spaces):
        message = (
            f"{dataset}: cells scored different sets of documents "
            f"({min(s.size for s in spaces)} to {doc_space.size}); the shared resampling draws "
            "from their union, so a cell's replicates also vary in how many of its own "
            "documents they hold"
        )
        notes.append(FitNote("document-sets-differ", dataset, None, None, message))
    weights = bs.resample_weights(doc_space.size, n_boot, _dataset_seed(seed, dataset))
    wide = {k: None if h is None else bs.reindex(h, doc_space) for k, h in hists.items()}
    components = {
        k: None if h is None else bs.replicate_components(h, weights) for k, h in wide.items()
    }
    rbp = {k: None if h is None else bs.replicate_rbp(h, weights, ks) for k, h in wide.items()}
    return components, rbp


def _replicates(
    cells: list[CellRecord], n_boot: int, seed: int, notes: list[FitNote], ks: tuple[int, ...]
) -> tuple[Replicates, RbpReplicates]:
    """Every cell's replicates of the components and of RBP_k, one shared resampling per
    dataset (None everywhere if n_boot=0)."""
    reps: Replicates = {}
    rbp: RbpReplicates = {}
    for dataset in sorted({c.key.dataset for c in cells}):
        dataset_cells = [c for c in cells if c.key.dataset == dataset]
        if n_boot > 0:
            found = _bootstrap_dataset(dataset_cells, n_boot, seed, dataset, notes, ks)
            reps.update(found[0])
            rbp.update(found[1])
        else:
            reps.update({c.key.cell_id: None for c in dataset_cells})
            rbp.update({c.key.cell_id: None for c in dataset_cells})
    return reps, rbp


def _centred(cells: list[CellRecord], reps: Replicates) -> Replicates:
    """Replicates without their resampling shift, the way each cell's interval is centred on its
    estimate (:func:`errorentropy.stats.bootstrap.centred_replicates`): fits and extrapolations are
    refitted on these."""
    out: Replicates = {}
    for c in cells:
        found = reps.get(c.key.cell_id)
        out[c.key.cell_id] = None if found is None else bs.centred_replicates(_point(c), found)
    return out


# ---- cells ------------------------------------------------------------------------------------


def _cell_row(cell: CellRecord, final: bool, reps: np.ndarray | None) -> CellFit:
    point = _point(cell)
    interval = bs.centred_interval(point, reps, LEVEL) if reps is not None else None
    shift = np.nanmean(reps, axis=0) - point if reps is not None else None
    components = {
        q.key: Component(
            _num(point[j]),
            _ci(interval[:, j]) if interval is not None else None,
            _num(shift[j]) if shift is not None else None,
        )
        for j, q in enumerate(QUANTITIES)
    }
    return CellFit(
        cell_id=cell.key.cell_id,
        model=cell.key.model,
        revision=cell.key.revision,
        dataset=cell.key.dataset,
        family=cell.family,
        step=cell.step,
        non_embedding_params=int(cell.non_embedding_params),
        total_params=int(cell.total_params),
        final=final,
        n_tokens=cell.summary.get("n_tokens"),
        n_documents=cell.summary.get("n_documents"),
        components=components,
    )


def _bias_notes(rows: Sequence[CellFit]) -> list[FitNote]:
    """A note for each component whose resampling shift exceeds half its interval."""
    notes = []
    for row in rows:
        for q, comp in row.components.items():
            ci, shift = comp.ci, comp.resampling_shift
            if ci is not None and shift is not None and abs(shift) > (ci[1] - ci[0]) / 2:
                message = (
                    f"{row.cell_id}: resampling documents moves {q} by {shift:+.3g}, more than "
                    "half its interval (rare ranks: the plug-in estimate is biased); the "
                    f"interval is centred on the estimate, and the absolute level of {q} "
                    "carries that bias"
                )
                notes.append(FitNote("biased-bootstrap", row.dataset, None, q, message))
    return notes


# ---- one power law ----------------------------------------------------------------------------


def _saturating(fit: SaturatingFit) -> SaturatingResult:
    if not fit.converged:
        return SaturatingResult(False, fit.n_points, reason=fit.reason)
    return SaturatingResult(
        True, fit.n_points, _num(fit.a), _num(fit.alpha), _num(fit.e), _num(fit.r2), fit.warning
    )


def _fit_row(
    dataset: str,
    group: str,
    quantity: Quantity,
    members: list[CellRecord],
    reps: Replicates,
    ce: tuple[FitRow, np.ndarray | None] | None,
    notes: list[FitNote],
) -> tuple[FitRow, np.ndarray | None, np.ndarray | None]:
    """One (dataset, group, quantity) fit row, and its bootstrap alpha and R^2 replicates (for
    Table 2 and the paired R^2 comparison). ``ce`` is CE's row and alpha replicates (None for
    CE itself)."""
    n, m = _sizes(members), _values(members, quantity)
    row = FitRow(
        dataset,
        group,
        quantity.key,
        len(members),
        tuple(c.key.model for c in members),
        tuple(int(x) for x in n),
        tuple(_num(v) for v in m),
    )
    try:
        fit = powerlaw.fit_power_law(n, m)
    except FitInputError as exc:
        reason = f"{dataset}/{group}/{quantity.key}: fit skipped: {exc}"
        notes.append(FitNote("skipped", dataset, group, quantity.key, reason))
        return replace(row, skipped=str(exc), notes=(reason,)), None, None
    row = replace(
        row, alpha=fit.alpha, c=fit.c, r2=_num(fit.r2), saturating=_saturating(fit_saturating(n, m))
    )
    ce_row, ce_reps = ce if ce is not None else (None, None)
    if ce_row is not None and ce_row.alpha is not None:
        signed = fit.alpha - ce_row.alpha
        row = replace(row, delta_alpha_vs_ce=abs(signed), delta_alpha_signed=signed)
    values = _member_replicates(members, reps, quantity)
    if values is None:
        return row, None, None
    return _bootstrap_fit(row, n, values, ce_reps, notes)


def _bootstrap_fit(
    row: FitRow, n: np.ndarray, values: np.ndarray, ce_reps: np.ndarray | None, notes: list[FitNote]
) -> tuple[FitRow, np.ndarray, np.ndarray]:
    """``row`` with the intervals of its refits on the replicate ``values`` (B, k)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values != 0, np.log(np.abs(values)), np.nan)
    alpha_reps, r2_reps, valid, intervals = _refit(n, y)
    row = replace(row, **intervals)
    if valid.any():
        if ce_reps is not None:
            # The interval of the signed difference, then its image under |.|: a percentile
            # interval of |difference| itself is biased away from 0.
            signed = bs.percentile_interval(alpha_reps - ce_reps, LEVEL)
            row = replace(
                row, delta_alpha_signed_ci=_ci(signed), delta_alpha_ci=_ci(abs_interval(signed))
            )
        row = _outside_interval_notes(row, notes)
    if valid.sum() < valid.size:
        left_out = valid.size - int(valid.sum())
        message = (
            f"{left_out} of {valid.size} bootstrap replicates had a zero or non-finite value "
            "and were left out"
        )
        row = replace(row, notes=(*row.notes, message))
    return row, alpha_reps, r2_reps


def _refit(
    n: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """The line refitted on each replicate row of ``y`` (log values, NaN where there is none):
    slopes, R^2, which refits are valid, and the row fields they give (``n_boot_valid`` and,
    with any valid refit, the percentile intervals ``alpha_ci`` and ``r2_ci``)."""
    alpha_reps, _, r2_reps = fit_lines(np.log(n), y)
    valid = np.isfinite(alpha_reps)
    fields: dict[str, Any] = {"n_boot_valid": int(valid.sum())}
    if valid.any():
        fields["alpha_ci"] = _ci(bs.percentile_interval(alpha_reps, LEVEL))
        fields["r2_ci"] = _ci(bs.percentile_interval(r2_reps, LEVEL))
    return alpha_reps, r2_reps, valid, fields


def _outside_interval_notes(row: FitRow, notes: list[FitNote]) -> FitRow:
    """Note every estimate of ``row`` lying outside its own bootstrap interval."""
    added = []
    for name, value, ci in (
        ("alpha", row.alpha, row.alpha_ci),
        ("R^2", row.r2, row.r2_ci),
        ("|delta alpha|", row.delta_alpha_vs_ce, row.delta_alpha_ci),
    ):
        if value is not None and ci is not None and not ci[0] <= value <= ci[1]:
            message = (
                f"{row.dataset}/{row.group}/{row.quantity}: {name} = {value:.4g} lies outside "
                f"its own bootstrap interval [{ci[0]:.4g}, {ci[1]:.4g}]; read that interval "
                "with care (the statistic is skewed or bounded there)"
            )
            added.append(message)
            notes.append(FitNote("outside-interval", row.dataset, row.group, row.quantity, message))
    return replace(row, notes=(*row.notes, *added))


def _r2_comparison(
    ee: FitRow, ce: FitRow, ee_r2: np.ndarray | None, ce_r2: np.ndarray | None
) -> R2Comparison | None:
    """R^2 of EE against CE, paired on the same resampled documents; None without both R^2."""
    if ee.r2 is None or ce.r2 is None:
        return None
    diff_ci = (
        _ci(bs.percentile_interval(ee_r2 - ce_r2, LEVEL))
        if ee_r2 is not None and ce_r2 is not None
        else None
    )
    return R2Comparison(ee.dataset, ee.group, ee.n_models, ee.r2, ce.r2, ee.r2 - ce.r2, diff_ci)


def _conf_sign_note(row: FitRow, members: list[CellRecord], notes: list[FitNote]) -> FitRow:
    """The Conf row, marked and noted when Confidence changes sign across the members."""
    conf = _values(members, CONF)
    if not sign_changes(conf):
        return row
    signs = ", ".join(f"{v:+.3g}" for v in conf)
    message = (
        f"{row.dataset}/{row.group}: Confidence changes sign across models "
        f"({int(np.sum(conf > 0))} positive, {int(np.sum(conf < 0))} negative; "
        f"from the smallest model to the largest: {signs}); the log|Conf| fit hides the sign"
    )
    notes.append(FitNote("conf-sign-change", row.dataset, row.group, CONF.key, message))
    return replace(row, notes=(*row.notes, message), conf_sign_change=True)


# ---- the extrapolation test -------------------------------------------------------------------


def _extrapolation_errors(
    n: np.ndarray, fit_idx: np.ndarray, held_idx: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Mean |relative error| on the held-out models of a refit on each replicate (B, k)."""
    values = np.abs(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values > 0, np.log(values), np.nan)
        alpha_b, c_b, _ = fit_lines(np.log(n[fit_idx]), y[:, fit_idx])
        pred = np.exp(c_b[:, None] + alpha_b[:, None] * np.log(n[held_idx])[None, :])
        return np.mean(np.abs(pred - values[:, held_idx]) / values[:, held_idx], axis=1)


def _extrapolation_row(
    dataset: str,
    group: str,
    quantity: Quantity,
    members: list[CellRecord],
    reps: Replicates,
    holdout: int,
) -> tuple[ExtrapolationRow, np.ndarray | None]:
    """One quantity's extrapolation row, and its replicate errors when there are replicates."""
    n, m = _sizes(members), _values(members, quantity)
    try:
        ex = extrapolate(n, m, holdout)
    except FitInputError as exc:
        return ExtrapolationRow(dataset, group, quantity.key, holdout, skipped=str(exc)), None
    fit_idx, held_idx = split_holdout(n, holdout)
    heldout = tuple(
        HeldOut(members[i].key.model, int(n[i]), float(a), float(p), float(e))
        for i, a, p, e in zip(held_idx, ex.actual, ex.predicted, ex.relative_error)
    )
    values = _member_replicates(members, reps, quantity)
    errors = None if values is None else _extrapolation_errors(n, fit_idx, held_idx, values)
    row = ExtrapolationRow(
        dataset,
        group,
        quantity.key,
        holdout,
        fit_models=tuple(members[i].key.model for i in fit_idx),
        alpha=ex.fit.alpha,
        c=ex.fit.c,
        r2=_num(ex.fit.r2),
        heldout=heldout,
        mean_abs_relative_error=ex.mean_abs_relative_error,
        mean_abs_relative_error_ci=None
        if errors is None
        else _ci(bs.percentile_interval(errors, LEVEL)),
    )
    return row, errors


def _ce_vs_ee(
    rows: dict[str, ExtrapolationRow], errors: dict[str, np.ndarray]
) -> ExtrapolationComparison | None:
    """Whether EE extrapolates better than CE in one group; None unless both extrapolated."""
    ce, ee = rows.get(CE.key), rows.get(EE.key)
    if not ce or not ee or ce.skipped or ee.skipped:
        return None
    ce_err, ee_err = ce.mean_abs_relative_error, ee.mean_abs_relative_error
    assert ce_err is not None and ee_err is not None  # set on every row not skipped
    diff_ci = p_better = None
    if CE.key in errors and EE.key in errors:
        diff = errors[CE.key] - errors[EE.key]
        diff_ci = _ci(bs.percentile_interval(diff, LEVEL))
        finite = np.isfinite(diff)
        p_better = _num(np.mean(diff[finite] > 0)) if finite.any() else None
    return ExtrapolationComparison(
        ce.dataset,
        ce.group,
        ce.holdout,
        ce_err,
        ee_err,
        ce_err - ee_err,
        diff_ci,
        ee_err < ce_err,
        p_better,
    )


def _extrapolation(
    dataset: str,
    group: str,
    members: list[CellRecord],
    reps: Replicates,
    holdout: int | None,
    notes: list[FitNote],
) -> tuple[list[ExtrapolationRow], ExtrapolationComparison | None]:
    """Per-quantity extrapolation rows and the CE-versus-EE comparison for one group."""
    k = default_holdout(len(members)) if holdout is None else holdout
    rows: dict[str, ExtrapolationRow] = {}
    errors: dict[str, np.ndarray] = {}
    for quantity in QUANTITIES:
        row, err = _extrapolation_row(dataset, group, quantity, members, reps, k)
        rows[quantity.key] = row
        if err is not None:
            errors[quantity.key] = err
    comparison = _ce_vs_ee(rows, errors)
    if comparison is None:
        reason = next((r.skipped for r in rows.values() if r.skipped), "no CE/EE fit")
        message = f"{dataset}/{group}: extrapolation skipped: {reason}"
        notes.append(FitNote("extrapolation-skipped", dataset, group, None, message))
    return list(rows.values()), comparison


# ---- the relative-based law: -log RBP_k against N ---------------------------------------------


def rbp_ks_of(cells: Sequence[CellRecord], ks: Sequence[int] | None = None) -> tuple[int, ...]:
    """The k to fit: ``ks`` when given (sorted, distinct, each >= 1), else those every cell's
    summary records in ``rbp_at`` (cells written before ``rbp_at`` existed name none), else
    :data:`errorentropy.options.DEFAULT_RBP_KS`."""
    if ks is not None:
        chosen = tuple(sorted({int(k) for k in ks}))
        if not chosen or chosen[0] < 1:
            raise UserError(f"--rbp-k must be integers >= 1, got {list(ks)}")
        return chosen
    recorded = [c.summary.get("rbp_at") for c in cells]
    named = [set(r) for r in recorded if isinstance(r, dict)]
    common = set.intersection(*named) if named else set()
    found = sorted(int(k) for k in common if isinstance(k, str) and k.isdigit() and int(k) >= 1)
    return tuple(found) or DEFAULT_RBP_KS


def rbp_point(cell: CellRecord, ks: tuple[int, ...]) -> np.ndarray:
    """The cell's RBP_k for each k: from its summary's ``rbp_at``, or from its histogram when
    the summary lacks one of them (a cell scored before ``rbp_at`` existed, or with other ks)."""
    recorded = cell.summary.get("rbp_at")
    if isinstance(recorded, dict) and all(str(k) in recorded for k in ks):
        return np.array([float(recorded[str(k)]) for k in ks])
    found = cell.histogram().rbp_at(ks)
    return np.array([found[k] for k in ks])


def _neg_log(rbp: np.ndarray) -> np.ndarray:
    """-log RBP_k (inf where RBP_k = 0, 0 where it is 1)."""
    with np.errstate(divide="ignore"):
        return -np.log(np.asarray(rbp, dtype=np.float64))


def _rbp_replicates(
    cells: Sequence[CellRecord], points: dict[str, np.ndarray], reps: RbpReplicates
) -> RbpReplicates:
    """-log RBP_k replicates, centred on each cell's estimate as the components' are."""
    out: RbpReplicates = {}
    for c in cells:
        found = reps.get(c.key.cell_id)
        if found is None:
            out[c.key.cell_id] = None
            continue
        with np.errstate(invalid="ignore"):
            out[c.key.cell_id] = bs.centred_replicates(
                _neg_log(points[c.key.cell_id]), _neg_log(found)
            )
    return out


def _rbp_row(
    dataset: str,
    group: str,
    ks: tuple[int, ...],
    j: int,
    members: list[CellRecord],
    points: dict[str, np.ndarray],
    reps: RbpReplicates,
) -> RbpFitRow:
    """The fit ``log(-log RBP_k) = c + alpha log N`` of ``k = ks[j]`` over one group, with
    percentile intervals of its refits on the members' centred replicates."""
    k = ks[j]
    n = _sizes(members)
    rbp = np.array([points[c.key.cell_id][j] for c in members])
    m = _neg_log(rbp)
    row = RbpFitRow(
        dataset,
        group,
        k,
        len(members),
        tuple(c.key.model for c in members),
        tuple(int(x) for x in n),
        tuple(_num(v) for v in rbp),
        tuple(_num(v) for v in m),
    )
    try:
        fit = powerlaw.fit_power_law(n, m)
    except FitInputError as exc:
        whole = int(np.sum(rbp >= 1.0))
        reason = (
            f"RBP_{k} = 1 for {whole} model(s): every token ranks below {k}, so -log RBP_k = 0 "
            "and has no log (k is too near the vocabulary)"
            if whole and len(members) >= MIN_MODELS
            else str(exc)
        )
        return replace(row, skipped=reason)
    row = replace(row, alpha=fit.alpha, c=fit.c, r2=_num(fit.r2))
    columns = [reps.get(c.key.cell_id) for c in members]
    if not columns or any(col is None for col in columns):
        return row
    values = np.stack([col[:, j] for col in columns if col is not None], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values > 0, np.log(values), np.nan)
    return replace(row, **_refit(n, y)[3])


# ---- how far has EE converged with the documents? ---------------------------------------------


def _cell_convergence(cell: CellRecord) -> Convergence | None:
    """The cell's :class:`~errorentropy.stats.convergence.Convergence`: read from its summary, or
    computed from its token table (cells scored before summaries held it, or holding the old
    ``settled`` check); None without tokens.
    """
    recorded = cell.summary.get("ee_convergence")
    if isinstance(recorded, dict) and not is_legacy(recorded):
        try:
            return Convergence.from_dict(recorded)
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # damaged: computed again below
    try:
        table = cell.tokens()
    except UserError:
        return None  # the bootstrap notes the missing tokens
    return ee_convergence(table) if table.rank.size else None


def _convergence_rows(cells: list[CellRecord], final_ids: set[str]) -> list[CellConvergence]:
    """Every cell's bias check, by dataset then size (cells without tokens left out), with the
    spread of EE across its dataset's final models as the yardstick."""
    rows = []
    for c in sorted(cells, key=lambda c: (c.key.dataset, c.non_embedding_params, c.key.cell_id)):
        check = _cell_convergence(c)
        if check is not None:
            final = c.key.cell_id in final_ids
            rows.append(
                CellConvergence(
                    c.key.cell_id, c.key.model, c.key.dataset, c.non_embedding_params, final, check
                )
            )
    spreads = {}
    for dataset in {r.dataset for r in rows}:
        values = [r.check.error_entropy for r in rows if r.dataset == dataset and r.final]
        spreads[dataset] = entropy.sweep_spread(values) if len(values) >= 2 else None
    return [replace(r, spread=spreads[r.dataset]) for r in rows]


def _exponent_row(
    dataset: str, group: str, members: list[CellRecord], fits: Sequence[FitRow], seed: int
) -> ExponentConvergence | None:
    """Whether EE's exponent has settled over ``members`` (alpha on all documents against alpha
    on random halves), judged by the half-width of the fit's interval of EE's alpha, or of a
    bootstrap of its own when the fit has none; None without a fitted EE line or tokens."""
    row = next(
        (r for r in fits if (r.dataset, r.group, r.quantity) == (dataset, group, EE.key)), None
    )
    if row is None or not row.fitted or len(members) < MIN_MODELS:
        return None
    n = [c.non_embedding_params for c in members]
    try:
        tables = [(t.doc, t.rank) for t in (c.tokens() for c in members)]
        ci = (
            row.alpha_ci if row.alpha_ci is not None and row.alpha_ci[1] > row.alpha_ci[0] else None
        )
        found = entropy.sweep_entropies(n, tables, seed=seed, n_boot=0 if ci else entropy.N_BOOT)
        width = (ci[1] - ci[0]) / 2 if ci else found.alpha_halfwidth
        check = entropy.exponent_settled(n, found.ee_all, found.ee_halves, width)
    except UserError:
        return None  # tokens missing, or EE not positive on some half: no verdict
    models = tuple(c.key.model for c in members)
    source = "fit" if ci else "halves"
    halves = entropy.N_HALVES_SWEEP
    return ExponentConvergence(dataset, group, models, tuple(n), ci, source, halves, seed, check)


def _convergence_notes(exponents: list[ExponentConvergence]) -> list[FitNote]:
    """One note per (dataset, group) whose EE exponent has not settled (not the All group of a
    one-family dataset again: it is that family)."""
    families = {(e.dataset, e.models) for e in exponents if e.group != ALL_GROUP}
    return [
        FitNote(
            "ee-exponent-not-settled",
            e.dataset,
            e.group,
            EE.key,
            f"{e.describe()}. The exponent still depends on how many documents were scored; "
            "score more documents",
        )
        for e in exponents
        if e.settled is False and not (e.group == ALL_GROUP and (e.dataset, e.models) in families)
    ]


# ---- a group, a dataset, a sweep --------------------------------------------------------------


class _Collected:
    """The rows of a sweep's fits, gathered group by group, and what the RBP_k fits read: the
    ks, each cell's RBP_k and its centred -log RBP_k replicates."""

    def __init__(
        self, ks: tuple[int, ...], points: dict[str, np.ndarray], rbp_reps: RbpReplicates
    ) -> None:
        self.fits: list[FitRow] = []
        self.extrapolation: list[ExtrapolationRow] = []
        self.comparisons: list[ExtrapolationComparison] = []
        self.r2: list[R2Comparison] = []
        self.rbp: list[RbpFitRow] = []
        self.ks, self.points, self.rbp_reps = ks, points, rbp_reps


def _fit_group(
    dataset: str,
    group: str,
    members: list[CellRecord],
    reps: Replicates,
    holdout: int | None,
    out: _Collected,
    notes: list[FitNote],
) -> None:
    """Fit CE, EE, SA and Conf over one group, then test extrapolation when it has the models."""
    ce_row, ce_reps, ce_r2 = _fit_row(dataset, group, CE, members, reps, None, notes)
    rows = [ce_row]
    for quantity in COMPONENTS:
        row, _, r2_reps = _fit_row(
            dataset, group, quantity, members, reps, (ce_row, ce_reps), notes
        )
        rows.append(row)
        if quantity is EE:
            paired = _r2_comparison(row, ce_row, r2_reps, ce_r2)
            if paired is not None:
                out.r2.append(paired)
    rows[-1] = _conf_sign_note(rows[-1], members, notes)
    out.fits.extend(rows)
    for j in range(len(out.ks)):
        out.rbp.append(_rbp_row(dataset, group, out.ks, j, members, out.points, out.rbp_reps))
    if len(members) >= MIN_MODELS:
        extrapolation, comparison = _extrapolation(dataset, group, members, reps, holdout, notes)
        out.extrapolation.extend(extrapolation)
        if comparison is not None:
            out.comparisons.append(comparison)


def _check_options(n_boot: int, seed: int, holdout: int | None) -> None:
    if n_boot < 0:
        raise UserError(f"--n-boot must be >= 0, got {n_boot}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if holdout is not None and holdout < 1:
        raise UserError(f"--holdout must be >= 1, got {holdout}")


def _load_finished(sweep_dir: Path | str) -> list[CellRecord]:
    cells = load_cells(sweep_dir)
    if not cells:
        raise UserError(
            f"{sweep_dir} has no finished cells; run or resume `errorentropy sweep` first"
        )
    return cells


def fit_sweep(
    sweep_dir: Path | str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    holdout: int | None = None,
    rbp_ks: Sequence[int] | None = None,
) -> SweepFits:
    """Everything ``errorentropy fit`` writes to ``fits.json`` (see docs/fit.md).

    Args:
        sweep_dir: a sweep folder (holds ``cells/``).
        n_boot: document-level bootstrap replicates (0: no intervals, plain least squares).
        seed: the bootstrap's random seed.
        holdout: models held out (the largest) in the extrapolation test (None: about a third
            of each group, leaving at least 3 to fit).
        rbp_ks: the k of the relative-based fits of -log RBP_k (None: the ks the cells'
            summaries record, see :func:`rbp_ks_of`).

    Examples:
        A synthetic sweep of four models whose Error-Entropy falls as ``12 N^-0.09``:

        >>> from errorentropy.testing import synthetic_sweep
        >>> folder = synthetic_sweep(workdir / "sweep")
        >>> fits = ee.fit_sweep(folder, n_boot=100, seed=0)
        >>> row = fits.fit("synth", "All", "EE")
        >>> row.n_models, round(row.alpha, 2), round(row.r2, 2)
        (4, -0.09, 1.0)
        >>> row.alpha_ci[0] < row.alpha < row.alpha_ci[1]
        True
        >>> ee.SweepFits.from_dict(fits.to_dict()) == fits
        True

        The relative-based law per k, the bias left in each cell's EE (nats) and whether EE's
        exponent has settled:

        >>> fits.settings.rbp_ks, len(fits.rbp_fits)  # (family "toy" and "All") x 4 ks
        ((1, 10, 100, 1000), 8)
        >>> rbp = fits.rbp_fit("synth", "All", 1)
        >>> rbp.alpha < 0 < rbp.r2
        True
        >>> row = fits.convergence[0]
        >>> row.check.n_documents, row.check.interval[0] <= row.check.bias <= row.check.interval[1]
        (20, True)
        >>> [(e.group, e.check.n_models) for e in fits.ee_exponent]
        [('toy', 4), ('All', 4)]
    """
    _check_options(n_boot, seed, holdout)
    # Revisions holding identical weights count once (cells.distinct_weights; the report agrees).
    cells, same = distinct_weights(_load_finished(sweep_dir))
    ks = rbp_ks_of(cells, rbp_ks)
    notes = _settings_notes(cells)
    notes += [FitNote("same-weights", None, None, None, s.message()) for s in same]
    finals = select_final(cells, notes)
    final_ids = {c.key.cell_id for c in finals}
    reps, rbp_reps = _replicates(cells, n_boot, seed, notes, ks)
    cell_rows = [_cell_row(c, c.key.cell_id in final_ids, reps.get(c.key.cell_id)) for c in cells]
    centred = _centred(cells, reps)
    notes.extend(_bias_notes(cell_rows))
    points = {c.key.cell_id: rbp_point(c, ks) for c in finals}
    out = _Collected(ks, points, _rbp_replicates(finals, points, rbp_reps))
    exponents: list[ExponentConvergence | None] = []
    for dataset in sorted({c.key.dataset for c in cells}):
        members = _fit_members(finals, dataset, notes)
        families = sorted({c.family for c in members})
        groups = {fam: [c for c in members if c.family == fam] for fam in families}
        groups[ALL_GROUP] = members
        for group, group_members in groups.items():
            _fit_group(dataset, group, group_members, centred, holdout, out, notes)
            twin = exponents[-1] if group == ALL_GROUP and len(families) == 1 else None
            exponents.append(
                replace(twin, group=group)  # All is the one family again: same fit, same halves
                if twin is not None
                else _exponent_row(dataset, group, group_members, out.fits, seed)
            )
    convergence = _convergence_rows(cells, final_ids)
    ee_exponent = [e for e in exponents if e is not None]
    notes.extend(_convergence_notes(ee_exponent))
    return SweepFits(
        sweep=str(sweep_dir),
        settings=FitSettings(n_boot, seed, holdout, LEVEL, MIN_MODELS, ks),
        cells=tuple(cell_rows),
        fits=tuple(out.fits),
        extrapolation=tuple(out.extrapolation),
        extrapolation_ce_vs_ee=tuple(out.comparisons),
        r2_ee_vs_ce=tuple(out.r2),
        notes=tuple(notes),
        rbp_fits=tuple(out.rbp),
        convergence=tuple(convergence),
        ee_exponent=tuple(ee_exponent),
    )


# ---- fits.json --------------------------------------------------------------------------------


def write_fits(sweep_dir: Path | str, result: SweepFits) -> Path:
    """Write ``fits.json`` under ``sweep_dir`` (the tables are the report's:
    :func:`errorentropy.report.tables.write_tables`); returns its path."""
    path = Path(sweep_dir) / FITS_FILE
    write_checked_json(path, result.to_dict())
    return path


def read_fits(sweep_dir: Path | str) -> SweepFits:
    """Read ``DIR/fits.json`` (or a fits.json path) written by :func:`write_fits`, checksum
    verified."""
    path = Path(sweep_dir)
    if path.is_dir():
        path = path / FITS_FILE
    body = read_checked_json(path, "fits file")
    wrong = UserError(
        f"{path} is not an errorentropy fits file of version {FITS_VERSION}; "
        "rerun `errorentropy fit`"
    )
    if body.get("format") != FITS_FORMAT or body.get("version") != FITS_VERSION:
        raise wrong
    try:
        return SweepFits.from_dict(body)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise wrong from None


def _cell_identity(row: CellFit) -> tuple[Any, ...]:
    """What a fit depends on in a cell: its name, sizes, token counts and values."""
    values = tuple(
        row.components[q.key].value if q.key in row.components else None for q in QUANTITIES
    )
    return (
        row.model,
        row.revision,
        row.dataset,
        row.family,
        row.step,
        row.non_embedding_params,
        row.total_params,
        row.n_tokens,
        row.n_documents,
        values,
    )


def is_current(fits: SweepFits, cells: Sequence[CellRecord]) -> bool:
    """Whether ``fits`` was fitted on exactly these cells: the same cells, with the same
    parameter and token counts and the same CE, EE, SA and Conf (its settings are not compared).
    """
    expected = {c.key.cell_id: _cell_identity(_cell_row(c, False, None)) for c in cells}
    return {r.cell_id: _cell_identity(r) for r in fits.cells} == expected
