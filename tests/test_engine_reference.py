"""The engine against an independent float64 reference, one document at a time with full logits,
on random-weight models of real architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from errorentropy.data.windows import tokenize
from errorentropy.options import ScoreOptions
from errorentropy.scoring.engine import score_documents
from errorentropy.testing import tiny_model
from reference import naive_decompose, naive_token_scores


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "qwen2", "opt"])
@pytest.mark.parametrize("head", ["auto", "full"])
def test_tokens_and_ce_match_naive_reference(arch, head, tokenizer, short_docs):
    model = tiny_model(arch, len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=3)
    options = ScoreOptions(max_length=48, batch_size=4, head=head, vocab_chunk=100)
    result = score_documents(model, tokenizer, short_docs, options)
    if head == "auto":
        assert result.head_path == "chunked"
    ranks, logprobs, docs = [], [], []
    for i, ids in enumerate(tokenize(tokenizer, short_docs, "auto")):
        if len(ids) < 2:
            continue
        r, lp = naive_token_scores(model, ids[:48])
        ranks.append(r), logprobs.append(lp), docs.append(np.full(len(r), i))
    ranks, logprobs = np.concatenate(ranks), np.concatenate(logprobs)
    np.testing.assert_array_equal(result.tokens.doc, np.concatenate(docs))
    np.testing.assert_array_equal(
        result.tokens.rank, ranks
    )  # no float32 ties occur with these weights
    np.testing.assert_allclose(result.tokens.logprob, logprobs, atol=1e-5)
    got = result.histogram.decompose()
    ref = naive_decompose(ranks, logprobs)
    assert got.cross_entropy == pytest.approx(ref["cross_entropy"], abs=1e-5)
    assert abs(got.identity_residual) < 1e-9
    assert result.histogram.n_skipped == 1 and result.histogram.n_documents == len(short_docs) - 1


def test_scaling_the_output_head_keeps_ee_and_changes_ce(tokenizer, short_docs):
    model = tiny_model(
        "gpt_neox", len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=5
    )
    options = ScoreOptions(max_length=48, batch_size=3)
    before = score_documents(model, tokenizer, short_docs, options)
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(4.0)
    after = score_documents(model, tokenizer, short_docs, options)
    np.testing.assert_array_equal(before.tokens.rank, after.tokens.rank)
    a, b = before.histogram.decompose(), after.histogram.decompose()
    assert a.error_entropy == b.error_entropy
    assert abs(a.cross_entropy - b.cross_entropy) > 1e-3


def test_shards_merge_to_one_pass(tokenizer, short_docs):
    model = tiny_model("llama", len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=7)
    options = ScoreOptions(max_length=40, batch_size=2)
    whole = score_documents(model, tokenizer, short_docs, options)
    parts = [
        score_documents(model, tokenizer, short_docs, options, doc_ids=ids)
        for ids in ([0, 3, 5, 11], [1, 2, 4], [6, 7, 8, 9, 10])
    ]
    merged = sum((p.histogram for p in parts), 0)
    logprob = np.concatenate([p.tokens.logprob for p in parts])[
        np.argsort(np.concatenate([p.tokens.doc for p in parts]), kind="stable")
    ]
    np.testing.assert_array_equal(
        logprob, whole.tokens.logprob
    )  # the same bits, whatever the shard
    assert merged.counts.tolist() == whole.histogram.counts.tolist()
    np.testing.assert_allclose(merged.logprob_sums, whole.histogram.logprob_sums, rtol=1e-9)
    assert (merged.n_documents, merged.n_skipped) == (
        whole.histogram.n_documents,
        whole.histogram.n_skipped,
    )
    d1, d2 = merged.decompose(), whole.histogram.decompose()
    for key in ("cross_entropy", "error_entropy", "self_alignment", "confidence"):
        assert getattr(d1, key) == pytest.approx(getattr(d2, key), rel=1e-9)


def test_batch_size_does_not_change_the_histogram(tokenizer, short_docs):
    model = tiny_model("qwen2", len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=9)
    results = [
        score_documents(model, tokenizer, short_docs, ScoreOptions(max_length=48, batch_size=b))
        for b in (1, 5, 16)
    ]
    for other in results[1:]:
        assert other.histogram.counts.tolist() == results[0].histogram.counts.tolist()
        np.testing.assert_allclose(
            other.histogram.logprob_sums, results[0].histogram.logprob_sums, rtol=1e-9
        )
        # Padding depends on each window alone, so every token's numbers are the same bits.
        np.testing.assert_array_equal(other.tokens.logprob, results[0].tokens.logprob)


def test_profile_accumulates_sorted_probabilities(tokenizer, short_docs):
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=11)
    result = score_documents(
        model, tokenizer, short_docs, ScoreOptions(max_length=48, profile=True)
    )
    profile = result.profile
    counts = np.bincount(result.tokens.rank[result.tokens.rank < 16], minlength=16)
    np.testing.assert_array_equal(profile.counts, counts)
    mean = profile.mean()
    observed = counts > 0
    assert np.all(np.diff(mean[observed], axis=1) <= 1e-12)  # sorted, descending
    assert np.all(mean[observed].sum(1) <= 1 + 1e-9)
