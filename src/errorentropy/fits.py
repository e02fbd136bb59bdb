"""``errorentropy fit DIR``: scaling-law fits of a sweep, with bootstrap intervals and tables.

:func:`fit_sweep` is the Python API: it reads a sweep folder, takes each (dataset, model)'s final
revision, fits ``log|M| = c + alpha log N`` for CE, EE, SA and Conf per family and over all
models ("All"), bootstraps every cell and fit over documents, runs the extrapolation test and a
saturating fit, and returns the dictionary written to ``DIR/fits.json`` (schema: docs/fit.md).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from . import bootstrap as bs
from .cells import CellRecord, load_cells, mixed_settings
from .errors import UserError
from .powerlaw import (
    MIN_MODELS,
    FitInputError,
    default_holdout,
    extrapolate,
    fit_lines,
    fit_power_law,
    fit_saturating,
    sign_changes,
    split_holdout,
)
from .storage import write_checked_json

FITS_FORMAT = "errorentropy-fits"
FITS_VERSION = 1
FITS_FILE = "fits.json"
TABLES_DIR = "tables"
ALL_GROUP = "All"
LEVEL = 0.95
MIN_DOCUMENTS = 2  # resampling one document gives zero-width "intervals"


def abs_interval(interval: np.ndarray) -> np.ndarray:
    """The image of ``[lo, hi]`` under ``|.|``: ``[0, max]`` when it holds 0, else the ends' magnitudes, ordered."""
    lo, hi = (float(v) for v in interval)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.array([np.nan, np.nan])
    if lo <= 0.0 <= hi:
        return np.array([0.0, max(-lo, hi)])
    return np.sort(np.abs([lo, hi]))


# Short name -> key in a cell's summary; the order is the column order of bootstrap.COMPONENTS.
QUANTITIES: dict[str, str] = {
    "CE": "cross_entropy",
    "EE": "error_entropy",
    "SA": "self_alignment",
    "Conf": "confidence",
}


def _is_main(revision: str | None) -> bool:
    return revision is None or revision == "main"


