"""``errorentropy report DIR``: the paper's figures and tables from a sweep folder, as Markdown
and one HTML page.

Reads the sweep's cells (:func:`errorentropy.sweep.cells.load_cells`) and its power-law fits, a
:class:`~errorentropy.fits.records.SweepFits`: ``DIR/fits.json`` when it is current for the cells,
else one call of :func:`errorentropy.fits.fit.fit_sweep` (``n_boot=0`` with ``--no-fit``: plain
least squares), whose result is written to ``DIR/fits.json``. The report never fits anything
itself. It draws Fig. 3-8 (:mod:`errorentropy.report.figures`) into ``DIR/figures/`` as PNG and
SVG, and
writes

    DIR/report.md     the question, the verdict, the headline figure; figures (linked), tables,
                      detailed statements; settings and notes in <details>
    DIR/report.html   the same, self-contained: figures embedded as base64 PNG data URIs, no
                      JavaScript; the question, verdict and headline figure fill its first screen

The first screen asks :data:`QUESTION` and answers it (:func:`verdict_sentences`, at most five
sentences from the fits' R² of EE and CE and their paired bootstrap difference) beside Fig. 7
of the first dataset. Every sentence of the verdict and of the statements is computed from the
numbers in the tables; nothing is canned.
Missing pieces (no training steps, no profile, a family with fewer than 3 models) are left out
with a note saying why, never faked.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from errorentropy.fits.powerlaw import MIN_MODELS as MIN_MODELS_FOR_FIT
from errorentropy.fits.powerlaw import fit_lines
from errorentropy.fits.records import ALL_GROUP, CellFit, FitRow, Interval, SweepFits
from errorentropy.report.tables import rbp_cells, write_tables
from errorentropy.stats.profile import RankProfile
from errorentropy.stats.quantities import CE, COMPONENTS, CONF, EE, QUANTITIES
from errorentropy.storage import atomic_write_text
from errorentropy.sweep.cells import CellRecord, distinct_weights, load_cells, slug

if TYPE_CHECKING:
    from errorentropy.report import figures

QUANTITY_KEYS: dict[str, str] = {q.key: q.field for q in QUANTITIES}  # "EE" -> "error_entropy"
CLEAN_R2 = 0.9  # the summary calls a fit with R^2 at least this "a clean power law"
MAX_STEPS_SHOWN = 6
MAX_PANELS = 6
PROFILE_FILE = "profile.json"
FIGURES_DIR = "figures"
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
}


# ---- the data behind the report ---------------------------------------------------------------


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
    chosen = select_final(list(cells), [])
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


# ---- figures ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FigureFile:
    """One drawn figure: its id (``fig7-wikipedia``), caption and files."""

    ident: str
    caption: str
    png: Path
    svg: Path


def _label(cell: CellRecord) -> str:
    return f"{cell.key.model} ({cell.family}, N={_si(cell.non_embedding_params)})"


def _si(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.3g}"


def _spread(items: list[Any], k: int = MAX_PANELS) -> list[Any]:
    if len(items) <= k:
        return items
    return [items[int(i)] for i in np.round(np.linspace(0, len(items) - 1, k))]


def _values(cells: Sequence[CellRecord]) -> dict[str, list[float]]:
    """Quantity key -> the cells' values, in order."""
    return {q.key: [float(c.summary[q.field]) for c in cells] for q in QUANTITIES}


Save = Callable[[Any, str, str], None]  # (figure, ident, caption)


def draw_figures(data: ReportData, out_dir: Path) -> tuple[list[FigureFile], list[str]]:
    """Draw every figure the data supports into ``out_dir``; returns them and notes on what was
    left out."""
    from errorentropy.report import figures

    drawn: list[FigureFile] = []
    notes: list[str] = []

    def save(fig: Any, ident: str, caption: str) -> None:
        png, svg = figures.save_figure(fig, out_dir / ident)
        drawn.append(FigureFile(ident, caption, png, svg))

    for dataset in data.datasets:
        _dynamics_figures(data, dataset, save, notes)
        _profile_figure(data, dataset, save, notes)
        _scaling_figures(data, dataset, save, notes)
        _rbp_figure(data, dataset, save, notes)
        _convergence_figure(data, dataset, save, notes)
    return drawn, notes


def _dynamics_figures(data: ReportData, dataset: str, save: Save, notes: list[str]) -> None:
    """Fig. 3, 4 and 6 of one dataset, from the models scored at several training steps."""
    from errorentropy.report import figures

    runs = data.dynamics.get(dataset, {})
    if not runs:
        notes.append(
            f"{dataset}: no model was scored at two or more training steps, so Fig. 3, 4 and 6 "
            "are omitted (sweep checkpoints such as step0 ... step100000 to get them)."
        )
        return
    models = _spread(sorted(runs, key=lambda m: runs[m][0].non_embedding_params))
    series = [
        figures.StepSeries(_label(runs[m][0]), [c.step or 0 for c in runs[m]], _values(runs[m]))
        for m in models
    ]
    save(
        figures.components_vs_step(
            series, title=f"Fig. 3: components against training step ({dataset})"
        ),
        f"fig3-{slug(dataset)}",
        f"Fig. 3 ({dataset}): CE, EE, SA and Conf against training step.",
    )
    curves: dict[str, list[figures.RankCurve]] = {}
    for m in models:
        keep = set(pick_steps([c.step or 0 for c in runs[m]]))
        decs = [(c, c.histogram().decompose()) for c in runs[m] if (c.step or 0) in keep]
        curves[_label(runs[m][0])] = [
            figures.RankCurve(str(c.step), d.ranks, d.p, d.q) for c, d in decs
        ]
    save(
        figures.rank_distribution(
            curves, title=f"Fig. 4: RBE distribution p_e at several steps ({dataset})"
        ),
        f"fig4-{slug(dataset)}",
        f"Fig. 4 ({dataset}): p_e against rank, log-log, at log-spaced steps.",
    )
    save(
        figures.p_against_q(curves, title=f"Fig. 6: p_e against q_e at several steps ({dataset})"),
        f"fig6-{slug(dataset)}",
        f"Fig. 6 ({dataset}): p_e against q_e; the dashed line is p = q (SA = 0).",
    )


def _profile_figure(data: ReportData, dataset: str, save: Save, notes: list[str]) -> None:
    """Fig. 5 of one dataset, from the final revisions scored with a profile."""
    from errorentropy.report import figures

    profiled = [c for c in data.final.get(dataset, []) if (c.path / PROFILE_FILE).exists()]
    if not profiled:
        notes.append(
            f"{dataset}: no cell has a sorted-probability profile, so Fig. 5 is omitted (score "
            "with --profile, or profile = true under [scoring] in a sweep spec, to get it)."
        )
        return
    panels = {}
    for cell in _spread(profiled):
        prof = RankProfile.load(cell.path / PROFILE_FILE)
        panels[_label(cell)] = (prof.mean(), prof.counts)
    save(
        figures.sorted_probability_profile(
            panels,
            title=f"Fig. 5: mean sorted probabilities at ground-truth rank r ({dataset})",
        ),
        f"fig5-{slug(dataset)}",
        f"Fig. 5 ({dataset}): mean sorted probability profile of predictions whose ground "
        "truth sits at rank r (dotted: the ground truth's position).",
    )


