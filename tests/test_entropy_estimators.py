"""errorentropy.stats.entropy: estimators against independent references, the bias left in EE
from random halves against the known bias of synthetic Zipf ranks, and the exponent verdict's
stability across seeds."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy.integrate import quad

from errorentropy.errors import UserError
from errorentropy.stats import entropy as E

V = 50_257
EULER = 0.5772156649015329


# --- synthetic ranks with a known entropy ---------------------------------------------------


def zipf(a: float, v: int = V) -> np.ndarray:
    w = np.arange(1, v + 1, dtype=np.float64) ** -a
    return w / w.sum()


def geometric(q: float, v: int = V) -> np.ndarray:
    w = q ** np.arange(v, dtype=np.float64)
    return w / w.sum()


def true_entropy(p: np.ndarray) -> float:
    return math.fsum(-x * math.log(x) for x in p if x > 0)


def table(p: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(64, 513, size=n // 64 + 2)
    doc = np.repeat(np.arange(lengths.size), lengths)[:n]
    return doc, rng.choice(p.size, size=n, p=p)


# --- independent references: float64 loops over the published formulas ---------------------


def ref_plugin(counts: list[int]) -> float:
    n = sum(counts)
    return -sum(c / n * math.log(c / n) for c in counts if c > 0)


def ref_chao_shen(counts: list[int]) -> float:
    nz = [c for c in counts if c > 0]
    n = sum(nz)
    f1 = sum(1 for c in nz if c == 1)
    coverage = 1 - (min(f1, n - 1)) / n
    h = 0.0
    for c in nz:
        pa = coverage * c / n
        h -= pa * math.log(pa) / (1 - (1 - pa) ** n)
    return h


def ref_g(n: int) -> float:
    """Grassberger's G_n = psi(n) + (-1)^n int_0^1 x^(n-1) / (1 + x) dx, psi by its series."""
    psi = -EULER + sum(1.0 / k for k in range(1, n))
    integral = quad(lambda x: x ** (n - 1) / (1 + x), 0.0, 1.0, epsabs=1e-14)[0]
    return psi + (-1) ** n * integral


def ref_grassberger(counts: list[int]) -> float:
    n = sum(counts)
    return math.log(n) - sum(c * ref_g(c) for c in counts if c > 0) / n


def ref_zhang(counts: list[int]) -> float:
    """Zhang (2012): H = sum_v Z_v / v, Z_v = n^(1+v) (n-1-v)! / n! sum_k p_k prod_j (1 - p_k -
    j/n), in exact rational arithmetic."""
    nz = [c for c in counts if c > 0]
    n = sum(nz)
    total = Fraction(0)
    for v in range(1, n):
        lead = Fraction(n ** (1 + v) * math.factorial(n - 1 - v), math.factorial(n))
        inner = Fraction(0)
        for c in nz:
            p = Fraction(c, n)
            prod = Fraction(1)
            for j in range(v):
                prod *= 1 - p - Fraction(j, n)
            inner += p * prod
        total += lead * inner / v
    return float(total)


COUNT_CASES = [[5], [1, 1], [2, 1, 1], [4, 2, 3, 0, 2, 4, 0, 0, 2, 1, 1], [1] * 7, [30, 7, 1, 1, 2]]


@pytest.mark.parametrize("counts", COUNT_CASES)
def test_estimators_match_the_references(counts: list[int]) -> None:
    n, k = sum(counts), sum(1 for c in counts if c > 0)
    assert E.plugin_entropy(counts) == pytest.approx(ref_plugin(counts), abs=1e-12)
    assert E.miller_madow(counts) == pytest.approx(ref_plugin(counts) + (k - 1) / (2 * n), 1e-12)
    assert E.chao_shen(counts) == pytest.approx(ref_chao_shen(counts), rel=1e-12, abs=1e-12)
    assert E.grassberger(counts) == pytest.approx(ref_grassberger(counts), rel=1e-9, abs=1e-9)
    assert E.zhang(counts) == pytest.approx(ref_zhang(counts), rel=1e-12, abs=1e-12)


