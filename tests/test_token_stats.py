"""token_stats and RankHistogram.update: logits a user already has, against a float64 loop, the
head's score_logits, and the scoring engine on a tiny model's own logits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from errorentropy.data.windows import batches, make_windows, tokenize
from errorentropy.errors import UserError
from errorentropy.head.full import score_logits
from errorentropy.head.token_stats import TokenStats, token_stats, token_stats_with_ties
from errorentropy.options import ScoreOptions
from errorentropy.scoring.engine import score_documents
from errorentropy.stats.histogram import RankHistogram
from errorentropy.testing import tiny_model


def naive(logits: torch.Tensor, labels: torch.Tensor, shift: bool, ignore: int = -100):
    """Rank, log-prob and tie count per position, one position at a time in float64 from the
    float32 values of the logits (-1, NaN, 0 where there is no label)."""
    z32 = logits.float().reshape(-1, logits.shape[-1]).double()
    lab = labels.reshape(-1, labels.shape[-1]) if labels.ndim == 2 else labels[None]
    n_rows, length = lab.shape
    rank = np.full((n_rows, length), -1, dtype=np.int64)
    logprob = np.full((n_rows, length), np.nan)
    tied = np.zeros((n_rows, length), dtype=np.int64)
    for b in range(n_rows):
        for t in range(length):
            source = t + 1 if shift else t
            if source >= length or int(lab[b, source]) == ignore:
                continue
            row, v = z32[b * length + t], int(lab[b, source])
            rank[b, t] = int((row > row[v]).sum())
            tied[b, t] = int((row == row[v]).sum()) - 1
            logprob[b, t] = float(row[v] - torch.logsumexp(row, 0))
    shape = tuple(labels.shape)
    return rank.reshape(shape), logprob.reshape(shape), tied.reshape(shape)


def random_case(shape, vocab, *, seed, integer=False, dtype=torch.float32, pad=True):
    g = torch.Generator().manual_seed(seed)
    if integer:  # few distinct values: many exact ties
        logits = torch.randint(-3, 4, (*shape, vocab), generator=g).float()
    else:
        logits = torch.randn(*shape, vocab, generator=g) * 3
    labels = torch.randint(0, vocab, shape, generator=g)
    if pad and len(shape) == 2:
        for b in range(shape[0]):
            labels[b, shape[1] - b :] = -100  # row b has b padded positions
    return logits.to(dtype), labels


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_matches_a_float64_loop(shift, integer, dtype):
    logits, labels = random_case((3, 37), 101, seed=1, integer=integer, dtype=dtype)
    stats, tied = token_stats_with_ties(logits, labels, shift=shift)
    rank, logprob, ties = naive(logits, labels, shift)
    assert stats.rank.dtype == torch.int64 and stats.logprob.dtype == torch.float64
    assert stats.rank.shape == labels.shape == stats.logprob.shape == tied.shape
    np.testing.assert_array_equal(stats.rank.numpy(), rank)
    np.testing.assert_array_equal(tied.numpy(), ties)
    np.testing.assert_allclose(stats.logprob.numpy(), logprob, atol=1e-6, rtol=0)  # NaN == NaN
    assert torch.equal(stats.labelled, torch.from_numpy(rank >= 0))
    if integer or dtype == torch.bfloat16:
        assert (ties > 0).sum() > 5  # the case exercises ties


@pytest.mark.parametrize("shape,vocab", [((5, 33), 50257), ((1, 1), 7), ((2, 17), 1), ((40,), 300)])
def test_odd_sizes(shape, vocab):
    logits, labels = random_case(shape, vocab, seed=2, pad=False)
    stats, tied = token_stats_with_ties(logits, labels)
    rank, logprob, ties = naive(logits, labels, True)
    np.testing.assert_array_equal(stats.rank.numpy(), rank)
    np.testing.assert_array_equal(tied.numpy(), ties)
    np.testing.assert_allclose(stats.logprob.numpy(), logprob, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_same_bits_as_the_heads_score_logits(dtype):
    """Blocks of any composition (views, copied rows, padding) give score_logits' bits."""
    logits, labels = random_case((6, 45), 3000, seed=3, dtype=dtype)
    labels[2, 5:9] = -100  # a hole inside a row
    logits[1, :, :40] = float("-inf")  # masked entries (the labels avoid them)
    logits[1, 7, 45] = float("-inf")
    labels[1] = labels[1].clamp(min=46)
    stats, tied = token_stats_with_ties(logits, labels)
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]
    keep = targets.reshape(-1) != -100
    ref = score_logits(logits.reshape(-1, 3000)[keep], targets.reshape(-1)[keep])
    mask = stats.labelled.reshape(-1)
    assert torch.equal(mask, keep)
    assert torch.equal(stats.rank.reshape(-1)[mask], ref.rank)
    assert torch.equal(stats.logprob.reshape(-1)[mask], ref.logprob)
    assert torch.equal(tied.reshape(-1)[mask], ref.tied)