def _scaling_figures(data: ReportData, dataset: str, save: Save, notes: list[str]) -> None:
    """Fig. 7 and 8 of one dataset, from the final revisions and their fitted lines."""
    from errorentropy.report import figures

    fams = family_points(data, dataset)
    if not fams:
        notes.append(f"{dataset}: no final revisions, so Fig. 7 and 8 are omitted.")
        return
    short = [f.family for f in fams if len(f.params) < MIN_MODELS_FOR_FIT]
    if short:
        one = len(short) == 1
        notes.append(
            f"{dataset}: {', '.join(short)} {'has' if one else 'have'} fewer than "
            f"{MIN_MODELS_FOR_FIT} models, so Fig. 7 draws no line for {'it' if one else 'them'}."
        )
    save(
        figures.scaling(
            fams,
            _lines(data, dataset, ALL_GROUP),
            title=f"Fig. 7: each quantity against non-embedding parameters ({dataset})",
        ),
        f"fig7-{slug(dataset)}",
        f"Fig. 7 ({dataset}): |M| against non-embedding parameters with each family's "
        "power-law fit (dashed grey: all models together).",
    )
    save(
        figures.shares(fams, title=f"Fig. 8: each component's share of cross-entropy ({dataset})"),
        f"fig8-{slug(dataset)}",
        f"Fig. 8 ({dataset}): EE/CE, SA/CE and Conf/CE against non-embedding parameters "
        "(EE/CE + SA/CE − Conf/CE = 1).",
    )


def _lines(data: ReportData, dataset: str, group: str) -> dict[str, tuple[float, float]]:
    """Quantity key -> ``(alpha, c)`` of each line fitted over a group of enough models."""
    return {
        r.quantity: (r.alpha, r.c)
        for r in data.fit_rows
        if r.dataset == dataset
        and r.group == group
        and r.n_models >= MIN_MODELS_FOR_FIT
        and r.alpha is not None
        and r.c is not None
    }


def family_points(data: ReportData, dataset: str) -> list[figures.FamilyPoints]:
    """The final revisions of one dataset grouped by family, with each family's fitted lines."""
    from errorentropy.report import figures

    by_family: dict[str, list[CellRecord]] = {}
    for cell in data.final.get(dataset, []):
        # As in the fits: a log axis has no place for N <= 0 (noted there).
        if cell.non_embedding_params > 0:
            by_family.setdefault(cell.family, []).append(cell)
    return [
        figures.FamilyPoints(
            family,
            [c.non_embedding_params for c in cells],
            _values(cells),
            _lines(data, dataset, family),
        )
        for family, cells in sorted(by_family.items())
    ]


def _rbp_figure(data: ReportData, dataset: str, save: Save, notes: list[str]) -> None:
    """The relative-based law of one dataset: alpha_k and R^2 of -log RBP_k against k, beside
    CE's and EE's, one series per fitted group."""
    from errorentropy.report import figures

    rows = [r for r in data.fits.rbp_fits if r.dataset == dataset]
    if not rows:
        notes.append(
            f"{dataset}: the fits hold no -log RBP_k fits ({FITS_FILE} predates them: rerun "
            "`errorentropy fit`), so the RBP_k figure is omitted."
        )
        return
    series = []
    for group in dict.fromkeys(r.group for r in rows):
        mine = sorted((r for r in rows if r.group == group), key=lambda r: r.k)
        if _hidden(data, dataset, group) or not any(r.fitted for r in mine):
            continue
        reference = {}
        for q in (CE, EE):
            row = data.fits.fit(dataset, group, q.key)
            if row is not None and row.alpha is not None:
                reference[q.key] = (row.alpha, row.r2)
        series.append(
            figures.ExponentSeries(
                group,
                [r.k for r in mine],
                [r.alpha for r in mine],
                [r.alpha_ci for r in mine],
                [r.r2 for r in mine],
                reference,
            )
        )
    if not series:
        notes.append(f"{dataset}: no group has a -log RBP_k fit, so the RBP_k figure is omitted.")
        return
    save(
        figures.rbp_exponents(
            series, title=f"Relative-based law: alpha_k and R^2 of -log RBP_k ({dataset})"
        ),
        f"rbp-{slug(dataset)}",
        f"RBP_k ({dataset}): exponent alpha_k (95% bootstrap intervals) and R^2 of "
        "log(-log RBP_k) = c + alpha_k log N against k; dotted: CE, dashed: EE of the same group.",
    )


def _convergence_figure(data: ReportData, dataset: str, save: Save, notes: list[str]) -> None:
    """EE against the documents used, for the smallest and the largest model of a dataset."""
    from errorentropy.report import figures

    rows = [r for r in data.fits.convergence if r.dataset == dataset and r.final]
    if not rows:
        notes.append(
            f"{dataset}: the fits hold no convergence check of EE ({FITS_FILE} predates it, or "
            "no cell kept its tokens), so the EE-against-documents figure is omitted."
        )
        return
    ends = sorted(rows, key=lambda r: (r.non_embedding_params, r.model))
    chosen = [ends[0]] if len(ends) == 1 else [ends[0], ends[-1]]
    curves = [
        figures.ConvergenceCurve(
            f"{r.model} (N={_si(r.non_embedding_params)})",
            r.check.n_documents,
            r.check.error_entropy,
            r.check.error_entropy_miller_madow,
            r.check.interval,
            r.check.settled,
        )
        for r in chosen
    ]
    save(
        figures.convergence_curves(curves, title=f"EE against the documents used ({dataset})"),
        f"convergence-{slug(dataset)}",
        f"EE against documents ({dataset}): plug-in and Miller-Madow EE on nested random "
        "subsets (1/8, 1/4, 1/2, all) of the documents, smallest and largest model; band: the "
        "bootstrap interval of EE on all documents (settled: EE on half of them lies inside).",
    )


# ---- tables -----------------------------------------------------------------------------------


@dataclass
class Table:
    """A table as plain strings: an id, a title, a header row and body rows."""

    ident: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _num(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}"


def _with_ci(x: float | None, ci: Interval | None, digits: int = 4) -> str:
    text = _num(x, digits)
    return text if ci is None else f"{text} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _groups(rows: Sequence[FitRow], dataset: str) -> list[str]:
    groups = sorted({r.group for r in rows if r.dataset == dataset and r.group != ALL_GROUP})
    has_all = any(r.dataset == dataset and r.group == ALL_GROUP for r in rows)
    return groups + ([ALL_GROUP] if has_all else [])


