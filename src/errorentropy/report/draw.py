"""The report's figures, drawn from what :mod:`errorentropy.report.collect` gathered: Fig. 3, 4
and 6 from the models scored at several training steps, Fig. 5 from the sorted-probability
profiles, Fig. 7 and 8 from the final revisions with their fitted lines, the RBP_k exponents and
EE with the bias left in it against N. A figure the data cannot support is left out with a note
saying why. The drawing itself (matplotlib) is :mod:`errorentropy.report.figures`, imported when
a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from errorentropy.fits.fit import FITS_FILE
from errorentropy.fits.powerlaw import MIN_MODELS as MIN_MODELS_FOR_FIT
from errorentropy.fits.records import ALL_GROUP
from errorentropy.report.collect import ReportData, pick_steps
from errorentropy.report.tables import hidden, shown_exponent, si
from errorentropy.stats.profile import RankProfile
from errorentropy.stats.quantities import CE, EE, QUANTITIES
from errorentropy.sweep.cells import CellRecord, slug

if TYPE_CHECKING:
    from errorentropy.report import figures

MAX_PANELS = 6
PROFILE_FILE = "profile.json"


@dataclass(frozen=True)
class FigureFile:
    """One drawn figure: its id (``fig7-wikipedia``), caption and files."""

    ident: str
    caption: str
    png: Path
    svg: Path


def _label(cell: CellRecord) -> str:
    return f"{cell.key.model} ({cell.family}, N={si(cell.non_embedding_params)})"


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
        if hidden(data.fits, dataset, group) or not any(r.fitted for r in mine):
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
    """EE, the bias left in it and the bias-corrected estimators against N, final models of a
    dataset; titled by whether EE's exponent has settled."""
    from errorentropy.report import figures

    rows = [r for r in data.fits.convergence if r.dataset == dataset and r.final]
    if not rows:
        notes.append(
            f"{dataset}: the fits hold no bias check of EE ({FITS_FILE} predates it, or no cell "
            "kept its tokens), so the figure of EE and the bias left in it is omitted."
        )
        return
    points = [
        figures.BiasPoint(
            r.non_embedding_params,
            r.check.error_entropy,
            r.check.bias,
            r.check.interval,
            r.check.error_entropy_miller_madow,
            r.check.error_entropy_grassberger,
            r.check.error_entropy_chao_shen,
        )
        for r in rows
    ]
    exponent = shown_exponent(data.fits, dataset)
    verdict = ""
    if exponent is not None and exponent.settled is not None:
        c = exponent.check
        word = "settled" if c.settled else "NOT settled"
        allowed = c.tolerance * (c.alpha_halfwidth or 0.0)
        verdict = (
            f"EE's exponent ({exponent.group}) {word}: shift on halves {c.shift:+.4f}, "
            f"bound {c.shift_bound:.4f}, allowed {allowed:.4f}"
        )
    save(
        figures.convergence_curves(points, f"EE and the bias left in it ({dataset})", verdict),
        f"convergence-{slug(dataset)}",
        f"EE and the bias left in it ({dataset}): the plug-in EE of each final model, the same "
        "plus the estimated bias left (95% interval, from random halves of the documents) and "
        "the Miller-Madow, Grassberger and Chao-Shen estimates, against N.",
    )
