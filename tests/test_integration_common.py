"""integrations/common.py and what every integration shares: the framework-neutral module, n_tied
and the 16-bit tie warning with its float32 cure, attention masks of left-padded batches, and the
sum of histograms across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from errorentropy.errors import UserError
from errorentropy.head import token_stats as token_stats_module
from errorentropy.head.token_stats import TiedLogitsWarning, token_stats
from errorentropy.integrations import common
from errorentropy.integrations.common import (
    all_reduce_histogram,
    decomposition_fields,
    float32_logits,
)
from errorentropy.options import ScoreOptions
from errorentropy.scoring.engine import score_documents
from errorentropy.stats.histogram import RankHistogram
from errorentropy.testing import tiny_model
from test_distributed import _run_two_ranks

LENGTH = 48


@pytest.fixture
def fresh_warnings(monkeypatch):
    """A process in which no place has warned about ties yet."""
    monkeypatch.setattr(token_stats_module, "_WARNED", set())


def rows_of(tokenizer, texts: list[str], length: int = LENGTH) -> torch.Tensor:
    rows = [tokenizer(t)["input_ids"][:length] for t in texts]
    assert all(len(r) == length for r in rows)
    return torch.tensor(rows)


# ---- the module layout ------------------------------------------------------------------------


def test_torchmetrics_and_lightning_never_import_the_trainer_module():
    pytest.importorskip("torchmetrics")
    pytest.importorskip("lightning")
    code = (
        "import sys, json; import errorentropy.integrations.torchmetrics, "
        "errorentropy.integrations.lightning; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('errorentropy.integ'))))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert "errorentropy.integrations.lightning" in loaded  # the import did happen
    assert "errorentropy.integrations.common" in loaded
    assert "errorentropy.integrations.transformers" not in loaded


def test_the_trainer_module_still_exports_the_shared_names():
    from errorentropy.integrations import transformers as hf

    for name in ("decomposition_fields", "score_texts", "write_step_cell", "DEFAULT_RBP_KS"):
        assert getattr(hf, name) is getattr(common, name)
        assert name in hf.__all__


# ---- 16-bit logits: n_tied, the warning and float32 logits ------------------------------------


def test_16bit_logits_tie_warn_once_and_float32_logits_give_the_engines_numbers(
    tokenizer, prose_docs, fresh_warnings
):
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=64, seed=3)
    model = model.to(torch.bfloat16)
    texts = [d[:300] for d in prose_docs[300:308]]
    ids = rows_of(tokenizer, texts)
    options = ScoreOptions(max_length=LENGTH, batch_size=8, bos="never")
    engine = score_documents(model, tokenizer, texts, options).histogram
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        hidden = model.base_model(input_ids=ids).last_hidden_state
    assert logits.dtype == torch.bfloat16
    with pytest.warns(TiedLogitsWarning, match=r"float32_logits\(model, hidden_states\)") as seen:
        rounded = RankHistogram().update(logits, ids)
        rounded.update(logits, ids)  # the same again: no second warning
    assert sum(issubclass(w.category, TiedLogitsWarning) for w in seen) == 1
    assert rounded.n_tied > 0.05 * rounded.n_tokens  # 16-bit rounding ties many tokens
    assert rounded.decompose().error_entropy != pytest.approx(
        engine.decompose().error_entropy, abs=1e-3
    )
    assert decomposition_fields(rounded)["n_tied"] == rounded.n_tied

    with warnings.catch_warnings():
        warnings.simplefilter("error", TiedLogitsWarning)
        exact = RankHistogram().update(float32_logits(model, hidden), ids)
    assert exact.n_tokens == engine.n_tokens == 8 * (LENGTH - 1)
    assert exact.n_tied == engine.n_tied == 0
    assert exact.counts.tolist() == engine.counts.tolist()
    np.testing.assert_allclose(exact.logprob_sums, engine.logprob_sums, rtol=1e-12, atol=0)


def test_float32_logits_refuses_a_model_without_a_linear_head():
    with pytest.raises(UserError, match="get_output_embeddings"):
        float32_logits(torch.nn.Linear(3, 3), torch.zeros(2, 3))


def tied_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of whole numbers (ties everywhere) and labels."""
    gen = torch.Generator().manual_seed(4)
    logits = torch.randint(0, 4, (3, 9, 30), generator=gen).float()
    return logits, torch.randint(0, 30, (3, 9), generator=gen)


def test_every_integration_reports_n_tied_and_warns(fresh_warnings):
    logits, labels = tied_batch()
    with pytest.warns(TiedLogitsWarning):
        hist = RankHistogram().update(logits, labels)
    assert hist.n_tied > 0

    from errorentropy.integrations.transformers import decomposition_metrics

    preprocess, compute = decomposition_metrics()
    rows = preprocess(logits, labels)
    with pytest.warns(TiedLogitsWarning, match="decomposition_metrics"):
        fields = compute(type("EvalPrediction", (), {"predictions": rows.numpy()})())
    assert fields["n_tied"] == hist.n_tied and fields["n_tokens"] == hist.n_tokens

    pytest.importorskip("torchmetrics")
    from errorentropy.integrations.torchmetrics import FIELDS, CrossEntropyDecomposition

    metric = CrossEntropyDecomposition()
    metric.update(logits, labels)
    assert "n_tied" in FIELDS and int(metric.compute()["n_tied"]) == hist.n_tied

    pytest.importorskip("lightning")
    from errorentropy.integrations.lightning import DEFAULT_FIELDS

    assert "n_tied" in DEFAULT_FIELDS