def twin_of_all(fits: SweepFits, dataset: str) -> str | None:
    """The family whose models are exactly the dataset's ``"All"`` group (a dataset of one
    family), or None; its fits and the All fits are the same numbers, so the report shows them
    once, under the family's name."""
    members = {
        r.group: r.models for r in fits.fits if r.dataset == dataset and r.quantity == CE.key
    }
    everyone = members.get(ALL_GROUP)
    twins = [g for g, models in members.items() if g != ALL_GROUP and models == everyone]
    return twins[0] if everyone is not None and twins else None


def _hidden(data: ReportData, dataset: str, group: str) -> bool:
    """Whether a (dataset, group) is the All group of a one-family dataset (shown as the
    family)."""
    return group == ALL_GROUP and twin_of_all(data.fits, dataset) is not None


def _shown_groups(data: ReportData, dataset: str) -> list[str]:
    """The fitted groups of a dataset as the report shows them: families, then All, and All
    left out when it holds the same models as the one family."""
    return [g for g in _groups(data.fit_rows, dataset) if not _hidden(data, dataset, g)]


def _twins_note(data: ReportData) -> str:
    """Which families stand for their dataset's All group in the tables, or ""."""
    twins: dict[str, list[str]] = {}  # family -> the datasets where it holds every model
    for dataset in data.datasets:
        twin = twin_of_all(data.fits, dataset)
        if twin is not None:
            twins.setdefault(twin, []).append(dataset)
    if not twins:
        return ""
    listed = "; ".join(f"{t} on {', '.join(ds)}" for t, ds in twins.items())
    return (
        f"One family holds every model ({listed}): its rows are also the fits over all models "
        f"({ALL_GROUP}), shown once."
    )


def _index(data: ReportData) -> dict[tuple[str, str, str], FitRow]:
    """(dataset, group, quantity key) -> fitted row."""
    return {(r.dataset, r.group, r.quantity): r for r in data.fit_rows}


def _table1_row(dataset: str, group: str, got: dict[str, FitRow | None]) -> list[str]:
    n = max((r.n_models for r in got.values() if r is not None), default=0)
    cells = [_with_ci(r.r2, r.r2_ci) if r else "n/a" for r in got.values()]
    return [dataset, group, str(n), *cells]


def _table2_row(dataset: str, group: str, got: dict[str, FitRow | None]) -> list[str]:
    ce = got[CE.key]
    parts = [got[q.key] for q in COMPONENTS]
    return [
        dataset,
        group,
        _with_ci(ce.alpha, ce.alpha_ci) if ce else "n/a",
        *[_with_ci(r.delta_alpha_vs_ce, r.delta_alpha_ci) if r else "n/a" for r in parts],
        *[_with_ci(r.alpha, r.alpha_ci) if r else "n/a" for r in parts],
    ]


def fit_tables(data: ReportData) -> list[Table]:
    """Table 1 (R^2 of the log-log fit) and Table 2 (|alpha_M - alpha_CE|), with intervals
    where known."""
    index = _index(data)
    brackets = (
        " (95% bootstrap interval in brackets)"
        if any(r.r2_ci is not None or r.alpha_ci is not None for r in data.fit_rows)
        else " (no intervals: plain least squares)"
    )
    t1 = Table(
        "table1",
        "Table 1: R² of the fit log|M| = c + α log N" + brackets,
        ["dataset", "group", "models", *QUANTITY_KEYS],
        [],
    )
    parts = [q.key for q in COMPONENTS]
    t2 = Table(
        "table2",
        "Table 2: |α_M − α_CE|, and each exponent α_M" + brackets,
        ["dataset", "group", "α_CE", *[f"|Δα| {q}" for q in parts], *[f"α_{q}" for q in parts]],
        [],
    )
    for dataset in data.datasets:
        for group in _shown_groups(data, dataset):
            got = {q: index.get((dataset, group, q)) for q in QUANTITY_KEYS}
            t1.rows.append(_table1_row(dataset, group, got))
            t2.rows.append(_table2_row(dataset, group, got))
    twins = _twins_note(data)
    t1.note = t2.note = twins
    if not t1.rows:
        t1.note = t2.note = (
            f"No group has {MIN_MODELS_FOR_FIT} or more models with distinct sizes, "
            "so nothing was fitted."
        )
    return [t1, t2]


def components_table(data: ReportData) -> Table:
    """Per final cell: N, CE, EE, SA, Conf and EE/CE, with bootstrap intervals when the fit
    gives them."""
    cis = _component_cis(data.fits.cells)
    table = Table(
        "components",
        "Components of the final revision of each model (nats per token; 95% interval in brackets)",
        ["dataset", "family", "model", "N (non-emb.)", "tokens", *QUANTITY_KEYS, "EE / CE"],
        [],
    )
    for dataset in data.datasets:
        for cell in data.final.get(dataset, []):
            ci = cis.get((cell.key.model, cell.key.revision, dataset), {})
            values = [_with_ci(float(cell.summary[q.field]), ci.get(q.key)) for q in QUANTITIES]
            share = float(cell.summary[EE.field]) / float(cell.summary[CE.field])
            revision = f"@{cell.key.revision}" if cell.key.revision else ""
            table.rows.append(
                [
                    dataset,
                    cell.family,
                    cell.key.model + revision,
                    f"{cell.non_embedding_params:,}",
                    f"{int(cell.summary.get('n_tokens', 0)):,}",
                    *values,
                    _num(share, 3),
                ]
            )
    return table


def _component_cis(
    cells: Sequence[CellFit],
) -> dict[tuple[str, str | None, str], dict[str, Interval]]:
    """(model, revision, dataset) -> quantity key -> 95% bootstrap interval."""
    return {
        (row.model, row.revision, row.dataset): {
            q: comp.ci for q, comp in row.components.items() if comp.ci is not None
        }
        for row in cells
    }


def extrapolation_table(data: ReportData) -> Table | None:
    """The fit's fit-on-small, predict-large test: one row per (dataset, group, quantity); None
    when it did not run."""
    if not data.fits.extrapolation:
        return None
    table = Table(
        "extrapolation",
        "Extrapolation: power law fitted on the smaller models, predicting the largest "
        "(mean |relative error|, 95% interval)",
        [
            "dataset",
            "group",
            "quantity",
            "fitted on",
            "held out",
            "α (small models)",
            "mean |rel. error|",
        ],
        [],
    )
    for r in data.fits.extrapolation:
        if _hidden(data, r.dataset, r.group):
            continue
        head = [r.dataset, r.group, r.quantity]
        if r.skipped:
            table.rows.append([*head, "", str(r.holdout), "skipped", r.skipped])
            continue
        table.rows.append(
            [
                *head,
                f"{len(r.fit_models)} models",
                ", ".join(h.model for h in r.heldout),
                _num(r.alpha),
                _with_ci(r.mean_abs_relative_error, r.mean_abs_relative_error_ci),
            ]
        )
    return table