def test_chao_shen_by_hand_and_grassberger_published_g() -> None:
    # counts (2, 1, 1): N = 4, f1 = 2, C = 1/2, pa = (1/4, 1/8, 1/8)
    hand = 0.25 * math.log(4) / (1 - 0.75**4) + 2 * 0.125 * math.log(8) / (1 - 0.875**4)
    assert E.chao_shen([2, 1, 1]) == pytest.approx(hand, rel=1e-14)
    # Grassberger (2003): G_1 = -gamma - ln 2, G_2 = 2 - gamma - ln 2, G_2n+1 = G_2n,
    # G_2n+2 = G_2n + 2/(2n+1); a count vector (n) alone gives log n - G_n
    g = {1: -EULER - math.log(2), 2: 2 - EULER - math.log(2)}
    for m in range(1, 8):
        g[2 * m + 1] = g[2 * m]
        g[2 * m + 2] = g[2 * m] + 2 / (2 * m + 1)
    for n, gn in g.items():
        assert E.grassberger([n]) == pytest.approx(math.log(n) - gn, abs=1e-12)


def test_estimators_ignore_zeros_and_order_and_agree_when_well_sampled() -> None:
    counts = np.array([0, 3, 9, 0, 1, 4])
    for f in E.ESTIMATORS.values():
        assert f(counts) == pytest.approx(f(counts[::-1][counts[::-1] > 0]), abs=1e-13)
    big = np.full(8, 100_000)  # uniform over 8: every estimator near log 8
    for f in E.ESTIMATORS.values():
        assert f(big) == pytest.approx(math.log(8), abs=1e-4)
    assert np.array_equal(E.counts_from_ranks([0, 2, 2, 5], minlength=7), [1, 0, 2, 0, 0, 1, 0])


@pytest.mark.parametrize(
    "counts", [[], [[1, 2]], [1, -1], [0, 0], [1.5, 2], [1, float("nan")], ["a", "b"]]
)
def test_bad_counts(counts: object) -> None:
    for f in E.ESTIMATORS.values():
        with pytest.raises(UserError):
            f(counts)


def test_corrected_estimators_beat_plugin_at_small_n_under_heavy_tails() -> None:
    p = zipf(1.1)
    h = true_entropy(p)
    rng = np.random.default_rng(11)
    err = {k: [] for k in E.ESTIMATORS}
    for _ in range(5):
        counts = np.bincount(rng.choice(V, size=4096, p=p), minlength=V)
        for k, f in E.ESTIMATORS.items():
            err[k].append(abs(f(counts) - h))
    mean = {k: float(np.mean(v)) for k, v in err.items()}
    assert mean["chao_shen"] < mean["grassberger"] < mean["miller_madow"] < mean["plugin_entropy"]
    assert mean["chao_shen"] < 0.5 * mean["plugin_entropy"]


# --- (a) the bias left in a cell's EE -------------------------------------------------------


def test_bias_brackets_the_true_bias_under_a_heavy_tail_where_the_drift_alone_does_not() -> None:
    p = zipf(1.1)
    h = true_entropy(p)
    rng = np.random.default_rng(3)
    covered = naive = 0
    for seed in range(5):
        doc, rank = table(p, 16_384, rng)
        b = E.bias_from_halves(doc, rank, n_halves=20, seed=seed)
        true = h - b.value
        covered += b.interval[0] <= true <= b.interval[1]
        reach = min(b.drift, b.factor * b.drift) - b.interval[0]
        naive += abs(true - b.drift) <= reach
        assert true > 2 * b.drift > 0  # the halves' drift under-estimates under a heavy tail
        assert b.factor > 2
    assert covered == 5
    assert naive == 0


def test_bias_brackets_the_true_bias_under_light_tails() -> None:
    rng = np.random.default_rng(4)
    for p in (zipf(2.5), geometric(0.7)):
        h = true_entropy(p)
        covered = 0
        for seed in range(5):
            doc, rank = table(p, 16_384, rng)
            b = E.bias_from_halves(doc, rank, n_halves=20, seed=seed)
            covered += b.interval[0] <= h - b.value <= b.interval[1]
            assert b.factor < 2.5
        assert covered >= 4


