"""The power law ``log|M| = c + alpha log N`` of one quantity over one group of models, with the
percentile intervals of its refits on the members' centred bootstrap replicates; R^2 of EE
against CE, paired on the same replicates; the mark on a Conf row whose values change sign;
and the trend of EE's share of CE with size.

Each step returns its row and the notes it has to say (:class:`FitNote`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from errorentropy.fits import powerlaw
from errorentropy.fits.powerlaw import (
    MIN_MODELS,
    FitInputError,
    SaturatingFit,
    fit_lines,
    fit_saturating,
    sign_changes,
)
from errorentropy.fits.records import FitNote, FitRow, R2Comparison, SaturatingResult, ShareTrend
from errorentropy.fits.replicates import (
    Replicates,
    abs_interval,
    ci,
    member_replicates,
    num,
    percentile_ci,
    sizes,
    values,
)
from errorentropy.stats.quantities import CE, CONF, EE, Quantity
from errorentropy.sweep.cells import CellRecord


class FittedLine(NamedTuple):
    """One fit row, its bootstrap alpha and R^2 replicates (None without replicates: Table 2's
    differences and the paired R^2 comparison are taken on them), and its notes."""

    row: FitRow
    alpha_reps: np.ndarray | None
    r2_reps: np.ndarray | None
    notes: list[FitNote]


def saturating_result(fit: SaturatingFit) -> SaturatingResult:
    """The saturating fit as it stands in fits.json (non-finite numbers as None)."""
    if not fit.converged:
        return SaturatingResult(False, fit.n_points, reason=fit.reason)
    return SaturatingResult(
        True, fit.n_points, num(fit.a), num(fit.alpha), num(fit.e), num(fit.r2), fit.warning
    )


def fit_row(
    dataset: str,
    group: str,
    quantity: Quantity,
    members: list[CellRecord],
    reps: Replicates,
    ce: tuple[FitRow, np.ndarray | None] | None,
) -> FittedLine:
    """One (dataset, group, quantity) fit row with its replicates. ``ce`` is CE's row and alpha
    replicates (None for CE itself)."""
    n, m = sizes(members), values(members, quantity)
    row = FitRow(
        dataset,
        group,
        quantity.key,
        len(members),
        tuple(c.key.model for c in members),
        tuple(int(x) for x in n),
        tuple(num(v) for v in m),
    )
    try:
        fit = powerlaw.fit_power_law(n, m)
    except FitInputError as exc:
        reason = f"{dataset}/{group}/{quantity.key}: fit skipped: {exc}"
        note = FitNote("skipped", dataset, group, quantity.key, reason)
        return FittedLine(replace(row, skipped=str(exc), notes=(reason,)), None, None, [note])
    row = replace(
        row,
        alpha=fit.alpha,
        c=fit.c,
        r2=num(fit.r2),
        saturating=saturating_result(fit_saturating(n, m)),
    )
    ce_row, ce_reps = ce if ce is not None else (None, None)
    if ce_row is not None and ce_row.alpha is not None:
        signed = fit.alpha - ce_row.alpha
        row = replace(row, delta_alpha_vs_ce=abs(signed), delta_alpha_signed=signed)
    replicate_values = member_replicates(members, reps, quantity)
    if replicate_values is None:
        return FittedLine(row, None, None, [])
    return _bootstrap_fit(row, n, replicate_values, ce_reps)


def _bootstrap_fit(
    row: FitRow, n: np.ndarray, replicate_values: np.ndarray, ce_reps: np.ndarray | None
) -> FittedLine:
    """``row`` with the intervals of its refits on the replicate values (B, k)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(replicate_values != 0, np.log(np.abs(replicate_values)), np.nan)
    alpha_reps, r2_reps, valid, intervals = refit(n, y)
    row = replace(row, **intervals)
    notes: list[FitNote] = []
    if valid.any():
        if ce_reps is not None:
            # The interval of the signed difference, then its image under |.|: a percentile
            # interval of |difference| itself is biased away from 0.
            signed = percentile_ci(alpha_reps - ce_reps)
            magnitude = None if signed is None else ci(abs_interval(np.array(signed)))
            row = replace(row, delta_alpha_signed_ci=signed, delta_alpha_ci=magnitude)
        row, notes = _outside_interval_notes(row)
    if valid.sum() < valid.size:
        left_out = valid.size - int(valid.sum())
        message = (
            f"{left_out} of {valid.size} bootstrap replicates had a zero or non-finite value "
            "and were left out"
        )
        row = replace(row, notes=(*row.notes, message))
    return FittedLine(row, alpha_reps, r2_reps, notes)


