"""The Hugging Face Trainer integration, on a real ``transformers.Trainer`` (CPU, tiny gpt2).

``decomposition_metrics`` must give what the scoring engine gives on the same texts and windows
(counts exact, CE/EE/SA/Conf within 1e-9) whatever the Trainer does to the batches (padding,
prompt masking, accumulation, per-batch metrics, two processes); ``DecompositionCallback`` must
reach the reporting callbacks registered before it, score the model exactly as the engine does,
and leave training as it would have been without it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from errorentropy.cli import main as cli_main
from errorentropy.data.windows import tokenize
from errorentropy.errors import UserError
from errorentropy.integrations.transformers import (
    DecompositionCallback,
    decomposition_fields,
    decomposition_metrics,
    histogram_from_pairs,
)
from errorentropy.options import ScoreOptions
from errorentropy.scoring.engine import score_documents
from errorentropy.stats.histogram import RankHistogram
from errorentropy.testing import tiny_model
from reference import naive_decompose

MAX_LENGTH = 64
QUANTITIES = ("cross_entropy", "error_entropy", "self_alignment", "confidence")


def _collate(prompt: int = 0):
    """Right-pad to the batch's longest text; labels are the ids, -100 on padding and on each
    text's first ``prompt`` positions (a prompt that is not scored)."""

    def collate(features: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.zeros(len(features), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            mask[row, :n] = 1
            labels[row, prompt:n] = ids[row, prompt:n]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def _rows(tokenizer, docs: list[str]) -> list[dict]:
    """The engine's truncate windows: each text's first MAX_LENGTH tokens."""
    return [{"input_ids": ids[:MAX_LENGTH]} for ids in tokenize(tokenizer, docs, "auto")]


def _args(tmp_path: Path, **kw) -> TrainingArguments:
    base = dict(
        output_dir=str(tmp_path / "trainer"),
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        per_device_eval_batch_size=3,
    )
    return TrainingArguments(**{**base, **kw})


def _evaluate(model, rows, tmp_path, prompt: int = 0, metrics=None, **kw) -> dict:
    preprocess, compute = metrics or decomposition_metrics()
    trainer = Trainer(
        model=model,
        args=_args(tmp_path, **kw),
        eval_dataset=rows,
        data_collator=_collate(prompt),
        preprocess_logits_for_metrics=preprocess,
        compute_metrics=compute,
    )
    return trainer.evaluate()


def _assert_matches(logged: dict, expected: dict, prefix: str = "eval_", tol: float = 1e-9):
    for key in ("n_tokens", "n_ranks_observed"):
        assert logged[prefix + key] == expected[key], key
    for key, value in expected.items():
        assert logged[prefix + key] == pytest.approx(value, abs=tol, rel=0), key


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128)


@pytest.fixture(scope="module")
def reference(model, tokenizer, short_docs):
    """The engine on the same texts and windows, from the model's own full logits."""
    return score_documents(model, tokenizer, short_docs, ScoreOptions(max_length=MAX_LENGTH))


# ---- decomposition_metrics ---------------------------------------------------------------------


def test_metrics_equal_the_engine_with_padding(model, tokenizer, short_docs, reference, tmp_path):
    """Texts of 1 to 64 tokens in batches of 3: padding inside each batch, and between batches of
    other widths (the Trainer pads those with -100); the 1-token text scores nothing."""
    metrics = _evaluate(model, _rows(tokenizer, short_docs), tmp_path)
    expected = decomposition_fields(reference.histogram)
    _assert_matches(metrics, expected)
    naive = naive_decompose(reference.tokens.rank, reference.tokens.logprob)
    for q in QUANTITIES:
        assert metrics[f"eval_{q}"] == pytest.approx(naive[q], abs=1e-9)
    ranks = reference.tokens.rank
    assert metrics["eval_rbp_at_10"] == np.mean(ranks < 10)
    assert metrics["eval_mrr"] == pytest.approx(np.mean(1.0 / (ranks + 1.0)), abs=1e-12)
    assert abs(metrics["eval_identity_residual"]) < 1e-12


def test_prompt_positions_marked_with_ignore_index_are_not_scored(
    model, tokenizer, short_docs, reference, tmp_path
):
    prompt = 5
    metrics = _evaluate(model, _rows(tokenizer, short_docs), tmp_path, prompt=prompt)
    tokens = reference.tokens
    keep = tokens.position >= prompt  # label positions 0..4 carry -100
    expected = RankHistogram.from_tokens(tokens.rank[keep], tokens.logprob[keep])
    assert metrics["eval_n_tokens"] == int(keep.sum()) < reference.histogram.n_tokens
    _assert_matches(metrics, decomposition_fields(expected))


@pytest.mark.parametrize(
    "options",
    [
        dict(eval_accumulation_steps=2),
        dict(eval_accumulation_steps=1, eval_do_concat_batches=False),
        dict(batch_eval_metrics=True),
    ],
    ids=["accumulation", "unconcatenated", "batch_eval_metrics"],
)
def test_metrics_under_trainer_options(model, tokenizer, short_docs, reference, tmp_path, options):
    """Batches moved to numpy every 2 steps, kept as a list, or metrics computed per batch (state
    accumulated, then reset: a second evaluation gives the same numbers, not twice the tokens)."""
    metrics = decomposition_metrics()
    expected = decomposition_fields(reference.histogram)
    for _ in range(2):
        out = _evaluate(model, _rows(tokenizer, short_docs), tmp_path, metrics=metrics, **options)
        _assert_matches(out, expected)


def test_logits_returned_in_a_tuple(tokenizer, short_docs, reference, tmp_path, model):
    """A model that also returns its hidden states hands preprocess a tuple (logits first)."""
    chatty = copy.deepcopy(model)
    chatty.config.output_hidden_states = True
    metrics = _evaluate(chatty, _rows(tokenizer, short_docs), tmp_path)
    _assert_matches(metrics, decomposition_fields(reference.histogram))


def test_preprocess_with_another_ignore_index_against_the_naive_reference():
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 50)
    labels = torch.randint(0, 50, (2, 7))
    labels[1, 4:] = -1
    preprocess, compute = decomposition_metrics(ignore_index=-1, rbp_ks=(1, 5))
    pairs = preprocess((logits, "past key values"), labels)
    assert pairs.shape == (2, 7, 3) and pairs.dtype == torch.float64
    assert pairs[..., 2].sum() == 0  # no tie among random float32 logits
    ranks, logprobs = [], []
    for b in range(2):
        for t in range(6):
            target = int(labels[b, t + 1])
            if target == -1:
                continue
            z = logits[b, t].double()
            ranks.append(int((z > z[target]).sum()))
            logprobs.append(float(torch.log_softmax(z, -1)[target]))
    assert (pairs[..., 0] >= 0).sum() == len(ranks) == 9
    fields = compute(type("EvalPrediction", (), {"predictions": pairs.numpy()})())
    naive = naive_decompose(ranks, logprobs)
    for q in QUANTITIES:
        assert fields[q] == pytest.approx(naive[q], abs=1e-6)  # float32 logits, float64 naive
    assert fields["rbp_at_5"] == np.mean(np.array(ranks) < 5)


