"""Data parallelism: K processes under torchrun (gloo, CPU) give the one-process result.

Counts and token arrays must be identical, log-prob sums equal within 1e-9.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from errorentropy.errors import UserError
from errorentropy.options import ScoreOptions
from errorentropy.scoring.distributed import (
    launch_from_env,
    merge_results,
    shard_and_score,
    shard_documents,
)
from errorentropy.scoring.engine import score_documents
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable
from errorentropy.testing import tiny_model


def test_shards_partition_the_documents():
    for n, world in [(0, 2), (1, 3), (10, 3), (12, 4)]:
        shards = [shard_documents(n, r, world) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(n))


def test_launch_from_env():
    assert launch_from_env({}) is None
    launch = launch_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (launch.rank, launch.world_size, launch.local_rank, launch.is_main) == (3, 4, 1, False)
    with pytest.raises(UserError):
        launch_from_env({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(UserError):
        launch_from_env({"RANK": "x", "WORLD_SIZE": "4"})


def test_merged_shards_equal_one_pass(tokenizer, short_docs):
    """In-process: three shards scored separately and merged equal one pass, bit for bit."""
    model = tiny_model("gpt_neox", len(tokenizer), hidden=32, layers=1, heads=2, context=128)
    options = ScoreOptions(max_length=48, batch_size=3, profile=True)
    whole = score_documents(model, tokenizer, short_docs, options)
    parts = [
        score_documents(
            model, tokenizer, short_docs, options, doc_ids=shard_documents(len(short_docs), r, 3)
        )
        for r in range(3)
    ]
    merged = merge_results(parts)
    assert merged.histogram.equals(whole.histogram)  # exact: counts, sums and bookkeeping
    for name in ("doc", "position", "rank", "logprob"):
        np.testing.assert_array_equal(getattr(merged.tokens, name), getattr(whole.tokens, name))
    assert merged.head_path == whole.head_path and merged.n_windows == whole.n_windows
    np.testing.assert_array_equal(merged.profile.counts, whole.profile.counts)
    np.testing.assert_allclose(merged.profile.sums, whole.profile.sums, rtol=1e-12)
    # outside torchrun, shard_and_score is score_documents
    single = shard_and_score(model, tokenizer, short_docs, options)
    assert single.histogram.equals(whole.histogram)


def test_torchrun_two_processes_gloo(tmp_path, model_dir, short_docs):
    """``torchrun --nproc-per-node 2 -m errorentropy score`` writes what one process writes."""
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in short_docs * 2))
    common = [
        "score",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--max-length",
        "64",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    one = subprocess.run(
        [sys.executable, "-m", "errorentropy", *common, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "errorentropy",
    ]
    two = subprocess.run(
        [*torchrun, *common, "--out", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = (
        RankHistogram.load(tmp_path / "one" / "histogram.json"),
        RankHistogram.load(tmp_path / "two" / "histogram.json"),
    )
    np.testing.assert_array_equal(a.counts, b.counts)
    assert (a.n_documents, a.n_skipped, a.n_tied) == (b.n_documents, b.n_skipped, b.n_tied)
    np.testing.assert_allclose(a.logprob_sums, b.logprob_sums, rtol=0, atol=1e-9)
    ta, tb = (
        TokenTable.load(tmp_path / "one" / "tokens.npz"),
        TokenTable.load(tmp_path / "two" / "tokens.npz"),
    )
    for name in ("doc", "position", "rank", "logprob"):
        np.testing.assert_array_equal(getattr(ta, name), getattr(tb, name))
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2
    assert json.loads((tmp_path / "one" / "summary.json").read_text())["processes"] == 1
    # rank 0 alone prints the summary line
    assert sum(1 for line in two.stdout.splitlines() if line.startswith("{")) == 1


def test_torchrun_sweep_matches_one_process(tmp_path, model_dir, short_docs):
    """``torchrun --nproc-per-node 2 -m errorentropy sweep``: rank 0 writes the cells one process
    writes."""
    from errorentropy.sweep.cells import load_cells

    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"text": d}) + "\n" for d in short_docs))
    spec = tmp_path / "spec.toml"
    # a second model that fails to load: the cell is recorded as failed, the sweep exits with 3
    spec.write_text(
        "[scoring]\nmax_length = 48\nbatch_size = 2\n[run]\ndevice = "
        f'"cpu"\n[[models]]\nid = "{model_dir}"\n[[models]]\nid = '
        f'"{tmp_path / "missing-model"}"\n[[datasets]]\ndata = "{data}"\n'
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "errorentropy",
            "sweep",
            str(spec),
            "--out",
            str(tmp_path / "one"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 3, one.stderr
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "errorentropy",
    ]
    two = subprocess.run(
        [*torchrun, "sweep", str(spec), "--out", str(tmp_path / "two"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # torchrun exits 1 when a worker fails (and stops the rest); rank 0's own status is reported
    assert two.returncode != 0 and "exitcode  : 3" in two.stderr, two.stderr[-3000:]
    assert "1 done, 1 failed" in two.stderr
    (a,), (b,) = load_cells(tmp_path / "one"), load_cells(tmp_path / "two")
    assert a.key == b.key and a.histogram().equals(b.histogram())
    for name in ("doc", "position", "rank", "logprob"):
        np.testing.assert_array_equal(getattr(a.tokens(), name), getattr(b.tokens(), name))


def _score_with_nan_on_rank_one(
    rank: int, init_file: str, model_dir: str, docs: list[str], results
) -> None:
    import torch.distributed as dist

    from errorentropy.models.loading import load_model

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model, tokenizer = load_model(model_dir, device="cpu")
    if rank == 1:
        with torch.no_grad():
            model.get_output_embeddings().weight.fill_(float("nan"))
    try:
        shard_and_score(model, tokenizer, docs, ScoreOptions(max_length=32))
        results.put((rank, "ok"))
    except UserError as exc:
        results.put((rank, str(exc)))
    dist.destroy_process_group()


def _run_two_ranks(target, args, timeout: float, hang_message: str) -> list:
    """Run ``target(*args(rank, queue))`` in 2 spawned processes; fail if one is still alive after
    ``timeout`` s; return what both put on the queue."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=args(r, results)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, hang_message
    return [results.get(timeout=5) for _ in range(2)]