def select_final(cells: list[CellRecord], notes: list[dict[str, Any]]) -> list[CellRecord]:
    """Each (dataset, model)'s final revision: ``main`` (or no revision) if present, else the largest step.

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
                notes.append(
                    _note(
                        "revision",
                        f"{model} on {dataset}: no main revision and no step in its revision names; used {chosen.key.revision!r}",
                        dataset=dataset,
                    )
                )
    return finals


def _note(
    kind: str,
    message: str,
    *,
    dataset: str | None = None,
    group: str | None = None,
    quantity: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "dataset": dataset,
        "group": group,
        "quantity": quantity,
        "message": message,
    }


def _num(x: Any) -> float | None:
    """A JSON-safe float: NaN and inf become None."""
    if x is None:
        return None
    x = float(x)
    return x if np.isfinite(x) else None


def _ci(pair: Any) -> list[float | None] | None:
    if pair is None:
        return None
    lo, hi = (_num(v) for v in pair)
    return None if lo is None or hi is None else [lo, hi]


def _dataset_seed(seed: int, dataset: str) -> np.random.Generator:
    """One reproducible stream per (seed, dataset), independent of which other datasets exist."""
    return np.random.default_rng([int(seed), zlib.crc32(dataset.encode("utf-8"))])


def _bootstrap_dataset(
    cells: list[CellRecord], n_boot: int, seed: int, dataset: str, notes: list[dict[str, Any]]
) -> dict[str, np.ndarray | None]:
    """Replicate components (B, 4) for every cell of one dataset, from one shared resampling."""
    hists: dict[str, bs.DocumentHistograms | None] = {}
    for cell in cells:
        try:
            table = cell.tokens()
        except UserError as exc:
            notes.append(
                _note(
                    "no-tokens",
                    f"{cell.key.cell_id}: no usable per-token data ({exc}); its bootstrap intervals are missing",
                    dataset=dataset,
                )
            )
            hists[cell.key.cell_id] = None
            continue
        h = bs.document_histograms(table.doc, table.rank, table.logprob)
        if h.n_documents < MIN_DOCUMENTS:
            notes.append(
                _note(
                    "too-few-documents",
                    f"{cell.key.cell_id}: {h.n_documents} scored document(s); resampling documents needs at least {MIN_DOCUMENTS}, so it has no bootstrap intervals",
                    dataset=dataset,
                )
            )
            hists[cell.key.cell_id] = None
            continue
        hists[cell.key.cell_id] = h
    spaces = [h.doc_space for h in hists.values() if h is not None]
    if not spaces:
        return {k: None for k in hists}
    doc_space = np.unique(np.concatenate(spaces))
    if any(space.size != doc_space.size for space in spaces):
        notes.append(
            _note(
                "document-sets-differ",
                f"{dataset}: cells scored different sets of documents ({min(s.size for s in spaces)} to {doc_space.size}); the shared resampling draws from their union, so a cell's replicates also vary in how many of its own documents they hold",
                dataset=dataset,
            )
        )
    weights = bs.resample_weights(doc_space.size, n_boot, _dataset_seed(seed, dataset))
    out: dict[str, np.ndarray | None] = {}
    for cell_id, h in hists.items():
        out[cell_id] = (
            None if h is None else bs.replicate_components(bs.reindex(h, doc_space), weights)
        )
    return out


def _cell_row(cell: CellRecord, final: bool, reps: np.ndarray | None) -> dict[str, Any]:
    point = np.array([float(cell.summary[QUANTITIES[q]]) for q in QUANTITIES])
    interval = bs.centred_interval(point, reps, LEVEL) if reps is not None else None
    shift = np.nanmean(reps, axis=0) - point if reps is not None else None
    components = {
        q: {
            "value": _num(point[j]),
            "ci": _ci(interval[:, j]) if interval is not None else None,
            "resampling_shift": _num(shift[j]) if shift is not None else None,
        }
        for j, q in enumerate(QUANTITIES)
    }
    return {
        "cell_id": cell.key.cell_id,
        "model": cell.key.model,
        "revision": cell.key.revision,
        "dataset": cell.key.dataset,
        "family": cell.family,
        "step": cell.step,
        "non_embedding_params": int(cell.non_embedding_params),
        "total_params": int(cell.total_params),
        "final": final,
        "n_tokens": cell.summary.get("n_tokens"),
        "n_documents": cell.summary.get("n_documents"),
        "components": components,
    }


def _fit_row(
    dataset: str,
    group: str,
    quantity: str,
    members: list[CellRecord],
    reps: dict[str, np.ndarray | None],
    ce_alpha: tuple[float | None, np.ndarray | None],
    notes: list[dict[str, Any]],
) -> tuple[dict[str, Any], np.ndarray | None, np.ndarray | None]:
    """One (dataset, group, quantity) fit row, and its bootstrap alpha and R^2 replicates (for
    Table 2 and the paired R^2 comparison)."""
    j = list(QUANTITIES).index(quantity)
    n = np.array([float(c.non_embedding_params) for c in members])
    m = np.array([float(c.summary[QUANTITIES[quantity]]) for c in members])
    row: dict[str, Any] = {
        "dataset": dataset,
        "group": group,
        "quantity": quantity,
        "n_models": len(members),
        "models": [c.key.model for c in members],
        "non_embedding_params": [int(x) for x in n],
        "values": [_num(v) for v in m],
        "alpha": None,
        "c": None,
        "r2": None,
        "alpha_ci": None,
        "r2_ci": None,
        "delta_alpha_vs_ce": None,
        "delta_alpha_ci": None,
        "delta_alpha_signed": None,
        "delta_alpha_signed_ci": None,
        "n_boot_valid": 0,
        "saturating": None,
        "skipped": None,
        "notes": [],
    }
    try:
        fit = fit_power_law(n, m)
    except FitInputError as exc:
        reason = f"{dataset}/{group}/{quantity}: fit skipped: {exc}"
        row["skipped"] = str(exc)
        row["notes"].append(reason)
        notes.append(_note("skipped", reason, dataset=dataset, group=group, quantity=quantity))
        return row, None, None
    row.update(alpha=fit.alpha, c=fit.c, r2=_num(fit.r2))
    if ce_alpha[0] is not None:
        row["delta_alpha_vs_ce"] = abs(fit.alpha - ce_alpha[0])
        row["delta_alpha_signed"] = fit.alpha - ce_alpha[0]
    sat = fit_saturating(n, m)
    row["saturating"] = {
        key: (_num(v) if isinstance(v, float) else v) for key, v in sat.as_dict().items()
    }
    alpha_reps = r2_reps = None
    rep_list = [reps.get(c.key.cell_id) for c in members]
    if rep_list and all(r is not None for r in rep_list):
        values = np.stack([r[:, j] for r in rep_list], axis=1)  # (B, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(values != 0, np.log(np.abs(values)), np.nan)
        alpha_reps, _, r2_reps = fit_lines(np.log(n), y)
        valid = np.isfinite(alpha_reps)
        row["n_boot_valid"] = int(valid.sum())
        if valid.any():
            row["alpha_ci"] = _ci(bs.percentile_interval(alpha_reps, LEVEL))
            row["r2_ci"] = _ci(bs.percentile_interval(r2_reps, LEVEL))
            if ce_alpha[1] is not None:
                # The interval of the signed difference, then its image under |.|: a percentile
                # interval of |difference| itself is biased away from 0.
                signed = bs.percentile_interval(alpha_reps - ce_alpha[1], LEVEL)
                row["delta_alpha_signed_ci"] = _ci(signed)
                row["delta_alpha_ci"] = _ci(abs_interval(signed))
            for name, value in (
                ("alpha", row["alpha"]),
                ("R^2", row["r2"]),
                ("|delta alpha|", row["delta_alpha_vs_ce"]),
            ):
                ci = row[
                    {"alpha": "alpha_ci", "R^2": "r2_ci", "|delta alpha|": "delta_alpha_ci"}[name]
                ]
                if value is not None and ci is not None and not ci[0] <= value <= ci[1]:
                    message = f"{dataset}/{group}/{quantity}: {name} = {value:.4g} lies outside its own bootstrap interval [{ci[0]:.4g}, {ci[1]:.4g}]; read that interval with care (the statistic is skewed or bounded there)"
                    row["notes"].append(message)
                    notes.append(
                        _note(
                            "outside-interval",
                            message,
                            dataset=dataset,
                            group=group,
                            quantity=quantity,
                        )
                    )
        if valid.sum() < valid.size:
            row["notes"].append(
                f"{valid.size - int(valid.sum())} of {valid.size} bootstrap replicates had a zero or non-finite value and were left out"
            )
    return row, alpha_reps, r2_reps


def _extrapolation_rows(
    dataset: str,
    group: str,
    members: list[CellRecord],
    reps: dict[str, np.ndarray | None],
    holdout: int | None,
    notes: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Per-quantity extrapolation rows and the CE-versus-EE comparison for one group."""
    n = np.array([float(c.non_embedding_params) for c in members])
    k = default_holdout(len(members)) if holdout is None else holdout
    rows = []
    errors: dict[str, np.ndarray] = {}
    for j, quantity in enumerate(QUANTITIES):
        m = np.array([float(c.summary[QUANTITIES[quantity]]) for c in members])
        row: dict[str, Any] = {
            "dataset": dataset,
            "group": group,
            "quantity": quantity,
            "holdout": k,
            "skipped": None,
        }
        try:
            ex = extrapolate(n, m, k)
        except FitInputError as exc:
            row["skipped"] = str(exc)
            rows.append(row)
            continue
        fit_idx, held_idx = split_holdout(n, k)
        row.update(
            fit_models=[members[i].key.model for i in fit_idx],
            alpha=ex.fit.alpha,
            c=ex.fit.c,
            r2=_num(ex.fit.r2),
            heldout=[
                {
                    "model": members[i].key.model,
                    "non_embedding_params": int(n[i]),
                    "actual": float(a),
                    "predicted": float(p),
                    "relative_error": float(e),
                }
                for i, a, p, e in zip(held_idx, ex.actual, ex.predicted, ex.relative_error)
            ],
            mean_abs_relative_error=ex.mean_abs_relative_error,
            mean_abs_relative_error_ci=None,
        )
        rep_list = [reps.get(c.key.cell_id) for c in members]
        if all(r is not None for r in rep_list):
            values = np.abs(np.stack([r[:, j] for r in rep_list], axis=1))
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(values > 0, np.log(values), np.nan)
                alpha_b, c_b, _ = fit_lines(np.log(n[fit_idx]), y[:, fit_idx])
                pred = np.exp(c_b[:, None] + alpha_b[:, None] * np.log(n[held_idx])[None, :])
                err_b = np.mean(np.abs(pred - values[:, held_idx]) / values[:, held_idx], axis=1)
            errors[quantity] = err_b
            row["mean_abs_relative_error_ci"] = _ci(bs.percentile_interval(err_b, LEVEL))
        rows.append(row)
    by_q = {r["quantity"]: r for r in rows}
    ce, ee = by_q.get("CE"), by_q.get("EE")
    if not ce or not ee or ce["skipped"] or ee["skipped"]:
        return rows, None
    comparison: dict[str, Any] = {
        "dataset": dataset,
        "group": group,
        "holdout": k,
        "ce_mean_abs_relative_error": ce["mean_abs_relative_error"],
        "ee_mean_abs_relative_error": ee["mean_abs_relative_error"],
        "difference_ce_minus_ee": ce["mean_abs_relative_error"] - ee["mean_abs_relative_error"],
        "difference_ci": None,
        "ee_extrapolates_better": ee["mean_abs_relative_error"] < ce["mean_abs_relative_error"],
        "p_ee_better": None,
    }
    if "CE" in errors and "EE" in errors:
        diff = errors["CE"] - errors["EE"]
        comparison["difference_ci"] = _ci(bs.percentile_interval(diff, LEVEL))
        finite = np.isfinite(diff)
        comparison["p_ee_better"] = _num(np.mean(diff[finite] > 0)) if finite.any() else None
    return rows, comparison


