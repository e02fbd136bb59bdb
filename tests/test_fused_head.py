"""The fused Triton head against a naive float64 reference and against the chunked torch head.

On a machine without CUDA (CI) Triton's interpreter runs the same kernels on CPU tensors
(``TRITON_INTERPRET=1``, set in conftest.py before Triton is first imported); on a CUDA machine
these tests run the compiled kernels on the GPU. On exact data (multiples of 1/4, whose float32
products and sums are exact in any order) ranks and ties must match the float64 reference
exactly; on random data, wherever no rival logit lies within round-off of the target's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errorentropy.cli.messages import for_command_line

pytest.importorskip("triton")

from errorentropy.errors import UserError  # noqa: E402
from errorentropy.head import fused as fused_head  # noqa: E402 - after the importorskip
from errorentropy.head.chunked import score_hidden  # noqa: E402
from errorentropy.head.select import check_fused, choose_head, find_head  # noqa: E402
from errorentropy.options import ScoreOptions  # noqa: E402
from errorentropy.scoring.engine import score_documents  # noqa: E402
from errorentropy.testing import tiny_model  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fused(hidden, weight, targets, bias=None, rescored=0, **kwargs):
    """The fused head on DEVICE, results back on the CPU; ``rescored`` tokens must have gone
    through the safety net (none, unless a test forces it): the kernel's own counts are tested."""
    on = lambda x: None if x is None else x.to(DEVICE)  # noqa: E731
    stats: dict[str, int] = {}
    got = fused_head.score_hidden_fused(
        on(hidden), on(weight), on(targets), bias=on(bias), stats=stats, **kwargs
    )
    assert stats == {"tokens": len(targets), "rescored": rescored}
    return type(got)(got.rank.cpu(), got.logprob.cpu(), got.tied.cpu())


