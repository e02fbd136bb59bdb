"""The torchmetrics metric: the same numbers as RankHistogram, merges and DDP syncs that add up."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip(
    "torchmetrics",
    reason="the torchmetrics integration needs torchmetrics "
    "(pip install 'errorentropy[torchmetrics]')",
)

from errorentropy.errors import UserError  # noqa: E402
from errorentropy.integrations.torchmetrics import (  # noqa: E402
    FIELDS,
    CrossEntropyDecomposition,
    field_names,
)
from errorentropy.stats.histogram import RankHistogram  # noqa: E402
from reference import naive_decompose  # noqa: E402
from test_distributed import _run_two_ranks  # noqa: E402

VOCAB = 37


def make_batches(seed: int, n: int = 6, vocab: int = VOCAB) -> list[tuple[torch.Tensor, ...]]:
    """Random logits (some rows sharpened, so ranks spread) and labels with padding."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(n):
        b, t = 1 + i % 3, 3 + (5 * i) % 11
        logits = torch.randn(b, t, vocab, generator=gen) * (0.5 + i % 4)
        labels = torch.randint(0, vocab, (b, t), generator=gen)
        labels[-1, t - 1 - i % 3 :] = -100  # padding at the end of the last row
        batches.append((logits, labels))
    return batches


def one_pass(batches, **kwargs) -> RankHistogram:
    hist = RankHistogram()
    for logits, labels in batches:
        hist.update(logits, labels, **kwargs)
    return hist


def direct_tokens(batches, shift: bool = True, ignore_index: int = -100):
    """Ranks and log-probs straight from the definitions (float64 log-softmax), labelled only."""
    ranks, logprobs = [], []
    for logits, labels in batches:
        z = logits[:, :-1] if shift else logits
        y = labels[:, 1:] if shift else labels
        keep = y != ignore_index
        z, y = z[keep], y[keep]
        truth = z.gather(1, y[:, None])
        ranks.append((z > truth).sum(1))
        logprobs.append(torch.log_softmax(z.double(), 1).gather(1, y[:, None])[:, 0])
    return torch.cat(ranks).numpy(), torch.cat(logprobs).numpy()


def assert_same_bits(metric: CrossEntropyDecomposition, hist: RankHistogram) -> None:
    got = metric.histogram()
    np.testing.assert_array_equal(got.counts, hist.counts)
    assert got.logprob_sums.tobytes() == hist.logprob_sums.tobytes()
    assert (got.n_documents, got.n_tied) == (hist.n_documents, hist.n_tied)


def test_compute_gives_exactly_the_numbers_of_rank_histogram():
    batches = make_batches(0)
    metric = CrossEntropyDecomposition()
    for logits, labels in batches:
        metric.update(logits, labels)
    hist = one_pass(batches)
    assert metric.counts.shape == (VOCAB,) and metric.counts.dtype == torch.int64
    assert metric.logprob_sums.shape == (VOCAB,) and metric.logprob_sums.dtype == torch.float64
    assert_same_bits(metric, hist)
    out = metric.compute()
    assert list(out) == list(FIELDS)
    assert all(v.dtype == torch.float64 and v.ndim == 0 for v in out.values())
    for name, value in hist.decompose().as_dict().items():
        assert out[name].item() == value, name
    assert abs(out["identity_residual"].item()) < 1e-12


@pytest.mark.parametrize("shift", [True, False])
def test_matches_the_definitions(shift):
    batches = make_batches(1)
    metric = CrossEntropyDecomposition(shift=shift)
    for logits, labels in batches:
        metric.update(logits, labels)
    out = metric.compute()
    ranks, logprobs = direct_tokens(batches, shift=shift)
    reference = naive_decompose(ranks, logprobs)
    for name, value in reference.items():  # log-probs are float32-accurate (~1e-7)
        assert out[name].item() == pytest.approx(value, abs=1e-6), name
    assert out["error_entropy"].item() == pytest.approx(reference["error_entropy"], abs=1e-13)
    assert out["n_tokens"].item() == len(ranks)
    assert out["n_ranks_observed"].item() == len(np.unique(ranks))
    assert out["top1_accuracy"].item() == pytest.approx(np.mean(ranks == 0), abs=1e-15)
    for k in (1, 10, 100, 1000):
        assert out[f"rbp_at_{k}"].item() == pytest.approx(np.mean(ranks < k), abs=1e-15)
    assert out["mrr"].item() == pytest.approx(np.mean(1 / (ranks + 1)), rel=1e-14)


