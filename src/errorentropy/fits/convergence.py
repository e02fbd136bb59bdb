"""How far has EE converged with the documents scored? The convergence step of
:func:`errorentropy.fits.fit.fit_sweep`: the bias left in each cell's EE measured against the
spread of EE across the sweep's models, and whether EE's exponent has settled per (dataset,
group), as rows of fits.json (:class:`~errorentropy.fits.records.CellConvergence`,
:class:`~errorentropy.fits.records.ExponentConvergence`) and notes, returned.

A bias matters for a scaling law in two ways. Its size against the spread of EE across the
models (:class:`CellConvergence`, ``relative_bias``) says whether EE's *level* still depends on
how many documents were scored; whether the exponent fitted on half the documents differs from
the one fitted on all of them (:class:`ExponentConvergence`,
:func:`errorentropy.stats.entropy.exponent_settled`) says whether the *slope* still does. An
exponent can be stable while the level still drifts (the bias shifts every model alike), so the
report states both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from errorentropy.errors import UserError
from errorentropy.fits.powerlaw import MIN_MODELS
from errorentropy.fits.records import (
    ALL_GROUP,
    CellConvergence,
    ExponentConvergence,
    FitNote,
    FitRow,
)
from errorentropy.stats import entropy
from errorentropy.stats.convergence import Convergence, ee_convergence, is_legacy
from errorentropy.stats.quantities import EE
from errorentropy.sweep.cells import CellRecord

__all__ = [
    "CellConvergence",
    "ExponentConvergence",
    "convergence_notes",
    "convergence_rows",
    "exponent_rows",
]


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


def convergence_rows(cells: list[CellRecord], final_ids: set[str]) -> list[CellConvergence]:
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


def exponent_rows(
    dataset: str, groups: Mapping[str, list[CellRecord]], fits: Sequence[FitRow], seed: int
) -> list[ExponentConvergence]:
    """EE's exponent check of each group of one dataset (its families, then All) whose EE line
    was fitted (``fits``). A one-family dataset's All group is that family again (the same
    models, fit and halves): its check is the family's, renamed, not computed twice."""
    rows: list[ExponentConvergence] = []
    previous: ExponentConvergence | None = None
    for group, members in groups.items():
        if group == ALL_GROUP and len(groups) == 2:  # one family, then All: that family again
            row = None if previous is None else replace(previous, group=group)
        else:
            row = _exponent_row(dataset, group, members, fits, seed)
        previous = row
        if row is not None:
            rows.append(row)
    return rows


def convergence_notes(exponents: Sequence[ExponentConvergence]) -> list[FitNote]:
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
