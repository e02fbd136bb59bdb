"""RBP_k and MRR from the rank histogram, the --rbp-k option, and the relative-based law
``-log RBP_k ∝ N^alpha`` fitted over a sweep (arXiv 2510.20387)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errorentropy.cli import main
from errorentropy.errors import UserError
from errorentropy.fits.fit import fit_sweep, rbp_ks_of, read_fits, write_fits
from errorentropy.fits.records import SweepFits
from errorentropy.options import DEFAULT_RBP_KS, ScoreOptions
from errorentropy.report.tables import rbp_cells, rbp_markdown
from errorentropy.scoring.results import summarize
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable
from errorentropy.sweep.cells import CellKey, cell_path, load_cells, write_cell_record
from errorentropy.sweep.spec import cell_settings, legacy_cell_settings, parse_spec, settings_digest


def loop_rbp(ranks: list[int], k: int) -> float:
    """RBP_k by counting, one token at a time, in float64."""
    hits = 0
    for r in ranks:
        if r < k:
            hits += 1
    return hits / len(ranks)


def loop_mrr(ranks: list[int]) -> float:
    total = 0.0
    for r in ranks:
        total += 1.0 / (r + 1.0)
    return total / len(ranks)


@settings(max_examples=60, deadline=None)
@given(
    ranks=st.lists(st.integers(0, 5000), min_size=1, max_size=300),
    ks=st.lists(st.integers(1, 6000), min_size=1, max_size=5),
)
def test_rbp_and_mrr_of_a_histogram_match_a_float64_loop(ranks, ks):
    hist = RankHistogram.from_tokens(ranks, np.full(len(ranks), -1.0))
    got = hist.rbp_at(ks)
    assert sorted(got) == sorted(set(ks))
    for k in ks:
        assert got[k] == loop_rbp(ranks, k)  # a count over N: exact
    assert hist.mrr() == pytest.approx(loop_mrr(ranks), rel=1e-13)


def test_rbp_adds_up_over_shards_and_refuses_bad_ks():
    rng = np.random.default_rng(0)
    a = RankHistogram.from_tokens(rng.integers(0, 50, 200), -rng.random(200))
    b = RankHistogram.from_tokens(rng.integers(0, 500, 300), -rng.random(300))
    both = a + b
    for k, value in both.rbp_at((1, 7, 60)).items():
        assert value == pytest.approx(
            (a.rbp_at([k])[k] * a.n_tokens + b.rbp_at([k])[k] * b.n_tokens) / both.n_tokens
        )
    empty = RankHistogram()
    assert np.isnan(empty.mrr()) and all(np.isnan(v) for v in empty.rbp_at().values())
    for bad in ([0], [-3], [True], [2.5]):
        with pytest.raises(ValueError, match="k >= 1"):
            a.rbp_at(bad)


def test_summary_rbp_and_mrr_from_a_scored_token_table(model_dir, short_docs, tmp_path, capsys):
    """The score command's rbp_at and mrr against the ranks in its own tokens.npz, and the
    EE verdict on stderr before the summary, which stays the last line of stdout."""
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in short_docs), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["score", "--model", str(model_dir), "--data", str(data), "--max-length", "64"]
    assert main([*argv, "--rbp-k", "5,1,50", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary == json.loads((out / "summary.json").read_text())
    with np.load(out / "tokens.npz") as tokens:
        ranks = tokens["rank"].astype(np.int64)
    assert list(summary["rbp_at"]) == ["1", "5", "50"]
    for k in (1, 5, 50):
        assert summary["rbp_at"][str(k)] == np.mean(ranks < k) == loop_rbp(ranks.tolist(), k)
    assert summary["mrr"] == pytest.approx(loop_mrr(ranks.tolist()), rel=1e-13)
    assert summary["rbp_at"]["1"] == summary["top1_accuracy"]
    assert "rbp_k" not in summary  # rbp_at names its ks
    assert "ee_settled" not in summary  # the old verdict: replaced by the bias left
    assert summary["ee_convergence"]["error_entropy"] == summary["error_entropy"]
    lo, hi = summary["ee_bias_interval"]
    assert lo <= summary["ee_bias"] <= hi
    statement = [line for line in captured.err.splitlines() if "bias left in EE" in line]
    assert len(statement) == 1 and statement[0].startswith("errorentropy score: bias left in EE")
    assert f"{summary['ee_bias']:+.4f} nats" in statement[0]


def test_rbp_k_is_checked_and_left_out_of_the_settings_digest(tmp_path):
    text = '[[models]]\nid = "x/y"\n[[datasets]]\ndata = "wikipedia"\n'
    plain = parse_spec(text)
    other = parse_spec("[scoring]\nrbp_k = [3, 30]\n" + text)
    assert other.score_options().rbp_k == (3, 30)
    for spec_a, spec_b in ((plain, other),):
        for settings_of in (cell_settings, legacy_cell_settings):
            a = settings_of(spec_a, spec_a.models[0], None, spec_a.datasets[0])
            b = settings_of(spec_b, spec_b.models[0], None, spec_b.datasets[0])
            assert settings_digest(a) == settings_digest(b)
    for bad in ("rbp_k = [0]", "rbp_k = []", 'rbp_k = ["a"]', "rbp_k = 10"):
        with pytest.raises(UserError, match="rbp_k"):
            parse_spec(f"[scoring]\n{bad}\n" + text)
    assert ScoreOptions.from_mapping({"rbp_k": [10, 1, 10]}).rbp_k == (1, 10)
    assert ScoreOptions().rbp_k == DEFAULT_RBP_KS
    assert "rbp_k" not in ScoreOptions().settings()


# ---- the relative-based law over a synthetic sweep ----------------------------------------------

KS = (1, 10, 100)
# -log RBP_k = A_k N^ALPHA_k exactly in the population; at every N, RBP_1 < RBP_10 < RBP_100 < 1.
LAWS = {1: (30.0, -0.12), 10: (12.0, -0.15), 100: (4.0, -0.2)}
SIZES = (1e6, 4e6, 1.6e7, 6.4e7, 2.56e8)
VOCAB = 4000


def population(n_params: float) -> np.ndarray:
    """p_e with RBP_k = exp(-A_k N^alpha_k) for k in KS: uniform within each band of ranks."""
    rbp = [np.exp(-a * n_params**alpha) for a, alpha in (LAWS[k] for k in KS)]
    edges = (0, *KS, VOCAB)
    mass = np.diff([0.0, *rbp, 1.0])
    assert np.all(mass > 0)
    p = np.zeros(VOCAB)
    for lo, hi, m in zip(edges[:-1], edges[1:], mass):
        p[lo:hi] = m / (hi - lo)
    return p


def write_sweep(directory, *, n_docs=300, doc_len=100, keep_rbp=True, seed=0):
    """One family over SIZES; with keep_rbp=False the summaries have no rbp_at (older cells)."""
    rng = np.random.default_rng(seed)
    for i, size in enumerate(SIZES):
        p = population(size)
        rank = rng.choice(VOCAB, size=n_docs * doc_len, p=p)
        table = TokenTable(
            np.repeat(np.arange(n_docs, dtype=np.int32), doc_len),
            np.tile(np.arange(1, doc_len + 1, dtype=np.int32), n_docs),
            rank.astype(np.int32),
            np.log(p[rank]) - 0.1,
        )
        key = CellKey(f"m-{i}", None, "synth")
        folder = cell_path(directory, key)
        folder.mkdir(parents=True)
        histogram = table.histogram(n_documents=n_docs)
        histogram.save(folder / "histogram.json")
        table.save(folder / "tokens.npz")
        summary = summarize(histogram, {"model": key.model, "revision": None}, rbp_ks=KS)
        if not keep_rbp:
            del summary["rbp_at"], summary["mrr"]
        write_cell_record(
            folder,
            key,
            family="fam",
            non_embedding_params=int(size),
            total_params=int(size),
            summary=summary,
        )
    return directory


@pytest.fixture(scope="module")
def rbp_sweep(tmp_path_factory):
    return write_sweep(tmp_path_factory.mktemp("rbp"))


def test_the_rbp_fit_recovers_known_exponents(rbp_sweep):
    fits = fit_sweep(rbp_sweep, n_boot=200, seed=1)
    assert fits.settings.rbp_ks == KS  # the ks the cells' summaries record
    for k, (a, alpha) in LAWS.items():
        row = fits.rbp_fit("synth", "All", k)
        assert row is not None and row.fitted and row.n_models == len(SIZES)
        assert row.alpha_ci[0] < alpha < row.alpha_ci[1], (k, row.alpha, row.alpha_ci)
        assert row.alpha == pytest.approx(alpha, abs=0.02)
        assert row.r2 > 0.99 and row.n_boot_valid == 200
        truth = np.array([np.exp(-a * n**alpha) for n in SIZES])
        binomial_sd = np.sqrt(truth * (1 - truth) / 30_000)  # 300 documents of 100 tokens
        assert np.all(np.abs(np.array(row.rbp) - truth) < 4 * binomial_sd), (row.rbp, truth)
        assert row.values == pytest.approx(-np.log(row.rbp), rel=1e-12)
    assert SweepFits.from_dict(fits.to_dict()) == fits


def test_old_cells_get_rbp_from_their_histogram(tmp_path, rbp_sweep):
    old = write_sweep(tmp_path / "old", keep_rbp=False)
    assert all("rbp_at" not in c.summary for c in load_cells(old))
    assert rbp_ks_of(load_cells(old)) == DEFAULT_RBP_KS
    new_fits = fit_sweep(rbp_sweep, n_boot=0, rbp_ks=KS)
    old_fits = fit_sweep(old, n_boot=0, rbp_ks=KS)
    for k in KS:  # the same data: the histogram gives what the summary recorded
        assert old_fits.rbp_fit("synth", "All", k).rbp == new_fits.rbp_fit("synth", "All", k).rbp
    assert rbp_ks_of([], [100, 10, 10]) == (10, 100)
    with pytest.raises(UserError, match="rbp_ks must be integers >= 1"):
        rbp_ks_of([], [0])


def test_rbp_table_and_the_fit_command(rbp_sweep, capsys):
    assert main(["fit", str(rbp_sweep), "--n-boot", "50", "--rbp-k", "1,10,100,4000"]) == 0
    out = capsys.readouterr().out
    fits = read_fits(rbp_sweep)
    assert rbp_markdown(fits) in out
    skipped = fits.rbp_fit("synth", "All", 4000)
    assert skipped.skipped and "RBP_4000 = 1" in skipped.skipped and skipped.alpha is None
    tables = rbp_sweep / "tables"
    for name in ("rbp.md", "rbp.csv", "rbp.tex"):
        assert (tables / name).is_file()
    with open(tables / "rbp.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    # One family holds every model: its rows are the All fits too, shown once under its name.
    assert {r["group"] for r in records} == {"fam"}
    laws = [r["law"] for r in records]
    assert laws == ["-log RBP_1", "-log RBP_10", "-log RBP_100", "-log RBP_4000", "CE", "EE"]
    row = fits.rbp_fit("synth", "fam", 10)
    assert row.alpha == fits.rbp_fit("synth", "All", 10).alpha
    record = next(r for r in rbp_cells(fits) if r["k"] == 10)
    assert record["alpha"] == row.alpha and record["r2_lo"] == row.r2_ci[0]
    assert float(next(r for r in records if r["k"] == "10")["alpha"]) == row.alpha
    ee = next(r for r in rbp_cells(fits) if r["law"] == "EE")
    assert ee["alpha"] == fits.fit("synth", "All", "EE").alpha
    write_fits(rbp_sweep, fits)  # writes again what it read


def test_a_fits_file_without_rbp_reads_back_unchanged():
    from pathlib import Path

    golden = Path(__file__).parent / "golden" / "v1" / "fits.json"
    body = json.loads(golden.read_text())
    body.pop("checksum")
    fits = read_fits(golden)
    assert fits.rbp_fits == () and fits.convergence == () and fits.settings.rbp_ks is None
    assert fits.to_dict() == body