def test_compute_without_preprocess_says_what_to_pass():
    with pytest.raises(UserError, match="preprocess_logits_for_metrics"):
        histogram_from_pairs(np.zeros((2, 3, 384), dtype=np.float32))
    with pytest.raises(UserError, match="not whole numbers"):
        histogram_from_pairs(np.array([[0.5, -1.0]]))
    assert decomposition_fields(RankHistogram())["n_tokens"] == 0


# ---- DecompositionCallback ---------------------------------------------------------------------


class Reporter(TrainerCallback):
    """A reporting integration's shape: records what ``on_log`` hands it."""

    def __init__(self) -> None:
        self.logs: list[tuple[int, dict]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs)))


def _train(model, tokenizer, docs, tmp_path, callback_kw: dict | None) -> tuple:
    """Four optimizer steps (dropout on); with ``callback_kw``, a callback scoring every 2."""
    reporter = Reporter()
    args = _args(
        tmp_path,
        max_steps=4,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        logging_steps=1,
        seed=0,
        data_seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_rows(tokenizer, docs),
        data_collator=_collate(),
        processing_class=tokenizer,
        callbacks=[reporter],
    )
    callback = None
    if callback_kw is not None:
        callback = DecompositionCallback(docs[:6], every_n_steps=2, **callback_kw)
        callback.attach(trainer)
    trainer.train()
    return trainer, reporter, callback


