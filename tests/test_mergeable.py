"""Every mergeable value held to the same algebra by the generic tester in ``mergeable.py``:
the rank histogram, the sorted-probability profile, and a scored result merged across shards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errorentropy.options import ScoreOptions
from errorentropy.scoring.distributed import merge_results, shard_documents
from errorentropy.scoring.engine import score_documents
from errorentropy.scoring.results import (
    HISTOGRAM_FILE,
    PROFILE_FILE,
    TOKENS_FILE,
    ScoredCorpus,
    write_result,
)
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.profile import PROFILE_RANKS, PROFILE_TOP, RankProfile
from errorentropy.stats.tokens import TokenTable
from errorentropy.testing import tiny_model
from mergeable import (
    Mergeable,
    assert_same,
    check_algebra,
    check_mergeable,
    check_persistence,
    check_shards,
)

# ---- the rank histogram: raw data are documents, each a list of (rank, logprob, tied) tokens --

Token = tuple[int, float, bool]
tokens = st.tuples(st.integers(0, 5) | st.integers(0, 300), st.floats(-40.0, 0.0), st.booleans())
documents = st.lists(st.lists(tokens, max_size=8), max_size=12)


def histogram_of(docs: Sequence[list[Token]]) -> RankHistogram:
    """One pass: a document without tokens counts as skipped, a tied token as tied."""
    flat = [t for d in docs for t in d]
    return RankHistogram.from_tokens(
        np.array([r for r, _, _ in flat], dtype=np.int64),
        np.array([lp for _, lp, _ in flat], dtype=np.float64),
        n_documents=sum(1 for d in docs if d),
        n_skipped=sum(1 for d in docs if not d),
        n_tied=sum(tied for _, _, tied in flat),
    )


def histogram_fields(h: RankHistogram) -> dict[str, Any]:
    return {
        "counts": h.counts,
        "logprob_sums": h.logprob_sums,
        "n_documents": h.n_documents,
        "n_skipped": h.n_skipped,
        "n_tied": h.n_tied,
    }


HISTOGRAM = Mergeable(
    name="RankHistogram",
    items=documents,
    build=histogram_of,
    fields=histogram_fields,
    save=lambda h, path: h.save(path),
    load=RankHistogram.load,
    empty=RankHistogram,
    compute=lambda h: h.decompose().as_dict() if h.n_tokens else {},
)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_rank_histogram(data):
    check_mergeable(HISTOGRAM, data)


def test_rank_histogram_many_tokens():
    """20,000 tokens over 400 documents: float sums of shards still agree to 1e-12."""
    rng = np.random.default_rng(7)
    docs = []
    for n in rng.integers(0, 100, size=400):
        ranks, logprobs = rng.geometric(0.2, n) - 1, -rng.exponential(3.0, n)
        ties = rng.random(n) < 0.01
        docs.append([(int(r), float(lp), bool(t)) for r, lp, t in zip(ranks, logprobs, ties)])
    check_shards(HISTOGRAM, docs, seed=11, counts=(1, 2, 4, 16))


# ---- RankHistogram.update: raw data are the rows of a batch of logits and labels --------------


def batch_of(row_seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of logits [8, 24] on a coarse grid (so ties happen) and labels with some padding."""
    logits, labels = [], []
    for seed in row_seeds:
        g = torch.Generator().manual_seed(seed)
        logits.append(torch.randint(-4, 5, (8, 24), generator=g).float() / 2)
        row = torch.randint(0, 24, (8,), generator=g)
        row[torch.rand(8, generator=g) < 0.3] = -100
        labels.append(row)
    if not row_seeds:
        return torch.zeros(0, 8, 24), torch.zeros(0, 8, dtype=torch.long)
    return torch.stack(logits), torch.stack(labels)


