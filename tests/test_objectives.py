"""Training objectives from CE = EE + SA - Conf (errorentropy.objectives).

The exact loss is checked against F.cross_entropy (lam = 0), a naive float64 numpy reference and
the RankHistogram decomposition; its gradient against -(1/N)(1 - lam q_e / p_e); the relaxed
terms by gradcheck and by their tau -> 0 limits; the chunked reading against one chunk; and the
memory contract through the tensors autograd saves.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import errorentropy as ee
from errorentropy.errors import UserError
from errorentropy.objectives import (
    DEFAULT_TAU,
    Objective,
    ce_conf_from_tokens,
    ce_conf_loss,
    default_bins,
    mixture,
    parse_objective,
    parse_objectives,
    soft_error_entropy,
    soft_ranks,
)
from errorentropy.objectives import token_terms as token_terms_module


def batch(
    b: int = 3, t: int = 9, v: int = 23, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits and causal-LM labels with padding (-100) in the last row."""
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(b, t, v, generator=g, dtype=torch.float64)).to(dtype)
    labels = torch.randint(0, v, (b, t), generator=g)
    labels[-1, t // 2 :] = -100
    return logits, labels


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The labelled rows' float64 logits and targets, as the shifted convention pairs them."""
    z = logits[:, :-1].double().reshape(-1, logits.shape[-1]).detach().numpy()
    y = labels[:, 1:].reshape(-1).numpy()
    keep = y != -100
    return z[keep], y[keep]


def reference(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray | float]:
    """Naive float64 decomposition: ranks by strict >, logprobs by log-sum-exp, grouped."""
    z, y = shifted(logits, labels)
    zt = z[np.arange(len(y)), y]
    ranks = (z > zt[:, None]).sum(1)
    top = z.max(1)
    logprob = zt - (top + np.log(np.exp(z - top[:, None]).sum(1)))
    uniq, inverse = np.unique(ranks, return_inverse=True)
    n_e = np.bincount(inverse).astype(float)
    log_q = np.bincount(inverse, weights=logprob) / n_e
    p = n_e / len(y)
    log_c = log_q.max() + np.log(np.exp(log_q - log_q.max()).sum())
    q = np.exp(log_q - log_c)
    return {
        "ranks": ranks,
        "logprob": logprob,
        "inverse": inverse,
        "p": p,
        "q": q,
        "ce": -logprob.mean(),
        "ee": -(p * np.log(p)).sum(),
        "sa": (p * np.log(p / q)).sum(),
        "conf": log_c,
    }


# --- the exact loss -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shift", [True, False])
def test_lam_zero_is_cross_entropy(dtype: torch.dtype, shift: bool) -> None:
    logits, labels = batch(dtype=dtype)
    x = logits.clone().requires_grad_()
    loss = ce_conf_loss(x, labels, 0.0, shift=shift)
    loss.backward()
    y = x.detach().clone().requires_grad_()
    if shift:
        ref = F.cross_entropy(y[:, :-1].reshape(-1, y.shape[-1]), labels[:, 1:].reshape(-1))
    else:
        ref = F.cross_entropy(y.reshape(-1, y.shape[-1]), labels.reshape(-1))
    ref.backward()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert loss.dtype == dtype
    assert abs(loss.item() - ref.item()) < tol
    assert x.grad is not None and y.grad is not None
    torch.testing.assert_close(x.grad, y.grad, atol=tol, rtol=tol)


@pytest.mark.parametrize("lam", [0.3, 1.0, 2.5, -0.5])
def test_value_matches_numpy_reference(lam: float) -> None:
    logits, labels = batch(seed=1)
    ref = reference(logits, labels)
    loss, terms = ce_conf_loss(logits, labels, lam, return_terms=True)
    assert abs(loss.item() - (ref["ce"] + lam * ref["conf"])) < 1e-12
    assert abs(terms.cross_entropy - ref["ce"]) < 1e-12
    assert abs(terms.error_entropy - ref["ee"]) < 1e-12
    assert abs(terms.self_alignment - ref["sa"]) < 1e-12
    assert abs(terms.confidence - ref["conf"]) < 1e-12
    assert terms.n_tokens == len(ref["ranks"])
    residual = terms.cross_entropy - (terms.error_entropy + terms.self_alignment - terms.confidence)
    assert abs(residual) < 1e-12


def test_ties_count_for_the_label() -> None:
    """Integer logits tie often; a tie must not raise the label's rank (strict >)."""
    g = torch.Generator().manual_seed(2)
    logits = torch.randint(-2, 3, (2, 12, 9), generator=g).double()
    labels = torch.randint(0, 9, (2, 12), generator=g)
    ref = reference(logits, labels)
    loss, terms = ce_conf_loss(logits, labels, 1.0, return_terms=True)
    assert abs(loss.item() - (ref["ce"] + ref["conf"])) < 1e-12
    assert abs(terms.error_entropy - ref["ee"]) < 1e-12


@pytest.mark.parametrize("lam", [0.5, 1.0])
def test_value_matches_rank_histogram(lam: float) -> None:
    logits, labels = batch(b=4, t=16, v=50, seed=3, dtype=torch.float32)
    loss, terms = ce_conf_loss(logits, labels, lam, return_terms=True)
    d = ee.RankHistogram().update(logits, labels).decompose()
    assert abs(loss.item() - (d.cross_entropy + lam * d.confidence)) < 1e-5
    assert abs(terms.error_entropy - d.error_entropy) < 1e-12  # same ranks, exactly
    assert abs(terms.self_alignment - d.self_alignment) < 1e-5
    assert abs(terms.confidence - d.confidence) < 1e-5
    ref = reference(logits, labels)  # and from (rank, logprob) pairs via the public builder
    d2 = ee.RankHistogram.from_tokens(ref["ranks"], ref["logprob"]).decompose()
    assert abs(loss.item() - (d2.cross_entropy + lam * d2.confidence)) < 1e-5


@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0, 3.0])
def test_gradient_on_logprobs(lam: float) -> None:
    """dL/dlog s_i = -(1/N)(1 - lam q_e / p_e), on the tokens and through the logits."""
    logits, labels = batch(seed=4)
    ref = reference(logits, labels)
    n = len(ref["ranks"])
    expected = -(1.0 / n) * (1 - lam * ref["q"][ref["inverse"]] / ref["p"][ref["inverse"]])
    logprob = torch.tensor(ref["logprob"], requires_grad=True)
    ce_conf_from_tokens(logprob, torch.tensor(ref["ranks"]), lam).backward()
    assert logprob.grad is not None
    np.testing.assert_allclose(logprob.grad.numpy(), expected, rtol=1e-10, atol=1e-14)
    # Through the logits: dL/dz = g_i (onehot - softmax) on each labelled row.
    x = logits.clone().requires_grad_()
    ce_conf_loss(x, labels, lam).backward()
    assert x.grad is not None
    z, y = shifted(logits, labels)
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    onehot = np.eye(z.shape[1])[y]
    grad_rows, _ = shifted(x.grad, labels)
    np.testing.assert_allclose(grad_rows, expected[:, None] * (onehot - soft), atol=1e-14)
    assert float(x.grad[:, -1].abs().max()) == 0.0  # the last position predicts nothing