def test_rbp_ks_choose_the_fields():
    metric = CrossEntropyDecomposition(rbp_ks=(5, 2, 5))
    assert metric.fields == field_names((5, 2))
    assert [f for f in metric.fields if f.startswith("rbp")] == ["rbp_at_5", "rbp_at_2"]
    metric.update(*make_batches(10, n=1)[0])
    assert list(metric.compute()) == list(metric.fields)
    with pytest.raises(UserError, match="rbp_ks"):
        CrossEntropyDecomposition(rbp_ks=(0,))


def test_ignore_index_is_honoured():
    (logits, labels), *_ = make_batches(2)
    custom = labels.masked_fill(labels == -100, 0)  # id 0 marks what is not scored
    metric = CrossEntropyDecomposition(ignore_index=0)
    metric.update(logits, custom)
    expected = RankHistogram().update(logits, custom, ignore_index=0)
    assert_same_bits(metric, expected)


def test_vocabulary_size_is_fixed():
    logits, labels = make_batches(3, n=1)[0]
    given = CrossEntropyDecomposition(vocab_size=50)
    assert given.counts.shape == (50,)
    given.update(logits, labels)  # V = 37 <= 50: ranks fit
    assert given.counts.shape == (50,)
    learned = CrossEntropyDecomposition()
    assert learned.counts.shape == (0,)
    learned.update(logits, labels)
    assert learned.counts.shape == (VOCAB,) and learned.vocab_size == VOCAB
    wider = torch.randn(1, 4, VOCAB + 1)
    with pytest.raises(ValueError, match=f"vocab_size={VOCAB + 1}"):
        learned.update(wider, torch.zeros(1, 4, dtype=torch.long))
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="vocab_size"):
            CrossEntropyDecomposition(vocab_size=bad)


def test_merge_state_equals_one_pass():
    batches = make_batches(4)
    whole = one_pass(batches)
    parts = [CrossEntropyDecomposition() for _ in range(3)]  # the last one sees nothing
    for i, (logits, labels) in enumerate(batches):
        parts[i % 2].update(logits, labels)
    merged = CrossEntropyDecomposition()  # not yet sized: padded to the incoming length
    merged.merge_state(parts[0])
    first = merged.compute()["n_tokens"].item()
    for part in parts[1:]:
        merged.merge_state(part)
    assert merged.compute()["n_tokens"].item() > first  # no value cached before a merge
    got = merged.histogram()
    assert got.equals(whole, rtol=1e-13)
    assert merged.compute()["n_tokens"].item() == whole.n_tokens
    by_dict = CrossEntropyDecomposition(vocab_size=VOCAB)
    by_dict.merge_state(parts[0].metric_state)
    by_dict.merge_state(parts[1])
    assert by_dict.histogram().equals(whole, rtol=1e-13)


def test_forward_returns_the_batch_and_accumulates():
    batches = make_batches(5)
    metric = CrossEntropyDecomposition()
    for logits, labels in batches:
        batch_out = metric(logits, labels)
        expected = RankHistogram().update(logits, labels).decompose().as_dict()
        assert batch_out["cross_entropy"].item() == expected["cross_entropy"]
    assert_same_bits(metric, one_pass(batches))


def test_reset_and_an_empty_metric():
    batches = make_batches(6)
    metric = CrossEntropyDecomposition()
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = metric.compute()
    assert empty["n_tokens"].item() == 0
    counts = ("n_tokens", "n_ranks_observed", "n_tied")
    assert all(math.isnan(empty[name].item()) for name in FIELDS if name not in counts)
    assert empty["n_ranks_observed"].item() == 0 and empty["n_tied"].item() == 0
    logits, labels = batches[0]
    metric.update(logits, torch.full_like(labels, -100))  # nothing labelled
    assert metric.compute()["n_tokens"].item() == 0
    for logits, labels in batches:
        metric.update(logits, labels)
    metric.reset()
    assert metric.histogram().n_tokens == 0 and int(metric.n_documents) == 0
    for logits, labels in batches[:2]:
        metric.update(logits, labels)
    assert_same_bits(metric, one_pass(batches[:2]))