UPDATED = Mergeable(
    name="RankHistogram.update",
    items=st.lists(st.integers(0, 2**16), max_size=8),
    build=lambda seeds: RankHistogram().update(*batch_of(seeds)),
    fields=histogram_fields,
    save=HISTOGRAM.save,
    load=RankHistogram.load,
    empty=RankHistogram,
    compute=HISTOGRAM.compute,
)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_rank_histogram_update(data):
    check_mergeable(UPDATED, data)


def test_updates_over_shards_equal_one_update():
    seeds = list(range(16))
    one = RankHistogram().update(*batch_of(seeds))
    folded = RankHistogram()
    for shard in (seeds[:5], seeds[5:6], [], seeds[6:]):
        assert folded.update(*batch_of(shard)) is folded
    assert_same(UPDATED, one, folded, "updates over shards != one update", rtol=1e-12)
    assert one.n_tied > 0 and 0 < one.n_documents <= 16


# ---- the sorted-probability profile: raw data are tokens (rank, descending top log-probs) ----


def profile_tokens(width: int) -> st.SearchStrategy[list[tuple[int, tuple[float, ...]]]]:
    row = st.lists(st.floats(-30.0, 0.0), min_size=width, max_size=width)
    token = st.tuples(st.integers(0, PROFILE_RANKS + 4), row.map(lambda r: tuple(sorted(r)[::-1])))
    return st.lists(token, max_size=30)


def profile_of(items: Sequence[tuple[int, tuple[float, ...]]]) -> RankProfile:
    """One pass; rows may be narrower or wider than the profile, ranks beyond it are dropped."""
    profile = RankProfile()
    width = len(items[0][1]) if items else PROFILE_TOP
    ranks = np.array([r for r, _ in items], dtype=np.int64)
    profile.add_tokens(ranks, np.array([row for _, row in items]).reshape(len(items), width))
    return profile


PROFILE = Mergeable(
    name="RankProfile",
    items=st.integers(1, PROFILE_TOP + 8).flatmap(profile_tokens),
    build=profile_of,
    fields=lambda p: {"sums": p.sums, "counts": p.counts},
    save=lambda p, path: p.save(path),
    load=RankProfile.load,
    empty=RankProfile,
    compute=lambda p: {"mean": p.mean()},
)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_rank_profile(data):
    check_mergeable(PROFILE, data)


# ---- a scored result: raw data are document indices, scored by a tiny model ------------------

SCORE_OPTIONS = ScoreOptions(max_length=64, window="stride", stride=32, batch_size=4, profile=True)


def result_fields(r: ScoredCorpus) -> dict[str, Any]:
    fields = {f"histogram.{k}": v for k, v in histogram_fields(r.histogram).items()}
    for name in ("doc", "position", "rank", "logprob"):
        fields[f"tokens.{name}"] = getattr(r.tokens, name)
    fields.update(head_path=r.head_path, n_windows=r.n_windows, notes=r.notes)
    if r.profile is not None:
        fields.update({"profile.sums": r.profile.sums, "profile.counts": r.profile.counts})
    return fields


def save_result(r: ScoredCorpus, folder: Path) -> None:
    """A result folder (results.write_result); what has no file of its own rides in the summary."""
    folder.mkdir()
    write_result(folder, r, {"head_path": r.head_path, "n_windows": r.n_windows, "notes": r.notes})


def load_result(folder: Path) -> ScoredCorpus:
    summary = json.loads((folder / "summary.json").read_text())
    profile = RankProfile.load(folder / PROFILE_FILE) if (folder / PROFILE_FILE).exists() else None
    return ScoredCorpus(
        RankHistogram.load(folder / HISTOGRAM_FILE),
        TokenTable.load(folder / TOKENS_FILE),
        summary["head_path"],
        summary["n_windows"],
        profile,
        summary["notes"],
    )