def test_drift_is_miller_madow_on_a_saturated_support() -> None:
    # uniform over 4 ranks: plug-in noise is second order, its bias (K - 1) / (2 N) exactly
    rng = np.random.default_rng(5)
    n = 20_000
    doc = np.repeat(np.arange(100), n // 100)
    b = E.bias_from_halves(doc, rng.integers(0, 4, size=n), n_halves=50, seed=1)
    assert b.factor == pytest.approx(1.0, abs=1e-9)
    assert b.drift == pytest.approx(3 / (2 * n), rel=0.3)
    assert b.interval[0] <= 3 / (2 * n) <= b.interval[1]
    assert (b.n_tokens, b.n_documents, len(b.drifts)) == (n, 100, 50)


def test_bias_estimate_is_seeded_and_round_trips() -> None:
    rng = np.random.default_rng(6)
    doc, rank = table(zipf(1.5), 4096, rng)
    a = E.bias_from_halves(doc, rank, n_halves=10, seed=7, estimator=E.chao_shen)
    assert a == E.bias_from_halves(doc, rank, n_halves=10, seed=7, estimator=E.chao_shen)
    assert a.drifts != E.bias_from_halves(doc, rank, n_halves=10, seed=8).drifts
    assert a.estimator == "chao_shen"
    assert a.value == pytest.approx(E.chao_shen(np.bincount(rank)))
    assert a.estimate == pytest.approx(math.sqrt(a.factor) * a.drift)
    assert a.interval[0] < a.estimate < a.interval[1]
    assert E.BiasEstimate.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    est, (lo, hi) = E.relative_bias(a, 2.0)
    assert (est, lo, hi) == pytest.approx((a.estimate / 2, a.interval[0] / 2, a.interval[1] / 2))
    assert E.sweep_spread([3.0, 2.5, 4.0]) == 1.5
    with pytest.raises(UserError):
        E.relative_bias(a, 0.0)
    with pytest.raises(UserError):
        E.BiasEstimate.from_dict({"estimate": 1.0})


@pytest.mark.parametrize(
    ("doc", "rank", "kwargs"),
    [
        ([], [], {}),
        ([0, 0, 0], [1, 2, 3], {}),
        ([0, 1, 1], [1, 2], {}),
        ([0, 1, 1], [1, -2, 3], {}),
        ([0.5, 1, 1], [1, 2, 3], {}),
        ([0, 1, 1], [1, 2, 3], {"n_halves": 1}),
        ([0, 1, 1], [1, 2, 3], {"level": 1.0}),
    ],
)
def test_bias_bad_input(doc: list, rank: list, kwargs: dict) -> None:
    with pytest.raises(UserError):
        E.bias_from_halves(np.asarray(doc), np.asarray(rank), **kwargs)


# --- (c) has EE's exponent settled? ---------------------------------------------------------

N_PARAMS = np.logspace(7, 10, 6)


def test_exponent_on_exact_power_laws() -> None:
    ee = 5.0 * N_PARAMS**-0.07
    x = np.column_stack([np.ones(6), np.log(N_PARAMS)])
    ref = np.linalg.lstsq(x, np.log(ee * np.exp([0.01, -0.02, 0.0, 0.03, -0.01, 0.02])), None)
    noisy = ee * np.exp([0.01, -0.02, 0.0, 0.03, -0.01, 0.02])
    assert E.fit_exponent(N_PARAMS, noisy) == pytest.approx(ref[0][1], abs=1e-12)
    rng = np.random.default_rng(0)
    wiggle = np.exp(rng.normal(0, 1e-4, size=(40, 6)))
    still = E.exponent_settled(N_PARAMS, ee, ee * wiggle, 0.005)
    assert still.alpha_all == pytest.approx(-0.07, abs=1e-12)
    assert still.settled is True and abs(still.shift) < 1e-4
    tilted = ee * N_PARAMS**0.004 * wiggle  # every half's alpha is 0.004 higher
    moving = E.exponent_settled(N_PARAMS, ee, tilted, 0.005)
    assert moving.shift == pytest.approx(0.004, abs=1e-4) and moving.settled is False
    assert E.exponent_settled(N_PARAMS, ee, tilted, None).settled is None
    assert E.ExponentCheck.from_dict(json.loads(json.dumps(moving.to_dict()))) == moving


@pytest.mark.parametrize(
    ("n", "ee", "halves", "w"),
    [
        (N_PARAMS[:2], [2.0, 1.9], [[2.0, 1.9], [2.0, 1.8]], 0.1),
        (N_PARAMS, [2.0] * 5 + [0.0], [[2.0] * 6] * 2, 0.1),
        (N_PARAMS, [2.0] * 6, [[2.0] * 6], 0.1),
        (N_PARAMS, [2.0] * 6, [[2.0] * 5] * 2, 0.1),
        (N_PARAMS, [2.0] * 6, [[2.0] * 6] * 2, -0.1),
        (np.ones(6), [2.0] * 6, [[2.0] * 6] * 2, 0.1),
    ],
)
def test_exponent_bad_input(n: np.ndarray, ee: list, halves: list, w: float) -> None:
    with pytest.raises(UserError):
        E.exponent_settled(n, ee, halves, w)


def sweep_laws(lo: float, hi: float) -> list[np.ndarray]:
    """Six Zipf laws whose entropies follow H(lo) (N / N_0)^alpha exactly, up to H(hi)."""
    from scipy.optimize import brentq

    h_lo, h_hi = true_entropy(zipf(lo, 5000)), true_entropy(zipf(hi, 5000))
    alpha = math.log(h_hi / h_lo) / math.log(N_PARAMS[-1] / N_PARAMS[0])
    targets = h_lo * (N_PARAMS / N_PARAMS[0]) ** alpha
    ent = lambda a, t: float(-(zipf(a, 5000) * np.log(zipf(a, 5000))).sum()) - t  # noqa: E731
    return [zipf(brentq(ent, lo - 0.01, hi + 0.01, args=(t,)), 5000) for t in targets]


@pytest.mark.parametrize(
    ("lo", "hi", "n", "expected"), [(1.1, 1.5, 4096, False), (1.8, 2.5, 8192, True)]
)
def test_exponent_verdict_is_stable_across_seeds(
    lo: float, hi: float, n: int, expected: bool
) -> None:
    laws = sweep_laws(lo, hi)
    rng = np.random.default_rng(int(lo * 10))
    verdicts = []
    for seed in range(10):
        lengths = rng.integers(64, 513, size=n // 64 + 2)
        doc = np.repeat(np.arange(lengths.size), lengths)[:n]
        tables = [(doc, rng.choice(p.size, size=n, p=p)) for p in laws]
        s = E.sweep_entropies(N_PARAMS, tables, n_halves=100, n_boot=60, seed=seed)
        assert s.ee_halves.shape == (100, 6)
        verdicts.append(
            E.exponent_settled(N_PARAMS, s.ee_all, s.ee_halves, s.alpha_halfwidth).settled
        )
    assert verdicts == [expected] * 10


def test_drift_is_scaled_to_an_exact_half_when_documents_are_uneven() -> None:
    # 3 documents of 2000, 2000 and 16000 tokens: a "half" holds 4000 or 16000 of 20000 tokens;
    # scaled by n_h / (N - n_h), the drift is still Miller-Madow's (K - 1) / (2 N)
    doc = np.repeat([0, 1, 2], [2000, 2000, 16000])
    for seed in range(5):
        rank = np.random.default_rng(seed).integers(0, 20, size=doc.size)
        b = E.bias_from_halves(doc, rank, n_halves=50, seed=seed)
        assert b.drift == pytest.approx(19 / (2 * doc.size), rel=0.35)