def test_gradient_accumulation_is_not_the_big_batch() -> None:
    """CE averages over micro-batches of equal token counts; Conf does not (batch statistic)."""
    logits, labels = batch(b=4, t=10, v=15, seed=5)
    labels[-1, 5:] = labels[0, 5:]  # every row labelled: equal micro-batch token counts
    halves = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]
    ce_big = ce_conf_loss(logits, labels, 0.0).item()
    ce_acc = sum(ce_conf_loss(z, y, 0.0).item() for z, y in halves) / 2
    assert abs(ce_big - ce_acc) < 1e-12
    conf_big = ce_conf_loss(logits, labels, 1.0).item()
    conf_acc = sum(ce_conf_loss(z, y, 1.0).item() for z, y in halves) / 2
    assert abs(conf_big - conf_acc) > 1e-3


# --- the relaxed terms --------------------------------------------------------------------------


def small_grad_batch() -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = batch(b=2, t=5, v=7, seed=6)
    return logits.requires_grad_(), labels


def test_gradcheck_ce_conf() -> None:
    x, labels = small_grad_batch()
    assert torch.autograd.gradcheck(lambda z: ce_conf_loss(z, labels, 0.7), (x,))


def test_gradcheck_soft_error_entropy() -> None:
    x, labels = small_grad_batch()
    assert torch.autograd.gradcheck(
        lambda z: soft_error_entropy(z, labels, tau=0.7, bandwidth=0.3), (x,)
    )


