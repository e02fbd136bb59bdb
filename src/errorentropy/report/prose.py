"""The report's words: the verdict (the question answered in at most five sentences) and the
detailed statements, every clause computed from the fits and the cells, nothing canned.

:func:`verdict_sentences` answers :data:`QUESTION` from R² of EE's and CE's power laws over
every model of each dataset and their paired bootstrap difference; :func:`summary_sentences` says
what scales, whose exponent is closest to CE's, how EE's share of CE moves with size (read from
the fits' share trend, never fitted here), how the components moved in training, and whether EE
extrapolates better than CE; :func:`convergence_sentences` whether EE's exponent has settled with
the documents scored and how large the bias left in its level is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from errorentropy.fits.fit import FITS_FILE
from errorentropy.fits.records import ALL_GROUP, FitRow, Interval
from errorentropy.report.collect import QUANTITY_KEYS, ReportData
from errorentropy.report.tables import hidden, shown_exponent, si
from errorentropy.stats.quantities import CE, COMPONENTS, CONF, EE, QUANTITIES

CLEAN_R2 = 0.9  # the summary calls a fit with R^2 at least this "a clean power law"

Index = dict[tuple[str, str, str], FitRow]  # (dataset, group, quantity key) -> fitted row


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _index(data: ReportData) -> Index:
    """(dataset, group, quantity key) -> fitted row."""
    return {(r.dataset, r.group, r.quantity): r for r in data.fit_rows}


def _shown_groups(data: ReportData, dataset: str) -> list[str]:
    """The fitted groups of a dataset: families, then All, and All left out when it holds the
    same models as the one family."""
    rows = [r for r in data.fit_rows if r.dataset == dataset]
    groups = sorted({r.group for r in rows if r.group != ALL_GROUP})
    groups += [ALL_GROUP] if any(r.group == ALL_GROUP for r in rows) else []
    return [g for g in groups if not hidden(data.fits, dataset, g)]


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


def _fit_sentences(data: ReportData, dataset: str, group: str, index: Index) -> list[str]:
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


def _r2_sentence(data: ReportData, dataset: str, groups: list[str], index: Index) -> list[str]:
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


def _delta_sentence(dataset: str, group: str, index: Index) -> list[str]:
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
    shares = [float(c.summary[EE.field]) / float(c.summary[CE.field]) for c in cells]
    text = (
        f"{dataset}: EE is {100 * shares[0]:.1f}% of CE for the smallest model "
        f"({small.key.model}, N={si(small.non_embedding_params)}) "
        f"and {100 * shares[-1]:.1f}% for the largest "
        f"({large.key.model}, N={si(large.non_embedding_params)})"
    )
    trend = data.fits.share_trend(dataset)
    if trend is not None and trend.slope is not None:
        text += (
            f"; over all {trend.n_models} final models its share {_trend(trend.slope)} by "
            f"{100 * abs(trend.slope):.2f} percentage points per tenfold increase in parameters "
            "(least squares)."
        )
    elif len(cells) >= 3:
        text += (
            f"; how its share moves over all {len(cells)} final models is not in {FITS_FILE} "
            "(written before the fit recorded it): rerun `errorentropy fit` to see it."
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
        if hidden(data.fits, r.dataset, r.group):
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


def convergence_sentences(data: ReportData) -> list[str]:
    """Per dataset: whether EE's exponent has settled, and how large the bias left in its
    level is against the spread of EE across the models: both, as one can hold without the
    other."""
    out = []
    for dataset in data.datasets:
        exponent = shown_exponent(data.fits, dataset)
        rows = [r for r in data.fits.convergence if r.dataset == dataset and r.final]
        shares = [rel for rel in (r.relative() for r in rows) if rel is not None]
        biases = [r.check.bias for r in rows if r.check.bias is not None]
        parts = [] if exponent is None else [exponent.describe()]
        if biases and shares:
            lo, hi = min(biases), max(biases)
            share = max(abs(v) for v, _ in shares)
            parts.append(
                f"its level still carries a bias of {lo:+.4f} to {hi:+.4f} nats in the final "
                f"cells (at most {100 * share:.1f}% of the spread of EE across the models)"
            )
        if parts:
            out.append("; ".join(parts) + ".")
    return out