def test_inputs_unchanged_and_grad_logits_accepted():
    logits, labels = make_batches(7, n=1)[0]
    logits = logits.clone().requires_grad_(True)
    before = logits.detach().clone(), labels.clone()
    metric = CrossEntropyDecomposition()
    metric.update(logits, labels)
    assert torch.equal(logits.detach(), before[0]) and torch.equal(labels, before[1])
    assert metric.compute()["cross_entropy"].requires_grad is False


def test_pickle_clone_and_dtype_casts_keep_the_state():
    batches = make_batches(8)
    metric = CrossEntropyDecomposition()
    for logits, labels in batches:
        metric.update(logits, labels)
    hist = one_pass(batches)
    for copy in (pickle.loads(pickle.dumps(metric)), metric.clone()):
        assert_same_bits(copy, hist)
        copy.update(*batches[0])  # still a working metric
    wrapper = torch.nn.Module()
    wrapper.metric = metric
    wrapper.half().float().to("cpu")  # a module cast for mixed precision leaves the states alone
    assert metric.counts.dtype == torch.int64 and metric.logprob_sums.dtype == torch.float64
    assert_same_bits(metric, hist)
    assert CrossEntropyDecomposition.full_state_update is False


# ---- DDP: two gloo processes ---------------------------------------------------------------


def _sync_worker(rank: int, init_file: str, seed: int, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        cases = {}
        for idle in IDLE:
            metric = CrossEntropyDecomposition()
            if rank not in idle:
                for logits, labels in make_batches(seed)[rank::2]:
                    metric.update(logits, labels)
            values = {name: value.item() for name, value in metric.compute().items()}
            local = metric.histogram().to_dict()  # compute gave the local state back
            with metric.sync_context():
                synced = metric.histogram().to_dict()
            cases[idle] = (values, synced, local)
        results.put((rank, cases))
    finally:
        dist.destroy_process_group()


IDLE = ((), (1,), (0, 1))  # the ranks without batches (they hold no state at all)


def test_ddp_sync_equals_one_process(tmp_path):
    """Each rank updates with its own shard; compute after the sync is one process over all the
    shards: counts exactly, sums to round-off, also where one rank or both saw no batch."""
    seed = 9
    results = _run_two_ranks(
        _sync_worker,
        lambda rank, queue: (rank, str(tmp_path / "pg"), seed, queue),
        180,
        "a process hung in the metric's sync",
    )
    by_case = {(rank, idle): case for rank, cases in results for idle, case in cases.items()}
    batches = make_batches(seed)
    for idle in IDLE:
        shards = [[] if rank in idle else batches[rank::2] for rank in (0, 1)]
        whole = one_pass(shards[0] + shards[1])
        if not whole.n_tokens:
            for rank in (0, 1):
                values, synced, _ = by_case[rank, idle]
                assert values["n_tokens"] == 0 and math.isnan(values["error_entropy"])
                assert RankHistogram.from_dict(synced) == whole
            continue
        expected = whole.decompose().as_dict()
        for rank in (0, 1):
            values, synced, local = by_case[rank, idle]
            synced_hist = RankHistogram.from_dict(synced)
            np.testing.assert_array_equal(synced_hist.counts, whole.counts)
            assert (synced_hist.n_documents, synced_hist.n_tied) == (
                whole.n_documents,
                whole.n_tied,
            )
            np.testing.assert_allclose(synced_hist.logprob_sums, whole.logprob_sums, rtol=1e-13)
            assert values["n_tokens"] == whole.n_tokens
            for name, value in expected.items():
                assert values[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
            assert values["n_ranks_observed"] == len(whole.decompose().ranks)
            assert RankHistogram.from_dict(local) == one_pass(shards[rank])
        assert by_case[0, idle][0] == by_case[1, idle][0]  # the same on both ranks
