"""Validation study of errorentropy.stats.entropy on synthetic ranks with a known entropy.

Ranks follow a truncated Zipf law ``p(r) ~ (r + 1)^-a`` over V = 50,257 ranks (a = 1.1, 1.5,
2.5) or a truncated geometric law; documents hold 64-512 tokens (uniform). Three parts:

1. the bias estimate of :func:`bias_from_halves`: coverage of its interval over seeds of the
   realised bias ``H - EE`` (H: the exact entropy of the law), next to the naive "mean drift
   +- t s" interval;
   (and, on half the seeds, the coverage of the bias left in Miller-Madow, Chao-Shen and
   Grassberger);
2. the estimators (plug-in, Miller-Madow, Chao-Shen, Grassberger, Zhang): mean error and RMSE;
3. the exponent verdict of :func:`exponent_settled` on synthetic sweeps of 6 models whose true
   EE follows ``c N^alpha`` exactly (each model's Zipf exponent solved for it), over seeds, next
   to the old single-half rule ``|alpha_half - alpha_all| <= w``; EE by plug-in on a heavy and a
   light sweep, by Grassberger on the heavy one.

Run: ``.venv/bin/python benchmarks/study_entropy_bias.py [--quick]``; writes
benchmarks/results/entropy_bias.json and prints tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq

from errorentropy.stats.entropy import (
    ESTIMATORS,
    bias_from_halves,
    exponent_settled,
    fit_exponent,
    sweep_entropies,
)

V = 50_257
RESULTS = Path(__file__).resolve().parent / "results"
LAWS: dict[str, tuple[str, float]] = {
    "zipf a=1.1": ("zipf", 1.1),
    "zipf a=1.5": ("zipf", 1.5),
    "zipf a=2.5": ("zipf", 2.5),
    "geometric q=0.7": ("geometric", 0.7),
}
SWEEPS = {"heavy (a 1.1 -> 1.5)": (1.1, 1.5), "light (a 1.8 -> 2.5)": (1.8, 2.5)}
OTHER_BIAS = ("miller_madow", "chao_shen", "grassberger")
# (sweep, estimator of EE): plug-in on both sweeps, Grassberger on the heavy one
EXPONENT_RUNS = [
    ("heavy (a 1.1 -> 1.5)", "plugin_entropy"),
    ("light (a 1.8 -> 2.5)", "plugin_entropy"),
    ("heavy (a 1.1 -> 1.5)", "grassberger"),
]
N_PARAMS = np.logspace(7, 10, 6)


def law(kind: str, param: float) -> np.ndarray:
    r = np.arange(V, dtype=np.float64)
    w = (r + 1.0) ** -param if kind == "zipf" else param**r
    return w / w.sum()


def entropy_of(p: np.ndarray) -> float:
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


def sample(p: np.ndarray, n_tokens: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``n_tokens`` ranks drawn from ``p``, in documents of 64-512 tokens."""
    lengths = rng.integers(64, 513, size=n_tokens // 64 + 2)
    doc = np.repeat(np.arange(lengths.size), lengths)[:n_tokens]
    cdf = np.cumsum(p)
    rank = np.minimum(np.searchsorted(cdf, rng.random(n_tokens) * cdf[-1], side="right"), V - 1)
    return doc, rank


def bias_cell(name: str, n_tokens: int, seeds: int) -> dict[str, Any]:
    p = law(*LAWS[name])
    h = entropy_of(p)
    rng = np.random.default_rng([int(n_tokens), len(name)])
    rows = []
    errors: dict[str, list[float]] = {k: [] for k in ESTIMATORS}
    others: dict[str, list[bool]] = {k: [] for k in OTHER_BIAS}
    for seed in range(seeds):
        doc, rank = sample(p, n_tokens, rng)
        b = bias_from_halves(doc, rank, seed=seed)
        if seed < seeds // 2:  # the bias left in the corrected estimators, on half the seeds
            for key in OTHER_BIAS:
                o = bias_from_halves(doc, rank, seed=seed, estimator=ESTIMATORS[key])
                others[key].append(o.interval[0] <= h - o.value <= o.interval[1])
        true = h - b.value
        # the naive interval: the same reach t s sqrt(1 + 1/R), around the mean drift alone
        reach = min(b.drift, b.factor * b.drift) - b.interval[0]
        counts = np.bincount(rank, minlength=V)
        for key, f in ESTIMATORS.items():
            errors[key].append(f(counts) - h)
        rows.append(
            dict(
                true=true,
                drift=b.drift,
                estimate=b.estimate,
                factor=b.factor,
                low=b.interval[0],
                high=b.interval[1],
                covered=b.interval[0] <= true <= b.interval[1],
                naive_covered=abs(true - b.drift) <= reach,
            )
        )
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    err = {k: (float(np.mean(v)), float(np.sqrt(np.mean(np.square(v))))) for k, v in errors.items()}
    cover = {k: f"{sum(v)}/{len(v)}" for k, v in others.items()}
    return dict(
        law=name,
        n_tokens=n_tokens,
        true_entropy=h,
        seeds=seeds,
        mean=mean,
        errors=err,
        other_coverage=cover,
    )


def sweep_laws(lo: float, hi: float) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Six Zipf laws whose exact entropies follow a power law in N_PARAMS from H(lo) to H(hi)."""
    h_lo, h_hi = entropy_of(law("zipf", lo)), entropy_of(law("zipf", hi))
    alpha = np.log(h_hi / h_lo) / np.log(N_PARAMS[-1] / N_PARAMS[0])
    targets = h_lo * (N_PARAMS / N_PARAMS[0]) ** alpha
    inner = [brentq(lambda a, t=t: entropy_of(law("zipf", a)) - t, lo, hi) for t in targets[1:-1]]
    exps = [lo, *inner, hi]
    return [law("zipf", a) for a in exps], targets, float(alpha)


def exponent_cell(
    name: str, estimator: str, n_tokens: int, seeds: int, n_boot: int
) -> dict[str, Any]:
    laws, targets, alpha = sweep_laws(*SWEEPS[name])
    rng = np.random.default_rng([int(n_tokens), 7])
    runs = []
    for seed in range(seeds):
        lengths = rng.integers(64, 513, size=n_tokens // 64 + 2)
        doc = np.repeat(np.arange(lengths.size), lengths)[:n_tokens]
        tables = [(doc, sample(p, n_tokens, rng)[1]) for p in laws]
        s = sweep_entropies(
            N_PARAMS, tables, n_boot=n_boot, seed=seed, estimator=ESTIMATORS[estimator]
        )
        check = exponent_settled(N_PARAMS, s.ee_all, s.ee_halves, s.alpha_halfwidth)
        w = check.alpha_halfwidth or float("nan")
        runs.append(
            dict(
                settled=check.settled,
                old_rule=abs(check.alpha_halves[0] - check.alpha_all) <= w,
                alpha_all=check.alpha_all,
                halfwidth=w,
                shift=check.shift,
                shift_bound=check.shift_bound,
                bias_in_w=(check.alpha_all - alpha) / w,
            )
        )
    verdicts = [r["settled"] for r in runs]
    old = [r["old_rule"] for r in runs]
    keys = [k for k in runs[0] if k not in ("settled", "old_rule")]
    summary = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    # is the bootstrap half-width w as wide as alpha_all's spread over seeds says it should be?
    summary["seed_sd_over_w"] = float(
        1.96 * np.std([r["alpha_all"] for r in runs], ddof=1) / summary["halfwidth"]
    )
    return dict(
        sweep=name,
        estimator=estimator,
        n_tokens=n_tokens,
        alpha_true=alpha,
        alpha_true_check=fit_exponent(N_PARAMS, targets),
        seeds=seeds,
        settled=sum(bool(v) for v in verdicts),
        old_rule_settled=sum(old),
        agreement=max(sum(bool(v) for v in verdicts), sum(not v for v in verdicts)) / seeds,
        old_rule_agreement=max(sum(old), seeds - sum(old)) / seeds,
        mean=summary,
    )


def print_bias(cells: list[dict[str, Any]]) -> None:
    print("\n(a) bias left in plug-in EE, nats: mean over seeds; coverage of the realised bias")
    print(
        f"{'law':16} {'N':>7} {'true':>7} {'drift':>7} {'true/dr':>7} {'factor':>6} "
        f"{'estim':>7} {'interval':>17} {'cover':>6} {'naive':>6}  {'cover MM/CS/G':>15}"
    )
    for c in cells:
        m, s = c["mean"], c["seeds"]
        ratio = m["true"] / m["drift"] if m["drift"] > 0 else float("nan")
        print(
            f"{c['law']:16} {c['n_tokens']:>7} {m['true']:7.4f} {m['drift']:7.4f} {ratio:7.2f} "
            f"{m['factor']:6.2f} {m['estimate']:7.4f} [{m['low']:7.4f},{m['high']:7.4f}] "
            f"{round(m['covered'] * s):>3}/{s} {round(m['naive_covered'] * s):>3}/{s}  "
            + " ".join(c["other_coverage"][k] for k in OTHER_BIAS)
        )


def print_errors(cells: list[dict[str, Any]]) -> None:
    print("\n(b) estimator error, nats: mean (estimate - H) / RMSE over seeds")
    print(f"{'law':16} {'N':>7} " + " ".join(f"{k:>17}" for k in ESTIMATORS))
    for c in cells:
        e = c["errors"]
        print(
            f"{c['law']:16} {c['n_tokens']:>7} "
            + " ".join(f"{e[k][0]:+8.4f}/{e[k][1]:.4f}" for k in ESTIMATORS)
        )


def print_exponents(cells: list[dict[str, Any]]) -> None:
    print("\n(c) exponent verdict over seeds (settled count), old single-half rule beside it")
    print(
        f"{'sweep':22} {'EE by':>14} {'N/model':>7} {'alpha':>7} {'a_all':>7} {'w':>6} "
        f"{'shift':>7} "
        f"{'bound':>6} {'bias/w':>6} {'1.96sd/w':>8} {'settled':>8} {'agree':>5} {'old':>5} "
        f"{'agree':>5}"
    )
    for c in cells:
        m, s = c["mean"], c["seeds"]
        print(
            f"{c['sweep']:22} {c['estimator']:>14} {c['n_tokens']:>7} "
            f"{c['alpha_true']:7.4f} {m['alpha_all']:7.4f} "
            f"{m['halfwidth']:6.4f} {m['shift']:+7.4f} {m['shift_bound']:6.4f} "
            f"{m['bias_in_w']:+6.2f} {m['seed_sd_over_w']:8.2f} "
            f"{c['settled']:>5}/{s} {c['agreement']:5.2f} "
            f"{c['old_rule_settled']:>2}/{s} {c['old_rule_agreement']:5.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds and sizes")
    args = parser.parse_args(argv)
    seeds, sweep_seeds, n_boot = (5, 3, 50) if args.quick else (20, 12, 100)
    sizes = [8192, 32768] if args.quick else [8192, 32768, 131072, 524288]
    sweep_sizes = [8192, 32768] if args.quick else [8192, 32768, 131072]
    start = time.perf_counter()
    bias = [bias_cell(name, n, seeds) for name in LAWS for n in sizes]
    print_bias(bias)
    print_errors(bias)
    exps = [
        exponent_cell(name, est, n, sweep_seeds, n_boot)
        for name, est in EXPONENT_RUNS
        for n in sweep_sizes
    ]
    print_exponents(exps)
    elapsed = time.perf_counter() - start
    print(f"\n{elapsed:.0f} s")
    out = dict(
        study="entropy_bias",
        quick=args.quick,
        vocabulary=V,
        document_tokens=[64, 512],
        n_params=N_PARAMS.tolist(),
        bias=bias,
        exponent=exps,
        seconds=elapsed,
        python=platform.python_version(),
        numpy=np.__version__,
    )
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "entropy_bias.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
