"""The report: data collection, tables, summary, figures on disk, and the HTML page in headless
Chromium."""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from errorentropy.fits.fit import read_fits
from errorentropy.fits.records import ExtrapolationComparison
from errorentropy.report import collect, draw, prose, tables
from errorentropy.report import page as report
from errorentropy.report.tables import TABLE1_QUANTITIES
from errorentropy.scoring.results import summarize
from errorentropy.stats.profile import PROFILE_TOP, RankProfile
from errorentropy.stats.tokens import TokenTable
from errorentropy.sweep.cells import CellKey, cell_path, load_cells, write_cell_record

# family -> (model name, non-embedding params)
FAMILIES = {
    "alpha": [
        ("alpha-1m", 1_000_000),
        ("alpha-4m", 4_000_000),
        ("alpha-16m", 16_000_000),
        ("alpha-64m", 64_000_000),
    ],
    "beta": [("beta-2m", 2_000_000), ("beta-20m", 20_000_000), ("beta-200m", 200_000_000)],
    "solo": [("solo-8m", 8_000_000)],
}
STEPS = (0, 16, 128, 1000, 10000)


def _tokens(
    rng: np.random.Generator, skill: float, n_docs: int = 6, per_doc: int = 60
) -> TokenTable:
    """Ranks from a Zipf law that sharpens with ``skill``; log-probs that fall with rank."""
    n = n_docs * per_doc
    ranks = np.minimum(rng.zipf(1.3 + skill, size=n) - 1, 400).astype(np.int32)
    logprob = -(0.2 + (0.6 + 0.3 / (1 + skill)) * np.log1p(ranks) + rng.exponential(0.3, size=n))
    doc = np.repeat(np.arange(n_docs), per_doc).astype(np.int32)
    position = np.tile(np.arange(1, per_doc + 1), n_docs).astype(np.int32)
    return TokenTable(doc, position, ranks, logprob)


def _profile(rng: np.random.Generator, ranks: np.ndarray) -> RankProfile:
    """Descending top-32 log-probs with a drop just after the ground truth's position."""
    prof = RankProfile()
    j = np.arange(PROFILE_TOP)
    top = (
        -0.4 * j[None, :]
        - 1.5 * (j[None, :] > ranks[:, None])
        - rng.exponential(0.05, size=(ranks.size, PROFILE_TOP)).cumsum(axis=1)
    )
    prof.add_tokens(ranks, top)
    return prof


def build_sweep(
    root: Path,
    *,
    steps: bool = True,
    profile: bool = True,
    datasets: tuple[str, ...] = ("prose",),
    seed: int = 0,
) -> Path:
    """A small fake sweep folder: 3 families (4, 3 and 1 models), several steps per model,
    profiles."""
    rng = np.random.default_rng(seed)
    for dataset in datasets:
        for family, models in FAMILIES.items():
            for model, n in models:
                revisions: list[str | None] = [f"step{s}" for s in STEPS] if steps else [None]
                for revision in revisions:
                    step = STEPS[-1] if revision is None else int(revision[4:])
                    skill = 0.25 * math.log10(n) * math.log1p(step) / math.log1p(STEPS[-1])
                    key = CellKey(model, revision, dataset)
                    path = cell_path(root, key)
                    path.mkdir(parents=True)
                    tokens = _tokens(rng, skill)
                    hist = tokens.histogram(n_documents=6)
                    hist.save(path / "histogram.json")
                    tokens.save(path / "tokens.npz")
                    if profile:
                        _profile(rng, tokens.rank).save(path / "profile.json")
                    summary = summarize(
                        hist,
                        {
                            "dataset": dataset,
                            "samples": 6,
                            "seed": 42,
                            "max_length": 64,
                            "model": model,
                            "revision": revision,
                        },
                    )
                    write_cell_record(
                        path,
                        key,
                        family=family,
                        non_embedding_params=n,
                        total_params=n + 500_000,
                        summary=summary,
                    )
    return root


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def built(sweep: Path) -> dict:
    return report.build_report(sweep, run_fit=False)


