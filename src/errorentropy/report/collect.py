"""What the report shows, gathered from one sweep folder: its cells, each model's final revision,
the models scored at several training steps, the fits (``DIR/fits.json`` when it is current,
else one call of :func:`errorentropy.fits.fit.fit_sweep`, written back) and notes on them, and
the settings every cell shares. Nothing here fits: the numbers come from the cells and the fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errorentropy.errors import UserError
from errorentropy.fits.fit import (
    FITS_FILE,
    TABLES_DIR,
    fit_sweep,
    is_current,
    read_fits,
    select_final,
    write_fits,
)
from errorentropy.fits.records import FitRow, SweepFits
from errorentropy.report.tables import write_tables
from errorentropy.stats.quantities import QUANTITIES
from errorentropy.sweep.cells import CellRecord, distinct_weights, load_cells

QUANTITY_KEYS: dict[str, str] = {q.key: q.field for q in QUANTITIES}  # "EE" -> "error_entropy"
MAX_STEPS_SHOWN = 6
# Summary keys that are results, not settings (everything else constant across cells is a setting).
_RESULT_KEYS = {
    "n_tokens",
    "n_documents",
    "n_skipped",
    "n_tied",
    *(q.field for q in QUANTITIES),
    "error_entropy_miller_madow",
    "top1_accuracy",
    "n_ranks_observed",
    "identity_residual",
    "elapsed_s",
    "tokens_per_s",
    "n_windows",
    "model",
    "revision",
    "head_path",
    "rbp_at",
    "mrr",
    "ee_settled",
    "ee_convergence",
    "ee_bias",
    "ee_bias_interval",
    "error_entropy_grassberger",
    "error_entropy_chao_shen",
}


@dataclass
class ReportData:
    """Everything the report shows, gathered from one sweep folder.

    ``final``: per dataset, the final revision of each model, by size; ``dynamics``: per dataset
    and model, the cells with a training step, by step; ``fits``: the sweep's fits, read from
    fits.json or fitted once; ``fit_source``: where they came from.
    """

    sweep_dir: Path
    cells: list[CellRecord]
    datasets: list[str]
    final: dict[str, list[CellRecord]]
    dynamics: dict[str, dict[str, list[CellRecord]]]
    fits: SweepFits
    fit_source: str
    notes: list[str] = field(default_factory=list)

    @property
    def fit_rows(self) -> list[FitRow]:
        """The fits with a line (skipped fits have none; their notes say why)."""
        return self.fits.fitted_rows()


def final_revisions(cells: Sequence[CellRecord]) -> list[CellRecord]:
    """The last revision of each (model, dataset), chosen exactly as the fits choose it
    (:func:`errorentropy.fits.fit.select_final`), sorted by dataset and size."""
    chosen = select_final(list(cells))
    return sorted(
        chosen, key=lambda c: (c.key.dataset, c.non_embedding_params, c.family, c.key.model)
    )


def training_runs(cells: Sequence[CellRecord]) -> dict[str, dict[str, list[CellRecord]]]:
    """Per dataset, the models seen at two or more training steps, each with its cells sorted
    by step."""
    runs: dict[str, dict[str, list[CellRecord]]] = {}
    for cell in cells:
        if cell.step is not None:
            runs.setdefault(cell.key.dataset, {}).setdefault(cell.key.model, []).append(cell)
    return {
        ds: {
            m: sorted(cs, key=lambda c: c.step or 0)
            for m, cs in models.items()
            if len({c.step for c in cs}) >= 2
        }
        for ds, models in runs.items()
        if any(len({c.step for c in cs}) >= 2 for cs in models.values())
    }


def pick_steps(steps: Sequence[int], k: int = MAX_STEPS_SHOWN) -> list[int]:
    """At most ``k`` of ``steps``, spread evenly on a log scale, always keeping the first and
    the last."""
    ordered = sorted(set(steps))
    if len(ordered) <= k:
        return ordered
    targets = np.linspace(np.log1p(ordered[0]), np.log1p(ordered[-1]), k)
    chosen: list[int] = []
    for t in targets:
        candidates = [s for s in ordered if s not in chosen]
        chosen.append(min(candidates, key=lambda s: abs(np.log1p(s) - t)))
    return sorted(chosen)


def fit_notes(fits: SweepFits) -> list[str]:
    """The fit's notes as sentences; the many per-cell bootstrap-bias remarks are folded into
    one, and the skipped fits of a group into one per reason."""
    out: list[str] = []
    biased: list[str] = []
    skipped: dict[tuple[str, str, str], list[str]] = {}  # (dataset, group, reason) -> quantities
    for note in fits.notes:
        if note.kind == "biased-bootstrap":
            biased.append(note.message.split(":")[0])
        elif note.kind == "skipped" and ": fit skipped: " in note.message:
            reason = note.message.split(": fit skipped: ", 1)[1]
            key = (str(note.dataset), str(note.group), reason)
            skipped.setdefault(key, []).append(str(note.quantity))
        else:
            out.append(note.message)
    for (dataset, group, reason), quantities in skipped.items():
        out.append(f"{dataset}/{group}: no power law fitted for {', '.join(quantities)}: {reason}")
    if biased:
        out.append(
            f"For {len(biased)} component value(s), resampling documents moved the value by more "
            "than half its interval (plug-in bias from rare ranks; the intervals are centred on "
            f"the estimates, see fits.json), e.g. {biased[0]}."
        )
    return out


def _fit_source(fits: SweepFits, reused: bool) -> str:
    """Where the report's fits came from, for the settings table."""
    settings = fits.settings
    if settings.n_boot == 0:
        source = "least squares (no intervals)"
    else:
        source = f"errorentropy.fits.fit.fit_sweep (n_boot={settings.n_boot}, seed={settings.seed})"
    return f"{source}, read from {FITS_FILE}" if reused else source