def fit_sweep(
    sweep_dir: Path | str, *, n_boot: int = 1000, seed: int = 0, holdout: int | None = None
) -> dict[str, Any]:
    """Everything ``errorentropy fit`` writes to ``fits.json``, as a dict (see docs/fit.md).

    ``n_boot`` document-level bootstrap replicates (0: no intervals), ``seed`` their random
    seed, ``holdout`` models held out (the largest) in the extrapolation test (None: about a
    third of each group, leaving at least 3 to fit).
    """
    if n_boot < 0:
        raise UserError(f"--n-boot must be >= 0, got {n_boot}")
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if holdout is not None and holdout < 1:
        raise UserError(f"--holdout must be >= 1, got {holdout}")
    cells = load_cells(sweep_dir)
    if not cells:
        raise UserError(
            f"{sweep_dir} has no finished cells; run or resume `errorentropy sweep` first"
        )
    notes: list[dict[str, Any]] = []
    for dataset in sorted({c.key.dataset for c in cells}):
        group = [c for c in cells if c.key.dataset == dataset]
        mixed = mixed_settings(group)
        if mixed:
            notes.append(
                _note(
                    "mixed-settings",
                    f"{mixed}: its fits compare unlike numbers; rescore the odd cells or give them another dataset label",
                    dataset=dataset,
                )
            )
        for key in ("dtype", "head_path"):
            values = sorted({str(c.summary.get(key)) for c in group})
            if len(values) > 1:
                notes.append(
                    _note(
                        "mixed-settings",
                        f"{dataset}: cells were scored with {key} {', '.join(values)}; EE counts ties, which 16-bit logits make commoner, so compare such cells with care",
                        dataset=dataset,
                    )
                )
    finals = select_final(cells, notes)
    final_ids = {c.key.cell_id for c in finals}
    datasets = sorted({c.key.dataset for c in cells})
    reps: dict[str, np.ndarray | None] = {}
    for dataset in datasets:
        dataset_cells = [c for c in cells if c.key.dataset == dataset]
        if n_boot > 0:
            reps.update(_bootstrap_dataset(dataset_cells, n_boot, seed, dataset, notes))
        else:
            reps.update({c.key.cell_id: None for c in dataset_cells})
    cell_rows = [_cell_row(c, c.key.cell_id in final_ids, reps.get(c.key.cell_id)) for c in cells]
    # Fits and extrapolations are refitted on replicates without their resampling shift, the way
    # each cell's interval is centred on its estimate (bootstrap.centred_replicates).
    centred: dict[str, np.ndarray | None] = {
        c.key.cell_id: None
        if reps.get(c.key.cell_id) is None
        else bs.centred_replicates(
            np.array([float(c.summary[QUANTITIES[q]]) for q in QUANTITIES]), reps[c.key.cell_id]
        )  # type: ignore[arg-type]
        for c in cells
    }
    for row in cell_rows:
        for q, comp in row["components"].items():
            ci, shift = comp["ci"], comp.get("resampling_shift")
            if ci is not None and shift is not None and abs(shift) > (ci[1] - ci[0]) / 2:
                notes.append(
                    _note(
                        "biased-bootstrap",
                        f"{row['cell_id']}: resampling documents moves {q} by {shift:+.3g}, more than half its interval (rare ranks: the plug-in estimate is biased); the interval is centred on the estimate, and the absolute level of {q} carries that bias",
                        dataset=row["dataset"],
                        quantity=q,
                    )
                )

    fit_rows: list[dict[str, Any]] = []
    extrapolation_rows: list[dict[str, Any]] = []
    comparisons: list[dict[str, Any]] = []
    r2_comparisons: list[dict[str, Any]] = []
    for dataset in datasets:
        members_all = []
        for c in finals:
            if c.key.dataset != dataset:
                continue
            if c.non_embedding_params <= 0:
                notes.append(
                    _note(
                        "no-params",
                        f"{c.key.model} on {dataset}: non-embedding parameter count is {c.non_embedding_params}; left out of the fits",
                        dataset=dataset,
                    )
                )
                continue
            members_all.append(c)
        members_all.sort(key=lambda c: (c.non_embedding_params, c.key.model))
        groups = {
            fam: [c for c in members_all if c.family == fam]
            for fam in sorted({c.family for c in members_all})
        }
        groups[ALL_GROUP] = members_all
        for group, members in groups.items():
            ce_row, ce_reps, ce_r2 = _fit_row(
                dataset, group, "CE", members, centred, (None, None), notes
            )
            fit_rows.append(ce_row)
            for quantity in ("EE", "SA", "Conf"):
                row, _, r2_reps = _fit_row(
                    dataset, group, quantity, members, centred, (ce_row["alpha"], ce_reps), notes
                )
                fit_rows.append(row)
                if quantity == "EE" and row["r2"] is not None and ce_row["r2"] is not None:
                    # Paired: both fits' replicates come from the same resampled documents.
                    diff_ci = (
                        _ci(bs.percentile_interval(r2_reps - ce_r2, LEVEL))
                        if r2_reps is not None and ce_r2 is not None
                        else None
                    )
                    r2_comparisons.append(
                        {
                            "dataset": dataset,
                            "group": group,
                            "n_models": len(members),
                            "ee_r2": row["r2"],
                            "ce_r2": ce_row["r2"],
                            "difference_ee_minus_ce": row["r2"] - ce_row["r2"],
                            "difference_ci": diff_ci,
                        }
                    )
            conf = np.array([float(c.summary["confidence"]) for c in members])
            if sign_changes(conf):
                signs = ", ".join(f"{v:+.3g}" for v in conf)
                message = (
                    f"{dataset}/{group}: Confidence changes sign across models ({int(np.sum(conf > 0))} positive, {int(np.sum(conf < 0))} negative; "
                    f"from the smallest model to the largest: {signs}); the log|Conf| fit hides the sign"
                )
                notes.append(
                    _note(
                        "conf-sign-change", message, dataset=dataset, group=group, quantity="Conf"
                    )
                )
                fit_rows[-1]["notes"].append(message)
                fit_rows[-1]["conf_sign_change"] = True
            if len(members) >= MIN_MODELS:
                rows, comparison = _extrapolation_rows(
                    dataset, group, members, centred, holdout, notes
                )
                extrapolation_rows.extend(rows)
                if comparison is not None:
                    comparisons.append(comparison)
                else:
                    notes.append(
                        _note(
                            "extrapolation-skipped",
                            f"{dataset}/{group}: extrapolation skipped: "
                            + next((r["skipped"] for r in rows if r["skipped"]), "no CE/EE fit"),
                            dataset=dataset,
                            group=group,
                        )
                    )
    return {
        "format": FITS_FORMAT,
        "version": FITS_VERSION,
        "sweep": str(sweep_dir),
        "settings": {
            "n_boot": n_boot,
            "seed": seed,
            "holdout": holdout,
            "level": LEVEL,
            "min_models": MIN_MODELS,
        },
        "quantities": dict(QUANTITIES),
        "cells": cell_rows,
        "fits": fit_rows,
        "extrapolation": extrapolation_rows,
        "extrapolation_ce_vs_ee": comparisons,
        "r2_ee_vs_ce": r2_comparisons,
        "notes": notes,
    }


def write_fits(sweep_dir: Path | str, result: dict[str, Any]) -> dict[str, Path]:
    """Write ``fits.json`` and the tables under ``sweep_dir``; returns the paths written."""
    from .tables import write_tables

    sweep_dir = Path(sweep_dir)
    path = sweep_dir / FITS_FILE
    write_checked_json(path, result)
    written = {"fits": path}
    written.update(write_tables(result, sweep_dir / TABLES_DIR))
    return written


def read_fits(sweep_dir: Path | str) -> dict[str, Any]:
    """Read ``DIR/fits.json`` (or a fits.json path) written by :func:`write_fits`, checksum verified."""
    from .storage import read_checked_json

    path = Path(sweep_dir)
    if path.is_dir():
        path = path / FITS_FILE
    body = read_checked_json(path, "fits file")
    if body.get("format") != FITS_FORMAT or body.get("version") != FITS_VERSION:
        raise UserError(
            f"{path} is not an errorentropy fits file of version {FITS_VERSION}; rerun `errorentropy fit`"
        )
    return body
