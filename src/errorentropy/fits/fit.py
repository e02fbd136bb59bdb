"""``errorentropy fit DIR``: scaling-law fits of a sweep, with bootstrap intervals and tables.

:func:`fit_sweep` is the Python API: it reads a sweep folder, takes each (dataset, model)'s final
revision (:mod:`~errorentropy.fits.select`), bootstraps every cell over documents
(:mod:`~errorentropy.fits.replicates`), fits ``log|M| = c + alpha log N`` for CE, EE, SA and
Conf per family and over all models ("All") (:mod:`~errorentropy.fits.lines`), runs the
extrapolation test (:mod:`~errorentropy.fits.extrapolation`), the relative-based law
(:mod:`~errorentropy.fits.rbp`) and the EE convergence checks (the bias left in each cell's EE,
whether EE's exponent has settled: :mod:`~errorentropy.fits.convergence`), and returns a
:class:`~errorentropy.fits.records.SweepFits`, the content of ``DIR/fits.json`` (schema:
docs/fit.md). Each step returns its rows and its notes; this module gathers them in order.
:func:`write_fits` and :func:`read_fits` write and read the file; :func:`is_current` says
whether a saved one still describes a sweep's cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errorentropy.errors import ArgumentError, UserError, as_path_text, check_int, type_name
from errorentropy.fits.convergence import convergence_notes, convergence_rows, exponent_rows
from errorentropy.fits.extrapolation import extrapolation
from errorentropy.fits.lines import conf_sign_note, fit_row, r2_comparison, share_trend
from errorentropy.fits.powerlaw import MIN_MODELS
from errorentropy.fits.rbp import rbp_ks_of, rbp_point, rbp_replicates, rbp_row
from errorentropy.fits.records import (
    ALL_GROUP,
    FITS_FORMAT,
    FITS_VERSION,
    CellFit,
    ExponentConvergence,
    ExtrapolationComparison,
    ExtrapolationRow,
    FitNote,
    FitRow,
    FitSettings,
    R2Comparison,
    RbpFitRow,
    ShareTrend,
    SweepFits,
)
from errorentropy.fits.replicates import (
    LEVEL,
    RbpReplicates,
    Replicates,
    abs_interval,
    bias_notes,
    cell_row,
    centred,
    replicates,
)
from errorentropy.fits.select import (
    choose_final,
    fit_members,
    load_finished,
    select_final,
    settings_notes,
)
from errorentropy.stats.quantities import CE, COMPONENTS, EE, QUANTITIES
from errorentropy.storage import read_checked_json, write_checked_json
from errorentropy.sweep.cells import CellRecord, distinct_weights

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


@dataclass
class _Collected:
    """The rows of a sweep's fits and their notes, gathered group by group in file order."""

    fits: list[FitRow] = field(default_factory=list)
    extrapolation: list[ExtrapolationRow] = field(default_factory=list)
    comparisons: list[ExtrapolationComparison] = field(default_factory=list)
    r2: list[R2Comparison] = field(default_factory=list)
    rbp: list[RbpFitRow] = field(default_factory=list)
    share_trends: list[ShareTrend] = field(default_factory=list)
    ee_exponent: list[ExponentConvergence] = field(default_factory=list)
    notes: list[FitNote] = field(default_factory=list)


@dataclass(frozen=True)
class _RbpInputs:
    """What the RBP_k fits read: the ks, each final cell's RBP_k and its centred -log RBP_k
    replicates."""

    ks: tuple[int, ...]
    points: dict[str, Any]
    reps: RbpReplicates


def _fit_quantities(
    dataset: str, group: str, members: list[CellRecord], reps: Replicates, out: _Collected
) -> None:
    """Fit CE, EE, SA and Conf over one group; EE's R^2 is paired with CE's."""
    ce = fit_row(dataset, group, CE, members, reps, None)
    rows, notes = [ce.row], list(ce.notes)
    for quantity in COMPONENTS:
        line = fit_row(dataset, group, quantity, members, reps, (ce.row, ce.alpha_reps))
        rows.append(line.row)
        notes += line.notes
        if quantity is EE:
            paired = r2_comparison(line.row, ce.row, line.r2_reps, ce.r2_reps)
            if paired is not None:
                out.r2.append(paired)
    rows[-1], sign_notes = conf_sign_note(rows[-1], members)
    out.fits.extend(rows)
    out.notes.extend(notes + sign_notes)