# ---- left padding -----------------------------------------------------------------------------


def test_left_padded_batches_score_what_the_unpadded_rows_score(tokenizer, prose_docs):
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=64, seed=5)
    lengths = [20, 13, 20, 7, 16]
    rows = [r[:n] for r, n in zip(rows_of(tokenizer, prose_docs[320:325], 20), lengths)]
    expected = RankHistogram()
    with torch.no_grad():
        for row in rows:
            expected.update(model(input_ids=row[None]).logits, row[None])
        ids = torch.zeros(len(rows), 20, dtype=torch.int64)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):  # left padding, pad id 0 (labels -100 there)
            ids[i, 20 - len(row) :], mask[i, 20 - len(row) :] = row, 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    labels = ids.masked_fill(mask == 0, -100)

    unmasked = RankHistogram().update(logits, labels)  # a pad predicts each first real token
    assert unmasked.n_tokens == expected.n_tokens + 3  # the three padded rows
    padded = RankHistogram().update(logits, labels, attention_mask=mask)
    assert padded.n_tokens == expected.n_tokens == sum(lengths) - len(lengths)
    assert padded.counts.tolist() == expected.counts.tolist()
    assert padded.n_documents == expected.n_documents == len(rows)
    np.testing.assert_allclose(padded.logprob_sums, expected.logprob_sums, rtol=1e-5)
    stats = token_stats(logits, ids, attention_mask=mask)  # labels = the ids, pads included
    assert int(stats.labelled.sum()) == expected.n_tokens
    with pytest.raises(ValueError, match="attention_mask of shape"):
        token_stats(logits, labels, attention_mask=mask[:, 1:])

    pytest.importorskip("torchmetrics")
    from errorentropy.integrations.torchmetrics import CrossEntropyDecomposition

    metric = CrossEntropyDecomposition()
    metric.update(logits, labels, mask)
    assert metric.histogram() == padded

    pytest.importorskip("lightning")
    from errorentropy.integrations.lightning import DecompositionMonitor

    monitor = DecompositionMonitor(stages=["validate"])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    monitor._add("validate", {"logits": logits}, batch)
    assert monitor.metrics["validate"].histogram() == padded


# ---- several processes ------------------------------------------------------------------------


def shard_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches with ties (logits on a grid of 0.25) and padding."""
    gen = torch.Generator().manual_seed(7)
    batches = []
    for i in range(5):
        logits = torch.round(torch.randn(2, 6 + i, 41, generator=gen) * 8) / 4
        labels = torch.randint(0, 41, (2, 6 + i), generator=gen)
        labels[1, 3 + i % 2 :] = -100
        batches.append((logits, labels))
    return batches


def shards() -> list[RankHistogram]:
    parts = []
    for rank in (0, 1):
        hist = RankHistogram(n_skipped=rank + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TiedLogitsWarning)
            for logits, labels in shard_batches()[rank::2]:
                hist.update(logits, labels)
        parts.append(hist)
    return parts


def _reduce_worker(rank: int, init_file: str, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        mine = shards()[rank]
        both = all_reduce_histogram(mine).to_dict()
        one_idle = all_reduce_histogram(mine if rank == 0 else RankHistogram()).to_dict()
        results.put((rank, (both, one_idle)))
    finally:
        dist.destroy_process_group()


def test_all_reduce_histogram_equals_one_pass(tmp_path):
    results = dict(
        _run_two_ranks(
            _reduce_worker,
            lambda rank, queue: (rank, str(tmp_path / "pg"), queue),
            120,
            "a process hung in all_reduce_histogram",
        )
    )
    whole = RankHistogram(n_skipped=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TiedLogitsWarning)
        for logits, labels in shard_batches():
            whole.update(logits, labels)
    assert whole.n_tied > 0 and whole.n_documents == 10
    first = shards()[0]
    for rank in (0, 1):
        both, one_idle = (RankHistogram.from_dict(d) for d in results[rank])
        assert both.counts.tolist() == whole.counts.tolist()
        assert (both.n_documents, both.n_skipped, both.n_tied) == (
            whole.n_documents,
            whole.n_skipped,
            whole.n_tied,
        )
        np.testing.assert_allclose(both.logprob_sums, whole.logprob_sums, rtol=1e-13, atol=0)
        assert one_idle == first


def test_all_reduce_histogram_without_a_process_group_says_so():
    with pytest.raises(UserError, match="init_process_group"):
        all_reduce_histogram(RankHistogram())