def saturating_table(data: ReportData) -> Table | None:
    """The fit's saturating law ``M = a N^(-α) + E`` per (dataset, group, quantity), when it
    ran."""
    rows = [
        r
        for r in data.fits.fits
        if r.saturating is not None and not _hidden(data, r.dataset, r.group)
    ]
    if not rows:
        return None
    table = Table(
        "saturating",
        "Saturating fit M = a N^(−α) + E (a > 0: falls to the floor E; a < 0: rises to the "
        "ceiling E; R² on the linear scale)",
        ["dataset", "group", "quantity", "a", "α", "E (asymptote)", "R²"],
        [],
    )
    for r in rows:
        sat = r.saturating
        assert sat is not None
        head = [r.dataset, r.group, r.quantity]
        if sat.converged:
            a = f"{sat.a:.4g}" if _finite(sat.a) else "n/a"
            table.rows.append([*head, a, _num(sat.alpha), _num(sat.e), _num(sat.r2)])
        else:
            reason = sat.reason or "did not converge"
            table.rows.append([*head, "n/a", "n/a", "n/a", f"not fitted: {reason}"])
    return table


def rbp_table(data: ReportData) -> Table | None:
    """alpha_k and R^2 of log(-log RBP_k) = c + alpha_k log N by k, with CE's and EE's of the
    same group (the rows of :func:`errorentropy.report.tables.rbp_cells`); None without RBP_k
    fits."""
    if not data.fits.rbp_fits:
        return None
    table = Table(
        "rbp",
        "Relative-based law: log(-log RBP_k) = c + alpha log N by k, beside CE and EE "
        "(bootstrap 95% intervals in brackets)",
        ["Dataset", "Group", "n", "law", "alpha", "R^2"],
        [],
        "RBP_k is the share of tokens whose ground truth ranks below k (ties count for it; "
        "arXiv 2510.20387 counts them against it, a difference of at most n_tied / n_tokens).",
    )
    for r in rbp_cells(data.fits):
        if _hidden(data, r["dataset"], r["group"]):
            continue
        alpha_ci = (r["alpha_lo"], r["alpha_hi"]) if r["alpha_lo"] is not None else None
        r2_ci = (r["r2_lo"], r["r2_hi"]) if r["r2_lo"] is not None else None
        n = "" if r["n_models"] is None else str(r["n_models"])
        alpha = _with_ci(r["alpha"], alpha_ci) if r["skipped"] is None else "n/a"
        table.rows.append([r["dataset"], r["group"], n, r["law"], alpha, _with_ci(r["r2"], r2_ci)])
    return table


def convergence_table(data: ReportData) -> Table | None:
    """Has EE settled? EE (plug-in, Miller-Madow) on nested subsets of each final cell's
    documents, its bootstrap interval and the verdicts; None without convergence checks."""
    rows = [r for r in data.fits.convergence if r.final]
    if not rows:
        return None
    others = [r for r in data.fits.convergence if not r.final and r.check.settled is not None]
    loose = sum(not r.check.settled for r in others)
    note = (
        "Settled: EE on half the documents lies inside the bootstrap interval of EE on all of "
        "them (docs/fit.md). The subsets are nested and seeded."
    )
    if others:
        note += f" At other revisions, {loose} of {len(others)} cells have not settled."
    table = Table(
        "convergence",
        "Has EE settled with the documents scored? EE on 1/8, 1/4, 1/2 and all documents",
        ["Dataset", "Model", "N", "documents", "EE", "interval", "EE settled", "MM", "MM settled"],
        [],
        note,
    )
    verdict = {True: "yes", False: "NO", None: "n/a"}
    for r in rows:
        check = r.check
        lo_hi = "n/a" if check.interval is None else "[{:.3f}, {:.3f}]".format(*check.interval)
        table.rows.append(
            [
                r.dataset,
                r.model,
                _si(r.non_embedding_params),
                " / ".join(str(n) for n in check.n_documents),
                " / ".join(f"{v:.3f}" for v in check.error_entropy),
                lo_hi,
                verdict[check.settled],
                " / ".join(f"{v:.3f}" for v in check.error_entropy_miller_madow),
                verdict[check.settled_miller_madow],
            ]
        )
    return table


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


# ---- the plain-words summary ------------------------------------------------------------------


def summary_sentences(data: ReportData) -> list[str]:
    """What scales, in plain words, every clause computed from the numbers in the report."""
    out: list[str] = []
    index = _index(data)
    for dataset in data.datasets:
        groups = _shown_groups(data, dataset)
        if groups:
            top_group = ALL_GROUP if ALL_GROUP in groups else groups[0]
            out += _fit_sentences(data, dataset, top_group, index)
            out += _r2_sentence(data, dataset, groups, index)
            out += _delta_sentence(dataset, top_group, index)
        out += _share_sentence(data, dataset)
        out += _dynamics_sentences(data, dataset)
    out.extend(_extrapolation_sentences(data))
    if not out:
        out.append("There are too few models and steps in this sweep to say what scales.")
    return out


def _fit_sentences(
    data: ReportData, dataset: str, group: str, index: dict[tuple[str, str, str], FitRow]
) -> list[str]:
    """Which quantity fits best over the group, and which follow a clean power law."""
    got = {q: index[(dataset, group, q)] for q in QUANTITY_KEYS if (dataset, group, q) in index}
    r2 = {q: r.r2 for q, r in got.items() if r.r2 is not None and math.isfinite(r.r2)}
    finite = {q: got[q] for q in r2}
    if not finite:
        return []
    n_models = max(r.n_models for r in finite.values())
    best = max(finite, key=lambda q: r2[q])
    ranked = ", ".join(
        f"{q} {r2[q]:.3f}{_ci_text(finite[q].r2_ci)}" for q in sorted(finite, key=lambda q: -r2[q])
    )
    caution = (
        f" With {n_models} models a line has {n_models - 2} residual degree(s) of freedom: "
        "read R² as rough."
        if n_models <= 5
        else ""
    )
    flips = _conf_changes_sign(data, dataset, group)
    counted = [q for q in QUANTITY_KEYS if q in finite and not (q == CONF.key and flips)]
    clean = [q for q in counted if r2[q] >= CLEAN_R2]
    rough = [q for q in counted if r2[q] < CLEAN_R2]
    flip_text = (
        " Confidence changes sign across these models, so its log|Conf| fit describes no power "
        "law of Confidence itself."
        if flips and CONF.key in finite
        else ""
    )
    return [
        f"{dataset}, {group} ({n_models} models): {best} has the highest R² of the log-log "
        f"power-law fit in non-embedding parameters (R² {ranked}).{caution}",
        f"{dataset}, {group}: a clean power law (R² ≥ {CLEAN_R2}) for "
        f"{', '.join(clean) or 'none'}; not for {', '.join(rough) or 'none'}.{flip_text}",
    ]