def _fit_group(
    dataset: str,
    group: str,
    members: list[CellRecord],
    reps: Replicates,
    holdout: int | None,
    rbp: _RbpInputs,
    out: _Collected,
) -> None:
    """Fit CE, EE, SA, Conf and -log RBP_k over one group, then test extrapolation when it has
    the models."""
    _fit_quantities(dataset, group, members, reps, out)
    for j in range(len(rbp.ks)):
        out.rbp.append(rbp_row(dataset, group, rbp.ks, j, members, rbp.points, rbp.reps))
    if len(members) >= MIN_MODELS:
        rows, comparison, notes = extrapolation(dataset, group, members, reps, holdout)
        out.extrapolation.extend(rows)
        out.notes.extend(notes)
        if comparison is not None:
            out.comparisons.append(comparison)


def _fit_dataset(
    dataset: str,
    finals: list[CellRecord],
    reps: Replicates,
    holdout: int | None,
    rbp: _RbpInputs,
    out: _Collected,
    seed: int,
) -> None:
    """Every group of one dataset (its families, then All), EE's exponent check per group (its
    halves drawn with ``seed``) and EE's share trend over All."""
    members, notes = fit_members(finals, dataset)
    out.notes.extend(notes)
    families = sorted({c.family for c in members})
    groups = {fam: [c for c in members if c.family == fam] for fam in families}
    groups[ALL_GROUP] = members
    for group, group_members in groups.items():
        _fit_group(dataset, group, group_members, reps, holdout, rbp, out)
    out.ee_exponent += exponent_rows(dataset, groups, out.fits, seed)
    trend = share_trend(dataset, members, reps)
    if trend is not None:
        out.share_trends.append(trend)


def _check_options(
    n_boot: int, seed: int, holdout: int | None, rbp_ks: Sequence[int] | None
) -> None:
    """Arguments of :func:`fit_sweep` in keyword names (the command line shows its flags)."""
    check_int(n_boot, "n_boot", 0)
    check_int(seed, "seed", 0)
    check_int(holdout, "holdout", 1, optional=True)
    if rbp_ks is not None and (
        isinstance(rbp_ks, (str, bytes))
        or not isinstance(rbp_ks, Sequence)
        or not all(isinstance(k, int) and not isinstance(k, bool) for k in rbp_ks)
    ):
        raise ArgumentError(
            f"rbp_ks must be a list of integers >= 1 or None, got {type_name(rbp_ks)}", "rbp_ks"
        )


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
    _check_options(n_boot, seed, holdout, rbp_ks)
    sweep_dir = as_path_text(sweep_dir, "sweep_dir")
    # Revisions holding identical weights count once (cells.distinct_weights; the report agrees).
    cells, same = distinct_weights(load_finished(sweep_dir))
    ks = rbp_ks_of(cells, rbp_ks)
    finals, final_notes = choose_final(cells)
    final_ids = {c.key.cell_id for c in finals}
    reps, rbp_reps, boot_notes = replicates(cells, n_boot, seed, ks)
    cell_rows = [cell_row(c, c.key.cell_id in final_ids, reps.get(c.key.cell_id)) for c in cells]
    points = {c.key.cell_id: rbp_point(c, ks) for c in finals}
    out = _Collected()
    out.notes += settings_notes(cells)
    out.notes += [FitNote("same-weights", None, None, None, s.message()) for s in same]
    out.notes += final_notes + boot_notes + bias_notes(cell_rows)
    rbp = _RbpInputs(ks, points, rbp_replicates(finals, points, rbp_reps))
    centred_reps = centred(cells, reps)
    for dataset in sorted({c.key.dataset for c in cells}):
        _fit_dataset(dataset, finals, centred_reps, holdout, rbp, out, seed)
    convergence = convergence_rows(cells, final_ids)
    return SweepFits(
        sweep=str(sweep_dir),
        settings=FitSettings(n_boot, seed, holdout, LEVEL, MIN_MODELS, ks),
        cells=tuple(cell_rows),
        fits=tuple(out.fits),
        extrapolation=tuple(out.extrapolation),
        extrapolation_ce_vs_ee=tuple(out.comparisons),
        r2_ee_vs_ce=tuple(out.r2),
        notes=(*out.notes, *convergence_notes(out.ee_exponent)),
        rbp_fits=tuple(out.rbp),
        convergence=tuple(convergence),
        share_trends=tuple(out.share_trends),
        ee_exponent=tuple(out.ee_exponent),
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
    expected = {c.key.cell_id: _cell_identity(cell_row(c, False, None)) for c in cells}
    return {r.cell_id: _cell_identity(r) for r in fits.cells} == expected
