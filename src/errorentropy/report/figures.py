"""The paper's figures, drawn with matplotlib (Agg backend) from plain numbers.

Every function takes plain data (lists, dicts, numpy arrays), never a sweep folder, and returns a
:class:`matplotlib.figure.Figure`; :func:`save_figure` writes it as PNG and SVG. The numbering
follows the paper: Fig. 3 components against training step, Fig. 4 the rank distribution p_e,
Fig. 5 the sorted-probability profile, Fig. 6 p_e against q_e, Fig. 7 each quantity against
non-embedding parameters with its power-law fit, Fig. 8 each component's share of CE. Beyond the
paper: :func:`rbp_exponents` (the relative-based law's alpha_k and R^2 against k, beside CE's and
EE's) and :func:`convergence_curves` (EE and the bias left in it against N).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: safe in CI and on clusters

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation  # noqa: E402

from errorentropy.stats.quantities import CE, COMPONENTS, CONF, EE, SA
from errorentropy.stats.quantities import QUANTITIES as _QUANTITIES
from errorentropy.storage import atomic_write_bytes

QUANTITIES: tuple[str, ...] = tuple(q.key for q in _QUANTITIES)  # panel and legend order
QUANTITY_NAMES: dict[str, str] = {q.key: q.label for q in _QUANTITIES}  # panel titles
QUANTITY_COLOURS: dict[str, str] = {
    CE.key: "black",
    EE.key: "tab:blue",
    SA.key: "tab:orange",
    CONF.key: "tab:green",
}
_MARKERS = "osD^vP*Xph<>"
RASTER_ABOVE = 2000  # scatters with more points than this are rasterised inside the SVG


@dataclass(frozen=True)
class StepSeries:
    """One model's components over training: ``values[q][i]`` is quantity q (nats) at
    ``steps[i]``."""

    label: str
    steps: Sequence[int]
    values: Mapping[str, Sequence[float]]


@dataclass(frozen=True)
class RankCurve:
    """The RBE distribution of one checkpoint: observed ranks e, p_e and q_e (q optional)."""

    label: str
    ranks: np.ndarray
    p: np.ndarray
    q: np.ndarray | None = None


@dataclass(frozen=True)
class FamilyPoints:
    """One family's models at their final revision: non-embedding parameters and per-quantity
    values.

    ``fits[q] = (alpha, c)`` is the power law ``log|M| = c + alpha log N`` to draw, when there is
    one.
    """

    family: str
    params: Sequence[int]
    values: Mapping[str, Sequence[float]]
    fits: Mapping[str, tuple[float, float]] = field(default_factory=dict)


class _PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis labels as plain numbers (0.65, 1e+06 stays 1e+06) on the ticks matplotlib
    chooses to label."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:.3g}" if super().__call__(x, pos) else ""


def _plain_log_y(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(_PlainLogFormatter())
    ax.yaxis.set_minor_formatter(_PlainLogFormatter())


def _grid(
    n_panels: int, max_cols: int = 3, panel: tuple[float, float] = (4.2, 3.4)
) -> tuple[Figure, list[Axes]]:
    cols = max(1, min(max_cols, n_panels))
    rows = max(1, -(-n_panels // cols))
    # A bare Figure, not pyplot's: nothing is registered globally, so nothing leaks in a long
    # report.
    fig = Figure(figsize=(panel[0] * cols, panel[1] * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _label(
    ax: Axes,
    title: str,
    xlabel: str | None,
    ylabel: str,
    which: Literal["major", "minor", "both"] = "major",
) -> None:
    """A panel's axis labels, its title and a light grid, the same in every figure."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which=which)


def _finish(fig: Figure, title: str) -> Figure:
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return fig


def _many(points: Sequence[float] | np.ndarray) -> bool:
    # A real vocabulary gives tens of thousands of observed ranks; as SVG paths that is megabytes,
    # so such scatters are embedded in the SVG as a bitmap (axes, text and lines stay vector).
    return len(points) > RASTER_ABOVE


def _step_axis(ax: Axes) -> None:
    # Step 0 is the random initialisation and belongs on the plot: linear below 1, log above.
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("training step")


def components_vs_step(
    series: Sequence[StepSeries], title: str = "Fig. 3: components against training step"
) -> Figure:
    """Fig. 3: CE, EE, SA and Conf (nats per token) against training step, one panel per model."""
    fig, axes = _grid(len(series))
    for ax, one in zip(axes, series):
        for q in QUANTITIES:
            if q in one.values:
                ax.plot(
                    one.steps, one.values[q], marker="o", ms=3, color=QUANTITY_COLOURS[q], label=q
                )
        _step_axis(ax)
        _label(ax, one.label, None, "nats per token")
        ax.legend(fontsize=8)
    return _finish(fig, title)


