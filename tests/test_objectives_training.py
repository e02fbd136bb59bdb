"""errorentropy.objectives in training: the Trainer's ``compute_loss_func`` (on a real
``transformers.Trainer``, CPU, tiny random models), the three examples run as scripts, and the
objectives section of benchmarks/RESULTS.md.

``ce`` through :class:`ObjectiveLoss` must train exactly as the Trainer's own causal-LM loss
(losses and weights, with and without gradient accumulation); the Trainer's logged loss must
equal the objective's logged terms whatever the Trainer counts; the terms must reach
``log_history`` and the reporters, and satisfy CE = EE + SA - Conf.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments

from errorentropy.errors import UserError
from errorentropy.integrations.objectives import (
    ObjectiveLoss,
    ObjectiveTermsCallback,
    objective_loss_func,
)
from errorentropy.objectives import mixture
from errorentropy.testing import tiny_model

ROOT = Path(__file__).resolve().parent.parent
VOCAB = 96
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def _rows(n: int = 12, seed: int = 0) -> list[dict]:
    """Token rows of 9 to 30 ids, a learnable pattern plus noise."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        length = 9 + (7 * i) % 22
        ids = torch.arange(length) * (1 + i % 3) + torch.randint(0, 3, (length,), generator=g)
        rows.append({"input_ids": (ids % VOCAB).tolist()})
    return rows