def quarters(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """Multiples of 1/4 in [-2, 2]: dot products of these are exact in float32, whatever the
    order."""
    return torch.randint(-8, 9, shape, generator=generator).float() / 4


def reference(hidden, weight, targets, bias=None, softcap=None):
    """Naive float64: full logits, strict-> rank, other entries equal to the target, log-softmax."""
    z = hidden.double() @ weight.double().T
    if bias is not None:
        z = z + bias.double()
    if softcap:
        z = torch.tanh(z / softcap) * softcap
    t = z.gather(1, targets[:, None])
    rank = (z > t).sum(1)
    tied = (z == t).sum(1) - 1
    logprob = t[:, 0] - torch.logsumexp(z, 1)
    gap = (
        (z - t).abs().scatter(1, targets[:, None], float("inf")).min(1).values
    )  # distance to the nearest rival
    return rank, tied, logprob, gap


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_tokens=st.integers(1, 150),
    vocab=st.integers(2, 700),
    dim=st.integers(1, 130),
    splits=st.integers(1, 4),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_exact_data_matches_float64_reference(n_tokens, vocab, dim, splits, with_bias, seed):
    """Any shape (partial tiles in every direction, vocabularies below one tile, split
    vocabularies): exact ranks and ties, log-probs to float32 round-off."""
    g = torch.Generator().manual_seed(seed)
    h, w = quarters(g, n_tokens, dim), quarters(g, vocab, dim)
    bias = quarters(g, vocab) if with_bias else None
    targets = torch.randint(0, vocab, (n_tokens,), generator=g)
    got = fused(h, w, targets, bias=bias, splits=splits)
    rank, tied, logprob, _ = reference(h, w, targets, bias)
    assert torch.equal(got.rank, rank) and torch.equal(got.tied, tied)
    np.testing.assert_allclose(got.logprob.numpy(), logprob.numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights(dtype):
    """bf16/fp16 hidden states and head (exactly representable quarters): exact ranks and ties."""
    g = torch.Generator().manual_seed(3)
    h, w = quarters(g, 90, 72).to(dtype), quarters(g, 300, 72).to(dtype)
    targets = torch.randint(0, 300, (90,), generator=g)
    got = fused(h, w, targets, splits=2)
    rank, tied, logprob, _ = reference(h, w, targets)
    assert torch.equal(got.rank, rank) and torch.equal(got.tied, tied) and int(tied.sum()) > 0
    np.testing.assert_allclose(got.logprob.numpy(), logprob.numpy(), rtol=0, atol=1e-6)


def test_random_data_with_softcap():
    """Random float32 data, soft-capped: ranks exact wherever no rival is within 1e-4 of the
    target."""
    g = torch.Generator().manual_seed(4)
    h, w = torch.randn(120, 64, generator=g), torch.randn(900, 64, generator=g) * 0.5
    targets = torch.randint(0, 900, (120,), generator=g)
    got = fused(h, w, targets, softcap=5.0, splits=3)
    rank, _, logprob, gap = reference(h, w, targets, softcap=5.0)
    clear = gap > 1e-4
    assert int(clear.sum()) > 100
    assert torch.equal(got.rank[clear], rank[clear])
    np.testing.assert_allclose(got.logprob.numpy(), logprob.numpy(), rtol=0, atol=1e-5)


def test_fused_log_probs_are_closer_to_float64_than_float32_round_off():
    """Exps summed per tile in float32 and across tiles in float64: the log-sum-exp is accurate
    to ~1e-7 even where its value is large (float32 alone carries ~2e-6 at 40)."""
    g = torch.Generator().manual_seed(5)
    h, w = quarters(g, 64, 96), quarters(g, 1000, 96)
    targets = torch.randint(0, 1000, (64,), generator=g)
    got = fused(h, w, targets, splits=4)
    _, _, logprob, _ = reference(h, w, targets)
    assert float(logprob.abs().max()) > 20
    assert float((got.logprob - logprob).abs().max()) < 5e-7


def test_a_target_logit_with_other_bits_is_rescored_exactly(monkeypatch):
    """The safety net: where the target kernel's logit differs in its last bit from the tile's own
    column, the kernel reports it (``seen``) and those tokens are rescored by the chunked head."""
    from errorentropy.head import fused_kernels

    original = fused_kernels.target_kernel
    nudged = [0, 5, 17]

    class Nudged:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                original[grid](*args, **kwargs)
                out = args[4]
                out[nudged] = torch.nextafter(
                    out[nudged], torch.full_like(out[nudged], float("inf"))
                )

            return launch

    monkeypatch.setattr(fused_kernels, "target_kernel", Nudged())
    rescored: list[int] = []

    def spy(hidden, *args, **kwargs):
        rescored.append(hidden.shape[0])
        return score_hidden(hidden, *args, **kwargs)

    monkeypatch.setattr(fused_head, "score_hidden", spy)
    g = torch.Generator().manual_seed(6)
    h, w = quarters(g, 40, 32), quarters(g, 200, 32)
    targets = torch.randint(0, 200, (40,), generator=g)
    got = fused(h, w, targets, rescored=len(nudged))
    assert rescored == [len(nudged)]
    rank, tied, logprob, _ = reference(h, w, targets)
    assert torch.equal(got.rank, rank) and torch.equal(got.tied, tied)
    np.testing.assert_allclose(got.logprob.numpy(), logprob.numpy(), rtol=0, atol=1e-6)


def test_engine_fused_path_matches_chunked_path(tokenizer, short_docs):
    """``--head fused`` through the engine: the chunked head's ranks and log-probs."""
    model = tiny_model("llama", len(tokenizer) + 13, hidden=32, layers=1, heads=2, context=128).to(
        DEVICE
    )
    common = dict(max_length=64, batch_size=4)
    fused = score_documents(model, tokenizer, short_docs[:6], ScoreOptions(head="fused", **common))
    chunked = score_documents(
        model, tokenizer, short_docs[:6], ScoreOptions(head="chunked", **common)
    )
    assert (fused.head_path, chunked.head_path) == ("fused", "chunked")
    # On a GPU the two sum products in different orders, which may reorder a near-tie or two.
    allowed = 0 if DEVICE.type == "cpu" else 0.01 * len(chunked.tokens.rank)
    assert int((fused.tokens.rank != chunked.tokens.rank).sum()) <= allowed
    np.testing.assert_allclose(fused.tokens.logprob, chunked.tokens.logprob, rtol=0, atol=1e-5)
    assert fused.histogram.counts.sum() == chunked.histogram.counts.sum() > 100


def test_check_fused_agrees_and_reports_a_broken_kernel(tokenizer, short_docs, monkeypatch):
    model = tiny_model("qwen2", len(tokenizer), hidden=32, layers=1, heads=2, context=128).to(
        DEVICE
    )
    head = find_head(model)
    ids = torch.tensor([tokenizer(short_docs[3])["input_ids"][:32]], device=DEVICE)
    assert check_fused(head, ids) is None

    def broken(*args, **kwargs):
        raise RuntimeError("PTX assembly failed")

    monkeypatch.setattr(fused_head, "score_hidden_fused", broken)
    note = check_fused(head, ids)
    assert note is not None and "PTX assembly failed" in note and "used the chunked head" in note

    def miscounting(shift, tie_shift=0, rescored=0):
        def kernel(hidden, weight, targets, stats, **kwargs):
            stats.update(tokens=len(targets), rescored=rescored)
            scores = score_hidden(hidden, weight, targets, **kwargs)
            scores.rank, scores.tied = scores.rank + shift, scores.tied + tie_shift
            return scores

        return kernel

    monkeypatch.setattr(fused_head, "score_hidden_fused", miscounting(0))
    assert check_fused(head, ids) is None  # the chunked head passes the check it is held to
    for wrong in (miscounting(2), miscounting(-1), miscounting(0, tie_shift=3)):
        monkeypatch.setattr(fused_head, "score_hidden_fused", wrong)
        assert "disagreed" in check_fused(head, ids)
    monkeypatch.setattr(fused_head, "score_hidden_fused", miscounting(0, rescored=5))
    assert "differed from its tiles' on 5 of 31 check tokens" in check_fused(head, ids)


def test_fused_head_needs_cuda_outside_the_interpreter(tokenizer, monkeypatch):
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "needs a CUDA device" in fused_head.available("cpu")
    with pytest.raises(
        UserError, match="head='fused': the fused kernel needs a CUDA device .*use head='chunked'"
    ) as refused:
        choose_head(model, "fused", [1, 2, 3])
    # the same check, as the command line says it
    assert for_command_line(refused.value).startswith("--head fused: the fused kernel needs a CUDA")
    assert for_command_line(refused.value).endswith("use --head chunked")
    # auto on CPU never tries the fused kernel: the chunked head, verified
    head = choose_head(model, "auto", list(range(1, 20)))
    assert head is not None and not head.fused and head.note is None


def test_fused_head_refuses_profile(tokenizer):
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128)
    with pytest.raises(UserError, match="profile=True needs; use head='chunked'") as refused:
        choose_head(model, "fused", [1, 2, 3], profile=True)
    assert "--profile needs; use --head chunked" in for_command_line(refused.value)


def test_minus_infinity_bias_and_bad_targets():
    """A -inf bias entry (a banned token) is no rival and no NaN, even filling a whole vocabulary
    slice; target ids outside the head are refused before any kernel runs."""
    g = torch.Generator().manual_seed(7)
    h, w = quarters(g, 20, 16), quarters(g, 300, 16)
    bias = torch.zeros(300)
    bias[:128] = float("-inf")  # the first vocabulary slice is all -inf
    targets = torch.randint(128, 300, (20,), generator=g)
    got = fused(h, w, targets, bias=bias, splits=2)
    rank, tied, logprob, _ = reference(h, w, targets, bias)
    assert torch.equal(got.rank, rank) and torch.equal(got.tied, tied)
    np.testing.assert_allclose(got.logprob.numpy(), logprob.numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"target ids must lie in \[0, 300\)"):
        fused_head.score_hidden_fused(
            h.to(DEVICE), w.to(DEVICE), torch.tensor([5, 300], device=DEVICE)
        )