def _r2_sentence(
    data: ReportData, dataset: str, groups: list[str], index: dict[tuple[str, str, str], FitRow]
) -> list[str]:
    """In how many groups EE's fit beats CE's, and how sure the paired bootstrap is."""
    compared = [
        g for g in groups if (dataset, g, EE.key) in index and (dataset, g, CE.key) in index
    ]
    if not compared:
        return []
    wins = [g for g in compared if _beats(index[(dataset, g, EE.key)], index[(dataset, g, CE.key)])]
    text = (
        f"{dataset}: EE's fit has a higher R² than CE's in {len(wins)} of {len(compared)} "
        f"group{'s' if len(compared) > 1 else ''} ({', '.join(compared)})"
    )
    paired = {r.group: r for r in data.fits.r2_ee_vs_ce if r.dataset == dataset}
    with_ci: dict[str, tuple[float, Interval]] = {}  # group -> difference and its interval
    for g in compared:
        r = paired.get(g)
        if r is not None and r.difference_ci is not None:
            with_ci[g] = (r.difference_ee_minus_ce, r.difference_ci)
    if with_ci:
        sure = [g for g, (_, ci) in with_ci.items() if ci[0] > 0 or ci[1] < 0]
        detail = "; ".join(
            f"{g} {d:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" for g, (d, ci) in with_ci.items()
        )
        text += (
            "; the paired bootstrap interval of R²(EE) − R²(CE) excludes 0 in "
            f"{len(sure)} of {len(with_ci)} ({detail})"
        )
    return [text + "."]


def _beats(ee: FitRow, ce: FitRow) -> bool:
    if ee.r2 is None or ce.r2 is None:
        return False
    return math.isfinite(ee.r2) and math.isfinite(ce.r2) and ee.r2 > ce.r2


def _delta_sentence(
    dataset: str, group: str, index: dict[tuple[str, str, str], FitRow]
) -> list[str]:
    """Whose exponent is closest to CE's."""
    deltas: dict[str, tuple[float, Interval | None]] = {}  # quantity -> |delta alpha| and CI
    for q in COMPONENTS:
        r = index.get((dataset, group, q.key))
        if r is not None and r.delta_alpha_vs_ce is not None and _finite(r.delta_alpha_vs_ce):
            deltas[q.key] = (r.delta_alpha_vs_ce, r.delta_alpha_ci)
    if not deltas:
        return []
    closest = min(deltas, key=lambda q: deltas[q][0])
    listed = ", ".join(f"{q} {d:.4f}{_ci_text(ci)}" for q, (d, ci) in deltas.items())
    return [f"{dataset}, {group}: the exponent closest to CE's is {closest}'s (|Δα| {listed})."]


def _share_sentence(data: ReportData, dataset: str) -> list[str]:
    """EE's share of CE at the smallest and the largest model, and its trend with size."""
    cells = [c for c in data.final.get(dataset, []) if c.non_embedding_params > 0]
    if len(cells) < 2 or cells[0].non_embedding_params == cells[-1].non_embedding_params:
        return []
    small, large = cells[0], cells[-1]
    shares = np.array([float(c.summary[EE.field]) / float(c.summary[CE.field]) for c in cells])
    text = (
        f"{dataset}: EE is {100 * shares[0]:.1f}% of CE for the smallest model "
        f"({small.key.model}, N={_si(small.non_embedding_params)}) "
        f"and {100 * shares[-1]:.1f}% for the largest "
        f"({large.key.model}, N={_si(large.non_embedding_params)})"
    )
    if len(cells) >= 3:
        # The least-squares slope over every final model, not the two ends.
        log_n = np.log10([float(c.non_embedding_params) for c in cells])
        slope = float(fit_lines(log_n, shares)[0])
        text += (
            f"; over all {len(cells)} final models its share {_trend(slope)} by "
            f"{100 * abs(slope):.2f} percentage points per tenfold increase in parameters "
            "(least squares)."
        )
    else:
        text += f"; its share {_trend(shares[-1] - shares[0])} with size (two models only)."
    return [text]


def _trend(change: float) -> str:
    return "falls" if change < 0 else "rises" if change > 0 else "stays"


def _dynamics_sentences(data: ReportData, dataset: str) -> list[str]:
    """How each component moved between the first and last training step (three models)."""
    out = []
    for model, run in list(data.dynamics.get(dataset, {}).items())[:3]:
        first, last = run[0], run[-1]
        words = ", ".join(
            f"{q.key} {'falls' if d < 0 else 'rises'} by {abs(d):.3f}"
            for q in QUANTITIES
            for d in [float(last.summary[q.field]) - float(first.summary[q.field])]
        )
        out.append(f"{dataset}, {model} from step {first.step} to {last.step}: {words} nats.")
    return out


def _ci_text(ci: Interval | None) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci is not None else ""


def _conf_changes_sign(data: ReportData, dataset: str, group: str) -> bool:
    """Whether Confidence is positive for some models of the group and negative for others (as
    the fit marked it)."""
    row = data.fits.fit(dataset, group, CONF.key)
    return row is not None and row.conf_sign_change


def _extrapolation_sentences(data: ReportData) -> list[str]:
    """Whether EE extrapolates better than CE, per group, and how sure the bootstrap is."""
    out = []
    for r in data.fits.extrapolation_ce_vs_ee:
        if _hidden(data, r.dataset, r.group):
            continue
        ce, ee = r.ce_mean_abs_relative_error, r.ee_mean_abs_relative_error
        verdict = "better than" if ee < ce else "worse than" if ee > ce else "exactly as well as"
        text = (
            f"{r.dataset}, {r.group}: fitted on all but the {r.holdout} largest model(s), "
            f"EE extrapolates {verdict} CE "
            f"(mean |relative error| EE {100 * ee:.2f}% vs CE {100 * ce:.2f}%"
        )
        ci = r.difference_ci
        if ci is not None:
            sure = (
                "excludes 0"
                if ci[0] > 0 or ci[1] < 0
                else "includes 0, so the difference is not clear"
            )
            text += (
                f"; the 95% interval of CE − EE, [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}] points, "
                f"{sure}"
            )
        out.append(text + ").")
    return out


# ---- the verdict: the question answered in at most five sentences -----------------------------

QUESTION = "Does Error-Entropy follow a cleaner power law in model size than cross-entropy?"
MAX_DATASET_SENTENCES = 3  # more datasets than this share one sentence in the verdict