def test_final_revisions_pick_the_last_step(sweep: Path) -> None:
    final = collect.final_revisions(load_cells(sweep))
    assert len(final) == sum(len(m) for m in FAMILIES.values())
    assert {c.step for c in final} == {STEPS[-1]}


def test_pick_steps_keeps_ends_and_spreads_on_log_scale() -> None:
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 2000, 4000, 8000, 16000, 100000]
    chosen = collect.pick_steps(steps, 6)
    assert chosen[0] == 0 and chosen[-1] == 100000 and len(chosen) == 6
    assert collect.pick_steps([5, 1, 3], 6) == [1, 3, 5]


def test_least_squares_fit_matches_scipy(sweep: Path) -> None:
    from scipy.stats import linregress

    data = collect.collect(sweep, run_fit=False)
    rows = {(r.group, r.quantity): r for r in data.fit_rows}
    assert ("solo", "CE") not in rows  # one model: no fit
    for group in ("alpha", "beta", "All"):
        cells = [c for c in data.final["prose"] if group == "All" or c.family == group]
        x = np.log([c.non_embedding_params for c in cells])
        for q, key in collect.QUANTITY_KEYS.items():
            ref = linregress(x, np.log(np.abs([c.summary[key] for c in cells])))
            row = rows[(group, q)]
            assert row.n_models == len(cells)
            assert row.alpha == pytest.approx(ref.slope, rel=1e-9, abs=1e-12)
            assert row.c == pytest.approx(ref.intercept, rel=1e-9, abs=1e-12)
            assert row.r2 == pytest.approx(ref.rvalue**2, rel=1e-9, abs=1e-12)
        assert rows[(group, "EE")].delta_alpha_vs_ce == pytest.approx(
            abs(rows[(group, "EE")].alpha - rows[(group, "CE")].alpha)
        )


def test_report_files_and_figures(sweep: Path, built: dict) -> None:
    names = {Path(p).name for p in built["figures"]}
    for fig in (3, 4, 5, 6, 7, 8):
        assert f"fig{fig}-prose.png" in names and f"fig{fig}-prose.svg" in names
    for p in built["figures"]:
        assert Path(p).stat().st_size > 1000
        if p.endswith(".png"):
            assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (sweep / "report.md").read_text()
    for fig in (3, 4, 5, 6, 7, 8):
        assert f"figures/fig{fig}-prose.png" in md
    assert "Table 1" in md and "Table 2" in md
    assert any("solo has fewer than 3 models" in n for n in built["notes"])


def test_html_is_self_contained(sweep: Path, built: dict) -> None:
    page = (sweep / "report.html").read_text()
    # Fig. 3-8, the RBP_k exponents and EE against documents
    assert len(re.findall(r'<img class="figure"[^>]*src="data:image/png;base64,', page)) == 8
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from disk or network
    assert 'id="table1"' in page and 'id="table2"' in page


def test_summary_is_computed_from_the_numbers(sweep: Path) -> None:
    data = collect.collect(sweep, run_fit=False)
    sentences = prose.summary_sentences(data)
    rows = {(r.group, r.quantity): r for r in data.fit_rows if r.dataset == "prose"}
    best = max(TABLE1_QUANTITIES, key=lambda q: rows[("All", q)].r2)
    headline = f"prose, All (8 models): {best} has the highest R²"
    assert any(s.startswith(headline) for s in sentences)
    small, large = data.final["prose"][0], data.final["prose"][-1]
    share = 100 * small.summary["error_entropy"] / small.summary["cross_entropy"]
    assert any(
        f"EE is {share:.1f}% of CE for the smallest model ({small.key.model}" in s
        for s in sentences
    )
    assert large.key.model == "beta-200m"
    # Flip the data: the summary must follow it, never contradict it.
    data.fits = replace(
        data.fits,
        fits=tuple(
            replace(r, r2=0.99 if r.quantity == "SA" else 0.1) if r.group == "All" else r
            for r in data.fits.fits
        ),
    )
    flipped = prose.summary_sentences(data)
    assert any(s.startswith("prose, All (8 models): SA has the highest R²") for s in flipped)
    assert "prose, All: a clean power law (R² ≥ 0.9) for SA; not for CE, EE, Conf." in flipped


