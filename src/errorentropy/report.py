"""``errorentropy report DIR``: the paper's figures and tables from a sweep folder, as Markdown and one HTML page.

Reads the sweep's cells (:func:`errorentropy.cells.load_cells`) and its power-law fits
(:func:`errorentropy.fit.fit_sweep`, or plain least squares with ``--no-fit``), draws Fig. 3-8
(:mod:`errorentropy.figures`) into ``DIR/figures/`` as PNG and SVG, and writes

    DIR/report.md     settings, tables, figures (linked), extrapolation, summary
    DIR/report.html   the same, self-contained: figures embedded as base64 PNG data URIs

Every sentence of the summary is computed from the numbers in the tables; nothing is canned.
Missing pieces (no training steps, no profile, a family with fewer than 3 models) are left out
with a note saying why, never faked.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cells import CellRecord, load_cells, slug
from .errors import UserError
from .storage import atomic_write_text
from .tables import TABLE1_QUANTITIES as QUANTITIES

if TYPE_CHECKING:
    from . import figures

QUANTITY_KEYS: dict[str, str] = {
    "CE": "cross_entropy",
    "EE": "error_entropy",
    "SA": "self_alignment",
    "Conf": "confidence",
}
MIN_MODELS_FOR_FIT = 3
CLEAN_R2 = 0.9  # the summary calls a fit with R^2 at least this "a clean power law"
MAX_STEPS_SHOWN = 6
MAX_PANELS = 6
PROFILE_FILE = "profile.json"
FIGURES_DIR = "figures"
ALL_GROUP = "All"
# Summary keys that are results, not settings (everything else constant across cells is a setting).
_RESULT_KEYS = {
    "n_tokens",
    "n_documents",
    "n_skipped",
    "n_tied",
    "cross_entropy",
    "error_entropy",
    "self_alignment",
    "confidence",
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
}


# ---- the data behind the report ---------------------------------------------------------------


@dataclass
class FitRow:
    """One power law ``log|M| = c + alpha log N`` over a group of models (a family or All) on one dataset."""

    dataset: str
    group: str
    quantity: str
    n_models: int
    alpha: float
    c: float
    r2: float
    alpha_ci: tuple[float, float] | None = None
    r2_ci: tuple[float, float] | None = None
    delta_alpha_vs_ce: float | None = None
    delta_alpha_ci: tuple[float, float] | None = None


@dataclass
class ReportData:
    """Everything the report shows, gathered from one sweep folder."""

    sweep_dir: Path
    cells: list[CellRecord]
    datasets: list[str]
    final: dict[str, list[CellRecord]]  # dataset -> final revision of each model, by size
    dynamics: dict[
        str, dict[str, list[CellRecord]]
    ]  # dataset -> model -> cells with a step, by step
    fit_rows: list[FitRow]
    fits: dict[str, Any] | None  # the full fit_sweep result, when it ran
    fit_source: str
    notes: list[str] = field(default_factory=list)


def final_revisions(cells: Sequence[CellRecord]) -> list[CellRecord]:
    """The last revision of each (model, dataset), chosen exactly as the fits choose it
    (:func:`errorentropy.fitting_cli.select_final`), sorted by dataset and size."""
    from .fits import select_final

    chosen = select_final(list(cells), [])
    return sorted(
        chosen, key=lambda c: (c.key.dataset, c.non_embedding_params, c.family, c.key.model)
    )


def training_runs(cells: Sequence[CellRecord]) -> dict[str, dict[str, list[CellRecord]]]:
    """Per dataset, the models seen at two or more training steps, each with its cells sorted by step."""
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
    """At most ``k`` of ``steps``, spread evenly on a log scale, always keeping the first and the last."""
    ordered = sorted(set(steps))
    if len(ordered) <= k:
        return ordered
    targets = np.linspace(np.log1p(ordered[0]), np.log1p(ordered[-1]), k)
    chosen: list[int] = []
    for t in targets:
        candidates = [s for s in ordered if s not in chosen]
        chosen.append(min(candidates, key=lambda s: abs(np.log1p(s) - t)))
    return sorted(chosen)


def least_squares_fits(
    final: dict[str, list[CellRecord]], notes: list[str] | None = None
) -> list[FitRow]:
    """Point power-law fits (no intervals) per dataset, family and All, for groups of 3+ models
    with M != 0; what is left out, and Confidence changing sign, are added to ``notes``."""
    from .powerlaw import FitInputError, fit_power_law, sign_changes

    notes = [] if notes is None else notes
    rows: list[FitRow] = []
    for dataset, all_cells in final.items():
        cells = [c for c in all_cells if c.non_embedding_params > 0]
        for c in all_cells:
            if c.non_embedding_params <= 0:
                notes.append(
                    f"{c.key.model} on {dataset}: non-embedding parameter count is {c.non_embedding_params}; left out of the fits."
                )
        groups: dict[str, list[CellRecord]] = {ALL_GROUP: list(cells)}
        for cell in cells:
            groups.setdefault(cell.family, []).append(cell)
        for group, members in groups.items():
            if (
                len(members) < MIN_MODELS_FOR_FIT
                or len({c.non_embedding_params for c in members}) < 2
            ):
                continue
            n = np.array([float(c.non_embedding_params) for c in members])
            by_q: dict[str, FitRow] = {}
            for q, key in QUANTITY_KEYS.items():
                m = np.array([float(c.summary[key]) for c in members])
                try:
                    fit = fit_power_law(n, m, MIN_MODELS_FOR_FIT)
                except FitInputError as exc:
                    notes.append(f"{dataset}/{group}/{q}: fit skipped: {exc}.")
                    continue
                by_q[q] = FitRow(dataset, group, q, len(members), fit.alpha, fit.c, fit.r2)
            if "CE" in by_q:
                for row in by_q.values():
                    row.delta_alpha_vs_ce = abs(row.alpha - by_q["CE"].alpha)
            conf = [float(c.summary["confidence"]) for c in members]
            if sign_changes(np.array(conf)):
                notes.append(
                    f"{dataset}/{group}: Confidence changes sign across models ({', '.join(f'{v:+.3g}' for v in conf)}, smallest to largest); the log|Conf| fit hides the sign."
                )
            rows.extend(by_q.values())
    return rows


def _pair(value: Any) -> tuple[float, float] | None:
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and v is not None for v in value)
    ):
        return (float(value[0]), float(value[1]))
    if isinstance(value, dict) and "low" in value and "high" in value:
        return (float(value["low"]), float(value["high"]))
    return None


def _float(x: Any) -> float:
    return float("nan") if x is None else float(x)


def rows_from_fits(fits: dict[str, Any]) -> list[FitRow]:
    """The fitted rows of a :func:`errorentropy.fit.fit_sweep` result (skipped fits have no row)."""
    rows: list[FitRow] = []
    for raw in fits.get("fits", []):
        if not isinstance(raw, dict) or raw.get("alpha") is None or raw.get("c") is None:
            continue  # skipped (too few models, zero values): no line, and the fit's note says why
        rows.append(
            FitRow(
                dataset=str(raw["dataset"]),
                group=str(raw["group"]),
                quantity=str(raw["quantity"]),
                n_models=int(raw["n_models"]),
                alpha=float(raw["alpha"]),
                c=float(raw["c"]),
                r2=_float(raw.get("r2")),
                alpha_ci=_pair(raw.get("alpha_ci")),
                r2_ci=_pair(raw.get("r2_ci")),
                delta_alpha_vs_ce=None
                if raw.get("delta_alpha_vs_ce") is None
                else float(raw["delta_alpha_vs_ce"]),
                delta_alpha_ci=_pair(raw.get("delta_alpha_ci")),
            )
        )
    return rows


def fit_notes(fits: dict[str, Any]) -> list[str]:
    """The fit's notes as sentences; the many per-cell bootstrap-bias remarks are folded into one."""
    out: list[str] = []
    biased: list[str] = []
    skipped: dict[tuple[str, str, str], list[str]] = {}  # (dataset, group, reason) -> quantities
    for note in fits.get("notes", []):
        if isinstance(note, dict):
            if note.get("kind") == "biased-bootstrap":
                biased.append(str(note.get("message", "")).split(":")[0])
                continue
            message = str(note.get("message", note))
            if note.get("kind") == "skipped" and ": fit skipped: " in message:
                reason = message.split(": fit skipped: ", 1)[1]
                skipped.setdefault(
                    (str(note.get("dataset")), str(note.get("group")), reason), []
                ).append(str(note.get("quantity")))
                continue
            out.append(message)
        else:
            out.append(str(note))
    for (dataset, group, reason), quantities in skipped.items():
        out.append(f"{dataset}/{group}: no power law fitted for {', '.join(quantities)}: {reason}")
    if biased:
        out.append(
            f"For {len(biased)} component value(s), resampling documents moved the value by more than half its interval (plug-in bias from rare ranks; the intervals are centred on the estimates, see fits.json), e.g. {biased[0]}."
        )
    return out