def test_shift_false_takes_aligned_labels_and_2d_logits_are_one_row():
    logits, labels = random_case((4, 20), 64, seed=4)
    aligned = torch.full_like(labels, -100)
    aligned[:, :-1] = labels[:, 1:]
    a, b = token_stats(logits, labels), token_stats(logits, aligned, shift=False)
    assert torch.equal(a.rank, b.rank) and torch.equal(
        a.logprob.nan_to_num(), b.logprob.nan_to_num()
    )
    one = token_stats(logits[1], labels[1])
    assert one.rank.shape == (20,) and torch.equal(one.rank, a.rank[1])
    assert torch.equal(one.logprob.nan_to_num(), a.logprob[1].nan_to_num())


def test_other_ignore_index_and_unlabelled_positions():
    logits, labels = random_case((3, 12), 40, seed=5, pad=False)
    labels[0, 4:] = 7  # 7 is the ignore value here, not a token
    stats = token_stats(logits, labels, ignore_index=7)
    assert not stats.labelled[0, 3:].any()  # positions 3.. predict an ignored label
    assert (stats.rank[~stats.labelled] == -1).all()
    assert stats.logprob[~stats.labelled].isnan().all()
    assert not stats.logprob[stats.labelled].isnan().any()
    assert (stats.logprob[stats.labelled] <= 0).all()


def test_strided_logits_are_read_without_a_copy_and_give_the_same_numbers():
    logits, labels = random_case((3, 21), 90, seed=6)
    wide = torch.randn(3, 25, 90)
    wide[:, :21] = logits
    view = wide[:, :21]  # does not flatten to [B*T, V]
    assert not view.is_contiguous()
    columns = logits.transpose(1, 2).contiguous().transpose(1, 2)  # vocabulary not contiguous
    a = token_stats(logits, labels)
    for other in (view, columns):
        b = token_stats(other, labels)
        assert torch.equal(a.rank, b.rank)
        assert torch.equal(a.logprob.nan_to_num(), b.logprob.nan_to_num())


def test_logits_that_require_grad_and_no_grad():
    logits, labels = random_case((2, 9), 30, seed=7)
    logits.requires_grad_(True)
    stats = token_stats(logits * 1.0, labels)
    assert not stats.rank.requires_grad and not stats.logprob.requires_grad
    with torch.no_grad():
        again = token_stats(logits, labels)
    assert torch.equal(stats.rank, again.rank)


def test_nan_and_inf_logits_where_labelled_raise_the_heads_error():
    logits, labels = random_case((2, 10), 30, seed=8, pad=False)
    for bad in (float("nan"), float("inf")):
        broken = logits.clone()
        broken[1, 3, 5] = bad
        with pytest.raises(UserError, match="NaN or inf logits"):
            token_stats(broken, labels)
    # A row without a label is never read: NaN there (a fully masked padding row) is no error.
    labels[1, 4] = -100
    broken = logits.clone()
    broken[1, 3] = float("nan")
    stats = token_stats(broken, labels)
    assert stats.rank[1, 3] == -1 and stats.labelled.sum() == 17