def test_extrapolation_sentence_follows_the_errors(sweep: Path) -> None:
    data = collect.collect(sweep, run_fit=False)
    row = ExtrapolationComparison("prose", "All", 2, 0.03, 0.01, 0.02, (0.005, 0.04), True, None)
    data.fits = replace(data.fits, extrapolation_ce_vs_ee=(row,))
    (sentence,) = prose._extrapolation_sentences(data)
    assert (
        "EE extrapolates better than CE (mean |relative error| EE 1.00% vs CE 3.00%" in sentence
        and "excludes 0" in sentence
    )
    row = replace(row, ee_mean_abs_relative_error=0.05, difference_ci=(-0.04, 0.01))
    data.fits = replace(data.fits, extrapolation_ce_vs_ee=(row,))
    (sentence,) = prose._extrapolation_sentences(data)
    assert "EE extrapolates worse than CE" in sentence and "includes 0" in sentence


def test_report_with_the_bootstrap_fit(tmp_path: Path) -> None:
    from synthetic_sweep import build_synthetic_sweep

    root = tmp_path / "synth"
    build_synthetic_sweep(root, n_docs=40)
    result = report.build_report(root, n_boot=40, seed=3)
    fits = read_fits(root)  # the report leaves fits.json behind, as `errorentropy fit` would
    assert fits.settings.n_boot == 40
    data = collect.collect(root, run_fit=False)  # reads that fits.json: it is current
    assert data.fits == fits and data.fit_source.endswith("read from fits.json")
    t1, t2 = tables.fit_tables(data.fits)
    ee_all = fits.fit("synth", "All", "EE")
    row = next(r for r in t1.texts() if r[1] == "All")
    lo, hi = ee_all.r2_ci
    assert row[4] == f"{ee_all.r2:.4f} [{lo:.4f}, {hi:.4f}]"
    comps = tables.components_table(data.fits)
    cell = next(c for c in fits.cells if c.final and c.model == "A-0")
    lo, hi = cell.components["CE"].ci
    assert f"{cell.components['CE'].value:.4f} [{lo:.4f}, {hi:.4f}]" in next(
        r for r in comps.texts() if r[2] == "A-0"
    )
    assert (
        tables.extrapolation_table(data.fits) is not None
        and tables.saturating_table(data.fits) is not None
    )
    page = (root / "report.html").read_text()
    assert 'id="extrapolation"' in page and "extrapolates" in page
    assert {Path(p).name for p in result["figures"] if p.endswith(".png")} == {
        f"fig{i}-synth.png" for i in (3, 4, 6, 7, 8)
    } | {"rbp-synth.png", "convergence-synth.png"}


def test_cli_report_without_steps_or_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from errorentropy.cli import main

    root = build_sweep(tmp_path / "plain", steps=False, profile=False)
    assert main(["report", str(root), "--no-fit", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(out["report_html"]) == root / "report.html" and root.joinpath("report.md").exists()
    # No steps and no profile: only the scaling figures (Fig. 7, 8, RBP_k exponents, EE against
    # documents), and notes that say why.
    assert out["n_figures"] == 4
    assert {p.name for p in (root / "figures").iterdir()} == {
        f"{name}-prose.{ext}"
        for name in ("fig7", "fig8", "rbp", "convergence")
        for ext in ("png", "svg")
    }
    notes = " ".join(out["notes"])
    assert "Fig. 3, 4 and 6 are omitted" in notes and "Fig. 5 is omitted" in notes
    assert "Fig. 5 is omitted" in (root / "report.html").read_text()
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--no-fit"]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium_run(binary: str, profile_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile_dir}",
    ]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=90)