def load_or_fit(
    sweep_dir: Path, cells: Sequence[CellRecord], *, run_fit: bool, n_boot: int, seed: int
) -> tuple[SweepFits, bool]:
    """The sweep's fits and whether they were read from ``DIR/fits.json``.

    A fits.json that describes exactly these cells is read when it was fitted with ``n_boot``
    and ``seed`` and the automatic holdout, or, without ``run_fit``, whatever its settings.
    Otherwise :func:`errorentropy.fits.fit.fit_sweep` runs once (``n_boot=0`` without ``run_fit``:
    plain least squares, no intervals) and its result is written to fits.json and tables/, as
    ``errorentropy fit`` writes them.
    """
    saved = _saved_fits(sweep_dir)
    if saved is not None and is_current(saved, cells):
        s = saved.settings
        if not run_fit or (s.n_boot == n_boot and s.seed == seed and s.holdout is None):
            return saved, True
    fits = fit_sweep(sweep_dir, n_boot=n_boot if run_fit else 0, seed=seed)
    write_fits(sweep_dir, fits)
    write_tables(fits, sweep_dir / TABLES_DIR)
    return fits, False


def _saved_fits(sweep_dir: Path) -> SweepFits | None:
    """``DIR/fits.json`` when it exists and reads cleanly (a damaged one is fitted anew)."""
    if not (sweep_dir / FITS_FILE).is_file():
        return None
    try:
        return read_fits(sweep_dir)
    except UserError:
        return None


def collect(
    sweep_dir: Path | str, *, run_fit: bool = True, n_boot: int = 1000, seed: int = 0
) -> ReportData:
    """Gather cells, final revisions, training runs and fits of a sweep folder (see
    :func:`load_or_fit` for where the fits come from)."""
    sweep_dir = Path(sweep_dir)
    # Revisions holding identical weights count once, as in the fits (cells.distinct_weights).
    cells, same = distinct_weights(load_cells(sweep_dir))
    if not cells:
        raise UserError(
            f"{sweep_dir} has no finished cells; run or resume `errorentropy sweep` first"
        )
    final: dict[str, list[CellRecord]] = {}
    for cell in final_revisions(cells):
        final.setdefault(cell.key.dataset, []).append(cell)
    fits, reused = load_or_fit(sweep_dir, cells, run_fit=run_fit, n_boot=n_boot, seed=seed)
    notes: list[str] = []
    if not run_fit:
        notes.append(_no_fit_note(fits, reused))
    notes.extend(fit_notes(fits))
    notes.extend(m for m in (s.message() for s in same) if m not in notes)
    return ReportData(
        sweep_dir,
        cells,
        sorted({c.key.dataset for c in cells}),
        final,
        training_runs(cells),
        fits,
        _fit_source(fits, reused),
        notes,
    )


def _no_fit_note(fits: SweepFits, reused: bool) -> str:
    if reused and fits.settings.n_boot > 0:
        return (
            f"--no-fit: the fits were read from {FITS_FILE}, current for these cells "
            f"(n_boot={fits.settings.n_boot}, seed={fits.settings.seed})."
        )
    return (
        "--no-fit: power laws are plain least squares on the final revisions, without "
        "bootstrap intervals."
    )


def settings_rows(data: ReportData) -> list[tuple[str, str]]:
    """The sweep's settings: what every cell shares, plus what the report itself used."""
    rows: list[tuple[str, str]] = [
        ("sweep folder", str(data.sweep_dir)),
        ("cells", str(len(data.cells))),
        ("datasets", ", ".join(data.datasets)),
        ("models", str(len({c.key.model for c in data.cells}))),
        ("families", ", ".join(sorted({c.family for c in data.cells}))),
        ("fits", data.fit_source),
    ]
    for key, value in data.fits.settings.to_dict().items():
        rows.append((f"fit {key}", str(value)))
    shared: dict[str, Any] | None = None
    for cell in data.cells:
        flat = {
            k: v
            for k, v in cell.summary.items()
            if k not in _RESULT_KEYS and not isinstance(v, (dict, list))
        }
        shared = (
            flat
            if shared is None
            else {k: v for k, v in shared.items() if k in flat and flat[k] == v}
        )
    for key, value in sorted((shared or {}).items()):
        if key != "dataset":
            rows.append((key, str(value)))
    return rows
