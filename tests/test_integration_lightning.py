"""The Lightning callback: a real Trainer logs what RankHistogram gives on the same batches."""

from __future__ import annotations

import csv
import math

import pytest
import torch

pytest.importorskip(
    "lightning",
    reason="the Lightning integration needs lightning (pip install 'errorentropy[lightning]')",
)
pytest.importorskip(
    "torchmetrics",
    reason="the Lightning integration needs torchmetrics (pip install 'errorentropy[lightning]')",
)

import lightning as L  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from errorentropy.integrations.lightning import (  # noqa: E402
    DEFAULT_FIELDS,
    DecompositionMonitor,
    logits_and_labels,
)
from errorentropy.stats.histogram import RankHistogram  # noqa: E402
from errorentropy.testing import tiny_model  # noqa: E402

LENGTH = 24


def examples(tokenizer, docs: list[str], ragged: bool) -> list[dict[str, torch.Tensor]]:
    """One example per document: ``LENGTH`` ids, padded (labels -100) when ``ragged``."""
    rows = []
    for i, doc in enumerate(docs):
        ids = tokenizer(doc)["input_ids"][:LENGTH]
        keep = LENGTH - (i % 5) * 3 if ragged else LENGTH
        ids = (ids + [0] * LENGTH)[:LENGTH]
        labels = torch.tensor(ids)
        labels[keep:] = -100
        rows.append({"input_ids": torch.tensor(ids), "labels": labels})
    return rows


class TinyLM(L.LightningModule):
    """A tiny random gpt2; validation returns logits and labels, test the HF output itself."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.model = tiny_model("gpt2", vocab_size, hidden=32, layers=1, heads=2, context=64)
        self.model.train()  # tiny_model gives eval mode; Lightning switches modes itself

    def training_step(self, batch, batch_idx):
        return self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

    def validation_step(self, batch, batch_idx):
        out = self.model(input_ids=batch["input_ids"])
        return {"logits": out.logits, "labels": batch["labels"]}

    def test_step(self, batch, batch_idx):
        return self.model(input_ids=batch["input_ids"])  # labels are read from batch["labels"]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


@torch.no_grad()
def reference(model: torch.nn.Module, loader: DataLoader, n_batches: int) -> RankHistogram:
    model.eval()
    hist = RankHistogram()
    for i, batch in enumerate(loader):
        if i == n_batches:
            break
        hist.update(model(input_ids=batch["input_ids"]).logits, batch["labels"])
    return hist


def fields_of(hist: RankHistogram) -> dict[str, float | int]:
    """What the monitor may log, from the reference histogram."""
    return {**hist.decompose().as_dict(), "n_tied": hist.n_tied}


def trainer(tmp_path, **kwargs) -> L.Trainer:
    options = dict(
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path, name="logs"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**options, **kwargs})


@pytest.fixture(scope="module")
def data(tokenizer, prose_docs):
    train = examples(tokenizer, prose_docs[300:316], ragged=False)
    val = examples(tokenizer, prose_docs[320:334], ragged=True)
    return train, val


def test_fit_logs_what_rank_histogram_gives(tmp_path, tokenizer, data):
    train, val = data
    torch.manual_seed(0)
    module = TinyLM(len(tokenizer))
    val_loader = DataLoader(val, batch_size=4)
    monitor = DecompositionMonitor()
    fit = trainer(
        tmp_path,
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        callbacks=[monitor],
    )
    fit.fit(module, DataLoader(train, batch_size=4), val_loader)

    expected = fields_of(reference(module.model, val_loader, 2))
    names = monitor.names("val")
    for name, field in zip(names, DEFAULT_FIELDS):
        assert fit.callback_metrics[name].item() == pytest.approx(expected[field], rel=1e-15)
    with open(fit.logger.log_dir + "/metrics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get(names[0])]
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # once per epoch, not the sanity check
    for name, field in zip(names, DEFAULT_FIELDS):
        assert float(rows[-1][name]) == pytest.approx(expected[field], rel=1e-15)
    assert float(rows[0][names[0]]) != float(rows[1][names[0]])  # the weights moved between
    identity = [float(rows[-1][n]) for n in names[:4]]
    assert identity[0] == pytest.approx(identity[1] + identity[2] - identity[3], abs=1e-12)


def test_test_loop_reads_a_model_output_and_a_custom_reader(tmp_path, tokenizer, data):
    _, val = data
    torch.manual_seed(1)
    module = TinyLM(len(tokenizer))
    loader = DataLoader(val, batch_size=5)
    expected = fields_of(reference(module.model, loader, 3))
    calls = []

    def reader(outputs, batch):
        calls.append(type(outputs).__name__)
        return outputs.logits, batch["labels"]

    default = DecompositionMonitor(stages=["test"], name_format="{stage}_{field}")
    custom = DecompositionMonitor(
        reader, stages=["test"], fields=["error_entropy"], name_format="mine/{field}"
    )
    (logged,) = trainer(tmp_path, callbacks=[default, custom]).test(module, loader, verbose=False)
    assert calls == ["CausalLMOutputWithCrossAttentions"] * 3
    assert logged["mine/error_entropy"] == pytest.approx(expected["error_entropy"], rel=1e-15)
    for field in DEFAULT_FIELDS:
        assert logged[f"test_{field}"] == pytest.approx(expected[field], rel=1e-15)
    assert not any(name.startswith("val") for name in logged)


def test_a_step_without_logits_is_explained():
    with pytest.raises(TypeError, match="return \\{'logits'"):
        logits_and_labels(torch.tensor(1.0), {"labels": torch.zeros(1)})
    with pytest.raises(TypeError, match="no labels"):
        logits_and_labels({"logits": torch.zeros(1, 2, 3)}, [torch.zeros(1)])
    with pytest.raises(ValueError, match="unknown field or stage 'loss'"):
        DecompositionMonitor(fields=["loss"])
    with pytest.raises(ValueError, match="'predict'"):
        DecompositionMonitor(stages=["predict"])


def test_ddp_two_processes_log_one_pass_over_all_batches(tmp_path, tokenizer, data):
    """Two CPU processes (ddp_spawn, gloo): each validates its half of the batches; the logged
    values are those of one pass over every batch both saw."""
    _, val = data
    val = val[:12]  # 6 per process: the DistributedSampler repeats nothing
    torch.manual_seed(2)
    module = TinyLM(len(tokenizer))
    fields = ("cross_entropy", "error_entropy", "n_tokens")
    monitor = DecompositionMonitor(fields=fields)
    run = trainer(tmp_path, devices=2, strategy="ddp_spawn", callbacks=[monitor], logger=False)
    (logged,) = run.validate(module, DataLoader(val, batch_size=3), verbose=False)
    expected = reference(module.model, DataLoader(val, batch_size=3), 4).decompose().as_dict()
    assert logged["val/n_tokens"] == expected["n_tokens"]
    for field in fields:
        assert logged[f"val/{field}"] == pytest.approx(expected[field], rel=1e-12), field
    assert not math.isnan(logged["val/error_entropy"])