def collect(
    sweep_dir: Path | str, *, run_fit: bool = True, n_boot: int = 1000, seed: int = 0
) -> ReportData:
    """Gather cells, final revisions, training runs and fits of a sweep folder."""
    sweep_dir = Path(sweep_dir)
    cells = load_cells(sweep_dir)
    if not cells:
        raise UserError(
            f"{sweep_dir} has no finished cells; run or resume `errorentropy sweep` first"
        )
    datasets = sorted({c.key.dataset for c in cells})
    final: dict[str, list[CellRecord]] = {}
    for cell in final_revisions(cells):
        final.setdefault(cell.key.dataset, []).append(cell)
    notes: list[str] = []
    fits: dict[str, Any] | None = None
    if run_fit:
        try:
            from .fits import fit_sweep, write_fits
        except ImportError as exc:  # an install without the fitting module: still draw everything
            notes.append(
                f"the bootstrap fit is not available ({exc}): fits below are plain least squares without intervals."
            )
        else:
            fits = fit_sweep(sweep_dir, n_boot=n_boot, seed=seed)
            write_fits(
                sweep_dir, fits
            )  # DIR/fits.json and DIR/tables/, as `errorentropy fit` writes them
    else:
        notes.append(
            "--no-fit: power laws are plain least squares on the final revisions, without bootstrap intervals or extrapolation."
        )
    if fits is not None:
        rows = rows_from_fits(fits)
        source = f"errorentropy.fit.fit_sweep (n_boot={n_boot}, seed={seed})"
        notes.extend(fit_notes(fits))
    else:
        rows = least_squares_fits(final, notes)
        source = "least squares (no intervals)"
    return ReportData(
        sweep_dir, cells, datasets, final, training_runs(cells), rows, fits, source, notes
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


def draw_figures(data: ReportData, out_dir: Path) -> tuple[list[FigureFile], list[str]]:
    """Draw every figure the data supports into ``out_dir``; returns them and notes on what was left out."""
    from . import figures  # loads matplotlib: on use, not on `errorentropy --help`

    drawn: list[FigureFile] = []
    notes: list[str] = []

    def save(fig: Any, ident: str, caption: str) -> None:
        png, svg = figures.save_figure(fig, out_dir / ident)
        drawn.append(FigureFile(ident, caption, png, svg))

    for dataset in data.datasets:
        runs = data.dynamics.get(dataset, {})
        if not runs:
            notes.append(
                f"{dataset}: no model was scored at two or more training steps, so Fig. 3, 4 and 6 are omitted (sweep checkpoints such as step0 ... step100000 to get them)."
            )
        else:
            models = _spread(sorted(runs, key=lambda m: runs[m][0].non_embedding_params))
            series = [
                figures.StepSeries(
                    _label(runs[m][0]),
                    [c.step or 0 for c in runs[m]],
                    {q: [float(c.summary[k]) for c in runs[m]] for q, k in QUANTITY_KEYS.items()},
                )
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
                chosen = [c for c in runs[m] if (c.step or 0) in keep]
                decs = [(c, c.histogram().decompose()) for c in chosen]
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
                figures.p_against_q(
                    curves, title=f"Fig. 6: p_e against q_e at several steps ({dataset})"
                ),
                f"fig6-{slug(dataset)}",
                f"Fig. 6 ({dataset}): p_e against q_e; the dashed line is p = q (SA = 0).",
            )
        profiled = [c for c in data.final.get(dataset, []) if (c.path / PROFILE_FILE).exists()]
        if not profiled:
            notes.append(
                f"{dataset}: no cell has a sorted-probability profile, so Fig. 5 is omitted (score with --profile, or profile = true under [scoring] in a sweep spec, to get it)."
            )
        else:
            from .profile import RankProfile

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
                f"Fig. 5 ({dataset}): mean sorted probability profile of predictions whose ground truth sits at rank r (dotted: the ground truth's position).",
            )
        fams = family_points(data, dataset)
        if not fams:
            notes.append(f"{dataset}: no final revisions, so Fig. 7 and 8 are omitted.")
            continue
        short = [f.family for f in fams if len(f.params) < MIN_MODELS_FOR_FIT]
        if short:
            notes.append(
                f"{dataset}: {', '.join(short)} {'has' if len(short) == 1 else 'have'} fewer than {MIN_MODELS_FOR_FIT} models, so Fig. 7 draws no line for {'it' if len(short) == 1 else 'them'}."
            )
        overall = {
            r.quantity: (r.alpha, r.c)
            for r in data.fit_rows
            if r.dataset == dataset and r.group == ALL_GROUP and r.n_models >= MIN_MODELS_FOR_FIT
        }
        save(
            figures.scaling(
                fams,
                overall,
                title=f"Fig. 7: each quantity against non-embedding parameters ({dataset})",
            ),
            f"fig7-{slug(dataset)}",
            f"Fig. 7 ({dataset}): |M| against non-embedding parameters with each family's power-law fit (dashed grey: all models together).",
        )
        save(
            figures.shares(
                fams, title=f"Fig. 8: each component's share of cross-entropy ({dataset})"
            ),
            f"fig8-{slug(dataset)}",
            f"Fig. 8 ({dataset}): EE/CE, SA/CE and Conf/CE against non-embedding parameters (EE/CE + SA/CE − Conf/CE = 1).",
        )
    return drawn, notes