@pytest.mark.parametrize(
    "logits,labels,match",
    [
        (torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long), "do not match"),
        (torch.zeros(2, 3, 5), torch.zeros(3, 2, dtype=torch.long), "do not match"),
        (torch.zeros(5), torch.zeros((), dtype=torch.long), r"\[B, T, V\]"),
        (torch.zeros(2, 3, 0), torch.zeros(2, 3, dtype=torch.long), "V >= 1"),
        (torch.zeros(2, 3, 5, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.long), "float32"),
        (torch.zeros(2, 3, 5), torch.zeros(2, 3), "integer token ids"),
        (torch.zeros(2, 3, 5), torch.tensor([[0, 1, 5], [0, 0, 0]]), "outside the vocabulary"),
        (torch.zeros(2, 3, 5), torch.tensor([[0, 1, -1], [0, 0, 0]]), "ignore_index=-100"),
        (torch.zeros(2, 3, 5).numpy(), torch.zeros(2, 3, dtype=torch.long), "torch tensors"),
    ],
)
def test_bad_inputs_give_one_line_value_errors(logits, labels, match):
    with pytest.raises(ValueError, match=match) as info:
        token_stats(logits, labels)
    assert "\n" not in str(info.value)


def test_only_the_labels_that_are_scored_must_lie_in_the_vocabulary():
    logits, labels = random_case((2, 6), 11, seed=12, integer=False)
    odd = labels.clone()
    odd[:, 0] = 50  # position 0's label is never a target under the shift
    assert torch.equal(token_stats(logits, odd).rank, token_stats(logits, labels).rank)
    with pytest.raises(ValueError, match="label 50 is outside"):
        token_stats(logits, odd, shift=False)  # there it is a target
    mask = torch.ones_like(labels)
    mask[1, 4:] = 0
    odd[1, 4:] = 999  # a pad id beyond the vocabulary, masked
    stats = token_stats(logits, odd, attention_mask=mask)
    assert int(stats.labelled.sum()) == 5 + 3
    assert torch.equal(stats.rank[0], token_stats(logits, labels).rank[0])


def test_empty_batches():
    stats = token_stats(torch.zeros(2, 0, 5), torch.zeros(2, 0, dtype=torch.long))
    assert stats.rank.shape == (2, 0)
    hist = RankHistogram().update(torch.zeros(2, 1, 5), torch.zeros(2, 1, dtype=torch.long))
    assert hist.n_tokens == 0 and hist.n_documents == 0  # one position: nothing to predict


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_results_stay_on_the_device_and_match_the_cpu(dtype):
    logits, labels = random_case((4, 300), 50257, seed=9, dtype=dtype)
    cpu = token_stats_with_ties(logits, labels)
    gpu = token_stats_with_ties(logits.cuda(), labels.cuda())
    assert gpu[0].rank.device.type == "cuda" and gpu[1].device.type == "cuda"
    assert torch.equal(gpu[0].rank.cpu(), cpu[0].rank)
    assert torch.equal(gpu[1].cpu(), cpu[1])
    torch.testing.assert_close(
        gpu[0].logprob.cpu(), cpu[0].logprob, atol=1e-6, rtol=0, equal_nan=True
    )


MEMORY_SCRIPT = """
import resource, sys, json, torch
from errorentropy.head.token_stats import token_stats
dtype, strided = getattr(torch, sys.argv[1]), sys.argv[2] == "1"
torch.set_num_threads(1)
full = torch.randn(4, 300 if strided else 256, 65536).to(dtype)  # 256 MiB in float32
logits = full[:, :256] if strided else full
labels = torch.randint(0, 65536, (4, 256))
labels[3, 100:] = -100
token_stats(logits[:1, :32], labels[:1, :32])  # libraries and thread pools loaded
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
token_stats(logits, labels)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_mib": (after - before) / 1024}))
"""


