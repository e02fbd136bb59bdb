"""Document-level bootstrap: equals a naive resample, keeps the identity, covers at the nominal
rate."""

from __future__ import annotations

import numpy as np
import pytest

from errorentropy.stats.bootstrap import (
    bootstrap_cell,
    components_from_dense,
    document_histograms,
    percentile_interval,
    reindex,
    replicate_components,
    resample_weights,
)
from errorentropy.stats.histogram import RankHistogram


def _tokens(rng: np.random.Generator, n_docs: int = 40, mean_len: int = 30):
    lengths = rng.integers(1, 2 * mean_len, n_docs)
    doc = np.repeat(np.arange(n_docs) * 3 + 1, lengths)  # sparse, non-contiguous ids
    rank = np.minimum(rng.geometric(0.3, doc.size) - 1, 50) * 7  # gaps between observed ranks
    logprob = -rng.gamma(1.5, 1.0, doc.size) - 0.01 * rank
    return doc, rank, logprob


def _as_tuple(d):
    return np.array([d.cross_entropy, d.error_entropy, d.self_alignment, d.confidence])


def test_unit_weights_reproduce_the_histogram_decomposition():
    doc, rank, logprob = _tokens(np.random.default_rng(0))
    hists = document_histograms(doc, rank, logprob)
    got = replicate_components(hists, np.ones((1, hists.n_documents)))[0]
    ref = _as_tuple(RankHistogram.from_tokens(rank, logprob).decompose())
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)
    assert got[0] == pytest.approx(got[1] + got[2] - got[3], abs=1e-12)


def test_weighted_replicates_equal_naive_resampled_decompositions():
    rng = np.random.default_rng(1)
    doc, rank, logprob = _tokens(rng)
    hists = document_histograms(doc, rank, logprob)
    weights = resample_weights(hists.n_documents, 6, rng)
    assert np.all(weights.sum(axis=1) == hists.n_documents)
    got = replicate_components(hists, weights)
    for b in range(weights.shape[0]):
        picked = np.repeat(
            hists.doc_space, weights[b].astype(int)
        )  # the documents drawn, with repeats
        idx = np.concatenate([np.flatnonzero(doc == d) for d in picked])
        ref = _as_tuple(RankHistogram.from_tokens(rank[idx], logprob[idx]).decompose())
        np.testing.assert_allclose(got[b], ref, rtol=1e-11, atol=1e-12)


def test_reindex_to_a_shared_space_changes_nothing():
    doc, rank, logprob = _tokens(np.random.default_rng(2))
    hists = document_histograms(doc, rank, logprob)
    wide = np.union1d(hists.doc_space, [0, 2, 1000])
    moved = reindex(hists, wide)
    weights = np.zeros((1, wide.size))
    weights[0, np.searchsorted(wide, hists.doc_space)] = np.arange(1, hists.n_documents + 1)
    direct = np.zeros((1, hists.n_documents))
    direct[0] = np.arange(1, hists.n_documents + 1)
    np.testing.assert_allclose(
        replicate_components(moved, weights), replicate_components(hists, direct), rtol=1e-13
    )
    np.testing.assert_array_equal(
        document_histograms(doc, rank, logprob, doc_space=wide).counts.toarray(),
        moved.counts.toarray(),
    )
    with pytest.raises(ValueError, match="doc_space"):
        document_histograms(doc, rank, logprob, doc_space=np.array([1, 4]))


def test_empty_rows_give_nan_and_intervals_ignore_them():
    out = components_from_dense(
        np.array([[0.0, 0.0], [3.0, 1.0]]), np.array([[0.0, 0.0], [-1.0, -2.0]])
    )
    assert np.all(np.isnan(out[0])) and np.all(np.isfinite(out[1]))
    lo, hi = percentile_interval(np.array([1.0, np.nan, 3.0, 2.0]))
    assert lo == pytest.approx(np.percentile([1.0, 3.0, 2.0], 2.5)) and hi == pytest.approx(
        np.percentile([1.0, 3.0, 2.0], 97.5)
    )
    assert np.all(np.isnan(percentile_interval(np.array([np.nan, np.nan]))))


def test_bootstrap_cell_is_reproducible_and_brackets_the_estimate():
    doc, rank, logprob = _tokens(np.random.default_rng(3), n_docs=80)
    a = bootstrap_cell(doc, rank, logprob, n_boot=300, seed=7)
    b = bootstrap_cell(doc, rank, logprob, n_boot=300, seed=7)
    np.testing.assert_array_equal(a.replicates, b.replicates)
    assert a.interval[0, 0] < a.point[0] < a.interval[1, 0]  # CE: a smooth ratio, unbiased enough
    assert set(a.as_dict()) == {"CE", "EE", "SA", "Conf"}