def _collate(features: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pad to the batch's longest row; labels are the ids, -100 on padding."""
    width = max(len(f["input_ids"]) for f in features)
    ids = torch.zeros(len(features), width, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        ids[row, :n] = labels[row, :n] = torch.tensor(f["input_ids"])
    return {"input_ids": ids, "attention_mask": (labels != -100).long(), "labels": labels}


class Reporter(TrainerCallback):
    """A reporting integration's shape: records what ``on_log`` hands it."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs))


def _trainer(model, tmp_path, loss=None, rows=None, **kw) -> Trainer:
    args = dict(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        logging_steps=1,
        seed=0,
        data_seed=0,
    )
    trainer = Trainer(
        model=model,
        args=TrainingArguments(**{**args, **kw}),
        train_dataset=_rows() if rows is None else rows,
        data_collator=_collate,
        compute_loss_func=loss,
        callbacks=[Reporter()],
    )
    if loss is not None:
        loss.attach(trainer)
    return trainer


def _losses(trainer: Trainer) -> list[float]:
    return [e["loss"] for e in trainer.state.log_history if "loss" in e]


@pytest.mark.parametrize("accumulation", [1, 2])
def test_ce_trains_exactly_like_the_trainers_own_loss(tmp_path, accumulation):
    """A llama (whose loss transformers knows to be a causal LM's): ``ce`` gives the Trainer's
    default losses and weights, padded micro-batches of different token counts included."""
    start = tiny_model("llama", VOCAB, hidden=32, layers=1, heads=2, context=64).train()
    batch = 4 // accumulation
    kw = dict(per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation)
    default = _trainer(copy.deepcopy(start), tmp_path / "default", **kw)
    ours = _trainer(copy.deepcopy(start), tmp_path / "ce", objective_loss_func("ce"), **kw)
    default.train()
    ours.train()
    assert _losses(ours) == pytest.approx(_losses(default), rel=1e-5, abs=0)
    for a, b in zip(default.model.parameters(), ours.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_terms_are_logged_beside_the_trainers_loss(tmp_path):
    """gpt2 (transformers counts its num_items_in_batch over every label, position 0 too), two
    micro-batches a step: the Trainer's loss equals the logged objective, which is
    CE + 0.5 Conf of the logged terms; the terms add up, reach the reporters, and count every
    predicted token of the epoch once."""
    model = tiny_model("gpt2", VOCAB, hidden=32, layers=1, heads=2, context=64, **NO_DROPOUT)
    loss = objective_loss_func("ce+0.5conf")
    rows = _rows()
    trainer = _trainer(
        model.train(), tmp_path, loss, rows, per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
    )  # fmt: skip
    trainer.train()
    history = trainer.state.log_history
    terms = [e for e in history if "train_objective_loss" in e]
    losses = [e for e in history if "loss" in e]
    assert [e["step"] for e in terms] == [e["step"] for e in losses] == [1, 2, 3]
    for t, logged in zip(terms, losses):
        assert logged["loss"] == pytest.approx(t["train_objective_loss"], rel=1e-6)
        ce, ee = t["train_objective_cross_entropy"], t["train_objective_error_entropy"]
        sa, conf = t["train_objective_self_alignment"], t["train_objective_confidence"]
        assert ce == pytest.approx(ee + sa - conf, abs=1e-9)
        assert t["train_objective_loss"] == pytest.approx(ce + 0.5 * conf, abs=1e-5)
    predicted = sum(len(r["input_ids"]) - 1 for r in rows)  # 3 steps x 4 rows: one epoch
    assert sum(t["train_objective_n_tokens"] for t in terms) == predicted
    reporter = next(c for c in trainer.callback_handler.callbacks if isinstance(c, Reporter))
    assert sum("train_objective_confidence" in logs for logs in reporter.logs) == 3
    assert len(loss.meter) == 0


def test_logged_ce_is_the_mean_cross_entropy_of_the_predicted_tokens(tmp_path):
    """One step on all four rows: the Trainer logs the batch's mean cross-entropy over the
    predicted tokens, as F.cross_entropy computes it, although transformers counts gpt2's
    labels without the shift (its own default loss divides by 4 tokens too many)."""
    model = tiny_model("gpt2", VOCAB, hidden=32, layers=1, heads=2, context=64, **NO_DROPOUT)
    rows = _rows(4)
    batch = _collate(rows)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = F.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB), batch["labels"][:, 1:].reshape(-1)
    )
    trainer = _trainer(model.train(), tmp_path, objective_loss_func("ce"), rows, max_steps=1)
    trainer.train()
    assert _losses(trainer) == [pytest.approx(expected.item(), rel=1e-6)]


def test_soft_ee_terms_and_evaluation_records_nothing(tmp_path):
    """A relaxed objective logs its relaxed terms; ``trainer.evaluate()`` (no graph) uses the
    objective as its loss but adds nothing to the training terms."""
    model = tiny_model("gpt2", VOCAB, hidden=32, layers=1, heads=2, context=64, **NO_DROPOUT)
    loss = ObjectiveLoss(mixture(ce=1.0, soft_ee=0.5))
    trainer = _trainer(model.train(), tmp_path, loss, max_steps=2)
    trainer.train()
    logged = [e for e in trainer.state.log_history if "train_objective_loss" in e]
    assert all(
        torch.isfinite(torch.tensor(e["train_objective_soft_error_entropy"])) for e in logged
    )
    metrics = trainer.evaluate(_rows(4, seed=1))
    assert len(loss.meter) == 0 and metrics["eval_loss"] > 0


def test_bad_wiring_is_refused_with_the_fix(tmp_path):
    model = tiny_model("gpt2", VOCAB, hidden=32, layers=1, heads=2, context=64)
    loss = objective_loss_func("ce+conf")
    plain = _trainer(model, tmp_path)
    with pytest.raises(UserError, match="compute_loss_func=loss"):
        loss.attach(plain)
    with pytest.raises(UserError, match="collator"):
        loss(model(input_ids=torch.zeros(1, 4, dtype=torch.long)), None)
    with pytest.raises(UserError, match="Objective or a name"):
        ObjectiveLoss(mixture(), tau=0.2)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="no gradient"):
        objective_loss_func("ce+ee")
    unattached = Trainer(
        model=model,
        args=plain.args,
        train_dataset=_rows(),
        data_collator=_collate,
        compute_loss_func=loss,
        callbacks=[ObjectiveTermsCallback(loss)],
    )
    with pytest.raises(UserError, match="attach"):
        unattached.train()
    trainer = _trainer(model, tmp_path / "twice", loss)
    loss.attach(trainer)  # attaching again adds no second callback
    assert (
        sum(isinstance(c, ObjectiveTermsCallback) for c in trainer.callback_handler.callbacks) == 1
    )


# ---- the examples, run as scripts ---------------------------------------------------------------

NUMBER = r"(-?\d+\.\d+)"
IDENTITY = rf"CE {NUMBER} = EE {NUMBER} \+ SA {NUMBER} - Conf {NUMBER}"


def _run(name: str, *args: str) -> str:
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def _adds_up(rows: list[tuple[str, ...]], out: str) -> None:
    """CE = EE + SA - Conf to the printed 6 decimals, in every row."""
    assert rows, out
    for ce, ee, sa, conf in rows:
        assert abs(float(ce) - (float(ee) + float(sa) - float(conf))) <= 2.5e-6, out


def test_loop_example_trains_and_its_terms_add_up():
    out = _run("train_objective_loop.py", "--steps", "10", "--objective", "ce+0.5conf")
    steps = re.findall(rf"step +(\d+)  loss {NUMBER}  {IDENTITY}", out)
    assert [int(s[0]) for s in steps] == list(range(1, 11)), out
    _adds_up([s[2:] for s in steps], out)
    for _, loss, ce, _, _, conf in steps:  # the loss is float32
        assert float(loss) == pytest.approx(float(ce) + 0.5 * float(conf), abs=1e-5), out
    losses = [float(s[1]) for s in steps]
    assert sum(losses[-3:]) < sum(losses[:3]), out
    held = re.findall(rf"held-out  {IDENTITY}", out)
    _adds_up(held, out)
    assert len(held) == 2 and float(held[1][0]) < float(held[0][0]), out


def test_trainer_example_logs_terms_beside_the_decomposition():
    out = _run("train_objective_trainer.py", "--steps", "6")
    terms = re.findall(rf"step +(\d+)  objective {NUMBER}  {IDENTITY}", out)
    trainer = re.findall(rf"step +(\d+)  trainer loss {NUMBER}", out)
    held = re.findall(rf"step +(\d+)  held-out {IDENTITY}", out)
    assert [int(t[0]) for t in terms] == [int(t[0]) for t in trainer] == [3, 6], out
    for t, logged in zip(terms, trainer):
        assert float(t[1]) == pytest.approx(float(logged[1]), abs=2e-6), out
    _adds_up([t[2:] for t in terms], out)
    _adds_up([h[1:] for h in held], out)
    assert [int(h[0]) for h in held] == [0, 6] and float(held[1][1]) < float(held[0][1]), out


def test_lightning_example_logs_terms_beside_the_decomposition():
    pytest.importorskip("lightning")
    out = _run("train_objective_lightning.py", "--steps", "6", "--val-every", "6")
    steps = re.findall(rf"step +(\d+)  loss {NUMBER}  {IDENTITY}", out)
    assert [int(s[0]) for s in steps] == list(range(1, 7)), out
    _adds_up([s[2:] for s in steps], out)
    assert float(steps[-1][1]) < float(steps[0][1]), out
    _adds_up(re.findall(rf"held-out at step 6  {IDENTITY}", out), out)
    last = re.search(rf"last logged terms  loss {NUMBER}  cross_entropy {NUMBER}", out)
    assert last and last.groups() == steps[-1][1:3], out


# ---- benchmarks/RESULTS.md ----------------------------------------------------------------------


def test_results_md_is_what_summary_renders(tmp_path, monkeypatch):
    """RESULTS.md is generated: summary.py renders it byte for byte from results/*.json, the
    objectives section included, with verdicts computed from the figures."""
    bench = ROOT / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    from summary import write_summary

    text = write_summary(bench / "results", tmp_path / "RESULTS.md")
    assert text == (bench / "RESULTS.md").read_text()
    assert "## (i) Training objectives" in text


# ---- two processes: the global batch under the Trainer's DDP ------------------------------------

TWO_RANKS_GLOBAL = """
import json, os, sys
import torch
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments
sys.path.insert(0, {tests!r})
from test_objectives_training import _collate, _rows
from errorentropy.integrations.objectives import ObjectiveLoss

class Recording(ObjectiveLoss):
    \"\"\"Records the labels of every micro-batch this process scores (the reference rebuilds
    the whole micro-batches from them).\"\"\"
    seen = []
    def __call__(self, outputs, labels, num_items_in_batch=None):
        Recording.seen.append(labels.tolist())
        return super().__call__(outputs, labels, num_items_in_batch)

rank = int(os.environ["RANK"])
for across in (True, False):
    Recording.seen = []
    model = AutoModelForCausalLM.from_pretrained({model!r})
    args = TrainingArguments(
        output_dir={tmp!r}, report_to="none", use_cpu=True, ddp_backend="gloo",
        disable_tqdm=True, save_strategy="no", max_steps=1, per_device_train_batch_size=2,
        gradient_accumulation_steps=2, optim="sgd", learning_rate=0.5,
        lr_scheduler_type="constant", max_grad_norm=0.0, seed=0, data_seed=0,
        average_tokens_across_devices=across)
    loss = Recording({objective!r}, global_batch=True)
    trainer = Trainer(model=model, args=args, train_dataset=_rows(8), data_collator=_collate,
                      compute_loss_func=loss)
    loss.attach(trainer)
    trainer.train()
    params = {{k: v.tolist() for k, v in trainer.model.named_parameters()}}
    with open({out!r} + f"-{{across}}-{{rank}}.json", "w") as f:
        json.dump({{"seen": Recording.seen, "params": params}}, f)
trainer.accelerator.wait_for_everyone()
torch.distributed.destroy_process_group()
sys.stdout.flush(); sys.stderr.flush()
os._exit(0)
"""


def _padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Label rows (the ids where labelled) as one right-padded batch of ids and labels."""
    batch = _collate([{"input_ids": [t for t in r if t != -100]} for r in rows])
    return batch["input_ids"], batch["labels"]


def test_global_batch_under_the_trainers_ddp_trains_the_whole_micro_batch(tmp_path):
    """torchrun, 2 ranks, gloo, 2 micro-batches a step, one SGD step, with and without
    ``average_tokens_across_devices``: the weights equal one process's step on the whole
    micro-batches (both ranks' rows together), each weighted by its share of the step's tokens."""
    import json
    import os

    objective = "ce+0.5conf"
    start = tiny_model("llama", VOCAB, hidden=32, layers=1, heads=2, context=64)
    start.save_pretrained(tmp_path / "model")
    script = tmp_path / "two_ranks.py"
    script.write_text(
        TWO_RANKS_GLOBAL.format(
            tests=str(Path(__file__).parent),
            model=str(tmp_path / "model"),
            tmp=str(tmp_path / "trainer"),
            objective=objective,
            out=str(tmp_path / "result"),
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*run, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    loss = mixture(ce=1.0, conf=0.5)
    for across in (True, False):
        got = [json.loads((tmp_path / f"result-{across}-{r}.json").read_text()) for r in (0, 1)]
        micro = [_padded(a + b) for a, b in zip(got[0]["seen"], got[1]["seen"], strict=True)]
        assert len(micro) == 2
        total = sum(int((labels[:, 1:] != -100).sum()) for _, labels in micro)
        model = copy.deepcopy(start).train()
        objective_sum = sum(
            loss(model(ids, attention_mask=(labels != -100).long()).logits, labels)
            * int((labels[:, 1:] != -100).sum())
            / total
            for ids, labels in micro
        )
        objective_sum.backward()
        with torch.no_grad():
            for name, p in model.named_parameters():
                expected = p - 0.5 * p.grad
                for r in (0, 1):
                    trained = torch.tensor(got[r]["params"][name])
                    torch.testing.assert_close(trained, expected, rtol=1e-4, atol=2e-6)
