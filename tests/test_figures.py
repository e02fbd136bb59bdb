"""Each figure function on plain data: labelled axes, a legend, and the plotted data equal to the
input."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from errorentropy.report import figures


def _visible(fig: matplotlib.figure.Figure) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def _check_labelled(fig: matplotlib.figure.Figure) -> None:
    for ax in _visible(fig):
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
        assert ax.get_legend() is not None


def test_backend_is_agg() -> None:
    assert matplotlib.get_backend().lower() == "agg"


def test_components_vs_step_plots_the_values() -> None:
    series = [
        figures.StepSeries(
            "m",
            [0, 16, 1000],
            {
                "CE": [3.0, 2.0, 1.0],
                "EE": [2.5, 1.5, 0.7],
                "SA": [0.4, 0.3, 0.5],
                "Conf": [0.1, -0.2, 0.2],
            },
        )
    ]
    fig = figures.components_vs_step(series)
    _check_labelled(fig)
    (ax,) = _visible(fig)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"CE", "EE", "SA", "Conf"}
    np.testing.assert_array_equal(lines["Conf"].get_ydata(), [0.1, -0.2, 0.2])
    np.testing.assert_array_equal(lines["CE"].get_xdata(), [0, 16, 1000])
    assert ax.get_xscale() == "symlog"


def test_rank_and_pq_figures_shift_rank_by_one() -> None:
    ranks = np.array([0, 1, 5])
    p = np.array([0.7, 0.2, 0.1])
    q = np.array([0.5, 0.3, 0.2])
    curves = {
        "m": [figures.RankCurve("0", ranks, p, q), figures.RankCurve("100", ranks, p[::-1], q)]
    }
    fig4 = figures.rank_distribution(curves)
    _check_labelled(fig4)
    ax = _visible(fig4)[0]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), ranks + 1)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    fig6 = figures.p_against_q(curves)
    _check_labelled(fig6)
    ax6 = _visible(fig6)[0]
    first, diag = ax6.get_lines()[0], ax6.get_lines()[-1]
    np.testing.assert_array_equal(first.get_xdata(), q)
    np.testing.assert_array_equal(first.get_ydata(), p)
    assert diag.get_label() == "p = q"
    np.testing.assert_array_equal(diag.get_xdata(), diag.get_ydata())


def test_profile_skips_unobserved_ranks() -> None:
    mean = np.full((16, 32), np.nan)
    mean[0] = np.geomspace(0.9, 1e-6, 32)
    mean[2] = np.geomspace(0.5, 1e-6, 32)
    counts = np.zeros(16, dtype=int)
    counts[[0, 2]] = [10, 3]
    fig = figures.sorted_probability_profile({"m": (mean, counts)}, ranks=(0, 1, 2, 4))
    _check_labelled(fig)
    labels = [
        line.get_label()
        for line in _visible(fig)[0].get_lines()
        if not line.get_label().startswith("_")
    ]
    assert labels == ["r = 0 (n = 10)", "r = 2 (n = 3)"]


def test_scaling_draws_the_power_law_and_abs_values() -> None:
    n = [1e6, 1e7, 1e8]
    fam = figures.FamilyPoints(
        "fam",
        n,
        {
            "CE": [4.0, 3.0, 2.5],
            "EE": [3.0, 2.0, 1.5],
            "SA": [0.5, 0.6, 0.5],
            "Conf": [-0.5, -0.4, -0.3],
        },
        {"EE": (-0.2, 4.0)},
    )
    fig = figures.scaling([fam], overall={"CE": (-0.1, 3.0)})
    _check_labelled(fig)
    axes = {ax.get_title(): ax for ax in _visible(fig)}
    ee_lines = axes[figures.QUANTITY_NAMES["EE"]].get_lines()
    line = ee_lines[1]
    np.testing.assert_allclose(
        line.get_ydata(), np.exp(4.0 - 0.2 * np.log(line.get_xdata())), rtol=1e-12
    )
    assert "α = -0.200" in ee_lines[0].get_label()
    conf_points = axes[figures.QUANTITY_NAMES["Conf"]].get_lines()[0]
    np.testing.assert_array_equal(conf_points.get_ydata(), [0.5, 0.4, 0.3])
    ce_labels = [ln.get_label() for ln in axes[figures.QUANTITY_NAMES["CE"]].get_lines()]
    assert ce_labels == ["fam", "all models (α = -0.100)"]
    assert len(axes[figures.QUANTITY_NAMES["SA"]].get_lines()) == 1  # no fit: no line


def test_shares_are_ratios_sorted_by_size() -> None:
    fam = figures.FamilyPoints(
        "fam",
        [1e8, 1e6],
        {"CE": [2.0, 4.0], "EE": [1.0, 3.6], "SA": [1.5, 1.0], "Conf": [0.5, 0.6]},
    )
    fig = figures.shares([fam])
    _check_labelled(fig)
    ee = _visible(fig)[0].get_lines()[0]
    np.testing.assert_array_equal(ee.get_xdata(), [1e6, 1e8])
    np.testing.assert_allclose(ee.get_ydata(), [0.9, 0.5])


def test_save_figure_writes_png_and_svg(tmp_path: Path) -> None:
    fam = figures.FamilyPoints(
        "fam",
        [1e6, 1e7],
        {"CE": [2.0, 1.0], "EE": [1.0, 0.5], "SA": [0.5, 0.3], "Conf": [0.2, 0.1]},
    )
    before = plt.get_fignums()
    png, svg = figures.save_figure(figures.shares([fam]), tmp_path / "sub" / "f")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert plt.get_fignums() == before  # pyplot holds nothing: no leak across a long report


@pytest.mark.parametrize("n_panels", [1, 4, 7])
def test_grid_hides_spare_panels(n_panels: int) -> None:
    series = [figures.StepSeries(f"m{i}", [0, 1], {"CE": [1.0, 0.5]}) for i in range(n_panels)]
    fig = figures.components_vs_step(series)
    assert len(_visible(fig)) == n_panels
