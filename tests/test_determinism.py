"""Determinism: the same corpus gives the same numbers whatever the batch size, the order the
documents come in, the number of processes, and however often it is rerun.

Counts and token arrays must be identical; log-prob sums equal within 1e-9 (relative), where
only the order of a float64 sum may differ. Process counts under a real launcher are covered by
``tests/test_distributed.py::test_torchrun_two_processes_gloo`` (two gloo processes under
torchrun); here shards are merged in-process for 1, 2 and 4 "processes".
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from errorentropy.data.windows import tokenize
from errorentropy.options import ScoreOptions
from errorentropy.scoring.distributed import merge_results, shard_documents
from errorentropy.scoring.engine import score_documents
from errorentropy.scoring.results import ScoredCorpus
from errorentropy.stats.histogram import RankHistogram
from errorentropy.testing import tiny_model

FIELDS = ("doc", "position", "rank", "logprob")


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=11)


@pytest.fixture(scope="module")
def docs(short_docs):
    """The conftest's short documents (one too short to score), the longest of them first."""
    return sorted(short_docs, key=len, reverse=True)


def same_tokens(a: ScoredCorpus, b: ScoredCorpus) -> None:
    for name in FIELDS:
        x, y = getattr(a.tokens, name), getattr(b.tokens, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)


def same_histogram(a: RankHistogram, b: RankHistogram) -> None:
    assert a.counts.tolist() == b.counts.tolist()
    assert (a.n_documents, a.n_skipped, a.n_tied) == (b.n_documents, b.n_skipped, b.n_tied)
    np.testing.assert_allclose(a.logprob_sums, b.logprob_sums, rtol=1e-9, atol=0)
    da, db = a.decompose(), b.decompose()
    for key in ("cross_entropy", "error_entropy", "self_alignment", "confidence"):
        assert getattr(da, key) == pytest.approx(getattr(db, key), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("arch,head", [("gpt2", "full"), ("gpt2", "chunked"), ("llama", "chunked")])
def test_batch_sizes_give_identical_results(model, tokenizer, docs, arch, head):
    if arch != "gpt2":
        model = tiny_model(arch, len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=11)
    results = [
        score_documents(
            model,
            tokenizer,
            docs,
            ScoreOptions(max_length=64, batch_size=b, head=head, vocab_chunk=128),
        )
        for b in (1, 3, 8)
    ]
    assert results[0].histogram.n_tokens > 200
    for other in results[1:]:
        same_tokens(other, results[0])
        same_histogram(other.histogram, results[0].histogram)


def test_stride_windows_are_batch_size_independent(model, tokenizer, docs):
    results = [
        score_documents(
            model,
            tokenizer,
            docs,
            ScoreOptions(max_length=32, window="stride", stride=20, batch_size=b),
        )
        for b in (1, 8)
    ]
    for other in results[1:]:
        same_tokens(other, results[0])
        same_histogram(other.histogram, results[0].histogram)


def test_document_order_does_not_matter(model, tokenizer, docs):
    """Reversed and shuffled corpora: per-document tokens are the same bits, the histogram the
    same."""
    options = ScoreOptions(max_length=64, batch_size=3)
    base = score_documents(model, tokenizer, docs, options)
    for order in (
        list(reversed(range(len(docs)))),
        list(np.random.default_rng(3).permutation(len(docs))),
    ):
        permuted = score_documents(model, tokenizer, [docs[i] for i in order], options)
        same_histogram(permuted.histogram, base.histogram)
        # map the permuted corpus's document numbers back to the original ones
        original_doc = np.asarray(order)[permuted.tokens.doc]
        key = np.lexsort((permuted.tokens.position, original_doc))
        np.testing.assert_array_equal(original_doc[key], base.tokens.doc)
        np.testing.assert_array_equal(permuted.tokens.position[key], base.tokens.position)
        np.testing.assert_array_equal(permuted.tokens.rank[key], base.tokens.rank)
        np.testing.assert_array_equal(permuted.tokens.logprob[key], base.tokens.logprob)


@pytest.mark.parametrize("processes", [2, 3])
def test_process_counts_merge_to_one_pass(model, tokenizer, docs, processes):
    """Round-robin shards as ``errorentropy score`` under torchrun makes them, each with its own
    batch size."""
    whole = score_documents(model, tokenizer, docs, ScoreOptions(max_length=64, batch_size=8))
    parts = [
        score_documents(
            model,
            tokenizer,
            docs,
            ScoreOptions(max_length=64, batch_size=1 + 2 * rank),
            doc_ids=shard_documents(len(docs), rank, processes),
        )
        for rank in range(processes)
    ]
    merged = merge_results(parts)
    same_tokens(merged, whole)
    same_histogram(merged.histogram, whole.histogram)
    # merging in another order changes nothing either
    same_histogram(sum((p.histogram for p in reversed(parts)), 0), whole.histogram)


def test_reruns_are_bit_identical(model, tokenizer, docs):
    options = ScoreOptions(max_length=64, batch_size=3, profile=True)
    first, second = (score_documents(model, tokenizer, docs, options) for _ in range(2))
    same_tokens(first, second)
    assert first.histogram.equals(second.histogram)  # rtol 0: the same bits
    np.testing.assert_array_equal(first.profile.sums, second.profile.sums)


def test_cli_reruns_write_identical_histograms(model_dir, short_docs, tmp_path, capsys):
    """Two runs of ``errorentropy score`` (different batch sizes): histogram.json and tokens.npz
    byte-identical."""
    from errorentropy.cli import main
    from errorentropy.stats.tokens import TokenTable

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in short_docs))
    outs = [tmp_path / "a", tmp_path / "b"]
    for out, batch in zip(outs, ("2", "5")):
        assert (
            main(
                [
                    "score",
                    "--quiet",
                    "--model",
                    str(model_dir),
                    "--data",
                    str(data),
                    "--out",
                    str(out),
                    "--max-length",
                    "48",
                    "--batch-size",
                    batch,
                ]
            )
            == 0
        )
    capsys.readouterr()
    assert (outs[0] / "histogram.json").read_bytes() == (outs[1] / "histogram.json").read_bytes()
    assert (outs[0] / "tokens.npz").read_bytes() == (outs[1] / "tokens.npz").read_bytes()
    a, b = (TokenTable.load(o / "tokens.npz") for o in outs)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert len(a.rank) > 100
    sa, sb = (json.loads((o / "summary.json").read_text()) for o in outs)
    for key in (
        "n_tokens",
        "cross_entropy",
        "error_entropy",
        "self_alignment",
        "confidence",
        "n_tied",
        "data_fingerprint",
    ):
        assert sa[key] == sb[key], key


