"""Has EE settled with the documents? The convergence check against a known entropy, its
definition on a token table, and its place in summaries, fits and the report."""

from __future__ import annotations

import numpy as np
import pytest

from errorentropy.fits.fit import fit_sweep
from errorentropy.report import page as report
from errorentropy.stats.convergence import (
    FRACTIONS,
    Convergence,
    ee_convergence,
    nested_subsets,
)
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable
from errorentropy.sweep.cells import load_cells
from synthetic_sweep import build_synthetic_sweep

SUPPORT = 50_000  # a vocabulary-sized support
DOC_LEN = 100


def known_distribution() -> tuple[np.ndarray, float]:
    """Half the mass geometric on the first 20 ranks, half spread evenly over 2000 ranks
    scattered across the support; returns p and its entropy (nats)."""
    p = np.zeros(SUPPORT)
    head = 0.5 ** np.arange(1, 21)
    p[:20] = 0.5 * head / head.sum()
    tail = np.random.default_rng(123).choice(np.arange(20, SUPPORT), 2000, replace=False)
    p[tail] += 0.5 / 2000
    nonzero = p[p > 0]
    return p, float(-(nonzero * np.log(nonzero)).sum())


def sample(p: np.ndarray, n_docs: int, seed: int) -> TokenTable:
    rank = np.random.default_rng(seed).choice(p.size, size=n_docs * DOC_LEN, p=p)
    return TokenTable(
        np.repeat(np.arange(n_docs, dtype=np.int32), DOC_LEN),
        np.tile(np.arange(1, DOC_LEN + 1, dtype=np.int32), n_docs),
        rank.astype(np.int32),
        np.log(p[rank]),
    )


def test_small_samples_are_flagged_and_large_ones_settle():
    """3,200 tokens from a distribution whose 2,020 ranks are far from discovered: the plug-in
    EE still climbs from half to all documents by more than its interval, and is flagged;
    102,400 tokens: settled. Miller-Madow is nearer the true entropy at the small size."""
    p, entropy = known_distribution()
    small = [ee_convergence(sample(p, 32, seed)) for seed in range(5)]
    large = [ee_convergence(sample(p, 1024, seed)) for seed in range(5)]
    assert [c.settled for c in small] == [False] * 5
    assert sum(bool(c.settled) for c in large) >= 4
    for c in small:
        plug_in, miller_madow = c.error_entropy[-1], c.error_entropy_miller_madow[-1]
        assert plug_in < miller_madow < entropy + 0.05
        assert abs(miller_madow - entropy) < abs(plug_in - entropy)
        assert c.change > 0  # still rising: the support is being discovered
    for c in large:
        assert abs(c.error_entropy[-1] - entropy) < 0.05
        lo, hi = c.interval
        assert lo < c.error_entropy[-1] < hi


def test_the_check_follows_its_definition():
    p, _ = known_distribution()
    table = sample(p, 40, seed=7)
    check = ee_convergence(table, n_boot=100, seed=3)
    masks = nested_subsets(table.doc, FRACTIONS, seed=3)
    assert check.n_documents == (5, 10, 20, 40)  # ceil(f * 40)
    for smaller, larger in zip(masks, masks[1:]):
        assert np.all(larger[smaller])  # nested
    for i, mask in enumerate(masks):
        d = RankHistogram.from_tokens(table.rank[mask], table.logprob[mask]).decompose()
        assert check.error_entropy[i] == d.error_entropy
        assert check.error_entropy_miller_madow[i] == d.error_entropy_miller_madow
        assert check.n_tokens[i] == int(mask.sum())
    assert check.error_entropy[-1] == table.histogram().decompose().error_entropy
    lo, hi = check.interval
    assert check.settled == (lo <= check.error_entropy[2] <= hi)
    offsets = (lo - check.error_entropy[-1], hi - check.error_entropy[-1])
    assert check.settled_miller_madow == (offsets[0] <= -check.change_miller_madow <= offsets[1])
    assert ee_convergence(table, n_boot=100, seed=3) == check  # seeded
    assert Convergence.from_dict(check.to_dict()) == check
    assert ("settled" in check.describe()) and f"{check.error_entropy[-1]:.4f}" in check.describe()


def test_one_document_has_no_verdict_and_bad_fractions_are_refused():
    table = TokenTable(np.zeros(30, dtype=np.int32), np.arange(30), np.arange(30) % 4, -np.ones(30))
    check = ee_convergence(table)
    assert check.interval is None and check.settled is None and check.settled_miller_madow is None
    assert check.n_documents == (1, 1, 1, 1)
    assert "not assessed" in check.describe()
    with pytest.raises(ValueError, match="0.5"):
        ee_convergence(table, fractions=(0.25, 1.0))
    with pytest.raises(ValueError, match="ascend"):
        nested_subsets(table.doc, (0.5, 0.25, 1.0))


def test_fits_note_unsettled_cells_and_the_report_shows_the_curves(tmp_path):
    """A sweep of few short documents over heavy-tailed ranks: EE of its smallest models has not
    settled; the fits carry every cell's check and a note, the report the curves and the table.
    The synthetic cells' summaries hold no check, so the fits compute it from their tokens."""
    families = {"A": {"sizes": [1e6, 4e6, 1.6e7, 6.4e7], "ee_a": 20.0, "ee_alpha": -0.09}}
    build_synthetic_sweep(tmp_path, families=families, n_docs=24, doc_len=40, dynamics=False)
    assert all("ee_convergence" not in c.summary for c in load_cells(tmp_path))
    fits = fit_sweep(tmp_path, n_boot=50, seed=0)
    assert len(fits.convergence) == 4 and all(c.final for c in fits.convergence)
    for row in fits.convergence:
        table = next(c for c in load_cells(tmp_path) if c.key.cell_id == row.cell_id).tokens()
        assert row.check == ee_convergence(table)
    loose = [c.model for c in fits.convergence if c.check.settled is False]
    notes = [n for n in fits.notes if n.kind == "ee-not-settled"]
    assert loose and len(notes) == 1 and all(m in notes[0].message for m in loose)
    result = report.build_report(tmp_path, run_fit=False)
    names = {p.rsplit("/", 1)[-1] for p in result["figures"]}
    assert {"convergence-synth.png", "rbp-synth.png"} <= names
    markdown = (tmp_path / "report.md").read_text()
    assert "Has EE settled" in markdown and "NO" in markdown
    assert any("EE has not settled" in n for n in result["notes"])
