"""Power-law, saturating and extrapolation maths against exact data and numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from errorentropy.fits.powerlaw import (
    FitInputError,
    default_holdout,
    extrapolate,
    fit_lines,
    fit_power_law,
    fit_saturating,
    sign_changes,
    split_holdout,
)

SIZES = np.array([1.4e7, 7e7, 1.6e8, 4.1e8, 1e9, 2.8e9, 6.9e9, 1.2e10])


@pytest.mark.parametrize("alpha,coef", [(-0.076, 12.0), (-0.3, 1e3), (0.05, 0.2), (0.0, 3.0)])
def test_exact_power_law_is_recovered_with_r2_one(alpha, coef):
    m = coef * SIZES**alpha
    fit = fit_power_law(SIZES, m)
    assert fit.alpha == pytest.approx(alpha, abs=1e-12)
    assert fit.c == pytest.approx(np.log(coef), abs=1e-10)
    assert fit.n_points == SIZES.size
    if alpha == 0.0:
        assert np.isnan(fit.r2)  # nothing to explain: SS_tot = 0
    else:
        assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(fit.predict(SIZES), m, rtol=1e-10)


def test_negative_values_are_fitted_on_their_absolute_value():
    m = -0.4 * SIZES**0.1  # Confidence can be negative throughout
    fit = fit_power_law(SIZES, m)
    assert fit.alpha == pytest.approx(0.1, abs=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_noisy_fit_matches_polyfit_and_linregress():
    rng = np.random.default_rng(3)
    m = 5.0 * SIZES**-0.12 * np.exp(rng.normal(0, 0.05, SIZES.size))
    fit = fit_power_law(SIZES, m)
    slope, intercept = np.polyfit(np.log(SIZES), np.log(m), 1)
    ref = stats.linregress(np.log(SIZES), np.log(m))
    assert fit.alpha == pytest.approx(slope, rel=1e-10)
    assert fit.c == pytest.approx(intercept, rel=1e-10)
    assert fit.alpha == pytest.approx(ref.slope, rel=1e-10)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-10)
    assert 0.0 < fit.r2 < 1.0


def test_batched_lines_equal_one_fit_per_row():
    rng = np.random.default_rng(4)
    x = np.log(SIZES)
    y = rng.normal(size=(50, x.size)) + 0.3 * x
    alpha, c, r2 = fit_lines(x, y)
    for i in range(0, 50, 7):
        ref = stats.linregress(x, y[i])
        assert alpha[i] == pytest.approx(ref.slope, rel=1e-10)
        assert c[i] == pytest.approx(ref.intercept, rel=1e-10)
        assert r2[i] == pytest.approx(ref.rvalue**2, rel=1e-10)
    y[3, 2] = np.nan
    alpha, _, r2 = fit_lines(x, y)
    assert np.isnan(alpha[3]) and np.isnan(r2[3]) and np.isfinite(alpha[4])


@settings(max_examples=40, deadline=None)
@given(alpha=st.floats(-1.0, 1.0), log_k=st.floats(-5, 5))
def test_rescaling_values_shifts_only_the_intercept(alpha, log_k):
    rng = np.random.default_rng(0)
    m = SIZES**alpha * np.exp(rng.normal(0, 0.1, SIZES.size))
    base, scaled = fit_power_law(SIZES, m), fit_power_law(SIZES, np.exp(log_k) * m)
    assert scaled.alpha == pytest.approx(base.alpha, abs=1e-9)
    assert scaled.c == pytest.approx(base.c + log_k, abs=1e-9)
    assert scaled.r2 == pytest.approx(base.r2, abs=1e-9)


@pytest.mark.parametrize(
    "n,m,match",
    [
        ([1e6, 1e7], [2.0, 1.5], "at least 3"),
        ([1e6, 1e7, 1e8], [2.0, 0.0, 1.5], "exactly zero"),
        ([1e6, 1e7, 1e8], [2.0, np.nan, 1.5], "not finite"),
        ([1e6, 0.0, 1e8], [2.0, 1.7, 1.5], "positive"),
        ([1e6, 1e6, 1e6], [2.0, 1.7, 1.5], "same parameter count"),
    ],
)
def test_unfittable_input_raises_a_clear_error(n, m, match):
    with pytest.raises(FitInputError, match=match):
        fit_power_law(np.array(n), np.array(m))


@pytest.mark.parametrize(
    "a,alpha,e", [(5.0, 0.3, 1.7), (400.0, 0.34, 1.69), (2.0, 0.1, 0.0), (30.0, 0.2, -0.5)]
)
def test_saturating_fit_recovers_exact_parameters(a, alpha, e):
    m = a * SIZES**-alpha + e
    fit = fit_saturating(SIZES, m)
    assert fit.converged, fit.reason
    assert fit.a == pytest.approx(a, rel=1e-5)
    assert fit.alpha == pytest.approx(alpha, rel=1e-5)
    assert fit.e == pytest.approx(e, abs=1e-6 * max(1.0, abs(e)))
    assert fit.r2 == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(fit.predict(SIZES), m, rtol=1e-8)


def test_saturating_fit_matches_a_direct_curve_fit_on_noisy_data():
    from scipy.optimize import curve_fit

    rng = np.random.default_rng(5)
    m = 8.0 * SIZES**-0.25 + 1.8 + rng.normal(0, 0.005, SIZES.size)
    fit = fit_saturating(SIZES, m)
    ref, _ = curve_fit(
        lambda n, a, al, e: a * n**-al + e,
        SIZES,
        m,
        p0=(fit.a * 1.1, fit.alpha * 0.9, fit.e),
        maxfev=50000,
    )
    sse = lambda p: float(np.sum((p[0] * SIZES ** -p[1] + p[2] - m) ** 2))  # noqa: E731
    assert sse((fit.a, fit.alpha, fit.e)) <= sse(ref) * (1 + 1e-6)


def test_saturating_fit_recovers_a_rising_curve_towards_a_ceiling():
    m = -3.0 * SIZES**-0.2 + 0.9  # rises with N towards 0.9
    fit = fit_saturating(SIZES, m)
    assert fit.converged, fit.reason
    assert (fit.a, fit.alpha, fit.e) == (
        pytest.approx(-3.0, rel=1e-5),
        pytest.approx(0.2, rel=1e-5),
        pytest.approx(0.9, abs=1e-6),
    )


@pytest.mark.parametrize(
    "m,why",
    [
        (0.1 * np.log(SIZES), "no asymptote"),  # rises without bending: no ceiling
        (5.0 - 0.1 * np.log(SIZES), "no asymptote"),  # falls without bending: no floor
        (np.full(SIZES.size, 2.5), "same"),
    ],
)
def test_saturating_fit_without_an_asymptote_says_so_instead_of_reporting_nonsense(m, why):
    """Unbounded, these 'converged' to E = -4347 and a = 4352 with R^2 = 1 (a line in log N is the
    limit alpha -> 0, E -> -inf): the floor would be printed as a finding."""
    fit = fit_saturating(SIZES, m)
    assert not fit.converged and why in fit.reason, fit


def test_saturating_fit_reports_failure_instead_of_raising():
    too_few = fit_saturating(SIZES[:3], [3.0, 2.0, 1.5])
    assert not too_few.converged and "at least 4" in too_few.reason
    from errorentropy.fits.lines import saturating_result as _saturating

    assert _saturating(too_few).to_dict() == {
        "converged": False,
        "reason": too_few.reason,
        "n_points": 3,
    }
    bad = fit_saturating(SIZES, np.full(SIZES.size, np.nan))
    assert not bad.converged and bad.reason


def test_extrapolation_is_exact_on_a_power_law_and_measures_a_bend():
    exact = extrapolate(SIZES, 3.0 * SIZES**-0.08, holdout=3)
    np.testing.assert_allclose(exact.relative_error, 0.0, atol=1e-10)
    np.testing.assert_array_equal(exact.heldout_n, SIZES[-3:])
    # A curve flattening to a floor: the power law from small models undershoots the large ones.
    bent = 3.0 * SIZES**-0.3 + 1.5
    ex = extrapolate(SIZES, bent, holdout=2)
    ref_slope, ref_c = np.polyfit(np.log(SIZES[:-2]), np.log(bent[:-2]), 1)
    np.testing.assert_allclose(
        ex.predicted, np.exp(ref_c + ref_slope * np.log(SIZES[-2:])), rtol=1e-10
    )
    assert np.all(ex.relative_error < 0)
    assert ex.mean_abs_relative_error == pytest.approx(
        np.mean(np.abs(ex.predicted - bent[-2:]) / bent[-2:])
    )


def test_extrapolation_bad_input():
    with pytest.raises(FitInputError, match="fewer than 3"):
        extrapolate(SIZES[:4], np.ones(4), holdout=2)
    with pytest.raises(FitInputError, match="at least 1"):
        extrapolate(SIZES, np.ones(SIZES.size), holdout=0)


def test_holdout_helpers():
    shuffled = SIZES[[3, 0, 7, 1, 5, 2, 6, 4]]
    fit_idx, held_idx = split_holdout(shuffled, 2)
    assert set(shuffled[held_idx]) == set(SIZES[-2:]) and len(fit_idx) == 6
    assert [default_holdout(k) for k in (3, 4, 6, 9, 32)] == [1, 1, 2, 3, 10]
    # twins (gpt2 and pythia-160m share 85,056,000 non-embedding parameters) are held out together
    twins = np.array([1e7, 8.5056e7, 3e7, 8.5056e7, 2e8, 5e6])
    fit_idx, held_idx = split_holdout(twins, 2)
    assert sorted(twins[held_idx]) == [8.5056e7, 8.5056e7, 2e8] and sorted(twins[fit_idx]) == [
        5e6,
        1e7,
        3e7,
    ]
    assert sign_changes([0.1, -0.2]) and not sign_changes([0.0, 0.3]) and not sign_changes([-1, -2])
