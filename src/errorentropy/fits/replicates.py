"""The document bootstrap of a sweep's cells: each cell's per-document histograms resampled with
one shared set of weights per dataset, giving replicates of CE, EE, SA, Conf and RBP_k; and
each cell's row of fits.json (its components with centred intervals).

Also the small conversions every fit step shares: JSON-safe numbers and intervals, a group's
sizes and values, and its members' replicates of one quantity. Each function that has something
to say returns its notes (:class:`FitNote`) beside its result.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from errorentropy.errors import UserError
from errorentropy.fits.records import CellFit, Component, FitNote, Interval
from errorentropy.stats import bootstrap as bs
from errorentropy.stats.quantities import QUANTITIES, Quantity
from errorentropy.sweep.cells import CellRecord

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


def num(x: Any) -> float | None:
    """A JSON-safe float: NaN and inf become None."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def ci(pair: Any) -> Interval | None:
    """A JSON-safe interval: None when either end is not finite."""
    if pair is None:
        return None
    lo, hi = (num(v) for v in pair)
    return None if lo is None or hi is None else (lo, hi)


def percentile_ci(replicates: np.ndarray) -> Interval | None:
    """The :data:`LEVEL` percentile interval of ``replicates``, JSON-safe."""
    return ci(bs.percentile_interval(replicates, LEVEL))


def point(cell: CellRecord) -> np.ndarray:
    """The cell's four quantities, in the column order of its replicates."""
    return np.array([float(cell.summary[q.field]) for q in QUANTITIES])


def sizes(cells: Sequence[CellRecord]) -> np.ndarray:
    """The cells' non-embedding parameter counts, as floats."""
    return np.array([float(c.non_embedding_params) for c in cells])


def values(cells: Sequence[CellRecord], quantity: Quantity) -> np.ndarray:
    """One quantity of each cell, from its summary."""
    return np.array([float(c.summary[quantity.field]) for c in cells])


def member_replicates(
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


def _document_histograms(
    cell: CellRecord, dataset: str
) -> tuple[bs.DocumentHistograms | None, list[FitNote]]:
    """A cell's per-document histograms, or None with a note when it cannot be resampled."""
    try:
        table = cell.tokens()
    except UserError as exc:
        message = (
            f"{cell.key.cell_id}: no usable per-token data ({exc}); "
            "its bootstrap intervals are missing"
        )
        return None, [FitNote("no-tokens", dataset, None, None, message)]
    h = bs.document_histograms(table.doc, table.rank, table.logprob)
    if h.n_documents < MIN_DOCUMENTS:
        message = (
            f"{cell.key.cell_id}: {h.n_documents} scored document(s); resampling documents "
            f"needs at least {MIN_DOCUMENTS}, so it has no bootstrap intervals"
        )
        return None, [FitNote("too-few-documents", dataset, None, None, message)]
    return h, []


def _bootstrap_dataset(
    cells: list[CellRecord], n_boot: int, seed: int, dataset: str, ks: tuple[int, ...]
) -> tuple[Replicates, RbpReplicates, list[FitNote]]:
    """Replicate components (B, 4) and RBP_k (B, len(ks)) for every cell of one dataset, from
    one shared resampling."""
    hists: dict[str, bs.DocumentHistograms | None] = {}
    notes: list[FitNote] = []
    for c in cells:
        hists[c.key.cell_id], said = _document_histograms(c, dataset)
        notes += said
    spaces = [h.doc_space for h in hists.values() if h is not None]
    if not spaces:
        return {k: None for k in hists}, {k: None for k in hists}, notes
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
    return components, rbp, notes


def replicates(
    cells: list[CellRecord], n_boot: int, seed: int, ks: tuple[int, ...]
) -> tuple[Replicates, RbpReplicates, list[FitNote]]:
    """Every cell's replicates of the components and of RBP_k, one shared resampling per
    dataset (None everywhere if n_boot=0), and the notes on cells that could not be resampled."""
    reps: Replicates = {}
    rbp: RbpReplicates = {}
    notes: list[FitNote] = []
    for dataset in sorted({c.key.dataset for c in cells}):
        dataset_cells = [c for c in cells if c.key.dataset == dataset]
        if n_boot > 0:
            found = _bootstrap_dataset(dataset_cells, n_boot, seed, dataset, ks)
            reps.update(found[0])
            rbp.update(found[1])
            notes += found[2]
        else:
            reps.update({c.key.cell_id: None for c in dataset_cells})
            rbp.update({c.key.cell_id: None for c in dataset_cells})
    return reps, rbp, notes


def centred(cells: list[CellRecord], reps: Replicates) -> Replicates:
    """Replicates without their resampling shift, the way each cell's interval is centred on its
    estimate (:func:`errorentropy.stats.bootstrap.centred_replicates`): fits and extrapolations are
    refitted on these."""
    out: Replicates = {}
    for c in cells:
        found = reps.get(c.key.cell_id)
        out[c.key.cell_id] = None if found is None else bs.centred_replicates(point(c), found)
    return out


def cell_row(cell: CellRecord, final: bool, reps: np.ndarray | None) -> CellFit:
    """The cell's row of fits.json: its names, sizes and components with centred intervals."""
    estimate = point(cell)
    interval = bs.centred_interval(estimate, reps, LEVEL) if reps is not None else None
    shift = np.nanmean(reps, axis=0) - estimate if reps is not None else None
    components = {
        q.key: Component(
            num(estimate[j]),
            ci(interval[:, j]) if interval is not None else None,
            num(shift[j]) if shift is not None else None,
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


def bias_notes(rows: Sequence[CellFit]) -> list[FitNote]:
    """A note for each component whose resampling shift exceeds half its interval."""
    notes = []
    for row in rows:
        for q, comp in row.components.items():
            interval, shift = comp.ci, comp.resampling_shift
            if (
                interval is not None
                and shift is not None
                and abs(shift) > (interval[1] - interval[0]) / 2
            ):
                message = (
                    f"{row.cell_id}: resampling documents moves {q} by {shift:+.3g}, more than "
                    "half its interval (rare ranks: the plug-in estimate is biased); the "
                    f"interval is centred on the estimate, and the absolute level of {q} "
                    "carries that bias"
                )
                notes.append(FitNote("biased-bootstrap", row.dataset, None, q, message))
    return notes
