"""The extrapolation test: a power law fitted on a group's smaller models, judged on how well
it predicts the largest, per quantity; and whether EE extrapolates better than CE, with the
bootstrap interval of the difference (refits on the members' centred replicates)."""

from __future__ import annotations

import numpy as np

from errorentropy.fits.powerlaw import (
    FitInputError,
    default_holdout,
    extrapolate,
    fit_lines,
    split_holdout,
)
from errorentropy.fits.records import ExtrapolationComparison, ExtrapolationRow, FitNote, HeldOut
from errorentropy.fits.replicates import (
    Replicates,
    member_replicates,
    num,
    percentile_ci,
    sizes,
    values,
)
from errorentropy.stats.quantities import CE, EE, QUANTITIES, Quantity
from errorentropy.sweep.cells import CellRecord


def _extrapolation_errors(
    n: np.ndarray, fit_idx: np.ndarray, held_idx: np.ndarray, replicate_values: np.ndarray
) -> np.ndarray:
    """Mean |relative error| on the held-out models of a refit on each replicate (B, k)."""
    magnitudes = np.abs(replicate_values)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(magnitudes > 0, np.log(magnitudes), np.nan)
        alpha_b, c_b, _ = fit_lines(np.log(n[fit_idx]), y[:, fit_idx])
        pred = np.exp(c_b[:, None] + alpha_b[:, None] * np.log(n[held_idx])[None, :])
        held = magnitudes[:, held_idx]
        return np.mean(np.abs(pred - held) / held, axis=1)


def _extrapolation_row(
    dataset: str,
    group: str,
    quantity: Quantity,
    members: list[CellRecord],
    reps: Replicates,
    holdout: int,
) -> tuple[ExtrapolationRow, np.ndarray | None]:
    """One quantity's extrapolation row, and its replicate errors when there are replicates."""
    n, m = sizes(members), values(members, quantity)
    try:
        ex = extrapolate(n, m, holdout)
    except FitInputError as exc:
        return ExtrapolationRow(dataset, group, quantity.key, holdout, skipped=str(exc)), None
    fit_idx, held_idx = split_holdout(n, holdout)
    heldout = tuple(
        HeldOut(members[i].key.model, int(n[i]), float(a), float(p), float(e))
        for i, a, p, e in zip(held_idx, ex.actual, ex.predicted, ex.relative_error)
    )
    replicate_values = member_replicates(members, reps, quantity)
    errors = (
        None
        if replicate_values is None
        else _extrapolation_errors(n, fit_idx, held_idx, replicate_values)
    )
    row = ExtrapolationRow(
        dataset,
        group,
        quantity.key,
        holdout,
        fit_models=tuple(members[i].key.model for i in fit_idx),
        alpha=ex.fit.alpha,
        c=ex.fit.c,
        r2=num(ex.fit.r2),
        heldout=heldout,
        mean_abs_relative_error=ex.mean_abs_relative_error,
        mean_abs_relative_error_ci=None if errors is None else percentile_ci(errors),
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
        diff_ci = percentile_ci(diff)
        finite = np.isfinite(diff)
        p_better = num(np.mean(diff[finite] > 0)) if finite.any() else None
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


def extrapolation(
    dataset: str, group: str, members: list[CellRecord], reps: Replicates, holdout: int | None
) -> tuple[list[ExtrapolationRow], ExtrapolationComparison | None, list[FitNote]]:
    """Per-quantity extrapolation rows and the CE-versus-EE comparison for one group, with a
    note when the comparison could not be made."""
    k = default_holdout(len(members)) if holdout is None else holdout
    rows: dict[str, ExtrapolationRow] = {}
    errors: dict[str, np.ndarray] = {}
    for quantity in QUANTITIES:
        row, err = _extrapolation_row(dataset, group, quantity, members, reps, k)
        rows[quantity.key] = row
        if err is not None:
            errors[quantity.key] = err
    comparison = _ce_vs_ee(rows, errors)
    notes = []
    if comparison is None:
        reason = next((r.skipped for r in rows.values() if r.skipped), "no CE/EE fit")
        message = f"{dataset}/{group}: extrapolation skipped: {reason}"
        notes.append(FitNote("extrapolation-skipped", dataset, group, None, message))
    return list(rows.values()), comparison, notes