def test_html_renders_in_headless_chromium(sweep: Path, built: dict, tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    page = (sweep / "report.html").resolve()
    # Decoded images report their natural width; a broken data URI leaves it 0.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>document.addEventListener('DOMContentLoaded',()=>{});"
            "window.onload=()=>{document.body.setAttribute('data-widths',"
            "[...document.images].map(i=>i.naturalWidth).join(','));}</script></body>",
        )
    )
    dom = _chromium_run(
        binary, tmp_path / "profile1", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    html_out = dom.stdout
    for fig in (3, 4, 5, 6, 7, 8):
        assert f'id="fig{fig}-prose"' in html_out
    assert html_out.count("<img") == 8  # Fig. 3-8, RBP_k exponents, EE against documents
    assert '<table id="table1"' in html_out and '<table id="table2"' in html_out
    widths = re.search(r'data-widths="([^"]*)"', html_out)
    assert widths is not None, "onload never ran"
    assert all(int(w) > 200 for w in widths.group(1).split(",")), widths.group(1)
    shot = tmp_path / "shot.png"
    run = _chromium_run(
        binary,
        tmp_path / "profile2",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        "--hide-scrollbars",
        page.as_uri(),
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.std() > 0.05  # not a blank page: text, tables and plots
    assert (pixels.mean(axis=2) < 0.5).mean() > 0.005  # some dark ink
    keep = os.environ.get("ERRORENTROPY_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)  # for a human to look at


def test_summary_states_uncertainty_sign_changes_and_the_share_trend(tmp_path: Path) -> None:
    """The plain-words summary: the paired R^2 interval decides whether EE 'beats' CE, a Confidence
    that changes sign is never called a clean power law, and EE's share trend is the least-squares
    slope over every final model (not the two ends)."""
    from synthetic_sweep import build_synthetic_sweep, sign_changing_conf

    root = tmp_path / "synth"
    build_synthetic_sweep(root, n_docs=40, conf_law=sign_changing_conf, dynamics=False)
    report.build_report(root, n_boot=60, seed=1)
    data = collect.collect(root, run_fit=False)
    assert data.fits == read_fits(root)
    # Make Conf's log|Conf| fit look clean: the sign change must still win.
    data.fits = replace(
        data.fits,
        fits=tuple(replace(r, r2=0.999) if r.quantity == "Conf" else r for r in data.fits.fits),
    )
    sentences = prose.summary_sentences(data)
    clean = next(s for s in sentences if s.startswith("synth, All: a clean power law"))
    assert "Conf" not in clean.split(";")[0] and "Confidence changes sign" in clean
    paired = next(s for s in sentences if "paired bootstrap interval of R²(EE) − R²(CE)" in s)
    comparisons = [r for r in data.fits.r2_ee_vs_ce if r.dataset == "synth"]
    sure = sum(1 for r in comparisons if r.difference_ci[0] > 0 or r.difference_ci[1] < 0)
    assert f"excludes 0 in {sure} of {len(comparisons)}" in paired
    cells = data.final["synth"]
    shares = np.array([c.summary["error_entropy"] / c.summary["cross_entropy"] for c in cells])
    slope = np.polyfit(np.log10([c.non_embedding_params for c in cells]), shares, 1)[0]
    share = next(s for s in sentences if "percentage points per tenfold" in s)
    trend = "falls" if slope < 0 else "rises"
    assert (
        f"over all {len(cells)} final models its share {trend} by {100 * abs(slope):.2f}" in share
    )


def _rewrite_cell(root: Path, cell, *, params: int | None = None, **summary) -> None:
    """Seal a cell again with other summary values or parameter count (as a rescore would)."""
    write_cell_record(
        cell_path(root, cell.key),
        cell.key,
        family=cell.family,
        non_embedding_params=cell.non_embedding_params if params is None else params,
        total_params=cell.total_params,
        summary={**cell.summary, **summary},
    )


def test_no_fit_report_notes_what_it_cannot_fit(tmp_path: Path) -> None:
    """--no-fit: a zero value, a sign-changing Confidence and N <= 0 are notes, not crashes or
    silence."""
    root = build_sweep(tmp_path / "odd", steps=False, profile=False)
    cells = collect.final_revisions(load_cells(root))
    _rewrite_cell(root, cells[0], self_alignment=0.0)
    _rewrite_cell(root, cells[1], confidence=-abs(cells[1].summary["confidence"]) or -0.1)
    _rewrite_cell(root, cells[2], confidence=abs(cells[2].summary["confidence"]) or 0.1)
    _rewrite_cell(root, cells[3], params=0)
    data = collect.collect(root, run_fit=False)
    assert data.fits.settings.n_boot == 0 and data.fit_source == "least squares (no intervals)"
    assert not [r for r in data.fit_rows if r.quantity == "SA" and r.group == "All"]
    notes = data.notes
    assert any("prose/All: no power law fitted for SA" in n and "zero" in n for n in notes)
    assert any("prose/All: Confidence changes sign" in n for n in notes)
    assert any(
        f"{cells[3].key.model} on prose: non-embedding parameter count is 0" in n for n in notes
    )


def test_report_reads_a_current_fits_json_and_never_refits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report consumes the fits: with a fits.json current for the cells (and, unless
    --no-fit, fitted with the asked settings) it fits nothing; otherwise it fits once."""
    from errorentropy.fits import powerlaw
    from errorentropy.fits.fit import is_current
    from synthetic_sweep import build_synthetic_sweep

    root = tmp_path / "synth"
    build_synthetic_sweep(root, n_docs=20, doc_len=30, dynamics=False)
    calls: list[int] = []
    fit_power_law = powerlaw.fit_power_law

    def counting(*args, **kwargs):
        calls.append(1)
        return fit_power_law(*args, **kwargs)

    monkeypatch.setattr(powerlaw, "fit_power_law", counting)
    report.build_report(root, n_boot=20, seed=1)  # no fits.json yet: fitted once, and written
    assert len(calls) > 0  # the counter sees the fit
    written = (root / "fits.json").read_bytes()
    for kwargs in ({"n_boot": 20, "seed": 1}, {"run_fit": False}):
        calls.clear()
        report.build_report(root, **kwargs)
        assert calls == [], kwargs
        assert (root / "fits.json").read_bytes() == written
    report.build_report(root, n_boot=20, seed=2)  # other settings: fitted again
    assert len(calls) > 0
    cell = load_cells(root)[0]
    assert is_current(read_fits(root), load_cells(root))
    _rewrite_cell(root, cell, error_entropy=cell.summary["error_entropy"] + 1e-9)
    assert not is_current(read_fits(root), load_cells(root))
    calls.clear()
    report.build_report(root, run_fit=False)  # a rescored cell: fitted again, without bootstrap
    assert len(calls) > 0 and read_fits(root).settings.n_boot == 0


def test_a_model_without_non_embedding_parameters_does_not_break_fig7(
    sweep: Path, tmp_path: Path
) -> None:
    """The fits leave N <= 0 out with a note; Fig. 7's points and lines must too (a log axis)."""
    data = collect.collect(sweep, run_fit=False)
    object.__setattr__(data.final["prose"][0], "non_embedding_params", 0)
    points = draw.family_points(data, "prose")
    assert all(n > 0 for fam in points for n in fam.params)
    figs, _ = draw.draw_figures(data, tmp_path / "figures")
    assert any(Path(f.png).name.startswith("fig7") for f in figs)


# ---- the first screen: the question, the verdict, the headline figure --------------------------


def _set_ee_ce(data, dataset: str, ee: float, ce: float, ci) -> None:
    """Give the All fits of EE and CE these R² and the paired difference this interval."""
    from errorentropy.fits.records import R2Comparison

    def fix(r):
        if (r.dataset, r.group) != (dataset, "All") or r.quantity not in ("EE", "CE"):
            return r
        return replace(r, r2=ee if r.quantity == "EE" else ce, r2_ci=None)

    n = data.fits.fit(dataset, "All", "EE").n_models
    paired = [r for r in data.fits.r2_ee_vs_ce if r.dataset != dataset]
    paired.append(R2Comparison(dataset, "All", n, ee, ce, ee - ce, ci))
    data.fits = replace(data.fits, fits=tuple(map(fix, data.fits.fits)), r2_ee_vs_ce=tuple(paired))


def test_verdict_is_computed_from_the_fits(sweep: Path) -> None:
    """The verdict's numbers are the R² of independent least-squares lines over all models."""
    from scipy.stats import linregress

    data = collect.collect(sweep, run_fit=False)
    verdict = prose.verdict_sentences(data)
    assert 2 <= len(verdict) <= 5
    cells = data.final["prose"]
    x = np.log([c.non_embedding_params for c in cells])
    r2 = {
        q: linregress(x, np.log(np.abs([c.summary[key] for c in cells]))).rvalue ** 2
        for q, key in (("EE", "error_entropy"), ("CE", "cross_entropy"))
    }
    assert verdict[1] == (
        f"On prose (8 models, 3 families together), R² is {r2['EE']:.3f} for EE and "
        f"{r2['CE']:.3f} for CE: R²(EE) − R²(CE) = {r2['EE'] - r2['CE']:+.3f}."
    )
    lead = "Apparently yes: " if r2["EE"] > r2["CE"] else "No: "
    assert verdict[0].startswith(lead)
    assert verdict[-1] == (
        "These fits have no bootstrap intervals (--no-fit), so read these R² as rough."
    )


@pytest.mark.parametrize(
    ("ee", "ce", "ci", "lead", "clause"),
    [
        (0.99, 0.90, (0.02, 0.15), "Yes: ", "is above 0 there"),
        (0.99, 0.90, (-0.01, 0.15), "Not clearly: ", "includes 0"),
        (0.99, 0.90, None, "Apparently yes: ", "without bootstrap intervals"),
        (0.80, 0.95, (-0.30, -0.05), "No: ", "lies below 0."),
        (0.80, 0.95, (-0.30, 0.05), "No: ", "includes 0, so CE's lead is not clear"),
    ],
)
def test_verdict_says_how_sure_it_is(sweep: Path, ee, ce, ci, lead, clause) -> None:
    data = collect.collect(sweep, run_fit=False)
    _set_ee_ce(data, "prose", ee, ce, ci)
    first, detail, *_ = prose.verdict_sentences(data)
    assert first.startswith(lead) and clause in first, first
    assert f"R² is {ee:.3f} for EE and {ce:.3f} for CE: R²(EE) − R²(CE) = {ee - ce:+.3f}" in detail
    if ci is not None:
        assert detail.endswith(f" [{ci[0]:+.3f}, {ci[1]:+.3f}].")


def test_verdict_over_datasets_mixed_skipped_and_many(tmp_path: Path) -> None:
    """Mixed answers name where EE wins; a skipped fit is said, not hidden; with more than three
    datasets the numbers share one sentence, so the verdict stays within five."""
    root = build_sweep(tmp_path / "four", steps=False, profile=False, datasets=("a", "b", "c", "d"))
    data = collect.collect(root, run_fit=False)
    for dataset, (ee, ce) in zip("abcd", [(0.99, 0.9), (0.8, 0.95), (0.97, 0.96), (0.5, 0.6)]):
        _set_ee_ce(data, dataset, ee, ce, (ee - ce - 0.01, ee - ce + 0.01))
    verdict = prose.verdict_sentences(data)
    assert len(verdict) == 2  # eight models per dataset: no caution due
    assert verdict[0] == (
        "Mixed: EE's fit has the higher R² on 2 of 4 datasets (a, c), CE's on the rest; "
        "the 95% bootstrap interval of R²(EE) − R²(CE) lies above 0 on 2 and below 0 on 2."
    )
    assert verdict[1].startswith("Per dataset, R²(EE) − R²(CE): a +0.090 [+0.080, +0.100]; ")
    reason = "fewer than 3 models"
    data.fits = replace(
        data.fits,
        fits=tuple(
            replace(r, skipped=reason, alpha=None, c=None, r2=None)
            if r.quantity == "EE" and r.dataset == "d"
            else r
            for r in data.fits.fits
        ),
    )
    verdict = prose.verdict_sentences(data)
    assert "on all 3 datasets with both fits (a, b, c)" not in verdict[0]  # still mixed
    assert verdict[0].startswith("Mixed: EE's fit has the higher R² on 2 of 3 datasets (a, c)")
    assert f"d: the EE fit was skipped ({reason})" in verdict[1]
    data.fits = replace(
        data.fits,
        fits=tuple(replace(r, skipped=reason) if r.quantity == "CE" else r for r in data.fits.fits),
    )
    verdict = prose.verdict_sentences(data)
    assert verdict[0].startswith("This sweep cannot answer it")
    assert len(verdict) == 2 and "the CE fit was skipped" in verdict[1]


def test_one_family_is_shown_once(tmp_path: Path) -> None:
    """When one family holds every model its fits are the All fits: tables and statements show
    them once, under the family's name, and say so."""
    from synthetic_sweep import DEFAULT_FAMILIES, build_synthetic_sweep

    root = tmp_path / "one"
    build_synthetic_sweep(
        root, families={"A": DEFAULT_FAMILIES["A"]}, n_docs=20, doc_len=30, dynamics=False
    )
    report.build_report(root, run_fit=False)
    data = collect.collect(root, run_fit=False)
    assert data.fits.fit("synth", "All", "EE") is not None  # the fit has both groups
    assert tables.twin_of_all(data.fits, "synth") == "A"
    t1, t2 = tables.fit_tables(data.fits)
    assert [r[1] for r in t1.texts()] == ["A"] and [r[1] for r in t2.texts()] == ["A"]
    assert "A on synth" in t1.note
    saturating = tables.saturating_table(data.fits)
    assert saturating is not None and {r[1] for r in saturating.texts()} == {"A"}
    statements = prose.summary_sentences(data)
    assert not [s for s in statements if "All" in s], statements
    assert any("in 0 of 1 group (A)" in s or "in 1 of 1 group (A)" in s for s in statements)
    assert "(4 models, one family)" in prose.verdict_sentences(data)[1]
    md = (root / "report.md").read_text()
    assert "| synth | A | 4 |" in md and "| synth | All |" not in md
    # A sweep of several families keeps every group and All.
    assert (
        tables.twin_of_all(
            collect.collect(build_sweep(tmp_path / "many"), run_fit=False).fits, "prose"
        )
        is None
    )


def _positions(text: str, markers: list[str]) -> list[int]:
    found = [text.find(m) for m in markers]
    assert all(i >= 0 for i in found), [m for m, i in zip(markers, found) if i < 0]
    return found


def test_report_reads_from_the_answer_down(sweep: Path, built: dict) -> None:
    """Both forms: question, verdict, headline figure; figures, tables, statements; settings and
    notes last, inside <details>. The headline figure is Fig. 7 of the first dataset, once."""
    data = collect.collect(sweep, run_fit=False)
    lead = prose.verdict_sentences(data)[0]
    page = (sweep / "report.html").read_text()
    order = _positions(
        page,
        [
            f'<h1 id="question">{prose.QUESTION}</h1>',
            '<div id="verdict">',
            '<figure id="fig7-prose" class="headline"><img class="figure" id="headline-figure"',
            '<h2 id="figures">',
            '<h2 id="tables">',
            '<h2 id="statements">',
            '<details id="settings-details"><summary>',
            '<table id="settings">',
            '<details id="notes-details"><summary>',
        ],
    )
    assert order == sorted(order)
    drawn = [f for f in built["figures"] if f.endswith(".png")]
    assert page.count('id="fig7-prose"') == 1 and page.count("<img") == len(drawn)
    assert html.escape(lead) in page
    settings = page[page.index('<details id="settings-details">') :]
    assert settings.index('<table id="settings">') < settings.index("</details>")
    md = (sweep / "report.md").read_text()
    order = _positions(
        md,
        [
            f"# {prose.QUESTION}",
            f"**{lead}**",
            "](figures/fig7-prose.png)",
            "## Figures",
            "## Tables",
            "## Detailed statements",
            "<summary>Settings</summary>",
            "| setting | value |",
            "<summary>Notes (",
        ],
    )
    assert order == sorted(order) and md.count("figures/fig7-prose.png") == 1
    for fig in (3, 4, 5, 6, 8):  # every figure has a line on what to look for
        assert re.search(rf"\*\*Look for: [^*]+\*\* \*Fig\. {fig} \(prose\)", md), fig


# A script appended to a copy of the page: on load it writes, into <pre id="first-screen">, the
# viewport and the rects of the question, the verdict and the headline figure as the page lays
# them out, and whether settings and notes sit inside a closed <details>.
_FIRST_SCREEN_PROBE = """<script>
window.addEventListener('load', () => {
  const box = (s) => { const e = document.querySelector(s); if (!e) return null;
    const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  const folded = (s) => { const e = document.querySelector(s); const d = e && e.closest('details');
    return e ? (d ? (d.open ? 'open' : 'closed') : 'none') : 'missing'; };
  const img = document.getElementById('headline-figure');
  const b = img.getBoundingClientRect();
  const hit = document.elementFromPoint((b.left + b.right) / 2, (b.top + b.bottom) / 2);
  const out = {width: innerWidth, height: innerHeight, figure: box('#headline-figure'),
    natural: img.naturalWidth, hit: hit === img, verdict: box('#verdict'),
    question: box('#question'), verdictText: document.getElementById('verdict').innerText,
    settings: folded('#settings'), notes: folded('ul.notes')};
  const pre = document.createElement('pre'); pre.id = 'first-screen';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});
</script></body>"""
# A 1280 x 800 viewport exactly (kiosk: no browser toolbar), and a 1280 x 800 window whose
# toolbar leaves a shorter viewport, as a reader's browser does.
_VIEWPORTS = {
    "screen": ("--screen-info={1280x800}", "--kiosk", "--window-size=1280,800"),
    "window": ("--window-size=1280,800",),
}


@pytest.mark.parametrize(
    ("datasets", "viewport"),
    [(("prose",), "screen"), (("prose", "code", "wiki"), "screen"), (("code", "wiki"), "window")],
)
def test_first_screen_holds_question_verdict_and_headline_figure(
    tmp_path: Path, datasets: tuple[str, ...], viewport: str
) -> None:
    """In headless Chromium at 1280 x 800 the question, the verdict and the headline figure lie
    in the first viewport (positions as the page computes them), and settings and notes are
    folded away."""
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    root = build_sweep(tmp_path / "sweep", datasets=datasets, steps=len(datasets) == 1)
    report.build_report(root, run_fit=False)
    verdict = prose.verdict_sentences(collect.collect(root, run_fit=False))
    page = (root / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _FIRST_SCREEN_PROBE))
    flags = _VIEWPORTS[viewport]
    dom = _chromium_run(
        binary, tmp_path / "p1", *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = re.search(r'<pre id="first-screen">(.*?)</pre>', dom.stdout, re.S)
    assert found is not None, "the probe never ran"
    seen = json.loads(html.unescape(found.group(1)))
    width, height = seen["width"], seen["height"]
    assert width == 1280 and 600 <= height <= 800, (width, height)
    if viewport == "screen":
        assert height == 800
    for name in ("question", "verdict", "figure"):
        left, top, right, bottom = seen[name]
        assert 0 <= left < right <= width and 0 <= top < bottom <= height, (name, seen[name])
    left, top, right, bottom = seen["figure"]
    assert right - left >= 450 and bottom - top >= 380, seen["figure"]  # not a thumbnail
    assert seen["natural"] > 0 and seen["hit"]  # decoded, and nothing covers it
    text = " ".join(seen["verdictText"].split())
    assert all(sentence in text for sentence in verdict), (verdict, text)
    assert seen["settings"] == "closed" and seen["notes"] == "closed"
    shot = tmp_path / f"first-screen-{len(datasets)}-{viewport}.png"
    run = _chromium_run(
        binary, tmp_path / "p2", *flags, f"--screenshot={shot}", (root / "report.html").as_uri()
    )
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    keep = os.environ.get("ERRORENTROPY_KEEP_FIRST_SCREEN")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)  # for a human to look at


@pytest.mark.parametrize(
    "folder, shown",
    [("sweep", "· sweep ·"), ("sweep-2", "· sweep-2 ·"), ("runs", "· sweep runs ·")],
)
def test_byline_names_the_sweep_folder_once(sweep: Path, folder: str, shown: str) -> None:
    """The byline says "sweep NAME", but not "sweep sweep" for a folder named sweep."""
    data = replace(report.collect(sweep, run_fit=False), sweep_dir=sweep.parent / folder)
    line = report._byline(data)
    assert line.startswith(f"errorentropy report {shown} 8 models") and "sweep sweep" not in line