def family_points(data: ReportData, dataset: str) -> list[figures.FamilyPoints]:
    """The final revisions of one dataset grouped by family, with each family's fitted lines."""
    from . import figures  # loads matplotlib: on use, not on `errorentropy --help`

    by_family: dict[str, list[CellRecord]] = {}
    for cell in data.final.get(dataset, []):
        if (
            cell.non_embedding_params > 0
        ):  # as in the fits: a log axis has no place for N <= 0 (noted there)
            by_family.setdefault(cell.family, []).append(cell)
    out = []
    for family, cells in sorted(by_family.items()):
        fits = {
            r.quantity: (r.alpha, r.c)
            for r in data.fit_rows
            if r.dataset == dataset and r.group == family and r.n_models >= MIN_MODELS_FOR_FIT
        }
        out.append(
            figures.FamilyPoints(
                family,
                [c.non_embedding_params for c in cells],
                {q: [float(c.summary[k]) for c in cells] for q, k in QUANTITY_KEYS.items()},
                fits,
            )
        )
    return out


# ---- tables -----------------------------------------------------------------------------------


@dataclass
class Table:
    """A table as plain strings: an id, a title, a header row and body rows."""

    ident: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def _with_ci(x: float | None, ci: tuple[float, float] | None, digits: int = 4) -> str:
    text = _num(x, digits)
    return text if ci is None else f"{text} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _groups(rows: Sequence[FitRow], dataset: str) -> list[str]:
    groups = sorted({r.group for r in rows if r.dataset == dataset and r.group != ALL_GROUP})
    return groups + (
        [ALL_GROUP] if any(r.dataset == dataset and r.group == ALL_GROUP for r in rows) else []
    )


