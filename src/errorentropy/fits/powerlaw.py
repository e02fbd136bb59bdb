"""Scaling-law maths: power-law fits in log-log space, a saturating fit, and extrapolation.

Pure numpy/scipy, no files. The paper's fit is ordinary least squares of ``log|M|`` on ``log N``::

    log|M| = c + alpha * log N          (natural logs; alpha < 0 when M falls with N)

with R^2 = 1 - SS_res / SS_tot taken in that log-log space. Beside it, :func:`fit_saturating`
fits ``M = a * N**(-alpha_s) + E`` (an irreducible floor E) on the linear scale.
:func:`errorentropy.fits.fit.fit_sweep` applies them to a sweep folder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

MIN_MODELS = 3  # a log-log line through fewer points has no residual to judge it by
MIN_MODELS_SATURATING = 4  # three parameters: with 3 points it always fits exactly


@dataclass(frozen=True)
class PowerLawFit:
    """``log|M| = c + alpha log N`` fitted by least squares; ``r2`` in log-log space.

    ``r2`` is NaN when every ``log|M|`` is equal (SS_tot = 0: nothing to explain).
    """

    alpha: float
    c: float
    r2: float
    n_points: int

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """Predicted |M| at parameter counts ``n``."""
        return np.exp(self.c + self.alpha * np.log(np.asarray(n, dtype=np.float64)))


@dataclass(frozen=True)
class SaturatingFit:
    """``M = a N^(-alpha) + E`` fitted by non-linear least squares on the linear scale: ``a > 0``
    falls towards the floor ``E``, ``a < 0`` rises towards the ceiling ``E``.

    ``r2`` is on the linear scale of M. ``converged`` is False (and the numbers NaN) when the
    optimiser failed; ``reason`` then says why. ``warning`` holds a non-fatal remark (e.g. the
    parameter covariance could not be estimated).
    """

    a: float
    alpha: float
    e: float
    r2: float
    n_points: int
    converged: bool
    reason: str | None = None
    warning: str | None = None

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """Predicted M at parameter counts ``n``."""
        return self.a * np.asarray(n, dtype=np.float64) ** (-self.alpha) + self.e


class FitInputError(ValueError):
    """The data cannot be fitted (too few points, zero or non-finite values); the message says
    why."""


def check_log_inputs(
    n: np.ndarray, m: np.ndarray, min_points: int = MIN_MODELS
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``(log N, log|M|)``; raises :class:`FitInputError` with a clear
    reason."""
    n = np.asarray(n, dtype=np.float64).ravel()
    m = np.asarray(m, dtype=np.float64).ravel()
    if n.shape != m.shape:
        raise FitInputError(f"N ({n.size}) and M ({m.size}) differ in length")
    if n.size < min_points:
        raise FitInputError(f"only {n.size} model(s); a fit needs at least {min_points}")
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise FitInputError("parameter counts must be positive and finite")
    if not np.all(np.isfinite(m)):
        raise FitInputError("a value is not finite (NaN or inf)")
    if np.any(m == 0):
        raise FitInputError(
            f"{int(np.sum(m == 0))} value(s) are exactly zero, so log|M| is undefined"
        )
    if np.unique(n).size < 2:
        raise FitInputError("every model has the same parameter count; the slope is undefined")
    return np.log(n), np.log(np.abs(m))