@pytest.fixture(scope="module")
def trained(tokenizer, short_docs, prose_docs, tmp_path_factory):
    """The same training run with and without the callback (writing a sweep folder)."""
    tmp = tmp_path_factory.mktemp("trained")
    docs = prose_docs[220:232]
    start = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128, seed=1)
    start.train()
    runs = {}
    for name, kw in {
        "with": dict(max_length=MAX_LENGTH, batch_size=4, out=tmp / "dynamics"),
        "without": None,
    }.items():
        model = copy.deepcopy(start)
        runs[name] = (model, *_train(model, tokenizer, docs, tmp / name, kw))
    return start, runs, tmp / "dynamics"


def test_callback_reaches_reporters_registered_before_it(trained):
    _, runs, _ = trained
    _, trainer, reporter, callback = runs["with"]
    assert trainer.callback_handler.callbacks.index(reporter) < (
        trainer.callback_handler.callbacks.index(callback)
    )
    seen = [(step, logs) for step, logs in reporter.logs if "eval_heldout_error_entropy" in logs]
    assert [step for step, _ in seen] == [0, 2, 4]
    history = [e for e in trainer.state.log_history if "eval_heldout_error_entropy" in e]
    assert [e["step"] for e in history] == [0, 2, 4]
    for (_, logs), entry, kept in zip(seen, history, callback.history):
        for key in ("cross_entropy", "error_entropy", "n_tokens", "rbp_at_10", "mrr"):
            assert logs[f"eval_heldout_{key}"] == entry[f"eval_heldout_{key}"] == kept[key]
    assert "eval_heldout_runtime" in seen[0][1]
    ce = [logs["eval_heldout_cross_entropy"] for _, logs in seen]
    assert ce[-1] < ce[0]  # it trained on these texts


def test_callback_numbers_equal_the_engine_on_the_same_model_state(trained, tokenizer, prose_docs):
    start, runs, _ = trained
    model, _, _, callback = runs["with"]
    options = ScoreOptions(max_length=MAX_LENGTH, batch_size=4, profile=True)
    docs = prose_docs[220:232][:6]
    for state, entry in ((start, callback.history[0]), (model, callback.history[-1])):
        expected = score_documents(copy.deepcopy(state).eval(), tokenizer, docs, options)
        assert expected.head_path == "chunked"  # hidden states through our head, not logits
        fields = decomposition_fields(expected.histogram)
        assert {k: entry[k] for k in fields} == fields


def test_callback_leaves_training_as_it_was(trained):
    """Same losses at every step and the same final weights, with and without the callback:
    no gradient, dropout mode or random number of training was touched."""
    _, runs, _ = trained
    losses = {
        name: [logs["loss"] for _, logs in run[2].logs if "loss" in logs]
        for name, run in runs.items()
    }
    assert len(losses["with"]) == 4 and losses["with"] == losses["without"]
    for a, b in zip(runs["with"][0].parameters(), runs["without"][0].parameters()):
        assert torch.equal(a, b)
    assert runs["with"][0].training  # the Trainer's own mode, restored after each scoring


def test_score_model_restores_modes_and_gradients(tokenizer, short_docs):
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128)
    model.train()
    model.transformer.drop.eval()  # a submodule deliberately left in eval mode
    modes = {name: m.training for name, m in model.named_modules()}
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    callback = DecompositionCallback(short_docs, max_length=MAX_LENGTH, tokenizer=tokenizer)
    result = callback.score_model(model)
    assert result.histogram.n_tokens > 0
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    assert torch.is_grad_enabled()


def test_the_sweep_folder_draws_training_dynamics(trained):
    _, runs, out = trained
    cells = sorted(p.name for p in (out / "cells").iterdir())
    assert cells == [f"gpt2__step{n}__heldout" for n in (0, 2, 4)]
    summary = json.loads((out / "cells" / cells[-1] / "summary.json").read_text())
    assert summary["non_embedding_params"] > 0 and summary["revision"] == "step4"
    assert summary["cross_entropy"] == runs["with"][3].history[-1]["cross_entropy"]
    assert cli_main(["report", str(out), "--no-fit", "--quiet"]) == 0
    drawn = {p.name.split("-")[0] for p in (out / "figures").glob("*.png")}
    assert {"fig3", "fig4", "fig5", "fig6"} <= drawn