def fit_tables(data: ReportData) -> list[Table]:
    """Table 1 (R^2 of the log-log fit) and Table 2 (|alpha_M - alpha_CE|), with intervals where known."""
    index = {(r.dataset, r.group, r.quantity): r for r in data.fit_rows}
    brackets = (
        " (95% bootstrap interval in brackets)"
        if any(r.r2_ci is not None or r.alpha_ci is not None for r in data.fit_rows)
        else " (no intervals: plain least squares)"
    )
    t1 = Table(
        "table1",
        "Table 1: R² of the fit log|M| = c + α log N" + brackets,
        ["dataset", "group", "models", *QUANTITIES],
        [],
    )
    t2 = Table(
        "table2",
        "Table 2: |α_M − α_CE|, and each exponent α_M" + brackets,
        ["dataset", "group", "α_CE", "|Δα| EE", "|Δα| SA", "|Δα| Conf", "α_EE", "α_SA", "α_Conf"],
        [],
    )
    for dataset in data.datasets:
        for group in _groups(data.fit_rows, dataset):
            got = {q: index.get((dataset, group, q)) for q in QUANTITIES}
            n = max((r.n_models for r in got.values() if r is not None), default=0)
            t1.rows.append(
                [
                    dataset,
                    group,
                    str(n),
                    *[_with_ci(r.r2, r.r2_ci) if r else "n/a" for r in got.values()],
                ]
            )
            ce = got["CE"]
            t2.rows.append(
                [
                    dataset,
                    group,
                    _with_ci(ce.alpha, ce.alpha_ci) if ce else "n/a",
                    *[
                        _with_ci(got[q].delta_alpha_vs_ce, got[q].delta_alpha_ci)
                        if got[q]
                        else "n/a"
                        for q in ("EE", "SA", "Conf")
                    ],
                    *[
                        _with_ci(got[q].alpha, got[q].alpha_ci) if got[q] else "n/a"
                        for q in ("EE", "SA", "Conf")
                    ],
                ]
            )
    if not t1.rows:
        t1.note = t2.note = (
            f"No group has {MIN_MODELS_FOR_FIT} or more models with distinct sizes, so nothing was fitted."
        )
    return [t1, t2]


