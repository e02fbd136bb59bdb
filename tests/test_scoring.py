"""Token scoring against a float64 reference, on random tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from errorentropy.errors import UserError
from errorentropy.head.chunked import score_hidden
from errorentropy.head.full import score_logits


def reference(logits: torch.Tensor, targets: torch.Tensor):
    z = logits.double()
    t = z.gather(1, targets[:, None])
    return (z > t).sum(-1).numpy(), torch.log_softmax(z, -1).gather(1, targets[:, None])[
        :, 0
    ].numpy()


@pytest.mark.parametrize("vocab_chunk,chunk_elements", [(7, 50), (64, 10_000), (1000, 1 << 20)])
def test_chunked_head_matches_reference(vocab_chunk, chunk_elements):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=g)
    weight = torch.randn(101, 16, generator=g)
    bias = torch.randn(101, generator=g)
    targets = torch.randint(0, 101, (37,), generator=g)
    got = score_hidden(
        hidden,
        weight,
        targets,
        bias=bias,
        vocab_chunk=vocab_chunk,
        chunk_elements=chunk_elements,
        topk=5,
    )
    ranks, logprobs = reference(hidden.double() @ weight.double().T + bias.double(), targets)
    np.testing.assert_array_equal(got.rank.numpy(), ranks)
    np.testing.assert_allclose(got.logprob.numpy(), logprobs, atol=1e-5)
    full = torch.log_softmax((hidden.double() @ weight.double().T + bias.double()), -1)
    np.testing.assert_allclose(got.top_logprobs.numpy(), full.topk(5, -1).values.numpy(), atol=1e-5)


def test_softcap_is_applied():
    g = torch.Generator().manual_seed(1)
    hidden, weight = torch.randn(9, 8, generator=g), torch.randn(30, 8, generator=g)
    targets = torch.randint(0, 30, (9,), generator=g)
    got = score_hidden(hidden, weight, targets, softcap=2.0, vocab_chunk=4)
    z = torch.tanh((hidden.double() @ weight.double().T) / 2.0) * 2.0
    ranks, logprobs = reference(z, targets)
    assert not torch.allclose(z, hidden.double() @ weight.double().T)  # the cap bites
    np.testing.assert_array_equal(got.rank.numpy(), ranks)
    np.testing.assert_allclose(got.logprob.numpy(), logprobs, atol=1e-5)


def test_ties_count_in_the_ground_truths_favour():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    targets = torch.tensor([2, 3])
    got = score_logits(logits, targets)
    assert got.rank.tolist() == [0, 0]  # the equal logit is not "greater"
    assert got.tied.tolist() == [1, 3]
    hidden = torch.eye(4)[:2] * 0 + torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0]])
    weight = torch.tensor([[1.0, 0, 0, 0], [3.0, 0, 0, 0], [3.0, 0, 0, 0], [0.0, 0, 0, 0]])
    chunked = score_hidden(hidden, weight, torch.tensor([2, 1]), vocab_chunk=2)
    assert chunked.rank.tolist() == [0, 0] and chunked.tied.tolist() == [1, 1]


def test_full_logits_path_matches_reference():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 77, generator=g).to(torch.bfloat16)
    targets = torch.randint(0, 77, (50,), generator=g)
    got = score_logits(logits, targets, token_block=7)
    ranks, logprobs = reference(logits.float(), targets)
    np.testing.assert_array_equal(got.rank.numpy(), ranks)
    np.testing.assert_allclose(got.logprob.numpy(), logprobs, atol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_are_a_clear_error(bad):
    logits = torch.zeros(3, 5)
    logits[1, 2] = bad
    with pytest.raises(UserError, match="NaN or inf"):
        score_logits(logits, torch.tensor([0, 1, 2]))
    weight = torch.ones(5, 2)
    weight[3, 0] = bad
    with pytest.raises(UserError, match="NaN or inf"):
        score_hidden(torch.ones(3, 2), weight, torch.tensor([0, 1, 2]))


def test_log_probs_keep_float32_round_off_of_the_logits_only():
    """Large, spread logits (log-sum-exp near 60): both paths stay within 5e-7 of float64, where a
    float32 log-sum-exp alone would be off by ~4e-6."""
    g = torch.Generator().manual_seed(3)
    hidden = (
        torch.randint(-8, 9, (64, 48), generator=g).float() / 4
    )  # exact float32 products and sums
    weight = torch.randint(-8, 9, (3000, 48), generator=g).float() / 4
    targets = torch.randint(0, 3000, (64,), generator=g)
    z = hidden.double() @ weight.double().T
    ranks, logprobs = reference(z, targets)
    assert float(torch.logsumexp(z, -1).max()) > 40
    for got in (
        score_hidden(hidden, weight, targets, vocab_chunk=512),
        score_logits(z.float(), targets),
    ):
        np.testing.assert_array_equal(got.rank.numpy(), ranks)
        np.testing.assert_allclose(got.logprob.numpy(), logprobs, rtol=0, atol=5e-7)


def test_tile_size_follows_the_device():
    """4 MiB tiles on a CPU (cache-sized), 256 MiB on CUDA (launch-bound otherwise); None picks
    it."""
    from errorentropy.head.logits import default_chunk_elements

    assert default_chunk_elements(torch.device("cpu")) * 4 == 4 << 20
    assert default_chunk_elements(torch.device("cuda", 0)) * 4 == 256 << 20
    g = torch.Generator().manual_seed(8)
    hidden, weight = torch.randn(40, 8, generator=g), torch.randn(50, 8, generator=g)
    targets = torch.randint(0, 50, (40,), generator=g)
    a = score_hidden(hidden, weight, targets, vocab_chunk=16)
    b = score_hidden(hidden, weight, targets, vocab_chunk=16, chunk_elements=1 << 20)
    assert torch.equal(a.rank, b.rank) and torch.equal(a.logprob, b.logprob)


def test_a_vocabulary_chunk_masked_by_its_bias_is_no_error():
    """Head entries masked with a -inf bias (reserved tokens), a whole chunk of them: the chunk adds
    nothing to the log-sum-exp (no NaN, no false "NaN or inf" error), and both paths match
    float64."""
    g = torch.Generator().manual_seed(4)
    hidden, weight = torch.randn(21, 8, generator=g), torch.randn(40, 8, generator=g)
    bias = torch.randn(40, generator=g)
    bias[:10] = float("-inf")  # exactly the first chunk of 10
    bias[33] = float("-inf")
    targets = torch.randint(10, 33, (21,), generator=g)
    z = hidden.double() @ weight.double().T + bias.double()
    ranks, logprobs = reference(z, targets)
    for got in (
        score_hidden(hidden, weight, targets, bias=bias, vocab_chunk=10),
        score_logits(z.float(), targets),
    ):
        np.testing.assert_array_equal(got.rank.numpy(), ranks)
        np.testing.assert_allclose(got.logprob.numpy(), logprobs, atol=1e-5)


def test_full_logits_give_the_same_bits_however_many_tokens_share_a_block():
    """At 2 threads a one-row sum is split across threads, a row among many is not: blocks are
    padded so a token's log-prob is the same bits alone or in a batch (a large vocabulary, where
    the split happens)."""
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(40, 50_000, generator=g) * 3
    targets = torch.randint(0, 50_000, (40,), generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        together = score_logits(logits, targets)
        alone = [score_logits(logits[i : i + 1], targets[i : i + 1]) for i in range(40)]
        in_threes = score_logits(logits, targets, token_block=3)
    finally:
        torch.set_num_threads(threads)
    for other in (torch.cat([a.logprob for a in alone]), in_threes.logprob):
        np.testing.assert_array_equal(other.numpy(), together.logprob.numpy())
    np.testing.assert_array_equal(torch.cat([a.rank for a in alone]).numpy(), together.rank.numpy())


def test_chunked_head_gives_the_same_bits_at_any_thread_count():
    """At N > 1 threads the head's token blocks run on N worker threads of one intra-op thread
    each: the numbers are those of one thread, bit for bit, and torch's thread count is restored,
    also when a block fails."""
    g = torch.Generator().manual_seed(6)
    hidden, weight = torch.randn(300, 32, generator=g), torch.randn(5000, 32, generator=g)
    bias = torch.randn(5000, generator=g)
    targets = torch.randint(0, 5000, (300,), generator=g)
    threads = torch.get_num_threads()
    runs = {}
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs[n] = score_hidden(
                hidden, weight, targets, bias=bias, vocab_chunk=1000, chunk_elements=64_000, topk=3
            )
            assert torch.get_num_threads() == n
        bad = weight.clone()
        bad[4321, 0] = float("nan")
        with pytest.raises(UserError, match="NaN or inf"):
            score_hidden(hidden, bad, targets, vocab_chunk=1000, chunk_elements=64_000)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(threads)
    for n in (2, 3):
        for name in ("rank", "logprob", "tied", "top_logprobs"):
            assert torch.equal(getattr(runs[n], name), getattr(runs[1], name)), (n, name)
    ranks, logprobs = reference(hidden.double() @ weight.double().T + bias.double(), targets)
    np.testing.assert_array_equal(runs[2].rank.numpy(), ranks)
    np.testing.assert_allclose(runs[2].logprob.numpy(), logprobs, atol=1e-5)


def _score_in_child(queue) -> None:
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(7)
    hidden, weight = torch.randn(200, 16, generator=g), torch.randn(3000, 16, generator=g)
    queue.put(
        score_hidden(
            hidden,
            weight,
            torch.randint(0, 3000, (200,), generator=g),
            vocab_chunk=500,
            chunk_elements=16_000,
        )
        .rank.sum()
        .item()
    )


def test_a_forked_child_scores_after_the_parent_used_worker_threads():
    """A forked child inherits the head's thread pool without its threads; it must not wait on
    it."""
    import multiprocessing as mp

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(7)
        hidden, weight = torch.randn(200, 16, generator=g), torch.randn(3000, 16, generator=g)
        expected = (
            score_hidden(
                hidden,
                weight,
                torch.randint(0, 3000, (200,), generator=g),
                vocab_chunk=500,
                chunk_elements=16_000,
            )
            .rank.sum()
            .item()
        )
    finally:
        torch.set_num_threads(threads)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung, "the forked child waited on the parent's worker threads"
    assert queue.get(timeout=5) == expected


def test_fewer_workers_for_a_16_bit_head_leave_the_thread_count_as_it_was(monkeypatch):
    """A 16-bit head runs fewer workers than threads (their float32 chunk copies are bounded); the
    caller's thread count comes back afterwards, not the worker count."""
    import errorentropy.head.chunked as scoring

    g = torch.Generator().manual_seed(8)
    hidden, weight = (
        torch.randn(64, 16, generator=g),
        torch.randn(2000, 16, generator=g).to(torch.bfloat16),
    )
    targets = torch.randint(0, 2000, (64,), generator=g)
    monkeypatch.setattr(
        scoring, "WORKER_COPY_BYTES", 500 * 16 * 4 * 2
    )  # room for 2 workers' copies
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        got = score_hidden(hidden, weight, targets, vocab_chunk=500, chunk_elements=8000)
        assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)
    ranks, logprobs = reference(hidden.double() @ weight.double().T, targets)
    np.testing.assert_array_equal(got.rank.numpy(), ranks)