@pytest.mark.parametrize("dtype,strided", [("float32", "0"), ("bfloat16", "0"), ("float32", "1")])
def test_no_second_copy_of_the_logits(dtype, strided):
    """Peak memory grows by far less than one [B, T, V] float32 tensor (256 MiB)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY_SCRIPT), dtype, strided],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    grew = json.loads(done.stdout.strip().splitlines()[-1])["grew_mib"]
    assert grew < 48, grew


# ---- RankHistogram.update ----------------------------------------------------------------


def test_update_adds_in_place_and_matches_from_tokens():
    logits, labels = random_case((3, 15), 25, seed=10, integer=True)
    hist = RankHistogram(n_skipped=2)
    assert hist.update(logits, labels) is hist
    rank, logprob, ties = naive(logits, labels, True)
    keep = rank >= 0
    expected = RankHistogram.from_tokens(
        rank[keep], logprob[keep], n_documents=3, n_skipped=2, n_tied=int((ties[keep] > 0).sum())
    )
    assert hist.equals(expected, rtol=1e-6)  # a float32 sum inside the log-sum-exp
    assert hist.n_tied > 0
    labels[2] = -100  # a row without a label is no document
    again = hist.copy().update(logits, labels)
    assert again.n_documents == 3 + 2 and again.n_skipped == 2


def test_update_keeps_addition_and_saving(tmp_path):
    a = RankHistogram().update(*random_case((2, 11), 30, seed=11))
    b = RankHistogram().update(*random_case((3, 7), 30, seed=12))
    both = RankHistogram().update(*random_case((2, 11), 30, seed=11))
    both.update(*random_case((3, 7), 30, seed=12))
    assert both.equals(a + b, rtol=1e-12) and both.equals(sum([a, b]), rtol=1e-12)
    both.save(tmp_path / "h.json")
    assert RankHistogram.load(tmp_path / "h.json") == both
    assert abs(both.decompose().identity_residual) < 1e-12
    one_row = RankHistogram().update(*random_case((9,), 30, seed=13))
    assert one_row.n_documents == 1 and one_row.n_tokens == 8


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.tuples(st.integers(1, 7), st.integers(1, 9), st.integers(1, 40)),
    seed=st.integers(0, 2**16),
    integer=st.booleans(),
    cuts=st.lists(st.integers(0, 7), max_size=4),
)
def test_updates_over_any_split_equal_one_update(sizes, seed, integer, cuts):
    batch, length, vocab = sizes
    logits, labels = random_case((batch, length), vocab, seed=seed, integer=integer)
    whole = RankHistogram().update(logits, labels)
    edges = sorted({0, batch, *(c for c in cuts if c <= batch)})
    parts = RankHistogram()
    for lo, hi in zip(edges, edges[1:]):
        parts.update(logits[lo:hi], labels[lo:hi])
    assert parts.counts.tolist() == whole.counts.tolist()
    np.testing.assert_allclose(parts.logprob_sums, whole.logprob_sums, rtol=1e-12, atol=0)
    assert (parts.n_documents, parts.n_tied) == (whole.n_documents, whole.n_tied)


# ---- against the scoring engine ------------------------------------------------------------


def engine_windows_histogram(model, tokenizer, docs, options: ScoreOptions) -> RankHistogram:
    """A user's own loop over exactly the windows score_documents scores: the model's logits,
    labels = input ids with -100 on padding and before each window's first scored position."""
    ids = tokenize(tokenizer, docs, options.bos)
    windows, _ = make_windows(ids, options.max_length, options.window, options.stride)
    hist = RankHistogram()
    with torch.no_grad():
        for batch in batches(windows, options.batch_size, 0, options.max_length):
            logits = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
            labels = batch.input_ids.clone()
            for row, w in enumerate(batch.windows):
                labels[row, : w.score_from] = -100
                labels[row, len(w.input_ids) :] = -100
            assert isinstance(token_stats(logits, labels), TokenStats)
            hist.update(logits, labels)
    return hist


@pytest.mark.parametrize("head", ["auto", "full"])
@pytest.mark.parametrize("window", ["truncate", "stride"])
def test_a_models_own_logits_give_the_engines_histogram(head, window, tokenizer, prose_docs):
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=3)
    docs = [d[: 60 + 45 * i] for i, d in enumerate(prose_docs[300:316])] + ["a"]
    stride = dict(window="stride", stride=20) if window == "stride" else {}
    options = ScoreOptions(max_length=48, batch_size=3, head=head, **stride)
    result = score_documents(model, tokenizer, docs, options)
    assert result.head_path == ("chunked" if head == "auto" else "full")
    ours = engine_windows_histogram(model, tokenizer, docs, options)
    ref = result.histogram
    assert ours.n_tokens == ref.n_tokens > 500
    assert ours.counts.tolist() == ref.counts.tolist()  # identical ranks
    np.testing.assert_allclose(ours.logprob_sums, ref.logprob_sums, rtol=1e-9, atol=0)
    assert ours.n_tied == ref.n_tied
    if window == "truncate":  # one window per document: rows with a label are documents
        assert ours.n_documents == ref.n_documents == len(docs) - 1
    else:
        assert ours.n_documents == result.n_windows > ref.n_documents