def components_table(data: ReportData) -> Table:
    """Per final cell: N, CE, EE, SA, Conf and EE/CE, with bootstrap intervals when the fit gives them."""
    cis = _component_cis(data.fits)
    table = Table(
        "components",
        "Components of the final revision of each model (nats per token; 95% interval in brackets)",
        [
            "dataset",
            "family",
            "model",
            "N (non-emb.)",
            "tokens",
            "CE",
            "EE",
            "SA",
            "Conf",
            "EE / CE",
        ],
        [],
    )
    for dataset in data.datasets:
        for cell in data.final.get(dataset, []):
            ci = cis.get((cell.key.model, cell.key.revision, dataset), {})
            values = [_with_ci(float(cell.summary[k]), ci.get(q)) for q, k in QUANTITY_KEYS.items()]
            share = float(cell.summary["error_entropy"]) / float(cell.summary["cross_entropy"])
            table.rows.append(
                [
                    dataset,
                    cell.family,
                    cell.key.model + (f"@{cell.key.revision}" if cell.key.revision else ""),
                    f"{cell.non_embedding_params:,}",
                    f"{int(cell.summary.get('n_tokens', 0)):,}",
                    *values,
                    _num(share, 3),
                ]
            )
    return table


def _component_cis(
    fits: dict[str, Any] | None,
) -> dict[tuple[str, str | None, str], dict[str, tuple[float, float]]]:
    """(model, revision, dataset) -> quantity -> 95% bootstrap interval, from the fit's ``cells`` rows."""
    out: dict[tuple[str, str | None, str], dict[str, tuple[float, float]]] = {}
    for raw in (fits or {}).get("cells", []):
        if not isinstance(raw, dict) or "model" not in raw:
            continue
        comps = raw.get("components") or {}
        cis = {
            q: pair
            for q in QUANTITY_KEYS
            if isinstance(comps.get(q), dict) and (pair := _pair(comps[q].get("ci"))) is not None
        }
        out[(str(raw["model"]), raw.get("revision"), str(raw.get("dataset")))] = cis
    return out