def rank_distribution(
    panels: Mapping[str, Sequence[RankCurve]],
    title: str = "Fig. 4: RBE distribution p_e at several steps",
) -> Figure:
    """Fig. 4: p_e against rank (log-log; the x axis is e + 1 so the top-1 rank e = 0 shows),
    one panel per model, one line per step."""
    fig, axes = _grid(len(panels))
    for ax, (label, curves) in zip(axes, panels.items()):
        colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, max(1, len(curves))))
        for colour, curve in zip(colours, curves):
            ax.plot(
                np.asarray(curve.ranks) + 1,
                curve.p,
                ".",
                ms=3,
                color=colour,
                label=curve.label,
                alpha=0.8,
                rasterized=_many(curve.p),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_y(ax)
        _label(ax, label, "rank e + 1 of the ground-truth token", "p_e (share of tokens)")
        ax.legend(fontsize=8, title="step", title_fontsize=8)
    return _finish(fig, title)


def sorted_probability_profile(
    panels: Mapping[str, tuple[np.ndarray, Sequence[int] | np.ndarray]],
    ranks: Sequence[int] = (0, 1, 2, 4, 8),
    title: str = "Fig. 5: mean sorted probabilities when the ground truth sits at rank r",
) -> Figure:
    """Fig. 5: for tokens whose ground truth has rank r, the mean j-th largest probability
    against j.

    ``panels[label] = (mean, counts)`` with ``mean`` of shape ``[R, K]`` (NaN rows for ranks
    never seen) and ``counts[r]`` the tokens behind row r. A dotted marker shows where the ground
    truth sits.
    """
    fig, axes = _grid(len(panels))
    for ax, (label, (mean, counts)) in zip(axes, panels.items()):
        mean = np.asarray(mean, dtype=np.float64)
        shown = [
            r for r in ranks if r < mean.shape[0] and counts[r] > 0 and np.all(np.isfinite(mean[r]))
        ]
        colours = matplotlib.colormaps["plasma"](np.linspace(0.0, 0.85, max(1, len(shown))))
        positions = np.arange(1, mean.shape[1] + 1)
        for colour, r in zip(colours, shown):
            ax.plot(
                positions,
                mean[r],
                marker="o",
                ms=2.5,
                color=colour,
                label=f"r = {r} (n = {int(counts[r])})",
            )
            ax.axvline(r + 1, color=colour, ls=":", lw=1)
        ax.set_yscale("log")
        _plain_log_y(ax)
        _label(ax, label, "sorted position j (1 = most probable)", "mean probability")
        if shown:
            ax.legend(fontsize=8)
    return _finish(fig, title)


def p_against_q(
    panels: Mapping[str, Sequence[RankCurve]],
    title: str = "Fig. 6: p_e against q_e at several steps",
) -> Figure:
    """Fig. 6: p_e against q_e (log-log) with the line p = q, one panel per model, one colour
    per step.

    SA is KL(p || q), so the points close in on the diagonal as Self-Alignment falls.
    """
    fig, axes = _grid(len(panels))
    for ax, (label, curves) in zip(axes, panels.items()):
        colours = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.9, max(1, len(curves))))
        low, high = np.inf, 0.0
        for colour, curve in zip(colours, curves):
            if curve.q is None:
                continue
            ax.plot(
                curve.q,
                curve.p,
                ".",
                ms=3,
                color=colour,
                label=curve.label,
                alpha=0.7,
                rasterized=_many(curve.p),
            )
            both = np.concatenate([np.asarray(curve.p), np.asarray(curve.q)])
            both = both[both > 0]
            if both.size:
                low, high = min(low, both.min()), max(high, both.max())
        if high > 0:
            ax.plot([low, high], [low, high], "k--", lw=1, label="p = q")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_y(ax)
        _label(
            ax, label, "q_e (normalised geometric-mean score)", "p_e (share of tokens at rank e)"
        )
        ax.legend(fontsize=8, title="step", title_fontsize=8)
    return _finish(fig, title)


def _power_law_line(ax: Axes, params: Sequence[int], alpha: float, c: float, colour: str) -> None:
    n = np.geomspace(min(params), max(params), 50)
    ax.plot(n, np.exp(c + alpha * np.log(n)), "-", color=colour, lw=1.2)