def test_callback_refuses_bad_wiring(model, tokenizer, short_docs, tmp_path):
    callback = DecompositionCallback(short_docs, tokenizer=tokenizer, max_length=MAX_LENGTH)
    trainer = Trainer(
        model=copy.deepcopy(model),
        args=_args(tmp_path, max_steps=1),
        train_dataset=_rows(tokenizer, short_docs),
        data_collator=_collate(),
        callbacks=[callback],
    )
    with pytest.raises(UserError, match="attach"):
        trainer.train()
    with pytest.raises(UserError, match="exceeds the model's context"):
        DecompositionCallback(short_docs, tokenizer=tokenizer, max_length=512).attach(trainer)
    with pytest.raises(UserError, match="nothing to score"):
        DecompositionCallback(["a"], tokenizer=tokenizer, max_length=32).attach(trainer)
    with pytest.raises(UserError, match="tokenizer"):
        DecompositionCallback(short_docs, max_length=32).attach(trainer)


# ---- two processes ------------------------------------------------------------------------------

TWO_RANKS = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
sys.path.insert(0, {tests!r})
from test_integration_transformers import _collate, _rows
from errorentropy.integrations.transformers import decomposition_metrics

model = AutoModelForCausalLM.from_pretrained({model!r})
tokenizer = AutoTokenizer.from_pretrained({model!r})
rows = _rows(tokenizer, json.loads(open({docs!r}).read()))
out = {{}}
for per_batch in (False, True):
    preprocess, compute = decomposition_metrics()
    args = TrainingArguments(output_dir={tmp!r}, report_to="none", use_cpu=True,
                             ddp_backend="gloo", per_device_eval_batch_size=2,
                             batch_eval_metrics=per_batch, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, eval_dataset=rows, data_collator=_collate(),
                      preprocess_logits_for_metrics=preprocess, compute_metrics=compute)
    out[str(per_batch)] = trainer.evaluate()
if trainer.is_world_process_zero():
    open({result!r}, "w").write(json.dumps(out))
trainer.accelerator.wait_for_everyone()
# Leave the group, then exit without the interpreter's teardown: gloo's C++ destructors at exit
# can abort a rank ("terminate called without an active exception"), as errorentropy's own
# torchrun commands avoid the same way (errorentropy.cli.conclude).
torch.distributed.destroy_process_group()
sys.stdout.flush(); sys.stderr.flush()
import os
os._exit(0)
"""


def test_two_processes_count_every_token_once(model_dir, short_docs, tmp_path):
    """torchrun, 2 ranks, gloo: 11 texts in batches of 2 leave rank 1 one text short; the
    Trainer's gather drops the text the sampler repeats, and nothing is counted twice."""
    from errorentropy.models.loading import load_model

    docs = short_docs[:11]
    (tmp_path / "docs.json").write_text(json.dumps(docs))
    script = tmp_path / "two_ranks.py"
    script.write_text(
        TWO_RANKS.format(
            tests=str(Path(__file__).parent),
            model=str(model_dir),
            docs=str(tmp_path / "docs.json"),
            tmp=str(tmp_path / "trainer"),
            result=str(tmp_path / "result.json"),
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    done = subprocess.run([*run, str(script)], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    model, tokenizer = load_model(str(model_dir), device="cpu")
    reference = score_documents(model, tokenizer, docs, ScoreOptions(max_length=MAX_LENGTH))
    expected = decomposition_fields(reference.histogram)
    for metrics in json.loads((tmp_path / "result.json").read_text()).values():
        _assert_matches(metrics, expected)


def test_held_out_texts_from_a_dataset_or_rows(short_docs):
    from datasets import Dataset

    table = Dataset.from_dict({"body": short_docs, "n": list(range(len(short_docs)))})
    assert DecompositionCallback(table, text_field="body").documents == short_docs
    rows = [{"text": d} for d in short_docs]
    assert DecompositionCallback(rows).documents == short_docs
    with pytest.raises(UserError, match="no column 'text'"):
        DecompositionCallback(table)
    with pytest.raises(UserError, match="not one string"):
        DecompositionCallback("one text")