def extrapolation_table(data: ReportData) -> Table | None:
    """The fit's fit-on-small, predict-large test: one row per (dataset, group, quantity); None when it did not run."""
    rows = [r for r in ((data.fits or {}).get("extrapolation") or []) if isinstance(r, dict)]
    if not rows:
        return None
    table = Table(
        "extrapolation",
        "Extrapolation: power law fitted on the smaller models, predicting the largest (mean |relative error|, 95% interval)",
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
    for r in rows:
        if r.get("skipped"):
            table.rows.append(
                [
                    str(r.get("dataset")),
                    str(r.get("group")),
                    str(r.get("quantity")),
                    "",
                    str(r.get("holdout", "")),
                    "skipped",
                    str(r["skipped"]),
                ]
            )
            continue
        held = r.get("heldout") or []
        table.rows.append(
            [
                str(r.get("dataset")),
                str(r.get("group")),
                str(r.get("quantity")),
                f"{len(r.get('fit_models') or [])} models",
                ", ".join(str(h.get("model")) for h in held if isinstance(h, dict)),
                _num(r.get("alpha")),
                _with_ci(
                    r.get("mean_abs_relative_error"), _pair(r.get("mean_abs_relative_error_ci"))
                ),
            ]
        )
    return table


def saturating_table(data: ReportData) -> Table | None:
    """The fit's saturating law ``M = a N^(-α) + E`` per (dataset, group, quantity), when it ran."""
    rows = [
        r
        for r in ((data.fits or {}).get("fits") or [])
        if isinstance(r, dict) and isinstance(r.get("saturating"), dict)
    ]
    if not rows:
        return None
    table = Table(
        "saturating",
        "Saturating fit M = a N^(−α) + E (a > 0: falls to the floor E; a < 0: rises to the ceiling E; R² on the linear scale)",
        ["dataset", "group", "quantity", "a", "α", "E (asymptote)", "R²"],
        [],
    )
    for r in rows:
        sat = r["saturating"]
        head = [str(r.get("dataset")), str(r.get("group")), str(r.get("quantity"))]
        if sat.get("converged"):
            a = sat.get("a")
            table.rows.append(
                [
                    *head,
                    f"{a:.4g}" if isinstance(a, (int, float)) and math.isfinite(a) else "n/a",
                    _num(sat.get("alpha")),
                    _num(sat.get("E")),
                    _num(sat.get("r2")),
                ]
            )
        else:
            table.rows.append(
                [*head, "n/a", "n/a", "n/a", f"not fitted: {sat.get('reason', 'did not converge')}"]
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
    for key, value in ((data.fits or {}).get("settings") or {}).items():
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
    index = {(r.dataset, r.group, r.quantity): r for r in data.fit_rows}
    for dataset in data.datasets:
        groups = _groups(data.fit_rows, dataset)
        if groups:
            top_group = ALL_GROUP if ALL_GROUP in groups else groups[0]
            got = {
                q: index[(dataset, top_group, q)]
                for q in QUANTITIES
                if (dataset, top_group, q) in index
            }
            finite = {q: r for q, r in got.items() if math.isfinite(r.r2)}
            if finite:
                n_models = max(r.n_models for r in finite.values())
                best = max(finite, key=lambda q: finite[q].r2)
                ranked = ", ".join(
                    f"{q} {finite[q].r2:.3f}{_ci_text(finite[q].r2_ci)}"
                    for q in sorted(finite, key=lambda q: -finite[q].r2)
                )
                caution = (
                    f" With {n_models} models a line has {n_models - 2} residual degree(s) of freedom: read R² as rough."
                    if n_models <= 5
                    else ""
                )
                out.append(
                    f"{dataset}, {top_group} ({n_models} models): {best} has the highest R² of the log-log power-law fit in non-embedding parameters (R² {ranked}).{caution}"
                )
                flips = _conf_changes_sign(data, dataset, top_group)
                clean = [
                    q
                    for q in QUANTITIES
                    if q in finite and finite[q].r2 >= CLEAN_R2 and not (q == "Conf" and flips)
                ]
                rough = [
                    q
                    for q in QUANTITIES
                    if q in finite and finite[q].r2 < CLEAN_R2 and not (q == "Conf" and flips)
                ]
                flip_text = (
                    " Confidence changes sign across these models, so its log|Conf| fit describes no power law of Confidence itself."
                    if flips and "Conf" in finite
                    else ""
                )
                out.append(
                    f"{dataset}, {top_group}: a clean power law (R² ≥ {CLEAN_R2}) for {', '.join(clean) or 'none'}; not for {', '.join(rough) or 'none'}.{flip_text}"
                )
            compared = [
                g for g in groups if (dataset, g, "EE") in index and (dataset, g, "CE") in index
            ]
            wins = [
                g for g in compared if index[(dataset, g, "EE")].r2 > index[(dataset, g, "CE")].r2
            ]
            paired = {
                r["group"]: r
                for r in ((data.fits or {}).get("r2_ee_vs_ce") or [])
                if isinstance(r, dict) and r.get("dataset") == dataset
            }
            if compared:
                text = f"{dataset}: EE's fit has a higher R² than CE's in {len(wins)} of {len(compared)} groups ({', '.join(compared)})"
                with_ci = {
                    g: paired[g]
                    for g in compared
                    if g in paired and isinstance(paired[g].get("difference_ci"), list)
                }
                if with_ci:
                    sure = [
                        g
                        for g, r in with_ci.items()
                        if r["difference_ci"][0] > 0 or r["difference_ci"][1] < 0
                    ]
                    detail = "; ".join(
                        f"{g} {r['difference_ee_minus_ce']:+.3f} [{r['difference_ci'][0]:+.3f}, {r['difference_ci'][1]:+.3f}]"
                        for g, r in with_ci.items()
                    )
                    text += f"; the paired bootstrap interval of R²(EE) − R²(CE) excludes 0 in {len(sure)} of {len(with_ci)} ({detail})"
                out.append(text + ".")
            deltas = {
                q: index[(dataset, top_group, q)]
                for q in ("EE", "SA", "Conf")
                if (dataset, top_group, q) in index
            }
            deltas = {
                q: r
                for q, r in deltas.items()
                if r.delta_alpha_vs_ce is not None and math.isfinite(r.delta_alpha_vs_ce)
            }
            if deltas:
                closest = min(deltas, key=lambda q: deltas[q].delta_alpha_vs_ce)  # type: ignore[arg-type,return-value]
                listed = ", ".join(
                    f"{q} {r.delta_alpha_vs_ce:.4f}{_ci_text(r.delta_alpha_ci)}"
                    for q, r in deltas.items()
                )
                out.append(
                    f"{dataset}, {top_group}: the exponent closest to CE's is {closest}'s (|Δα| {listed})."
                )
        cells = [c for c in data.final.get(dataset, []) if c.non_embedding_params > 0]
        if len(cells) >= 2 and cells[0].non_embedding_params != cells[-1].non_embedding_params:
            small, large = cells[0], cells[-1]
            shares = np.array(
                [
                    float(c.summary["error_entropy"]) / float(c.summary["cross_entropy"])
                    for c in cells
                ]
            )
            text = (
                f"{dataset}: EE is {100 * shares[0]:.1f}% of CE for the smallest model ({small.key.model}, N={_si(small.non_embedding_params)}) "
                f"and {100 * shares[-1]:.1f}% for the largest ({large.key.model}, N={_si(large.non_embedding_params)})"
            )
            log_n = np.log10([float(c.non_embedding_params) for c in cells])
            if len(cells) >= 3:
                slope = float(
                    np.polyfit(log_n, shares, 1)[0]
                )  # over every final model, not the two ends
                trend = "falls" if slope < 0 else "rises" if slope > 0 else "stays"
                text += f"; over all {len(cells)} final models its share {trend} by {100 * abs(slope):.2f} percentage points per tenfold increase in parameters (least squares)."
            else:
                trend = (
                    "falls"
                    if shares[-1] < shares[0]
                    else "rises"
                    if shares[-1] > shares[0]
                    else "stays"
                )
                text += f"; its share {trend} with size (two models only)."
            out.append(text)
        runs = data.dynamics.get(dataset, {})
        for model, run in list(runs.items())[:3]:
            first, last = run[0], run[-1]
            change = {
                q: float(last.summary[k]) - float(first.summary[k])
                for q, k in QUANTITY_KEYS.items()
            }
            words = ", ".join(
                f"{q} {'falls' if d < 0 else 'rises'} by {abs(d):.3f}" for q, d in change.items()
            )
            out.append(f"{dataset}, {model} from step {first.step} to {last.step}: {words} nats.")
    out.extend(_extrapolation_sentences(data))
    if not out:
        out.append("There are too few models and steps in this sweep to say what scales.")
    return out


def _ci_text(ci: tuple[float, float] | None) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci is not None else ""


def _conf_changes_sign(data: ReportData, dataset: str, group: str) -> bool:
    """Whether Confidence is positive for some final models of the group and negative for others."""
    from .powerlaw import sign_changes

    members = [c for c in data.final.get(dataset, []) if group == ALL_GROUP or c.family == group]
    return sign_changes(np.array([float(c.summary["confidence"]) for c in members]))


def _extrapolation_sentences(data: ReportData) -> list[str]:
    out = []
    for r in (data.fits or {}).get("extrapolation_ce_vs_ee") or []:
        if not isinstance(r, dict):
            continue
        ce, ee = r.get("ce_mean_abs_relative_error"), r.get("ee_mean_abs_relative_error")
        if not isinstance(ce, (int, float)) or not isinstance(ee, (int, float)):
            continue
        verdict = "better than" if ee < ce else "worse than" if ee > ce else "exactly as well as"
        text = (
            f"{r.get('dataset')}, {r.get('group')}: fitted on all but the {r.get('holdout')} largest model(s), EE extrapolates {verdict} CE "
            f"(mean |relative error| EE {100 * ee:.2f}% vs CE {100 * ce:.2f}%"
        )
        ci = _pair(r.get("difference_ci"))
        if ci is not None:
            sure = (
                "excludes 0"
                if ci[0] > 0 or ci[1] < 0
                else "includes 0, so the difference is not clear"
            )
            text += f"; the 95% interval of CE − EE, [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}] points, {sure}"
        out.append(text + ").")
    return out


# ---- writing ----------------------------------------------------------------------------------


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
    return f'<table id="{table.ident}"><caption>{html.escape(table.title)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}'


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}caption{font-weight:600;text-align:left;padding:.3em 0}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right}th{background:#f0f0f0}td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:.9em;color:#444}
.note{color:#7a4b00;font-size:.9em}ul.summary li{margin:.3em 0}
"""


def write_report(
    data: ReportData, figs: Sequence[FigureFile], notes: Sequence[str]
) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` into the sweep folder."""
    tables = fit_tables(data)
    comps = components_table(data)
    extrap = extrapolation_table(data)
    saturating = saturating_table(data)
    summary = summary_sentences(data)
    settings = settings_rows(data)
    all_notes = [*data.notes, *notes]

    md = [
        "# errorentropy report",
        "",
        "CE = EE + SA − Conf for every model of the sweep, and which part follows a power law in non-embedding parameters.",
        "",
    ]
    md += ["## Summary", "", *[f"- {s}" for s in summary], ""]
    md += [
        "## Settings",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in settings],
        "",
    ]
    md += ["## Scaling fits", "", *[_md_table(t) for t in tables], _md_table(comps)]
    md += [
        "## Extrapolation",
        "",
        _md_table(extrap)
        if extrap
        else "The fit did not run an extrapolation test (it needs the bootstrap fit and enough models per group).",
        "",
    ]
    if saturating:
        md += [_md_table(saturating)]
    md += ["## Figures", ""]
    for f in figs:
        rel_png, rel_svg = f.png.relative_to(data.sweep_dir), f.svg.relative_to(data.sweep_dir)
        md += [
            f"![{f.caption}]({rel_png.as_posix()})",
            "",
            f"*{f.caption}* ([SVG]({rel_svg.as_posix()}))",
            "",
        ]
    if all_notes:
        md += ["## Notes", "", *[f"- {n}" for n in all_notes], ""]
    md_path = data.sweep_dir / "report.md"
    atomic_write_text(md_path, "\n".join(md))

    h = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>errorentropy report: {html.escape(data.sweep_dir.name)}</title><style>{_CSS}</style></head><body>",
        "<h1>errorentropy report</h1><p>CE = EE + SA − Conf for every model of the sweep, and which part follows a power law in non-embedding parameters.</p>",
        '<h2>Summary</h2><ul class="summary">',
        *[f"<li>{html.escape(s)}</li>" for s in summary],
        "</ul>",
        '<h2>Settings</h2><table id="settings"><tbody>',
        *[f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in settings],
        "</tbody></table>",
        "<h2>Scaling fits</h2>",
        *[_html_table(t) for t in tables],
        _html_table(comps),
        "<h2>Extrapolation</h2>",
        _html_table(extrap)
        if extrap
        else '<p class="note">The fit did not run an extrapolation test.</p>',
        _html_table(saturating) if saturating else "",
        "<h2>Figures</h2>",
    ]
    for f in figs:
        encoded = base64.b64encode(f.png.read_bytes()).decode("ascii")
        h.append(
            f'<figure id="{html.escape(f.ident)}"><img class="figure" alt="{html.escape(f.caption)}" src="data:image/png;base64,{encoded}"><figcaption>{html.escape(f.caption)}</figcaption></figure>'
        )
    if all_notes:
        h += [
            '<h2>Notes</h2><ul class="notes">',
            *[f'<li class="note">{html.escape(n)}</li>' for n in all_notes],
            "</ul>",
        ]
    h.append("</body></html>\n")
    html_path = data.sweep_dir / "report.html"
    atomic_write_text(html_path, "\n".join(h))
    return md_path, html_path


def build_report(
    sweep_dir: Path | str, *, run_fit: bool = True, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Collect, draw and write the whole report; returns the paths written and the notes."""
    data = collect(sweep_dir, run_fit=run_fit, n_boot=n_boot, seed=seed)
    figs, notes = draw_figures(data, Path(sweep_dir) / FIGURES_DIR)
    md_path, html_path = write_report(data, figs, notes)
    return {
        "report_md": str(md_path),
        "report_html": str(html_path),
        "figures": [str(f.png) for f in figs] + [str(f.svg) for f in figs],
        "notes": [*data.notes, *notes],
    }