@dataclass(frozen=True)
class EEvsCE:
    """EE's power law against CE's over every model of one dataset (the ``"All"`` group).

    ``difference`` is R²(EE) − R²(CE) and ``ci`` its paired 95% bootstrap interval (None
    without a bootstrap); ``reason`` says why there is no comparison (then ``ee``/``ce`` may
    be None).
    """

    dataset: str
    n_models: int
    families: int
    ee: FitRow | None = None
    ce: FitRow | None = None
    difference: float | None = None
    ci: Interval | None = None
    reason: str | None = None

    @property
    def sign(self) -> int:
        """+1 when EE's fit has the higher R², -1 when CE's has, 0 for a tie or no comparison."""
        d = self.difference
        return 0 if d is None or d == 0 else (1 if d > 0 else -1)

    @property
    def sure(self) -> int:
        """+1 when the interval lies above 0, -1 when below, 0 when it holds 0 or is missing."""
        if self.ci is None:
            return 0
        return 1 if self.ci[0] > 0 else -1 if self.ci[1] < 0 else 0


def ee_vs_ce(data: ReportData, dataset: str) -> EEvsCE:
    """The EE-against-CE comparison of one dataset, read from the sweep's fits."""
    fits = data.fits
    rows = [r for r in fits.fits if r.dataset == dataset]
    families = len({r.group for r in rows if r.group != ALL_GROUP})
    ee, ce = fits.fit(dataset, ALL_GROUP, EE.key), fits.fit(dataset, ALL_GROUP, CE.key)
    n = max((r.n_models for r in (ee, ce) if r is not None), default=0)
    base = EEvsCE(dataset, n, families, ee, ce)
    for q, row in ((CE.key, ce), (EE.key, ee)):
        if row is None:
            return replace(base, reason="no power law was fitted")
        if row.skipped:
            return replace(base, reason=f"the {q} fit was skipped ({row.skipped})")
        if row.r2 is None or not math.isfinite(row.r2):
            return replace(base, reason=f"R² of the {q} fit is undefined (every |{q}| is equal)")
    assert ee is not None and ce is not None and ee.r2 is not None and ce.r2 is not None
    paired = next(
        (r for r in fits.r2_ee_vs_ce if (r.dataset, r.group) == (dataset, ALL_GROUP)), None
    )
    ci = paired.difference_ci if paired is not None else None
    return replace(base, difference=ee.r2 - ce.r2, ci=ci)


def verdict_sentences(data: ReportData) -> list[str]:
    """The answer to :data:`QUESTION` in at most five sentences, every number taken from the
    fits: the answer, one sentence per dataset (R² of EE and CE and their paired difference,
    with 95% intervals; or why there is no comparison), and a caution when one is due."""
    comps = [ee_vs_ce(data, d) for d in data.datasets]
    done = [c for c in comps if c.reason is None]
    out = [_answer(done, len(comps))]
    if len(comps) <= MAX_DATASET_SENTENCES:
        out += [_dataset_verdict(c) for c in comps]
    else:
        out.append(_datasets_verdict(comps))
    caution = _caution(data, done)
    return out + ([caution] if caution else [])


def _scope(done: Sequence[EEvsCE], total: int) -> str:
    if len(done) == 1:
        return f"on {done[0].dataset}"
    if len(done) == total:
        return "on both datasets" if total == 2 else f"on all {total} datasets"
    return f"on all {len(done)} datasets with both fits ({', '.join(c.dataset for c in done)})"


def _answer(done: Sequence[EEvsCE], total: int) -> str:
    """The first sentence: yes, no, not clearly, mixed, or cannot tell."""
    if not done:
        return (
            "This sweep cannot answer it: no dataset has both an EE and a CE power law fitted "
            "over its models."
        )
    k, where = len(done), _scope(done, total)
    diff = "the 95% bootstrap interval of R²(EE) − R²(CE)"
    ee_sure = sum(c.sure > 0 for c in done)
    ce_sure = sum(c.sure < 0 for c in done)
    no_ci = all(c.ci is None for c in done)
    if all(c.sign > 0 for c in done):
        if ee_sure == k:
            every = "there" if k == 1 else "on every one"
            return f"Yes: EE's power law fits better than CE's {where}; {diff} is above 0 {every}."
        if no_ci:
            return (
                f"Apparently yes: EE's fit has the higher R² {where}, but without bootstrap "
                "intervals the size of that lead is not known."
            )
        held = "includes 0" if k == 1 else f"lies above 0 on only {ee_sure} of {k}"
        return f"Not clearly: EE's fit has the higher R² {where}, but {diff} {held}."
    if all(c.sign <= 0 for c in done):
        if no_ci:
            return f"No: CE's fit has an R² at least as high as EE's {where} (no intervals)."
        if k == 1:
            held = "lies below 0" if ce_sure else "includes 0, so CE's lead is not clear"
        else:
            held = f"lies below 0 on {ce_sure} of {k}"
        return f"No: CE's fit has an R² at least as high as EE's {where}; {diff} {held}."
    ee_names = ", ".join(c.dataset for c in done if c.sign > 0)
    wins = sum(c.sign > 0 for c in done)
    text = (
        f"Mixed: EE's fit has the higher R² on {wins} of {k} datasets ({ee_names}), "
        "CE's on the rest"
    )
    if not no_ci:
        text += f"; {diff} lies above 0 on {ee_sure} and below 0 on {ce_sure}"
    return text + "."


def _r2_text(row: FitRow | None) -> str:
    assert row is not None and row.r2 is not None
    ci = row.r2_ci
    return f"{row.r2:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci is not None else "")


def _diff_text(c: EEvsCE) -> str:
    assert c.difference is not None
    ci = c.ci
    return f"{c.difference:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci is not None else "")


def _who(c: EEvsCE) -> str:
    """How many models, of how many families."""
    kind = "one family" if c.families == 1 else f"{c.families} families together"
    return f"{c.n_models} models, {kind}"


def _dataset_verdict(c: EEvsCE) -> str:
    """One dataset's numbers: R² of EE and of CE, and their difference, with intervals."""
    if c.reason is not None:
        return f"On {c.dataset} ({_who(c)}) there is no comparison: {c.reason}."
    return (
        f"On {c.dataset} ({_who(c)}), R² is {_r2_text(c.ee)} for EE and {_r2_text(c.ce)} for "
        f"CE: R²(EE) − R²(CE) = {_diff_text(c)}."
    )


def _datasets_verdict(comps: Sequence[EEvsCE]) -> str:
    """Every dataset's difference in one sentence (when there are too many for one each)."""
    parts = [
        f"{c.dataset} {_diff_text(c)}" if c.reason is None else f"{c.dataset}: {c.reason}"
        for c in comps
    ]
    return f"Per dataset, R²(EE) − R²(CE): {'; '.join(parts)}."