def test_gradcheck_mixture_all_terms_chunked() -> None:
    x, labels = small_grad_batch()
    objective = mixture(
        ce=1.0, conf=0.4, soft_ee=0.5, soft_log_rank=0.2, soft_rbp=0.3,
        tau=0.7, bandwidth=0.3, bins=(0, 1, 3), rbp_k=2, chunk_size=3,
    )  # fmt: skip
    assert torch.autograd.gradcheck(lambda z: objective(z, labels), (x,))
    labelled = torch.zeros_like(labels, dtype=torch.bool)
    labelled[:, :-1] = labels[:, 1:] != -100
    assert torch.autograd.gradcheck(lambda z: soft_ranks(z, labels, 0.5)[labelled], (x,))


def spaced_batch(v: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits a permutation of 0..V-1 per row: no two within 1 of each other."""
    g = torch.Generator().manual_seed(7)
    logits = torch.stack([torch.randperm(v, generator=g) for _ in range(3 * 12)]).double()
    labels = torch.randint(0, v, (3, 12), generator=g)
    return logits.view(3, 12, v), labels


def test_soft_ranks_tend_to_exact_ranks() -> None:
    logits, labels = spaced_batch()
    exact = ee.token_stats(logits.float(), labels).rank
    errors = []
    for tau in (1.0, 0.3, 0.1, 0.02):
        soft = soft_ranks(logits, labels, tau)
        assert torch.isnan(soft[:, -1]).all()
        errors.append(float((soft[:, :-1] - exact[:, :-1]).abs().max()))
    assert errors == sorted(errors, reverse=True) and errors[0] > 1e-2
    assert errors[-1] < 1e-12


def test_soft_error_entropy_tends_to_binned_entropy() -> None:
    logits, labels = spaced_batch()
    ranks = ee.token_stats(logits.float(), labels).rank[:, :-1].reshape(-1).numpy()
    bins = default_bins(logits.shape[-1])
    which = np.searchsorted(np.array(bins), ranks, side="right") - 1
    p = np.bincount(which) / len(which)
    binned = -(p[p > 0] * np.log(p[p > 0])).sum()
    # Edges sit half a rank from the integers: log(b + 1) - log(b + 1/2) > 0.015 for b < 40.
    value, terms = mixture(ce=0, soft_ee=1, tau=0.02, bandwidth=1e-4)(
        logits, labels, return_terms=True
    )
    assert terms.error_entropy_binned is not None
    assert abs(terms.error_entropy_binned - binned) < 1e-12
    assert abs(value.item() - binned) < 1e-6
    # At a fixed bandwidth, tau -> 0 gives the entropy of the smoothed bins of the exact ranks.
    h = 0.2
    edges = np.log(np.array(bins[1:]) + 0.5)
    cdf = 1 / (1 + np.exp(-(edges[None, :] - np.log1p(ranks)[:, None]) / h))
    cdf = np.concatenate([np.zeros((len(ranks), 1)), cdf, np.ones((len(ranks), 1))], 1)
    pk = np.diff(cdf, axis=1).mean(0)
    smoothed = -(pk * np.log(pk)).sum()
    value = soft_error_entropy(logits, labels, tau=0.02, bandwidth=h)
    assert abs(value.item() - smoothed) < 1e-9
    assert abs(smoothed - binned) > 1e-3  # the smoothing is visible, so the check can fail


def test_soft_error_entropy_degenerate_minimum() -> None:
    """Every label ranked last: soft EE is ~0 although CE is large, hence the anchors."""
    v = 64
    logits = torch.arange(v, dtype=torch.float64).repeat(2, 8, 1)
    labels = torch.zeros(2, 8, dtype=torch.long)
    loss, terms = mixture(ce=1.0, soft_ee=1.0, soft_log_rank=1.0, tau=0.05)(
        logits, labels, return_terms=True
    )
    assert terms.soft_error_entropy is not None and terms.soft_error_entropy < 1e-4
    assert terms.error_entropy == 0.0 and terms.cross_entropy > 60
    assert terms.soft_log_rank is not None and abs(terms.soft_log_rank - math.log(v)) < 1e-6


# --- reading the logits: chunks, threads, dtypes, strides, memory --------------------------------


def objectives_under_test() -> list[Objective]:
    return [
        mixture(ce=1.0, conf=1.0),
        mixture(ce=0.0, soft_ee=1.0, tau=0.5, bandwidth=0.2),
        mixture(ce=1.0, conf=0.5, soft_ee=0.5, soft_log_rank=0.1, soft_rbp=0.2, tau=0.5),
    ]


def value_and_grad(
    objective: Objective, logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    x = logits.detach().clone().requires_grad_()
    loss = objective(x, labels)
    loss.backward()
    assert x.grad is not None
    return loss.detach(), x.grad


@pytest.mark.parametrize("index", [0, 1, 2])
def test_chunked_equals_unchunked(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    logits, labels = batch(b=3, t=11, v=37, seed=8)
    base = objectives_under_test()[index]
    one = value_and_grad(base, logits, labels)
    for chunk in (37, 100, 10, 1):
        objective = dataclasses.replace(base, chunk_size=chunk)
        got = value_and_grad(objective, logits, labels)
        torch.testing.assert_close(got, one, rtol=1e-12, atol=1e-14)
    # Many small row blocks, spread over worker threads, give the same bits.
    monkeypatch.setattr(token_terms_module, "CPU_BLOCK_ELEMENTS", 37 * 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = value_and_grad(base, logits, labels)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, one, rtol=1e-12, atol=1e-14)


def test_strided_logits_are_not_copied_whole() -> None:
    """``logits[:, :-1]`` with ``shift=False`` equals the contiguous copy."""
    logits, labels = batch(seed=9, dtype=torch.float32)
    for objective in objectives_under_test():
        objective = dataclasses.replace(objective, shift=False)
        view = logits[:, :-1]
        assert not view.is_contiguous()
        got = value_and_grad(objective, view, labels[:, 1:])
        want = value_and_grad(objective, view.contiguous(), labels[:, 1:])
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_bfloat16_logits(index: int) -> None:
    logits, labels = batch(b=2, t=16, v=64, seed=10, dtype=torch.bfloat16)
    objective = objectives_under_test()[index]
    loss, grad = value_and_grad(objective, logits, labels)
    assert loss.dtype == torch.float32 and grad.dtype == torch.bfloat16
    loss32, grad32 = value_and_grad(objective, logits.float(), labels)
    assert abs(loss.item() - loss32.item()) < 1e-6  # same float32 arithmetic on the same values
    torch.testing.assert_close(grad.float(), grad32, rtol=1e-2, atol=1e-4)


def test_padding_with_non_finite_logits_does_not_leak() -> None:
    logits, labels = batch(seed=11)
    labels[0, 4:] = -100
    poisoned = logits.clone()
    poisoned[0, 3:] = float("nan")  # rows 3.. of sequence 0 predict no label (shifted)
    for objective in objectives_under_test():
        got = value_and_grad(objective, poisoned, labels)
        want = value_and_grad(objective, logits, labels)
        torch.testing.assert_close(got, want)
    poisoned[1, 2, 0] = float("inf")
    with pytest.raises(UserError, match="not finite"):
        ce_conf_loss(poisoned, labels)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_no_extra_full_tensor_saved_for_backward(index: int, dtype: torch.dtype) -> None:
    b, t, v = 2, 16, 300
    logits, labels = batch(b, t, v, seed=12, dtype=dtype)
    x = logits.requires_grad_()

    def big_saved(loss_fn: object, at_least: int) -> list[torch.Tensor]:
        """The tensors saved for backward, other than the logits, of ``at_least`` entries."""
        saved: list[torch.Tensor] = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            saved.append(tensor)
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss_fn()  # type: ignore[operator]
        return [s for s in saved if s.numel() >= at_least and s.data_ptr() != x.data_ptr()]

    objective = objectives_under_test()[index]
    others = big_saved(lambda: objective(x, labels), 1)
    assert max(s.numel() for s in others) <= 16 * b * t  # O(B*T) vectors and [N, bins]
    assert big_saved(lambda: objective(x, labels), b * t * v) == []
    # The check can fail: cross_entropy keeps its [B*T, V] log-softmax for backward.
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]
    ce = big_saved(lambda: F.cross_entropy(x.float().view(-1, v), targets.view(-1)), b * t * v)
    assert ce != [] and ce[0].shape == (b * t, v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    logits, labels = batch(b=2, t=32, v=1000, seed=13, dtype=torch.float32)
    for objective in objectives_under_test():
        cpu = value_and_grad(objective, logits, labels)
        gpu = value_and_grad(objective, logits.cuda(), labels.cuda())
        torch.testing.assert_close((gpu[0].cpu(), gpu[1].cpu()), cpu, rtol=1e-4, atol=1e-6)


# --- names and arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "weights"),
    [
        ("ce", {"ce": 1.0}),
        ("ce+conf", {"ce": 1.0, "conf": 1.0}),
        ("ce+0.5conf", {"ce": 1.0, "conf": 0.5}),
        ("soft-ee", {"soft_ee": 1.0}),
        ("ce+soft-ee", {"ce": 1.0, "soft_ee": 1.0}),
        ("soft-ee+0.1logrank", {"soft_ee": 1.0, "soft_log_rank": 0.1}),
        (" 2ce + 1e-2*rbp@5 ", {"ce": 2.0, "soft_rbp": 0.01}),
    ],
)
def test_parse_objective(text: str, weights: dict[str, float]) -> None:
    objective = parse_objective(text, tau=0.2)
    for name in ("ce", "conf", "soft_ee", "soft_log_rank", "soft_rbp"):
        assert getattr(objective, name) == weights.get(name, 0.0)
    assert objective.tau == 0.2
    assert objective.rbp_k == (5 if "rbp@5" in text else 1)
    assert parse_objective(objective.name) == dataclasses.replace(objective, tau=DEFAULT_TAU)


def test_parse_objectives_list() -> None:
    names = "ce,ce+conf,ce+0.5conf,soft-ee,ce+soft-ee"
    assert [o.name for o in parse_objectives(names)] == names.split(",")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ce", "conf", "soft-ee", "logrank", "rbp"]),
            st.floats(0.001, 100.0, allow_nan=False).map(lambda w: float(f"{w:g}")),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda pair: pair[0],
    )
)
def test_parse_round_trip(terms: list[tuple[str, float]]) -> None:
    text = "+".join(f"{w:g}{name}" for name, w in terms)
    objective = parse_objective(text)
    assert parse_objective(objective.name) == objective


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("ee", "no gradient.*soft-ee"),
        ("sa", "ce\\+conf"),
        ("ce+ce", "repeats"),
        ("ce-conf", "not a term"),
        ("0ce", "every objective weight is 0"),
        ("ce@3", "not a term"),
        ("ce+rbp@0", "rbp_k must be at least 1"),
        ("ce,,conf", "empty name"),
    ],
)
def test_bad_objective_names(text: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        parse_objectives(text)
    assert "\n" not in str(info.value)
    if match not in (
        "empty",
        "empty name",
        "every objective weight is 0",
        "rbp_k must be at least 1",
    ):
        assert "ce+0.5conf" in str(info.value)  # the allowed forms are named


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda z, y: ce_conf_loss(z, y, float("nan")), "lam must be a finite"),
        (lambda z, y: ce_conf_loss(z, y, float("inf")), "lam must be a finite"),
        (lambda z, y: ce_conf_loss(z, y, True), "lam must be a finite"),
        (lambda z, y: ce_conf_loss(z, y, "1"), "lam must be a finite"),
        (lambda z, y: soft_error_entropy(z, y, tau=0.0), "tau must be > 0"),
        (lambda z, y: soft_error_entropy(z, y, tau=-1.0), "tau must be > 0"),
        (lambda z, y: soft_ranks(z, y, tau=float("nan")), "tau must be a finite"),
        (lambda z, y: soft_error_entropy(z, y, bandwidth=0.0), "bandwidth must be > 0"),
        (lambda z, y: soft_error_entropy(z, y, bins=(1, 2)), "bins: the first edge must be 0"),
        (lambda z, y: soft_error_entropy(z, y, bins=(0, 2, 2)), "bins: .*strictly increasing"),
        (lambda z, y: soft_error_entropy(z, y, bins=(0,)), "bins: needs at least two"),
        (lambda z, y: ce_conf_loss(z, y, chunk_size=0), "chunk_size must be at least 1"),
        (lambda z, y: ce_conf_loss(z, y, ignore_index=1.5), "ignore_index must be an integer"),
        (lambda z, y: ce_conf_loss(z, y, shift=1), "shift must be True or False"),
        (lambda z, y: ce_conf_loss(z[0, 0], y[0, 0]), "logits must be \\[B, T, V\\]"),
        (lambda z, y: ce_conf_loss(z, y[:, :-1]), "do not match logits"),
        (lambda z, y: ce_conf_loss(z, y.double()), "labels must be an integer tensor"),
        (lambda z, y: ce_conf_loss(z.long(), y), "logits must be float32"),
        (lambda z, y: ce_conf_loss(z, y + 100), "neither a vocabulary id"),
        (lambda z, y: ce_conf_loss(z, torch.full_like(y, -100)), "no labelled token"),
        (lambda z, y: mixture(ce=0.0), "every objective weight is 0"),
        (lambda z, y: mixture(soft_rbp=1.0, rbp_k=0), "rbp_k must be at least 1"),
    ],
)
def test_bad_arguments(call: object, match: str) -> None:
    logits, labels = batch(seed=14)
    with pytest.raises(UserError, match=match) as info:
        call(logits, labels)  # type: ignore[operator]
    assert "\n" not in str(info.value)
