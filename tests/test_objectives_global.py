"""The objectives' global batch under torch.distributed (``global_batch=True``).

Two gloo processes each hold half of a batch and a copy of one shared head weight, as DDP
would; each computes the objective with ``global_batch=True`` and backward, then the head's
gradients are averaged as DDP averages them. The reference is one process on the whole batch:
the value on every process and the averaged gradient must equal it to round-off. Without
``global_batch`` the same averaged gradient differs (the mean of per-shard statistics), so the
comparison can fail.
"""

from __future__ import annotations

import torch

from errorentropy.errors import UserError
from errorentropy.objectives import Objective, mixture

VOCAB, HIDDEN, T = 37, 8, 11

OBJECTIVES = {
    "ce+0.5conf": mixture(ce=1.0, conf=0.5),
    "ce+conf": mixture(ce=1.0, conf=1.0),
    "ce+0.5soft-ee": mixture(ce=1.0, soft_ee=0.5, tau=0.5, bandwidth=0.2),
    "soft-ee+logrank+rbp@3": mixture(
        ce=0.0, soft_ee=1.0, soft_log_rank=0.3, soft_rbp=0.2, rbp_k=3, tau=0.5, bandwidth=0.2
    ),
}


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A shared head weight, 4 rows of hidden states and their labels (some unlabelled; the
    last two rows, process 1's, hold fewer labelled tokens than process 0's)."""
    g = torch.Generator().manual_seed(5)
    weight = torch.randn(HIDDEN, VOCAB, generator=g, dtype=torch.float64)
    hidden = torch.randn(4, T, HIDDEN, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, VOCAB, (4, T), generator=g)
    labels[2, 3:] = -100
    labels[3, :5] = -100
    return weight, hidden, labels


def _loss_and_grad(
    objective: Objective, hidden: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor
) -> tuple[float, torch.Tensor, dict[str, float]]:
    w = weight.clone().requires_grad_(True)
    loss, terms = objective(hidden @ w, labels, return_terms=True)
    loss.backward()
    assert w.grad is not None
    return loss.item(), w.grad, terms.as_dict()


def _rank_main(rank: int, init_file: str, global_batch: bool, results) -> None:
    import dataclasses

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    weight, hidden, labels = _inputs()
    rows = slice(2 * rank, 2 * rank + 2)
    out = {}
    for name, objective in OBJECTIVES.items():
        objective = dataclasses.replace(objective, global_batch=global_batch)
        value, grad, terms = _loss_and_grad(objective, hidden[rows], labels[rows], weight)
        dist.all_reduce(grad)  # DDP: the mean of the processes' gradients
        out[name] = (value, (grad / 2).tolist(), terms)
    # A process whose shard has no labelled token takes part (no error, no hang): the whole
    # batch has some. Only process 0 asks for the terms: the same collectives run anyway.
    objective = dataclasses.replace(OBJECTIVES["ce+0.5conf"], global_batch=global_batch)
    none = labels[rows].clone()
    if rank == 1:
        none[:] = -100
    try:
        value = objective(hidden[rows] @ weight, none, return_terms=rank == 0)
        loss = value[0] if isinstance(value, tuple) else value
        out["one shard empty"] = loss.item()
    except UserError as exc:
        out["one shard empty"] = str(exc)
    results.put((rank, out))
    dist.destroy_process_group()


def _two_ranks(tmp_path, global_batch: bool) -> dict[int, dict]:
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    init = str(tmp_path / f"pg-{global_batch}")
    procs = [ctx.Process(target=_rank_main, args=(r, init, global_batch, results)) for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    return got


def test_global_batch_equals_one_process_on_the_whole_batch(tmp_path):
    weight, hidden, labels = _inputs()
    got = _two_ranks(tmp_path, global_batch=True)
    for name, objective in OBJECTIVES.items():
        value, grad, terms = _loss_and_grad(objective, hidden, labels, weight)
        for rank in (0, 1):
            r_value, r_grad, r_terms = got[rank][name]
            assert abs(r_value - value) < 1e-12, (name, rank)
            assert torch.allclose(torch.tensor(r_grad, dtype=torch.float64), grad, atol=1e-12)
            # The logged terms are the whole batch's, on every process.
            assert r_terms.keys() == terms.keys()
            for key in terms:
                assert abs(r_terms[key] - terms[key]) < 1e-9, (name, key)
    whole = OBJECTIVES["ce+0.5conf"](hidden[:2] @ weight, labels[:2]).item()
    assert got[0]["one shard empty"] == got[1]["one shard empty"]
    assert abs(got[0]["one shard empty"] - whole) < 1e-12


def test_without_global_batch_ddp_trains_the_mean_of_the_shards(tmp_path):
    """The default: each process's own statistic, so the averaged gradient of a batch statistic
    is not the whole batch's (CE, a token mean, differs too: the shards hold unequal tokens); a
    process whose shard has no labelled token raises."""
    weight, hidden, labels = _inputs()
    got = _two_ranks(tmp_path, global_batch=False)
    for name, objective in OBJECTIVES.items():
        value, grad, _ = _loss_and_grad(objective, hidden, labels, weight)
        shards = [_loss_and_grad(objective, hidden[r], labels[r], weight) for r in (slice(0, 2),)]
        assert abs(got[0][name][0] - shards[0][0]) < 1e-12  # process 0 saw its own half only
        mean_grad = torch.tensor(got[0][name][1], dtype=torch.float64)
        assert not torch.allclose(mean_grad, grad, atol=1e-6), name
    assert isinstance(got[1]["one shard empty"], str)
    assert "no labelled token" in got[1]["one shard empty"]


def test_global_batch_without_a_process_group_is_the_local_batch():
    weight, hidden, labels = _inputs()
    for objective in OBJECTIVES.values():
        local = objective(hidden @ weight, labels)
        other = Objective(**{**objective.__dict__, "global_batch": True})(hidden @ weight, labels)
        assert torch.equal(local, other)