def scaling(
    families: Sequence[FamilyPoints],
    overall: Mapping[str, tuple[float, float]] | None = None,
    title: str = "Fig. 7: each quantity against non-embedding parameters",
) -> Figure:
    """Fig. 7: |M| against non-embedding parameters N (log-log) for M in CE, EE, SA, Conf.

    One marker per family; where ``fits`` holds a power law for a family, its line is drawn in the
    family's colour (the fit is ``log|M| = c + alpha log N``, so the absolute value is plotted).
    ``overall[q] = (alpha, c)``, the fit over all models together, is drawn dashed grey.
    """
    every = [n for fam in families for n in fam.params]
    fig, axes = _grid(len(QUANTITIES), max_cols=2)
    colours = matplotlib.colormaps["tab10"](np.arange(len(families)) % 10)
    for ax, q in zip(axes, QUANTITIES):
        for i, (colour, fam) in enumerate(zip(colours, families)):
            values = np.abs(np.asarray(fam.values.get(q, []), dtype=np.float64))
            if values.size == 0:
                continue
            fit = fam.fits.get(q)
            label = fam.family if fit is None else f"{fam.family} (α = {fit[0]:.3f})"
            ax.plot(
                fam.params, values, _MARKERS[i % len(_MARKERS)], color=colour, label=label, ms=5
            )
            if fit is not None:
                _power_law_line(ax, fam.params, fit[0], fit[1], colour)
        if overall and q in overall and every:
            alpha, c = overall[q]
            n = np.geomspace(min(every), max(every), 50)
            ax.plot(
                n,
                np.exp(c + alpha * np.log(n)),
                "--",
                color="0.45",
                lw=1.2,
                label=f"all models (α = {alpha:.3f})",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_y(ax)
        _label(
            ax,
            QUANTITY_NAMES[q],
            "non-embedding parameters N",
            f"|{q}| (nats per token)",
            which="both",
        )
        ax.legend(fontsize=7)
    return _finish(fig, title)


def shares(
    families: Sequence[FamilyPoints], title: str = "Fig. 8: each component's share of cross-entropy"
) -> Figure:
    """Fig. 8: EE/CE, SA/CE and Conf/CE against non-embedding parameters (x log), one series per
    family."""
    fig, axes = _grid(3)
    colours = matplotlib.colormaps["tab10"](np.arange(len(families)) % 10)
    for ax, q in zip(axes, [q.key for q in COMPONENTS]):
        for i, (colour, fam) in enumerate(zip(colours, families)):
            ce = np.asarray(fam.values.get("CE", []), dtype=np.float64)
            part = np.asarray(fam.values.get(q, []), dtype=np.float64)
            if ce.size == 0 or part.size != ce.size:
                continue
            order = np.argsort(np.asarray(fam.params))
            ax.plot(
                np.asarray(fam.params)[order],
                (part / ce)[order],
                marker=_MARKERS[i % len(_MARKERS)],
                color=colour,
                label=fam.family,
                ms=5,
            )
        ax.set_xscale("log")
        _label(ax, f"share of {QUANTITY_NAMES[q]}", "non-embedding parameters N", f"{q} / CE")
        ax.legend(fontsize=8)
    return _finish(fig, title)


@dataclass(frozen=True)
class ExponentSeries:
    """One group's relative-based fits: for each k, alpha_k (with its interval, or None) and R^2
    (None where the fit was skipped); ``reference[q] = (alpha, r2)`` for CE and EE of the same
    group, drawn as horizontal lines."""

    label: str
    ks: Sequence[int]
    alpha: Sequence[float | None]
    alpha_ci: Sequence[tuple[float, float] | None]
    r2: Sequence[float | None]
    reference: Mapping[str, tuple[float, float | None]] = field(default_factory=dict)


def _present(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def rbp_exponents(
    series: Sequence[ExponentSeries],
    title: str = "Relative-based law: alpha_k and R^2 of -log RBP_k against k",
) -> Figure:
    """alpha_k (left) and R^2 (right) of ``log(-log RBP_k) = c + alpha_k log N`` against k (log
    x), one colour per group, with CE's (dotted) and EE's (dashed) alpha and R^2 of the same
    group as horizontal lines."""
    fig, (left, right) = _grid(2, max_cols=2)
    colours = matplotlib.colormaps["tab10"](np.arange(len(series)) % 10)
    styles = {CE.key: ":", EE.key: "--"}
    for i, (colour, one) in enumerate(zip(colours, series)):
        ks = np.asarray(one.ks, dtype=np.float64)
        alpha, r2 = _present(one.alpha), _present(one.r2)
        errors = np.array(
            [
                [a - ci[0], ci[1] - a] if ci is not None and np.isfinite(a) else [np.nan, np.nan]
                for a, ci in zip(alpha, one.alpha_ci)
            ]
        ).reshape(-1, 2)
        marker = _MARKERS[i % len(_MARKERS)]
        left.errorbar(ks, alpha, yerr=errors.T, fmt=marker + "-", color=colour, ms=5, capsize=3)
        left.plot([], [], marker + "-", color=colour, label=f"{one.label}: RBP_k")
        right.plot(ks, r2, marker + "-", color=colour, ms=5, label=f"{one.label}: RBP_k")
        for q, (ref_alpha, ref_r2) in one.reference.items():
            style = styles.get(q, "-.")
            left.axhline(ref_alpha, color=colour, ls=style, lw=1, label=f"{one.label}: {q}")
            if ref_r2 is not None:
                right.axhline(ref_r2, color=colour, ls=style, lw=1, label=f"{one.label}: {q}")
    for ax, label in ((left, "alpha (slope of log quantity on log N)"), (right, "R^2 (log-log)")):
        ax.set_xscale("log")
        ax.set_xlabel("k (RBP_k: share of tokens ranked below k)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    left.set_title("exponents", fontsize=10)
    right.set_title("goodness of fit", fontsize=10)
    return _finish(fig, title)


@dataclass(frozen=True)
class BiasPoint:
    """One cell's EE and the bias left in it (nats): plug-in EE, the estimated bias and its
    interval (None with fewer than 2 documents), and the bias-corrected estimators."""

    n_params: float
    plug_in: float
    bias: float | None
    interval: tuple[float, float] | None
    miller_madow: float
    grassberger: float
    chao_shen: float


def convergence_curves(
    points: Sequence[BiasPoint],
    title: str = "EE and the bias left in it",
    verdict: str = "",
) -> Figure:
    """EE against model size (log x): the plug-in EE, the plug-in plus the estimated bias with
    its interval as an error bar, and Miller-Madow, Grassberger and Chao-Shen; ``verdict`` (on
    EE's exponent) titles the panel."""
    fig, axes = _grid(1, max_cols=1, panel=(7.0, 4.2))
    ax = axes[0]
    ordered = sorted(points, key=lambda p: p.n_params)
    n = np.array([p.n_params for p in ordered], dtype=np.float64)
    colour = QUANTITY_COLOURS[EE.key]
    ax.plot(n, [p.plug_in for p in ordered], "o-", color=colour, label="plug-in EE")
    have = [p for p in ordered if p.bias is not None and p.interval is not None]
    if have:
        x = np.array([p.n_params for p in have], dtype=np.float64)
        y = np.array([p.plug_in + (p.bias or 0.0) for p in have])
        lo = np.array([p.plug_in + p.interval[0] for p in have if p.interval is not None])
        hi = np.array([p.plug_in + p.interval[1] for p in have if p.interval is not None])
        yerr = np.vstack([np.maximum(y - lo, 0.0), np.maximum(hi - y, 0.0)])
        ax.errorbar(
            x,
            y,
            yerr=yerr,
            fmt="D",
            color="black",
            ms=4,
            capsize=3,
            label="EE + bias left (95% interval)",
        )
    styles = (
        ("miller_madow", "Miller-Madow", "s--", "tab:purple"),
        ("grassberger", "Grassberger", "^:", "tab:green"),
        ("chao_shen", "Chao-Shen", "v:", "tab:orange"),
    )
    for attr, label, style, c in styles:
        ax.plot(n, [getattr(p, attr) for p in ordered], style, color=c, label=label, ms=4)
    ax.set_xscale("log")
    _label(ax, verdict, "non-embedding parameters N", "EE (nats per token)", which="both")
    ax.title.set_fontsize(9)  # the verdict is a long line
    ax.legend(fontsize=8)
    return _finish(fig, title)


def save_figure(fig: Figure, stem: Path | str, dpi: int = 110) -> tuple[Path, Path]:
    """Write ``stem.png`` and ``stem.svg``; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    for path, options in ((png, {"dpi": dpi, "format": "png"}), (svg, {"format": "svg"})):
        buffer = io.BytesIO()
        fig.savefig(buffer, **options)
        atomic_write_bytes(path, buffer.getvalue())
    return png, svg