@pytest.fixture(scope="module")
def scored(tokenizer, short_docs) -> Mergeable[ScoredCorpus, int]:
    """Results over subsets of ``short_docs`` (one too short to score), merged by merge_results;
    merge_results promises the histogram and tokens bit for bit, so those sums are exact."""
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128)
    return Mergeable(
        name="ScoredCorpus",
        items=st.lists(st.integers(0, len(short_docs) - 1), unique=True),
        build=lambda ids: score_documents(
            model, tokenizer, short_docs, SCORE_OPTIONS, doc_ids=list(ids)
        ),
        fields=result_fields,
        save=save_result,
        load=load_result,
        add=lambda a, b: merge_results([a, b]),
        merge=merge_results,
        zero_is_identity=False,
        exact=frozenset({"histogram.logprob_sums", "tokens.logprob"}),
        compute=lambda r: r.histogram.decompose().as_dict() if r.histogram.n_tokens else {},
    )


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_score_result(scored, data):
    check_mergeable(scored, data)


def test_score_result_every_document(scored, short_docs):
    """All documents: in random shards, and round-robin as torchrun's processes score them."""
    everything = list(range(len(short_docs)))
    check_shards(scored, everything, seed=42)
    whole = scored.build(everything)
    for k in (2, 3):
        parts = [scored.build(shard_documents(len(short_docs), r, k)) for r in range(k)]
        what = f"{k} round-robin shards merged != one pass"
        assert_same(scored, whole, scored.merge_all(parts), what, rtol=scored.rtol)


# ---- the tester itself: it must catch what it claims to catch --------------------------------


def test_failure_names_the_field_that_differs():
    a = histogram_of([[(0, -1.0, False), (3, -2.0, True)]])
    b = RankHistogram(a.counts, a.logprob_sums * (1 + 1e-9), a.n_documents, 0, a.n_tied)
    with pytest.raises(AssertionError) as caught:
        assert_same(HISTOGRAM, a, b, "one pass != merged", rtol=1e-12)
    message = str(caught.value)
    assert "RankHistogram: one pass != merged" in message
    assert "logprob_sums: 2 of 4 entries differ; first at flat index 0" in message
    assert "(fields that agree: counts, n_documents, n_skipped, n_tied)" in message
    assert_same(HISTOGRAM, a, b, "within tolerance", rtol=1e-6)  # counts exact, sums close


def test_an_aliasing_add_is_caught():
    def add_in_place(x: RankProfile, y: Any) -> RankProfile:
        if isinstance(y, RankProfile):
            x.sums += y.sums
            x.counts += y.counts
        return x

    aliasing = replace(PROFILE, add=add_in_place, zero_is_identity=False)
    a, b, c = (profile_of([(r, (-0.5,) * 3)]) for r in (0, 1, 2))
    with pytest.raises(AssertionError, match="RankProfile: operand a, by addition, changed"):
        check_algebra(aliasing, a, b, c)

    def add_returning_self(x: RankProfile, y: Any) -> RankProfile:
        if not isinstance(y, RankProfile) or not y.counts.any():
            return x  # the identity case forgets to copy
        return x + y

    sharing = replace(PROFILE, add=add_returning_self)
    with pytest.raises(AssertionError, match=r"operand a, by writing to a \+ build\(\[\]\)"):
        check_algebra(sharing, a, b, c)


def test_a_lossy_merge_is_caught():
    dropping = replace(HISTOGRAM, merge=lambda hs: hs[0])  # keeps the first shard only
    docs = [[(1, -0.25, False)], [(2, -0.5, True)], [], [(1, -1.0, False)]] * 3
    with pytest.raises(AssertionError, match="shards merged != one pass"):
        check_shards(dropping, docs, seed=0)


def test_a_save_that_rounds_is_caught():
    def load_rounded(path: Path) -> RankHistogram:
        h = RankHistogram.load(path)
        return RankHistogram(h.counts, h.logprob_sums.astype(np.float32), h.n_documents)

    rounding = replace(HISTOGRAM, load=load_rounded)
    h = histogram_of([[(0, -0.1, False), (2, -1 / 3, False)]])
    with pytest.raises(AssertionError, match="(?s)save/load round trip.*allowed: identical bits"):
        check_persistence(rounding, h)
