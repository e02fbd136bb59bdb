"""Error-Entropy during training with the Hugging Face ``Trainer``.

Two pieces, both giving the decomposition CE = EE + SA - Conf (docs/design.md) as flat numbers:

- :func:`decomposition_metrics` returns a ``(preprocess_logits_for_metrics, compute_metrics)``
  pair for ``trainer.evaluate()``. The first turns each evaluation batch's ``[B, T, V]`` logits
  into ``[B, T, 3]`` float64 (rank, log-probability, tied) rows on the logits' device, so the
  Trainer gathers and concatenates 24 bytes per token instead of ``4 V`` (the ``[tokens, vocab]``
  pile-up of transformers issues #8476, #10722, #12878); the second builds the rank histogram.
- :class:`DecompositionCallback` scores held-out texts on a step schedule through the scoring
  engine's own output head (hidden states in vocabulary chunks, never full logits) and hands the
  numbers to ``Trainer.log``, so ``state.log_history`` and every reporting integration
  (TensorBoard, W&B, MLflow, ...) receive them; with ``out=DIR`` each scoring is also a sweep
  cell (revision ``step{N}``) that ``errorentropy report DIR`` draws as training dynamics.

Importing this module imports transformers (its ``TrainerCallback`` is the callback's base). What
the integrations share (:func:`decomposition_fields`, :func:`score_texts`,
:func:`write_step_cell`) lives in :mod:`errorentropy.integrations.common` and is re-exported here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from errorentropy.data.windows import make_windows, tokenize
from errorentropy.errors import UserError
from errorentropy.head.token_stats import token_stats_with_ties, warn_ties
from errorentropy.integrations.common import (
    DEFAULT_RBP_KS,
    check_ks,
    decomposition_fields,
    score_texts,
    write_step_cell,
)
from errorentropy.models.loading import family_of
from errorentropy.options import ScoreOptions
from errorentropy.scoring.engine import check_context
from errorentropy.scoring.results import ScoredCorpus
from errorentropy.stats.histogram import RankHistogram

__all__ = [
    "DEFAULT_RBP_KS",
    "DecompositionCallback",
    "DecompositionMetrics",
    "decomposition_fields",
    "decomposition_metrics",
    "histogram_from_pairs",
    "score_texts",
    "write_step_cell",
]


def histogram_from_pairs(pairs: Any) -> RankHistogram:
    """The rank histogram of (rank, log-prob, tied) rows shaped ``[..., 3]`` (or (rank, log-prob)
    pairs ``[..., 2]``, which carry no tie count), as the Trainer hands them to
    ``compute_metrics``: a numpy array, a tensor (``batch_eval_metrics``) or a list of per-batch
    arrays (``eval_do_concat_batches=False``). Rows with a negative rank have no label: -1 from
    :func:`~errorentropy.head.token_stats.token_stats`, -100 where the Trainer padded batches of
    different lengths to one width. ``tied`` is 1 where the label's logit equalled another's."""
    if isinstance(pairs, (list, tuple)):
        return sum((histogram_from_pairs(p) for p in pairs), RankHistogram())
    if isinstance(pairs, torch.Tensor):
        pairs = pairs.detach().to("cpu")
    array = np.asarray(pairs)
    if (
        array.ndim < 1
        or array.shape[-1] not in (2, 3)
        or not np.issubdtype(array.dtype, np.floating)
    ):
        raise UserError(
            f"compute_metrics received predictions of shape {array.shape} ({array.dtype}), not "
            "the (rank, log-prob, tied) rows of decomposition_metrics(); pass its first function "
            "as Trainer(preprocess_logits_for_metrics=...) together with its second"
        )
    flat = array.reshape(-1, array.shape[-1]).astype(np.float64, copy=False)
    keep = flat[:, 0] >= 0  # NaN compares false: dropped with the unlabelled positions
    ranks = flat[keep, 0]
    if not np.array_equal(ranks, np.floor(ranks)):
        raise UserError(
            "compute_metrics received ranks that are not whole numbers; the predictions were not "
            "made by decomposition_metrics()' preprocess function"
        )
    n_tied = int((flat[keep, 2] > 0).sum()) if flat.shape[1] == 3 else 0
    return RankHistogram.from_tokens(ranks.astype(np.int64), flat[keep, 1], n_tied=n_tied)


class DecompositionMetrics:
    """``compute_metrics`` for the ``Trainer``, with :meth:`preprocess` as its
    ``preprocess_logits_for_metrics`` (see :func:`decomposition_metrics`).

    Stateless unless the Trainer runs with ``batch_eval_metrics=True``: then each batch's
    histogram is added to a running one, returned (and reset) when ``compute_result`` is True.
    """

    def __init__(
        self,
        *,
        ignore_index: int = -100,
        shift: bool = True,
        rbp_ks: Iterable[int] = DEFAULT_RBP_KS,
    ) -> None:
        self.ignore_index = ignore_index
        self.shift = shift
        self.rbp_ks = check_ks(rbp_ks)
        self._running = RankHistogram()

    def preprocess(self, logits: Any, labels: Any) -> torch.Tensor:
        """One evaluation batch's logits ``[B, T, V]`` as ``[B, T, 3]`` float64 (rank, log-prob,
        tied) rows on the logits' device (rank -1, log-prob NaN where there is no label; tied 1
        where the label's logit equalled another entry's).

        ``logits`` may be a tuple (a model that also returns past key values or hidden states):
        the first entry is the logits, as in every ``ModelOutput``. ``labels`` are Hugging Face
        causal-LM labels (``shift=True``: position t's logits predict label t + 1). The Trainer
        passes no attention mask: evaluate left-padded batches with -100 on each row's first
        real token (or pad on the right), else that token is scored from a pad position.
        """
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if isinstance(labels, (tuple, list)):
            if len(labels) != 1:
                raise UserError(
                    f"decomposition_metrics takes one label tensor, got {len(labels)}; set "
                    'TrainingArguments(label_names=["labels"])'
                )
            labels = labels[0]
        if labels is None:
            raise UserError(
                "decomposition_metrics needs labels in the evaluation batches (input ids with "
                f"{self.ignore_index} where nothing is scored); use a collator that adds them, "
                "e.g. DataCollatorForLanguageModeling(tokenizer, mlm=False)"
            )
        stats, tied = token_stats_with_ties(
            logits, labels, ignore_index=self.ignore_index, shift=self.shift
        )
        columns = (stats.rank.to(torch.float64), stats.logprob, (tied > 0).to(torch.float64))
        return torch.stack(columns, dim=-1)

    def __call__(self, eval_pred: Any, compute_result: bool | None = None) -> dict[str, Any]:
        """The decomposition of the pairs in ``eval_pred.predictions``; with
        ``batch_eval_metrics`` (``compute_result`` given): ``{}`` until the last batch, then
        the decomposition of every batch since the last result."""
        histogram = histogram_from_pairs(eval_pred.predictions)
        if compute_result is not None:
            self._running = self._running + histogram
            if not compute_result:
                return {}
            histogram, self._running = self._running, RankHistogram()
        warn_ties(histogram.n_tied, histogram.n_tokens, "decomposition_metrics")
        return decomposition_fields(histogram, self.rbp_ks)

    def reset(self) -> None:
        """Drop the running histogram of an evaluation that ended early (``batch_eval_metrics``)."""
        self._running = RankHistogram()


def decomposition_metrics(
    *, ignore_index: int = -100, shift: bool = True, rbp_ks: Iterable[int] = DEFAULT_RBP_KS
) -> tuple[Any, DecompositionMetrics]:
    """``(preprocess_logits_for_metrics, compute_metrics)`` giving the decomposition in
    ``trainer.evaluate()``: ``eval_cross_entropy``, ``eval_error_entropy``, ... (the names of
    :func:`decomposition_fields`, after the Trainer's ``eval_`` prefix).

    Args:
        ignore_index: the label value of positions not scored (padding, prompts).
        shift: True for causal-LM labels (the input ids); False when ``labels[:, t]`` is already
            the target of ``logits[:, t]``.
        rbp_ks: the k of the ``rbp_at_{k}`` fields.

    ``eval_cross_entropy`` is the corpus cross-entropy (mean over every scored token); the
    Trainer's ``eval_loss`` is a mean of per-batch means, which differs when batches hold
    different numbers of tokens. Under several processes the Trainer gathers the pairs with
    ``gather_for_metrics``, which drops the samples a map-style dataset's last batch repeats.

    Examples::

        preprocess, compute = decomposition_metrics()
        trainer = Trainer(model=model, args=args, eval_dataset=heldout, data_collator=collator,
                          preprocess_logits_for_metrics=preprocess, compute_metrics=compute)
        trainer.evaluate()["eval_error_entropy"]
    """
    metrics = DecompositionMetrics(ignore_index=ignore_index, shift=shift, rbp_ks=rbp_ks)
    return metrics.preprocess, metrics


# ---- the callback -------------------------------------------------------------------------------

_ATTACH = (
    "DecompositionCallback is not attached to this Trainer; add it with "
    "DecompositionCallback(...).attach(trainer) (it needs the trainer to log through Trainer.log)"
)


def _documents(texts_or_dataset: Any, text_field: str) -> list[str]:
    """The held-out documents: a sequence of strings, or rows (a ``datasets.Dataset``, dicts)
    whose ``text_field`` holds the text."""
    if isinstance(texts_or_dataset, (str, bytes)):
        raise UserError("pass a list of held-out texts, not one string")
    if hasattr(texts_or_dataset, "column_names"):  # a datasets.Dataset
        if text_field not in texts_or_dataset.column_names:
            raise UserError(
                f"the held-out dataset has no column {text_field!r} (columns: "
                f"{', '.join(texts_or_dataset.column_names)}); pass text_field=..."
            )
        docs = list(texts_or_dataset[text_field])
    else:
        docs = [row[text_field] if isinstance(row, Mapping) else row for row in texts_or_dataset]
    bad = next((d for d in docs if not isinstance(d, str)), None)
    if bad is not None or not docs:
        what = "no documents" if not docs else f"a {type(bad).__name__} where text belongs"
        raise UserError(f"the held-out texts hold {what}; pass a non-empty list of strings")
    return docs


class DecompositionCallback(TrainerCallback):
    """Scores held-out texts every ``every_n_steps`` optimizer steps (and before the first step,
    and after the last) and logs the decomposition through ``Trainer.log``.

    Each scoring runs :func:`errorentropy.scoring.engine.score_documents` on the main process, with
    the
    model in eval mode under ``torch.no_grad`` (its per-module train/eval modes are restored after,
    nothing enters the autograd graph and no random numbers are drawn), over the held-out texts cut
    into windows of ``max_length`` tokens. The fields of :func:`decomposition_fields` are logged as
    ``{metric_key_prefix}_{field}`` (``eval_heldout_error_entropy``, ...), plus
    ``{metric_key_prefix}_runtime`` in seconds, and kept in :attr:`history`.

    Why ``attach``: a ``TrainerCallback`` sees no Trainer, and the Trainer calls callbacks in the
    order default, reporting integrations, user callbacks, passing each ``on_log`` the same
    dictionary after it has appended that dictionary's copy to ``state.log_history``: fields a
    callback adds in its own ``on_log`` reach neither the reporters before it nor the history.
    ``Trainer.log`` is the one call that reaches both, so :meth:`attach` gives the callback the
    Trainer to call it with (and adds the callback to it).

    Under several processes (DDP), only the world's main process scores, logs and writes; the
    others go on and wait for it at their next collective. Sharded models (FSDP, DeepSpeed ZeRO-3)
    are refused: their forward needs every process.

    Args:
        texts_or_dataset: the held-out texts: strings, or rows (a ``datasets.Dataset``) whose
            ``text_field`` holds them. Keep the set small: it is scored in full at every step.
        every_n_steps: optimizer steps between scorings.
        max_length: tokens per window (each text's first ``max_length`` tokens are scored);
            default: ``options.max_length``.
        out: a sweep folder to save every scoring to as a cell (``cells/<label>__step{N}__
            <dataset>/``), which ``errorentropy report DIR`` draws (Fig. 3-6); None: log only.
        tokenizer: default: the Trainer's ``processing_class``.
        batch_size: windows per forward pass; default: ``options.batch_size``.
        text_field: the column holding the text when rows are passed.
        options: further scoring options (``bos``, ``head``, ``window``, ...); the head is the
            engine's choice (chunked or fused where verified against the model's logits).
        label: the model's name in the sweep folder; default: ``args.run_name``, else the
            model's ``name_or_path``, else its ``model_type``.
        family: the model family recorded in cells; default: the config's ``model_type``.
        dataset: the dataset label of the cells.
        metric_key_prefix: prefix of the logged names (``eval_`` ones appear under ``eval/`` in
            TensorBoard and W&B).
        rbp_ks: the k of the ``rbp_at_{k}`` fields.
        score_at_start: also score before the first step (step 0 of a fresh run).
        profile: also save the sorted-probability profile (Fig. 5); default: when ``out`` is set.

    Examples::

        callback = DecompositionCallback(heldout_texts, every_n_steps=200, max_length=512,
                                         out="runs/dynamics").attach(trainer)
        trainer.train()   # logs eval_heldout_cross_entropy, eval_heldout_error_entropy, ...
    """

    def __init__(
        self,
        texts_or_dataset: Sequence[str] | Any,
        *,
        every_n_steps: int = 500,
        max_length: int | None = None,
        out: str | Path | None = None,
        tokenizer: Any = None,
        batch_size: int | None = None,
        text_field: str = "text",
        options: ScoreOptions | None = None,
        label: str | None = None,
        family: str | None = None,
        dataset: str = "heldout",
        metric_key_prefix: str = "eval_heldout",
        rbp_ks: Iterable[int] = DEFAULT_RBP_KS,
        score_at_start: bool = True,
        profile: bool | None = None,
    ) -> None:
        if not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool):
            raise UserError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
        if every_n_steps < 1:
            raise UserError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
        base = options or ScoreOptions()
        self.options = ScoreOptions.from_mapping(
            {
                **{f: getattr(base, f) for f in ("window", "stride", "bos", "head")},
                "max_length": max_length if max_length is not None else base.max_length,
                "batch_size": batch_size if batch_size is not None else base.batch_size,
                "vocab_chunk": base.vocab_chunk,
                "profile": (out is not None) if profile is None else profile,
            },
            "DecompositionCallback",
        )
        self.options = replace(self.options, chunk_elements=base.chunk_elements)
        self.documents = _documents(texts_or_dataset, text_field)
        self.text_field = text_field
        self.every_n_steps = every_n_steps
        self.out = None if out is None else Path(out)
        self.tokenizer = tokenizer
        self.label, self.family, self.dataset = label, family, dataset
        self.metric_key_prefix = metric_key_prefix
        self.rbp_ks = check_ks(rbp_ks)
        self.score_at_start = score_at_start
        self.history: list[dict[str, Any]] = []  # {"step": N, **fields} per scoring
        self._trainer: Any = None
        self._scored: set[int] = set()
        self._started = False

    # ---- wiring ---------------------------------------------------------------------------------

    def attach(self, trainer: Any) -> DecompositionCallback:
        """Give the callback ``trainer`` (whose ``log`` it calls) and add it to the trainer's
        callbacks unless it is already there; checks the texts and options against the model
        now rather than at the first scoring. Returns the callback."""
        _refuse_sharded(trainer)
        self._trainer = trainer
        if self.tokenizer is None:
            self.tokenizer = getattr(trainer, "processing_class", None)
            if not callable(self.tokenizer):
                raise UserError(
                    "DecompositionCallback needs a tokenizer: pass tokenizer=..., or "
                    "Trainer(processing_class=tokenizer)"
                )
        if self.label is None:
            config = getattr(trainer.model, "config", None)
            self.label = (
                trainer.args.run_name
                or getattr(config, "name_or_path", "")
                or getattr(config, "model_type", "model")
            )
        self._check_windows(trainer.model)
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def _check_windows(self, model: torch.nn.Module) -> None:
        """Refuse a window longer than the model's context, or texts with nothing to score."""
        check_context(model, self.options.max_length)
        ids = tokenize(self.tokenizer, self.documents, self.options.bos)
        windows, _ = make_windows(
            ids, self.options.max_length, self.options.window, self.options.stride
        )
        if not windows:
            raise UserError(
                "every held-out text is shorter than 2 tokens, so there is nothing to score; "
                "pass longer texts (or options with bos='always')"
            )

    # ---- events ---------------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Refuse to train unattached; start a new schedule."""
        if self._trainer is None:
            raise UserError(_ATTACH)
        self._scored, self._started = set(), False

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Score the model as training starts (once every integration has begun its run)."""
        if self.score_at_start and not self._started:
            self._maybe_score(state, control)
        self._started = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Score on the schedule, and after the last step."""
        step = state.global_step
        last = step >= state.max_steps > 0 or control.should_training_stop
        if step % self.every_n_steps == 0 or last:
            self._maybe_score(state, control)

    def _maybe_score(self, state: Any, control: Any) -> None:
        step = int(state.global_step)
        if step in self._scored or not state.is_world_process_zero:
            return
        self._scored.add(step)
        model = self._trainer.model
        started = time.perf_counter()
        try:
            result = self.score_model(model)
        except UserError as exc:  # NaN logits of a diverged run: say so, do not end the run
            warnings.warn(f"DecompositionCallback at step {step}: {exc}", stacklevel=2)
            return
        fields = decomposition_fields(result.histogram, self.rbp_ks)
        warn_ties(result.histogram.n_tied, result.histogram.n_tokens, "DecompositionCallback")
        if self.out is not None:
            self.write_cell(result, model, step)
        self.history.append({"step": step, **fields})
        logs: dict[str, float] = {f"{self.metric_key_prefix}_{k}": v for k, v in fields.items()}
        logs[f"{self.metric_key_prefix}_runtime"] = round(time.perf_counter() - started, 4)
        # Trainer.log clears should_log; the step's own loss log (decided before us) must stay.
        should_log = control.should_log
        self._trainer.log(logs)
        control.should_log = self._trainer.control.should_log = should_log

    # ---- scoring and saving ---------------------------------------------------------------------

    def score_model(self, model: torch.nn.Module) -> ScoredCorpus:
        """Score the held-out texts with ``model`` as it is now (:func:`score_texts`)."""
        if self.tokenizer is None:
            raise UserError(_ATTACH)
        return score_texts(model, self.tokenizer, self.documents, self.options)

    def write_cell(self, result: ScoredCorpus, model: torch.nn.Module, step: int) -> Path:
        """Save ``result`` as the sweep cell of revision ``step{step}`` under :attr:`out` (what a
        sweep over checkpoints writes) and return its folder (:func:`write_step_cell`)."""
        if self.out is None:
            raise UserError("write_cell needs DecompositionCallback(out=DIR)")
        return write_step_cell(
            self.out,
            result,
            model,
            label=str(self.label or self.family or family_of(model)),
            step=step,
            dataset=self.dataset,
            documents=self.documents,
            options=self.options,
            family=self.family,
            text_field=self.text_field,
            rbp_ks=self.rbp_ks,
        )


def _refuse_sharded(trainer: Any) -> None:
    """A one-line error for Trainers whose model is sharded across processes."""
    sharded = bool(getattr(trainer, "is_fsdp_enabled", False))
    if getattr(trainer, "is_deepspeed_enabled", False):
        plugin = getattr(getattr(trainer.accelerator, "state", None), "deepspeed_plugin", None)
        sharded = sharded or getattr(plugin, "zero_stage", 0) == 3
    if sharded:
        raise UserError(
            "DecompositionCallback scores on the main process alone, which a model sharded by "
            "FSDP or DeepSpeed ZeRO-3 cannot do; use decomposition_metrics() in trainer.evaluate()"
        )