def test_a_failure_on_one_process_fails_every_process(tmp_path, model_dir, short_docs):
    """NaN logits on rank 1 only: both ranks raise the same clean error instead of one waiting
    forever."""
    results = _run_two_ranks(
        _score_with_nan_on_rank_one,
        lambda r, queue: (r, str(tmp_path / "pg"), str(model_dir), short_docs, queue),
        240,
        "a process hung in a collective",
    )
    messages = dict(results)
    assert messages[0] == messages[1]
    assert messages[0].startswith("process 1:") and "NaN or inf" in messages[0]


def _conclude_with(rank: int, init_file: str, status: int, results) -> None:
    import torch.distributed as dist

    from errorentropy.cli import conclude

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    agreed = conclude(status)
    results.put((rank, agreed, dist.is_initialized()))


def test_processes_that_end_with_different_statuses_all_exit_with_the_worst(tmp_path):
    """Rank 0 ends with 3 (failed sweep cells), rank 1 with 0: both learn 3, both leave the
    group, neither waits for the other (the old final barrier left rank 1 waiting there)."""
    from errorentropy.cli import conclude

    assert conclude(5) == 5  # outside a process group: the status itself
    results = _run_two_ranks(
        _conclude_with,
        lambda r, queue: (r, str(tmp_path / "pg"), 3 if r == 0 else 0, queue),
        120,
        "a process waited for the other at the end",
    )
    assert sorted(results) == [(0, 3, False), (1, 3, False)]


def test_a_process_with_no_documents_merges_cleanly(tokenizer, short_docs):
    """More processes than documents (--samples 2 on 4 GPUs): the empty shards score nothing and
    the merge equals one pass."""
    model = tiny_model("gpt_neox", len(tokenizer), hidden=32, layers=1, heads=2, context=128)
    docs = short_docs[:2]
    options = ScoreOptions(max_length=48)
    parts = [
        score_documents(model, tokenizer, docs, options, doc_ids=shard_documents(len(docs), r, 4))
        for r in range(4)
    ]
    assert parts[3].histogram.n_tokens == 0 and parts[3].head_path == "none"
    merged = merge_results(parts)
    whole = score_documents(model, tokenizer, docs, options)
    assert merged.histogram.equals(whole.histogram) and merged.head_path == whole.head_path