def _caution(data: ReportData, done: Sequence[EEvsCE]) -> str:
    """A sentence on what makes the verdict rough: few models, no intervals; or ""."""
    clauses = []
    few = min((c.n_models for c in done), default=0)
    if done and few <= 5:
        at = "" if len({c.n_models for c in done}) == 1 else "as few as "
        clauses.append(
            f"with {at}{few} models a line has {few - 2} residual degree"
            f"{'s' if few != 3 else ''} of freedom"
        )
    if done and all(c.ci is None for c in done):
        how = " (--no-fit)" if data.fits.settings.n_boot == 0 else ""
        clauses.append(f"these fits have no bootstrap intervals{how}")
    if not clauses:
        return ""
    text = " and ".join(clauses)
    return f"{text[0].upper()}{text[1:]}, so read these R² as rough."


# ---- writing ----------------------------------------------------------------------------------

# What a reader should look for in each figure, by its number (the ident's prefix).
LOOK_FOR: dict[str, str] = {
    "fig3": "Look for: which component carries CE's fall as training proceeds.",
    "fig4": (
        "Look for: p_e piling up at the low ranks as training proceeds; EE is the entropy of "
        "this distribution, so a steeper curve is a lower EE."
    ),
    "fig5": (
        "Look for: how far the probability at the ground truth's position (dotted) stands above "
        "the ones ranked after it."
    ),
    "fig6": (
        "Look for: the points closing in on the dashed line p = q as training proceeds "
        "(Self-Alignment falling towards 0)."
    ),
    "fig7": (
        "Look for: whether EE's points (top right) sit closer to their line than CE's (top "
        "left); a straight line on these log-log axes is a power law."
    ),
    "fig8": "Look for: how much of CE is EE, and whether that share moves with model size.",
    "rbp": (
        "Look for: whether alpha_k holds steady over small k (one law for the top of the "
        "ranking) and where R^2 falls as k nears the vocabulary; dotted: CE, dashed: EE."
    ),
    "convergence": (
        "Look for: whether the curves flatten before every document is used; a plug-in EE still "
        "climbing outside the band at the right has not settled."
    ),
}
FIRST_FIGURES = ("fig7", "fig8", "rbp")  # the scaling figures answer the question: first
LAST_FIGURES = ("convergence",)  # checks on the estimates: last
NO_EXTRAPOLATION = (
    "The fit did not run an extrapolation test (it needs the bootstrap fit and enough models "
    "per group)."
)


def _look_for(fig: FigureFile) -> str:
    return LOOK_FOR.get(fig.ident.split("-", 1)[0], "")


def headline_figure(data: ReportData, figs: Sequence[FigureFile]) -> FigureFile | None:
    """The figure on the first screen: Fig. 7 (each quantity against N with its fit) of the
    first dataset, or of the first dataset that has one; None when none was drawn."""
    first = f"fig7-{slug(data.datasets[0])}" if data.datasets else ""
    scaling = [f for f in figs if f.ident.startswith("fig7-")]
    return next((f for f in scaling if f.ident == first), scaling[0] if scaling else None)


def reading_order(figs: Sequence[FigureFile], headline: FigureFile | None) -> list[FigureFile]:
    """The figures below the first screen: the scaling figures (Fig. 7, 8, RBP_k) first, then
    the rest as drawn, the convergence checks last; the headline figure is not repeated."""

    def rank(f: FigureFile) -> int:
        kind = f.ident.split("-", 1)[0]
        return 0 if kind in FIRST_FIGURES else 2 if kind in LAST_FIGURES else 1

    return sorted((f for f in figs if f is not headline), key=rank)


def _legend(data: ReportData) -> str:
    """How to read the verdict's numbers."""
    brackets = (
        "brackets hold 95% document-bootstrap intervals"
        if data.fits.settings.n_boot > 0
        else "no intervals: plain least squares"
    )
    return (
        "R² is that of the least-squares line log|M| = c + α log N over the non-embedding "
        f"parameters N of every model of a dataset; {brackets}. Each model's cross-entropy "
        "splits exactly as CE = EE + SA − Conf (Error-Entropy, Self-Alignment, Confidence)."
    )


def _byline(data: ReportData) -> str:
    models = len({c.key.model for c in data.cells})
    name = data.sweep_dir.name  # a folder named sweep (or sweep-1) needs no "sweep" before it
    where = name if "sweep" in name.lower() else f"sweep {name}"
    return (
        f"errorentropy report · {where} · {models} models · "
        f"{len(data.cells)} cells · datasets: {', '.join(data.datasets)}"
    )


def _md_table(table: Table) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [
        f"**{table.title}**",
        "",
        "| " + " | ".join(map(esc, table.header)) + " |",
        "|" + "---|" * len(table.header),
    ]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f'<table id="{table.ident}"><caption>{html.escape(table.title)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    )


# The first screen: the question across the top, the verdict on the left, the headline figure
# on the right, its height capped by the window's so it is seen whole without scrolling.
_CSS = (
    "\n"
    'body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1240px;'
    "margin:0 auto;padding:.5em 1.2em 2em;color:#222;line-height:1.45}\n"
    ".byline{font-size:.8em;color:#666;margin:.3em 0}"
    "h1{font-size:1.55em;line-height:1.25;margin:.2em 0 .6em}\n"
    "h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\n"
    ".answer{display:grid;grid-template-columns:minmax(300px,5fr) 7fr;gap:1.6em;"
    "align-items:start}\n"
    "#verdict p{margin:0 0 .65em}#verdict p.lead{font-size:1.12em;font-weight:600}"
    ".legend{font-size:.82em;color:#555}\n"
    "figure.headline{margin:0}figure.headline img{display:block;width:auto;height:auto;"
    "max-width:100%;max-height:calc(100vh - 12.5em)}\n"
    "@media (max-width:900px){.answer{display:block}}\n"
    "table{border-collapse:collapse;margin:1em 0;font-size:.85em}"
    "caption{font-weight:600;text-align:left;padding:.3em 0}\n"
    "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}th{background:#f0f0f0}"
    "td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}\n"
    "figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}"
    "figcaption{font-size:.9em;color:#555}figcaption .look{color:#222;font-weight:600}\n"
    ".note{color:#7a4b00;font-size:.9em}ul.summary li{margin:.3em 0}\n"
    "details{margin:1em 0;border:1px solid #ddd;border-radius:4px;padding:.4em .8em}"
    "summary{cursor:pointer;font-weight:600}\n"
)


@dataclass
class _Parts:
    """The pieces of the report, in reading order, shared by its Markdown and HTML forms."""

    verdict: list[str]
    headline: FigureFile | None
    figures: Sequence[FigureFile]
    tables: list[Table]
    table_notes: list[str]
    statements: list[str]
    settings: list[tuple[str, str]]
    notes: list[str]


def _md_figure(data: ReportData, f: FigureFile) -> list[str]:
    png, svg = f.png.relative_to(data.sweep_dir), f.svg.relative_to(data.sweep_dir)
    look = f"**{_look_for(f)}** " if _look_for(f) else ""
    return [
        f"![{f.caption}]({png.as_posix()})",
        "",
        f"{look}*{f.caption}* ([SVG]({svg.as_posix()}))",
        "",
    ]


