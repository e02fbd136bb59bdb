"""The relative-based scaling law: ``log(-log RBP_k) = c + alpha log N`` per k over a group of
models (arXiv 2510.20387), RBP_k being the share of tokens ranked below k; the ks to fit, each
cell's RBP_k, and the percentile intervals of the refits on centred -log RBP_k replicates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from errorentropy.errors import ArgumentError
from errorentropy.fits import powerlaw
from errorentropy.fits.lines import refit
from errorentropy.fits.powerlaw import MIN_MODELS, FitInputError
from errorentropy.fits.records import RbpFitRow
from errorentropy.fits.replicates import RbpReplicates, num, sizes
from errorentropy.options import DEFAULT_RBP_KS
from errorentropy.stats import bootstrap as bs
from errorentropy.sweep.cells import CellRecord


def rbp_ks_of(cells: Sequence[CellRecord], ks: Sequence[int] | None = None) -> tuple[int, ...]:
    """The k to fit: ``ks`` when given (sorted, distinct, each >= 1), else those every cell's
    summary records in ``rbp_at`` (cells written before ``rbp_at`` existed name none), else
    :data:`errorentropy.options.DEFAULT_RBP_KS`."""
    if ks is not None:
        chosen = tuple(sorted({int(k) for k in ks}))
        if not chosen or chosen[0] < 1:
            raise ArgumentError(f"rbp_ks must be integers >= 1, got {list(ks)}", "rbp_ks")
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


def rbp_replicates(
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


def rbp_row(
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
    n = sizes(members)
    rbp = np.array([points[c.key.cell_id][j] for c in members])
    m = _neg_log(rbp)
    row = RbpFitRow(
        dataset,
        group,
        k,
        len(members),
        tuple(c.key.model for c in members),
        tuple(int(x) for x in n),
        tuple(num(v) for v in rbp),
        tuple(num(v) for v in m),
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
    row = replace(row, alpha=fit.alpha, c=fit.c, r2=num(fit.r2))
    columns = [reps.get(c.key.cell_id) for c in members]
    if not columns or any(col is None for col in columns):
        return row
    values = np.stack([col[:, j] for col in columns if col is not None], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(values > 0, np.log(values), np.nan)
    return replace(row, **refit(n, y)[3])