def _coverage(draw, truth: np.ndarray, trials: int, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hits = np.zeros(truth.size)
    for _ in range(trials):
        doc, rank, logprob = draw(rng)
        hists = document_histograms(doc, rank, logprob)
        reps = replicate_components(hists, resample_weights(hists.n_documents, n_boot, rng))
        lo, hi = percentile_interval(reps[:, :2])  # CE and EE
        hits += (lo <= truth) & (truth <= hi)
    return hits / trials


def test_intervals_cover_the_true_values_at_about_the_nominal_rate():
    """Clustered documents (each with its own difficulty), 4 ranks: known population CE and EE.

    200 trials: the binomial standard error of a 95% coverage is 1.5%, so [0.90, 0.99] is a
    ~3-sigma band; a token-level (not document-level) bootstrap would under-cover here.
    """
    p = np.array([0.5, 0.25, 0.15, 0.1])
    true_ee = float(-(p * np.log(p)).sum())
    base = np.log(np.array([0.6, 0.2, 0.1, 0.05]))  # mean log-prob at each rank

    def draw(rng):
        n_docs = 50
        lengths = rng.integers(20, 61, n_docs)
        doc = np.repeat(np.arange(n_docs), lengths)
        effect = rng.normal(0.0, 0.4, n_docs)[
            doc
        ]  # shared within a document: tokens are not independent
        rank = rng.choice(4, size=doc.size, p=p)
        logprob = np.minimum(base[rank] + effect + rng.normal(0, 0.1, doc.size), 0.0)
        return doc, rank, logprob

    # Clipping at 0 shifts the true CE slightly; measure it once on a huge sample.
    big_rng = np.random.default_rng(99)
    _, _, lp = zip(*(draw(big_rng) for _ in range(400)))
    true_ce = float(-np.mean(np.concatenate(lp)))
    coverage = _coverage(draw, np.array([true_ce, true_ee]), trials=200, n_boot=300, seed=11)
    assert 0.90 <= coverage[0] <= 0.99, coverage
    assert 0.90 <= coverage[1] <= 0.99, coverage


def test_interval_of_a_mean_covers_at_the_nominal_rate():
    """The percentile machinery alone: a bootstrap interval for a normal mean covers ~95%."""
    rng = np.random.default_rng(12)
    hits = 0
    for _ in range(200):
        x = rng.normal(1.0, 2.0, 60)
        reps = x[rng.integers(0, x.size, (400, x.size))].mean(axis=1)
        lo, hi = percentile_interval(reps)
        hits += lo <= 1.0 <= hi
    assert 0.90 <= hits / 200 <= 0.99


def test_paired_fit_interval_for_alpha_covers_the_true_exponent():
    """Five models share documents (a shared per-document difficulty); population CE = 2 N^-0.1.

    One shared resampling per replicate, refit: the percentile interval of alpha covers -0.1
    at about 95% (100 trials: [0.87, 1.0] is a ~3-sigma band).
    """
    from errorentropy.fits.powerlaw import fit_lines

    sizes = np.array([1e6, 4e6, 1.6e7, 6.4e7, 2.56e8])
    true_alpha = -0.1
    rng = np.random.default_rng(21)
    hits = 0
    trials = 100
    for _ in range(trials):
        n_docs = 40
        lengths = rng.integers(10, 40, n_docs)
        doc = np.repeat(np.arange(n_docs), lengths)
        difficulty = rng.gamma(4.0, 0.25, n_docs)[doc]  # mean 1, shared by every model
        hists = []
        for size in sizes:
            noise = rng.gamma(2.0, 0.5, doc.size)  # mean 1, independent per model
            logprob = -2.0 * size**true_alpha * difficulty * noise
            hists.append(document_histograms(doc, np.zeros(doc.size, dtype=int), logprob))
        weights = resample_weights(n_docs, 200, rng)
        ce = np.stack([replicate_components(h, weights)[:, 0] for h in hists], axis=1)
        alpha, _, _ = fit_lines(np.log(sizes), np.log(ce))
        lo, hi = percentile_interval(alpha)
        hits += lo <= true_alpha <= hi
    assert 0.87 <= hits / trials <= 1.0


def test_centred_intervals_cover_the_corpus_level_ee_where_percentile_intervals_fail():
    """Heavy-tailed ranks (3000 of them, ~2400 tokens): resampling loses rare ranks and shifts EE's
    replicates down; the centred interval still covers E[plug-in EE at this size], the plain one
    does not."""
    from errorentropy.stats.bootstrap import centred_interval

    support = 3000
    p = 1.0 / np.arange(1, support + 1) ** 1.1
    p /= p.sum()
    rng = np.random.default_rng(5)

    def draw():
        lengths = rng.integers(20, 61, 60)
        doc = np.repeat(np.arange(60), lengths)
        rank = rng.choice(support, size=doc.size, p=p)
        return doc, rank, -1.0 - 0.001 * rank - rng.random(doc.size)

    def ee(hists, weights):
        return replicate_components(hists, weights)[:, 1]

    target = np.mean(
        [
            ee(h, np.ones((1, h.n_documents)))[0]
            for h in (document_histograms(*draw()) for _ in range(150))
        ]
    )
    centred = plain = 0
    trials = 60
    for _ in range(trials):
        h = document_histograms(*draw())
        point = ee(h, np.ones((1, h.n_documents)))
        reps = ee(h, resample_weights(h.n_documents, 200, rng))[:, None]
        lo, hi = centred_interval(point, reps)[:, 0]
        centred += lo <= target <= hi
        lo, hi = percentile_interval(reps)[:, 0]
        plain += lo <= target <= hi
    assert centred / trials >= 0.75, centred / trials
    assert plain / trials <= 0.4, plain / trials


def test_a_cells_bootstrap_holds_little_memory_at_a_large_vocabulary():
    """A cell's document bootstrap (200 replicates) over ~15k observed ranks, as at vocabulary
    151,936: its dense replicate chunks stay small (about nine arrays of replicates x ranks are
    live at once; with all 200 replicates in one chunk this bootstrap, when every summary ran it,
    set the peak of errorentropy score at max-length 2048, batch 8)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n = 16_000
    doc = np.repeat(np.arange(8), n // 8)
    rank = rng.permutation(n)
    logprob = -rng.exponential(1.0, n) - 0.01
    tracemalloc.start()
    try:
        bootstrap_cell(doc, rank, logprob, n_boot=200, seed=0, level=0.95)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * 2**20, f"{peak / 2**20:.0f} MiB"