def fit_lines(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares lines ``y = c + alpha x`` for each row of ``y`` (shape (..., k)), sharing
    ``x``.

    Returns ``(alpha, c, r2)`` with the leading shape of ``y``; rows holding NaN give NaN.
    Closed form in float64, vectorised so thousands of bootstrap refits cost one pass.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    y_mean = y.mean(axis=-1, keepdims=True)
    yc = y - y_mean
    alpha = (yc @ xc) / sxx
    c = y_mean[..., 0] - alpha * x.mean()
    resid = yc - alpha[..., None] * xc
    ss_res = np.sum(resid * resid, axis=-1)
    ss_tot = np.sum(yc * yc, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)
    return alpha, c, r2


def fit_power_law(n: np.ndarray, m: np.ndarray, min_points: int = MIN_MODELS) -> PowerLawFit:
    """Fit ``log|M| = c + alpha log N``; raises :class:`FitInputError` on unfittable data."""
    x, y = check_log_inputs(n, m, min_points)
    alpha, c, r2 = fit_lines(x, y)
    return PowerLawFit(float(alpha), float(c), float(r2), int(x.size))


def _saturating_model(log_n_scaled: np.ndarray, a: float, alpha: float, e: float) -> np.ndarray:
    return a * np.exp(-alpha * log_n_scaled) + e


SATURATING_ALPHA_MAX = 5.0  # steeper than N^-5 over the sizes of a sweep is a step, not a law
SATURATING_E_SPREADS = 10.0  # the asymptote is sought within this many spreads of the values


def fit_saturating(
    n: np.ndarray, m: np.ndarray, min_points: int = MIN_MODELS_SATURATING, maxfev: int = 20000
) -> SaturatingFit:
    """Fit ``M = a N^(-alpha) + E`` with :func:`scipy.optimize.curve_fit` (never raises).

    Bounded so the answer means what its names say: ``alpha`` in (0, 5]; ``a`` > 0 when M falls
    with N (E is a floor, within 10 spreads of the values below them) and ``a`` < 0 when M rises
    (E a ceiling above them). A fit that ends at ``alpha ~ 0`` or at the far bound of E has found
    no asymptote (the values do not bend) and is returned as ``converged=False`` with that reason,
    as is an optimiser failure. N is scaled by its geometric mean inside the optimiser for
    conditioning, and ``a`` is mapped back to unscaled N.
    """
    n = np.asarray(n, dtype=np.float64).ravel()
    m = np.asarray(m, dtype=np.float64).ravel()
    k = int(n.size)
    why = _saturating_input_problem(n, m, min_points)
    if why is not None:
        return _failed_saturating(k, why)
    log_ref = float(np.mean(np.log(n)))
    z = np.log(n) - log_ref
    scale = float(np.max(np.abs(m))) or 1.0
    y = m / scale
    spread = float(y.max() - y.min())
    if spread == 0.0:
        return _failed_saturating(k, "every value is the same: there is nothing to saturate")
    falling = float(np.polyfit(z, y, 1)[0]) < 0
    bounds = _saturating_bounds(y, spread, falling)
    best, messages, cov_warning = _best_curve_fit(
        z, y, _saturating_starts(z, y, spread, falling), bounds, maxfev
    )
    if best is None:
        start = messages[0] if messages else "no usable start point"
        return _failed_saturating(k, "curve_fit did not converge: " + start)
    sse, (a_s, alpha, e_s) = best
    why = _no_asymptote(alpha, e_s, bounds, spread, falling)
    if why is not None:
        return _failed_saturating(k, why)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / ss_tot if ss_tot > 0 else np.nan
    a = a_s * scale * float(np.exp(alpha * log_ref))  # a' (N/Nref)^-alpha = a N^-alpha
    return SaturatingFit(
        float(a), float(alpha), float(e_s * scale), float(r2), k, True, None, cov_warning
    )


Bounds = tuple[tuple[float, float, float], tuple[float, float, float]]


def _failed_saturating(k: int, reason: str) -> SaturatingFit:
    return SaturatingFit(np.nan, np.nan, np.nan, np.nan, k, False, reason)


def _saturating_input_problem(n: np.ndarray, m: np.ndarray, min_points: int) -> str | None:
    """Why the points cannot take a saturating fit, or None."""
    if n.size < min_points:
        return (
            f"only {n.size} model(s); the saturating fit has 3 parameters "
            f"and needs at least {min_points}"
        )
    if not (np.all(np.isfinite(n)) and np.all(n > 0) and np.all(np.isfinite(m))):
        return "parameter counts must be positive and values finite"
    if np.unique(n).size < 3:
        return "fewer than 3 distinct parameter counts"
    return None


def _saturating_bounds(y: np.ndarray, spread: float, falling: bool) -> Bounds:
    """Bounds of (a, alpha, E) on the scaled values: E a floor under falling values, a ceiling
    over rising ones, at most ``SATURATING_E_SPREADS`` spreads away."""
    far = SATURATING_E_SPREADS * spread
    if falling:  # a > 0, E a floor under the values
        return (0.0, 0.0, float(y.min()) - far), (np.inf, SATURATING_ALPHA_MAX, float(y.max()))
    # a < 0, E a ceiling over them
    return (-np.inf, 0.0, float(y.min())), (0.0, SATURATING_ALPHA_MAX, float(y.max()) + far)


def _saturating_starts(
    z: np.ndarray, y: np.ndarray, spread: float, falling: bool
) -> list[tuple[float, float, float]]:
    """Start points (a, alpha, E): lines in log space for asymptotes a little, or well, beyond
    the extreme value, and a plain guess."""
    sign = 1.0 if falling else -1.0
    starts = []
    for gap in (0.5, 0.05, 2.0):
        e0 = float(y.min()) - gap * spread if falling else float(y.max()) + gap * spread
        d = sign * (y - e0)
        slope, intercept = np.polyfit(z, np.log(d), 1)
        starts.append((sign * float(np.exp(intercept)), float(-slope), e0))
    starts.append((sign * spread, 0.5, float(y.min()) if falling else float(y.max())))
    return starts


def _best_curve_fit(
    z: np.ndarray,
    y: np.ndarray,
    starts: list[tuple[float, float, float]],
    bounds: Bounds,
    maxfev: int,
) -> tuple[tuple[float, np.ndarray] | None, list[str], str | None]:
    """The best ``(sse, params)`` over the start points (None if none converged), the
    optimiser's error messages, and the covariance warning of the best fit."""
    lower, upper = bounds
    lo, hi = np.array(lower), np.array(upper)
    width = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    best: tuple[float, np.ndarray] | None = None
    messages: list[str] = []
    cov_warning: str | None = None
    for p0 in starts:
        inside = np.clip(np.array(p0), lo + 1e-6 * width, hi - 1e-6 * width)  # strictly inside
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", OptimizeWarning)
            try:
                params, _ = curve_fit(
                    _saturating_model, z, y, p0=inside, bounds=(lower, upper), maxfev=maxfev
                )
            except (RuntimeError, ValueError, FloatingPointError) as exc:
                messages.append(str(exc).splitlines()[0])
                continue
        if not np.all(np.isfinite(params)):
            messages.append("the optimiser returned non-finite parameters")
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            resid = y - _saturating_model(z, *params)
        sse = float(resid @ resid)
        if np.isfinite(sse) and (best is None or sse < best[0]):
            best = (sse, params)
            cov_warning = "; ".join(str(w.message).splitlines()[0] for w in caught) or None
    return best, messages, cov_warning


def _no_asymptote(
    alpha: float, e_s: float, bounds: Bounds, spread: float, falling: bool
) -> str | None:
    """Why the best fit identifies no asymptote or no power law, or None when it does."""
    far_bound = bounds[0][2] if falling else bounds[1][2]
    if alpha < 1e-3 or abs(e_s - far_bound) < 1e-3 * spread:
        return (
            "no asymptote identified: the values do not bend towards a "
            f"{'floor' if falling else 'ceiling'} within {SATURATING_E_SPREADS:g} times their "
            f"spread (alpha {alpha:.3g}); read the pure power law"
        )
    if alpha > SATURATING_ALPHA_MAX * (1 - 1e-6):
        return (
            "no power law identified: the best fit is a step "
            f"(alpha at its bound {SATURATING_ALPHA_MAX:g})"
        )
    return None


@dataclass(frozen=True)
class Extrapolation:
    """A power law fitted on the smaller models, judged on the larger held-out ones.

    ``relative_error[i] = (predicted_i - |actual_i|) / |actual_i|`` for each held-out model.
    """

    fit: PowerLawFit
    heldout_n: np.ndarray
    predicted: np.ndarray
    actual: np.ndarray
    relative_error: np.ndarray

    @property
    def mean_abs_relative_error(self) -> float:
        """Mean of |relative error| over the held-out models."""
        return float(np.mean(np.abs(self.relative_error)))


def split_holdout(n: np.ndarray, holdout: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(fit, heldout)``: the ``holdout`` largest N are held out, and with them every
    model of the same size as the smallest held-out one (a twin left in the fit would make its
    prediction an interpolation)."""
    n = np.asarray(n, dtype=np.float64)
    order = np.argsort(n, kind="stable")
    cut = len(order) - holdout
    while 0 < cut < len(order) and n[order[cut - 1]] == n[order[cut]]:
        cut -= 1
    return order[:cut], order[cut:]


def extrapolate(
    n: np.ndarray, m: np.ndarray, holdout: int, min_points: int = MIN_MODELS
) -> Extrapolation:
    """Fit the power law on all but the ``holdout`` largest models and predict those.

    Raises :class:`FitInputError` when fewer than ``min_points`` models would remain, or when
    ``holdout`` < 1, or on values a log fit cannot take.
    """
    n = np.asarray(n, dtype=np.float64).ravel()
    m = np.asarray(m, dtype=np.float64).ravel()
    if holdout < 1:
        raise FitInputError(f"holdout must be at least 1, got {holdout}")
    if n.size - holdout < min_points:
        raise FitInputError(
            f"{n.size} model(s) minus {holdout} held out leaves fewer than {min_points} to fit"
        )
    fit_idx, held_idx = split_holdout(n, holdout)
    fit = fit_power_law(n[fit_idx], m[fit_idx], min_points)
    actual = np.abs(m[held_idx])
    if np.any(actual == 0):
        raise FitInputError("a held-out value is exactly zero; relative error is undefined")
    predicted = fit.predict(n[held_idx])
    return Extrapolation(fit, n[held_idx], predicted, actual, (predicted - actual) / actual)


def default_holdout(n_models: int, min_points: int = MIN_MODELS) -> int:
    """Models to hold out when none is asked for: about a third, at least 1, leaving
    ``min_points``."""
    return max(1, min(n_models // 3, n_models - min_points))


def sign_changes(values: np.ndarray) -> bool:
    """True when the values hold both strictly positive and strictly negative entries."""
    values = np.asarray(values, dtype=np.float64)
    return bool(np.any(values > 0) and np.any(values < 0))