def test_stride_and_truncate_agree_where_they_must(model, tokenizer, docs):
    """Windows longer than every document: stride == truncate. Short windows: stride scores every
    target exactly once, and its first window is truncate's window, so those tokens match."""
    ids = tokenize(tokenizer, docs, "auto")
    fits = [d for d, x in zip(docs, ids) if len(x) <= 128]
    assert len(fits) >= 6
    long = [
        score_documents(
            model,
            tokenizer,
            fits,
            ScoreOptions(max_length=128, window=w, stride=64 if w == "stride" else None),
        )
        for w in ("truncate", "stride")
    ]
    same_tokens(long[0], long[1])

    truncate = score_documents(model, tokenizer, docs, ScoreOptions(max_length=32, batch_size=4))
    stride = score_documents(
        model,
        tokenizer,
        docs,
        ScoreOptions(max_length=32, window="stride", stride=16, batch_size=4),
    )
    expected = [(d, p) for d, x in enumerate(ids) if len(x) >= 2 for p in range(1, len(x))]
    assert list(zip(stride.tokens.doc.tolist(), stride.tokens.position.tolist())) == expected
    assert stride.histogram.n_tokens == len(expected) > truncate.histogram.n_tokens
    assert (stride.histogram.n_documents, stride.histogram.n_skipped) == (
        truncate.histogram.n_documents,
        truncate.histogram.n_skipped,
    )
    first = stride.tokens.position < 32
    for name in FIELDS:
        np.testing.assert_array_equal(
            getattr(stride.tokens, name)[first], getattr(truncate.tokens, name)
        )


def test_token_table_bytes_do_not_depend_on_the_clock(tmp_path, monkeypatch):
    """tokens.npz carries no write time (zip entries opened by name get a fixed 1980 date): the
    same table saved an hour later has the same bytes."""
    import time

    from errorentropy.stats.tokens import TokenTable

    rng = np.random.default_rng(0)
    table = TokenTable(
        np.arange(50, dtype=np.int32),
        np.arange(50, dtype=np.int32),
        rng.integers(0, 9, 50).astype(np.int32),
        rng.normal(size=50),
    )
    table.save(tmp_path / "a.npz")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 3600)
    table.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    loaded = TokenTable.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(loaded.logprob, table.logprob)
    with np.load(tmp_path / "b.npz") as plain:  # still an ordinary .npz for numpy users
        assert sorted(plain.files) == ["doc", "logprob", "position", "rank"]