def _md_details(summary: str, body: list[str]) -> list[str]:
    """A collapsed section (GitHub renders Markdown inside it after a blank line)."""
    return ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]


def _markdown(data: ReportData, parts: _Parts) -> str:
    """report.md, in the page's order: question, verdict, headline figure; figures, tables,
    statements; settings and notes collapsed."""
    lead, *rest = parts.verdict
    md = [f"# {QUESTION}", "", f"*{_byline(data)}*", "", " ".join([f"**{lead}**", *rest]), ""]
    md += [f"<small>{_legend(data)}</small>", ""]
    if parts.headline is not None:
        md += _md_figure(data, parts.headline)
    md += ["## Figures", ""]
    for f in parts.figures:
        md += _md_figure(data, f)
    md += ["## Tables", "", *[_md_table(t) for t in parts.tables], *parts.table_notes, ""]
    md += ["## Detailed statements", "", *[f"- {s}" for s in parts.statements], ""]
    settings = ["| setting | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in parts.settings]]
    md += _md_details("Settings", settings)
    if parts.notes:
        md += _md_details(f"Notes ({len(parts.notes)})", [f"- {n}" for n in parts.notes])
    return "\n".join(md)


def _html_figure(f: FigureFile, *, headline: bool = False) -> str:
    """One figure, its PNG inline; the headline one gets the ``headline-figure`` image id."""
    encoded = base64.b64encode(f.png.read_bytes()).decode("ascii")
    caption = html.escape(f.caption)
    look = f'<span class="look">{html.escape(_look_for(f))}</span> ' if _look_for(f) else ""
    kind = ' class="headline"' if headline else ""
    img_id = ' id="headline-figure"' if headline else ""
    return (
        f'<figure id="{html.escape(f.ident)}"{kind}><img class="figure"{img_id} alt="{caption}" '
        f'src="data:image/png;base64,{encoded}">'
        f'<figcaption>{look}<span class="what">{caption}</span></figcaption></figure>'
    )


def _html_first_screen(data: ReportData, parts: _Parts) -> list[str]:
    """The question, the verdict and the headline figure."""
    esc = html.escape
    lead, *rest = parts.verdict
    figure = _html_figure(parts.headline, headline=True) if parts.headline else ""
    return [
        f'<p class="byline">{esc(_byline(data))}</p>',
        f'<h1 id="question">{esc(QUESTION)}</h1>',
        '<section class="answer"><div class="answer-text"><div id="verdict">',
        f'<p class="lead">{esc(lead)}</p>',
        *[f"<p>{esc(s)}</p>" for s in rest],
        f'</div><p class="legend">{esc(_legend(data))}</p></div>',
        figure,
        "</section>",
    ]


def _html_collapsed(parts: _Parts) -> list[str]:
    """Settings and notes, each in a closed <details>."""
    esc = html.escape
    h = [
        '<details id="settings-details"><summary>Settings</summary><table id="settings"><tbody>',
        *[f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in parts.settings],
        "</tbody></table></details>",
    ]
    if parts.notes:
        h += [f'<details id="notes-details"><summary>Notes ({len(parts.notes)})</summary>']
        h += ['<ul class="notes">', *[f'<li class="note">{esc(n)}</li>' for n in parts.notes]]
        h += ["</ul></details>"]
    return h


def _html(data: ReportData, parts: _Parts) -> str:
    """report.html: one self-contained page, readable without JavaScript."""
    esc = html.escape
    h = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>errorentropy report: {esc(data.sweep_dir.name)}</title>"
        f"<style>{_CSS}</style></head><body>",
        *_html_first_screen(data, parts),
        '<h2 id="figures">Figures</h2>',
        *[_html_figure(f) for f in parts.figures],
        '<h2 id="tables">Tables</h2>',
        *[_html_table(t) for t in parts.tables],
        *[f'<p class="note">{esc(n)}</p>' for n in parts.table_notes],
        '<h2 id="statements">Detailed statements</h2><ul class="summary">',
        *[f"<li>{esc(s)}</li>" for s in parts.statements],
        "</ul>",
        *_html_collapsed(parts),
        "</body></html>\n",
    ]
    return "\n".join(h)


def write_report(
    data: ReportData, figs: Sequence[FigureFile], notes: Sequence[str]
) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` into the sweep folder.

    Both open with the question, the verdict (:func:`verdict_sentences`) and the headline
    figure (:func:`headline_figure`); then the other figures, the tables, the detailed
    statements (:func:`summary_sentences`), and the settings and notes, collapsed.
    """
    headline = headline_figure(data, figs)
    extrapolation, saturating = extrapolation_table(data), saturating_table(data)
    parts = _Parts(
        verdict=verdict_sentences(data),
        headline=headline,
        figures=reading_order(figs, headline),
        tables=[
            *fit_tables(data),
            *[t for t in (extrapolation, saturating) if t is not None],
            components_table(data),
            *[t for t in (rbp_table(data), convergence_table(data)) if t is not None],
        ],
        table_notes=[] if extrapolation else [NO_EXTRAPOLATION],
        statements=summary_sentences(data),
        settings=settings_rows(data),
        notes=[*data.notes, *notes],
    )
    md_path = data.sweep_dir / "report.md"
    atomic_write_text(md_path, _markdown(data, parts))
    html_path = data.sweep_dir / "report.html"
    atomic_write_text(html_path, _html(data, parts))
    return md_path, html_path


def build_report(
    sweep_dir: Path | str, *, run_fit: bool = True, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Collect, draw and write the whole report; returns the paths written and the notes.

    Args:
        sweep_dir: a sweep folder (holds ``cells/``).
        run_fit: False for ``--no-fit``: plain least-squares fits, no bootstrap (a fits.json
            current for the cells is read whatever its settings).
        n_boot: bootstrap replicates of the fit (when it runs).
        seed: the bootstrap's seed.

    Examples:
        >>> from errorentropy.testing import synthetic_sweep
        >>> folder = synthetic_sweep(workdir / "sweep")
        >>> result = ee.build_report(folder, run_fit=False)
        >>> sorted(Path(p).name for p in result["figures"] if p.endswith(".png"))
        ['convergence-synth.png', 'fig7-synth.png', 'fig8-synth.png', 'rbp-synth.png']
        >>> Path(result["report_html"]).name, (folder / "fits.json").exists()
        ('report.html', True)
        >>> result["notes"][0].startswith("--no-fit: power laws are plain least squares")
        True
    """
    data = collect(sweep_dir, run_fit=run_fit, n_boot=n_boot, seed=seed)
    figs, notes = draw_figures(data, Path(sweep_dir) / FIGURES_DIR)
    md_path, html_path = write_report(data, figs, notes)
    return {
        "report_md": str(md_path),
        "report_html": str(html_path),
        "figures": [str(f.png) for f in figs] + [str(f.svg) for f in figs],
        "notes": [*data.notes, *notes],
    }