def refit(
    n: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """The line refitted on each replicate row of ``y`` (log values, NaN where there is none):
    slopes, R^2, which refits are valid, and the row fields they give (``n_boot_valid`` and,
    with any valid refit, the percentile intervals ``alpha_ci`` and ``r2_ci``)."""
    alpha_reps, _, r2_reps = fit_lines(np.log(n), y)
    valid = np.isfinite(alpha_reps)
    fields: dict[str, Any] = {"n_boot_valid": int(valid.sum())}
    if valid.any():
        fields["alpha_ci"] = percentile_ci(alpha_reps)
        fields["r2_ci"] = percentile_ci(r2_reps)
    return alpha_reps, r2_reps, valid, fields


def _outside_interval_notes(row: FitRow) -> tuple[FitRow, list[FitNote]]:
    """Note every estimate of ``row`` lying outside its own bootstrap interval."""
    added = []
    for name, value, interval in (
        ("alpha", row.alpha, row.alpha_ci),
        ("R^2", row.r2, row.r2_ci),
        ("|delta alpha|", row.delta_alpha_vs_ce, row.delta_alpha_ci),
    ):
        if value is not None and interval is not None and not interval[0] <= value <= interval[1]:
            added.append(
                f"{row.dataset}/{row.group}/{row.quantity}: {name} = {value:.4g} lies outside "
                f"its own bootstrap interval [{interval[0]:.4g}, {interval[1]:.4g}]; read that "
                "interval with care (the statistic is skewed or bounded there)"
            )
    notes = [FitNote("outside-interval", row.dataset, row.group, row.quantity, m) for m in added]
    return replace(row, notes=(*row.notes, *added)), notes


def r2_comparison(
    ee: FitRow, ce: FitRow, ee_r2: np.ndarray | None, ce_r2: np.ndarray | None
) -> R2Comparison | None:
    """R^2 of EE against CE, paired on the same resampled documents; None without both R^2."""
    if ee.r2 is None or ce.r2 is None:
        return None
    diff_ci = percentile_ci(ee_r2 - ce_r2) if ee_r2 is not None and ce_r2 is not None else None
    return R2Comparison(ee.dataset, ee.group, ee.n_models, ee.r2, ce.r2, ee.r2 - ce.r2, diff_ci)


def conf_sign_note(row: FitRow, members: list[CellRecord]) -> tuple[FitRow, list[FitNote]]:
    """The Conf row, marked and noted when Confidence changes sign across the members."""
    conf = values(members, CONF)
    if not sign_changes(conf):
        return row, []
    signs = ", ".join(f"{v:+.3g}" for v in conf)
    message = (
        f"{row.dataset}/{row.group}: Confidence changes sign across models "
        f"({int(np.sum(conf > 0))} positive, {int(np.sum(conf < 0))} negative; "
        f"from the smallest model to the largest: {signs}); the log|Conf| fit hides the sign"
    )
    note = FitNote("conf-sign-change", row.dataset, row.group, CONF.key, message)
    return replace(row, notes=(*row.notes, message), conf_sign_change=True), [note]


def share_trend(dataset: str, members: list[CellRecord], reps: Replicates) -> ShareTrend | None:
    """The least-squares slope of EE/CE against log10 N over a dataset's members, with the
    percentile interval of its refits on their centred replicates; None for fewer than
    :data:`~errorentropy.fits.powerlaw.MIN_MODELS` models or a single size."""
    n = sizes(members)
    if len(members) < MIN_MODELS or n.min() == n.max():
        return None
    shares = values(members, EE) / values(members, CE)
    log_n = np.log10(n)
    slope = float(fit_lines(log_n, shares)[0])
    ee_reps, ce_reps = (member_replicates(members, reps, q) for q in (EE, CE))
    interval = None
    if ee_reps is not None and ce_reps is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            replicate_slopes = fit_lines(log_n, ee_reps / ce_reps)[0]
        if np.isfinite(replicate_slopes).any():
            interval = percentile_ci(replicate_slopes)
    return ShareTrend(
        dataset,
        len(members),
        tuple(c.key.model for c in members),
        tuple(int(x) for x in n),
        tuple(float(s) for s in shares),
        num(slope),
        interval,
    )
