"""The training objectives of :mod:`errorentropy.objectives` as the Hugging Face ``Trainer``'s
loss, with their terms logged beside the decomposition the other integrations log.

- :func:`objective_loss_func` gives an :class:`ObjectiveLoss`, a ``compute_loss_func`` for
  ``Trainer(compute_loss_func=...)``: it reads ``outputs.logits`` and the labels the Trainer
  took from the batch (Hugging Face causal-LM labels, shifted inside the objective), returns
  the objective scaled for gradient accumulation, and records the batch's
  :class:`~errorentropy.objectives.ObjectiveTerms`.
- :meth:`ObjectiveLoss.attach` adds an :class:`ObjectiveTermsCallback` that hands the terms,
  averaged since the last log, to ``Trainer.log`` whenever the Trainer logs its loss:
  ``train_objective_loss``, ``train_objective_cross_entropy``, ``train_objective_error_entropy``,
  ``train_objective_self_alignment``, ``train_objective_confidence`` (and the relaxed terms the
  objective computes, e.g. ``train_objective_soft_error_entropy``).
- :class:`TermsMeter` is that running average on its own, for any other loop.

Importing this module imports transformers (``TrainerCallback`` is the callback's base).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import TrainerCallback

from errorentropy.errors import UserError
from errorentropy.objectives import Objective, ObjectiveTerms, parse_objective
from errorentropy.objectives.sums import world_size

__all__ = [
    "DEFAULT_PREFIX",
    "ObjectiveLoss",
    "ObjectiveTermsCallback",
    "TermsMeter",
    "objective_loss_func",
]

DEFAULT_PREFIX = "train_objective"


class TermsMeter:
    """The weighted mean of :class:`~errorentropy.objectives.ObjectiveTerms` since the last
    :meth:`pop`: what a logger shows for the batches between two logs.

    Each term is averaged with the batch's ``weight`` (in the Trainer: the batch's share of the
    optimizer step's labelled tokens, so ``loss`` averages exactly as the Trainer's own logged
    loss does); ``n_tokens`` is the sum of the batches' labelled tokens.

    Examples:
        >>> from errorentropy.objectives import ObjectiveTerms
        >>> meter = TermsMeter()
        >>> meter.add(ObjectiveTerms(2.0, 10, 2.0, 1.5, 1.0, 0.5))
        >>> meter.add(ObjectiveTerms(4.0, 30, 4.0, 2.5, 2.0, 0.5), weight=3.0)
        >>> fields = meter.pop()
        >>> fields["train_objective_loss"], fields["train_objective_n_tokens"]
        (3.5, 40.0)
        >>> meter.pop()
        {}
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}
        self._tokens = 0

    def __len__(self) -> int:
        """The number of labelled tokens recorded since the last :meth:`pop`."""
        return self._tokens

    def add(self, terms: ObjectiveTerms, weight: float = 1.0) -> None:
        """Record one batch's terms with ``weight`` (> 0)."""
        if not weight > 0:
            raise UserError(f"weight must be > 0, got {weight!r}")
        for name, value in terms.as_dict().items():
            if name != "n_tokens":
                self._sums[name] = self._sums.get(name, 0.0) + weight * value
                self._weights[name] = self._weights.get(name, 0.0) + weight
        self._tokens += terms.n_tokens

    def pop(self, prefix: str = DEFAULT_PREFIX) -> dict[str, float]:
        """The averages as ``{prefix}_{term}`` (empty when nothing was recorded), then reset."""
        if not self._tokens:
            return {}
        fields = {f"{prefix}_{k}": s / self._weights[k] for k, s in self._sums.items()}
        fields[f"{prefix}_n_tokens"] = float(self._tokens)
        self._sums, self._weights, self._tokens = {}, {}, 0
        return fields


def _logits(outputs: Any) -> torch.Tensor:
    """The logits of a model's outputs: a ``ModelOutput`` or dict (``"logits"``), or a tuple
    whose first entry they are (no loss is computed when the Trainer took the labels)."""
    if isinstance(outputs, Mapping):
        logits = outputs.get("logits")
    elif isinstance(outputs, (tuple, list)) and outputs:
        logits = outputs[0]
    else:
        logits = outputs
    if not isinstance(logits, torch.Tensor):
        raise UserError(
            f"the model's outputs ({type(outputs).__name__}) hold no logits tensor; "
            "ObjectiveLoss needs a causal LM that returns logits"
        )
    return logits


def _items(num_items_in_batch: Any) -> float:
    """The Trainer's ``num_items_in_batch`` as a float (a tensor, possibly repeated per GPU)."""
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.reshape(-1)[0].item()
    return float(num_items_in_batch)


def _counted(labels: torch.Tensor, shifted: bool) -> int:
    """The micro-batch's labels other than -100, counted as the Trainer counts them."""
    return int(((labels[..., 1:] if shifted else labels) != -100).sum())


def _share(labels: torch.Tensor, shifted: bool, num_items_in_batch: Any) -> float:
    """This micro-batch's share of the optimizer step's labelled tokens, both counted as the
    Trainer counts ``num_items_in_batch`` (labels other than -100; 1 when it gave none)."""
    if num_items_in_batch is None:
        return 1.0
    total = _items(num_items_in_batch)
    return _counted(labels, shifted) / total if total > 0 else 1.0


def _global_share(
    labels: torch.Tensor, shifted: bool, num_items_in_batch: Any, across_devices: bool
) -> tuple[float, float]:
    """For a ``global_batch`` objective under several processes: the factor its loss is
    multiplied by, and the whole micro-batch's share of the step's labelled tokens.

    The objective's gradient is already the whole micro-batch's under DDP's mean; the factor
    weights it by the micro-batch's share of the step (over every process), and undoes the
    Trainer's own multiplication by the number of processes when it counts tokens across
    devices (``average_tokens_across_devices``: ``num_items_in_batch`` is then the step's
    count over every process). One all-reduce of two numbers.
    """
    import torch.distributed as dist

    if num_items_in_batch is None:
        return 1.0, 1.0
    world = dist.get_world_size()
    step = _items(num_items_in_batch)
    counts = torch.tensor(
        [float(_counted(labels, shifted)), 0.0 if across_devices else step],
        dtype=torch.float64,
        device=labels.device,
    )
    dist.all_reduce(counts)
    total = step if across_devices else counts[1].item()
    share = counts[0].item() / total if total > 0 else 1.0
    return (share / world if across_devices else share), share


class ObjectiveLoss:
    """A ``compute_loss_func`` for ``transformers.Trainer``: ``loss(outputs, labels,
    num_items_in_batch=None)`` is the objective of the batch's logits and labels.

    The Trainer hands over the labels it took out of the batch unshifted, so the objective's
    default ``shift=True`` (``logits[:, t]`` predicts ``labels[:, t + 1]``) is what a causal LM
    needs. The Trainer does not divide a ``compute_loss_func``'s loss by the gradient
    accumulation steps; this one multiplies the micro-batch's objective by its share of the
    step's labelled tokens (its labels counted as the Trainer counts ``num_items_in_batch``), so
    the shares of a step sum to 1 and ``ce`` is the step's mean cross-entropy, as the Trainer's
    default loss is for causal LMs; for the batch statistics (Conf, soft EE) it trains the
    token-weighted mean of the per-micro-batch statistics (docs/objectives.md, "Use in
    training").

    A ``global_batch`` objective under several processes is the statistic of the micro-batch over
    every process, weighted by that micro-batch's share of the step's labelled tokens over every
    process (so ``ce`` is again the step's mean cross-entropy); it needs :meth:`attach`.

    Terms are recorded in :attr:`meter` only for batches that build a graph (training, not the
    Trainer's evaluation, which runs under ``torch.no_grad``).

    Args:
        objective: an :class:`~errorentropy.objectives.Objective` or its name (``"ce+0.5conf"``).
        prefix: the logged names' prefix (``{prefix}_cross_entropy``, ...).
        options: keyword options of :func:`~errorentropy.objectives.parse_objective` when
            ``objective`` is a name (``tau``, ``chunk_size``, ...).
    """

    def __init__(
        self, objective: Objective | str, *, prefix: str = DEFAULT_PREFIX, **options: Any
    ) -> None:
        if isinstance(objective, str):
            objective = parse_objective(objective, **options)
        elif not isinstance(objective, Objective) or options:
            raise UserError(
                "objective must be an errorentropy.objectives.Objective or a name such as "
                "'ce+0.5conf' (options only with a name)"
            )
        self.objective = objective
        self.prefix = prefix
        self.meter = TermsMeter()
        # How the Trainer counts num_items_in_batch: over labels[..., 1:] (True) or all labels
        # (False); set by attach, else the objective's own shift.
        self.counts_shifted: bool | None = None
        # Whether num_items_in_batch counts every process's tokens (and the Trainer multiplies
        # the loss by the number of processes); set by attach.
        self.across_devices: bool | None = None

    def __call__(
        self, outputs: Any, labels: torch.Tensor | None, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """The batch's loss, scaled to its share of the optimizer step (see the class)."""
        if labels is None:
            raise UserError(
                "the Trainer passed no labels to ObjectiveLoss; use a collator that adds them "
                "(e.g. DataCollatorForLanguageModeling(tokenizer, mlm=False))"
            )
        logits = _logits(outputs)
        loss, terms = self.objective(logits, labels.to(logits.device), return_terms=True)
        shifted = self.objective.shift if self.counts_shifted is None else self.counts_shifted
        if self.objective.global_batch and world_size() > 1:
            if self.across_devices is None:
                raise UserError(
                    "a global_batch objective under several processes needs to know how the "
                    "Trainer counts tokens; call loss.attach(trainer) before trainer.train()"
                )
            factor, share = _global_share(labels, shifted, num_items_in_batch, self.across_devices)
        else:
            factor = share = _share(labels, shifted, num_items_in_batch)
        if torch.is_grad_enabled() and logits.requires_grad:
            self.meter.add(terms, share)
        return loss * factor

    def attach(self, trainer: Any) -> ObjectiveLoss:
        """Add an :class:`ObjectiveTermsCallback` logging this loss's terms to ``trainer``, which
        must have been built with ``compute_loss_func=`` this loss. Returns the loss."""
        if getattr(trainer, "compute_loss_func", None) is not self:
            raise UserError(
                "this ObjectiveLoss is not the trainer's loss; build the Trainer with "
                "Trainer(..., compute_loss_func=loss) before loss.attach(trainer)"
            )
        # transformers counts labels[..., 1:] only for models whose loss it recognises as a causal
        # LM's (e.g. *ForCausalLM, not GPT2LMHeadModel); count this micro-batch the same way.
        shifts = getattr(trainer, "_loss_shifts_labels", None)
        self.counts_shifted = None if shifts is None else bool(shifts)
        self.across_devices = bool(getattr(trainer.args, "average_tokens_across_devices", False))
        if any(getattr(c, "loss", None) is self for c in trainer.callback_handler.callbacks):
            return self
        callback = ObjectiveTermsCallback(self)
        callback.attach(trainer)
        return self


class ObjectiveTermsCallback(TrainerCallback):
    """Logs an :class:`ObjectiveLoss`'s terms through ``Trainer.log`` each time the Trainer logs
    (``logging_steps``, ``logging_strategy="epoch"``), averaged over the batches since the last
    log, as ``{prefix}_{term}``.

    Why ``Trainer.log`` and not ``on_log``: the Trainer appends each log to
    ``state.log_history`` and hands it to the reporting callbacks before a user callback's
    ``on_log`` runs, so fields added there reach neither (see
    :class:`~errorentropy.integrations.transformers.DecompositionCallback`). The terms are
    therefore their own log entry, at the same step as the Trainer's loss. Under several
    processes each logs the terms of its own shard (the main process's reach the reporters), or
    of the whole batch with a ``global_batch`` objective.
    """

    def __init__(self, loss: ObjectiveLoss) -> None:
        self.loss = loss
        self._trainer: Any = None

    def attach(self, trainer: Any) -> ObjectiveTermsCallback:
        """Give the callback ``trainer`` (whose ``log`` it calls) and add it to its callbacks."""
        self._trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Refuse to train unattached; drop terms of an earlier run."""
        if self._trainer is None:
            raise UserError(
                "ObjectiveTermsCallback is not attached; use loss.attach(trainer) (it logs "
                "through Trainer.log)"
            )
        self.loss.meter.pop()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Log the terms when the Trainer is about to log its loss."""
        self._maybe_log(control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Log the terms with an epoch-end log (``logging_strategy="epoch"``)."""
        self._maybe_log(control)

    def _maybe_log(self, control: Any) -> None:
        if not control.should_log:
            return
        fields = self.loss.meter.pop(self.loss.prefix)
        if fields:
            # Trainer.log clears should_log; the Trainer's own loss log (decided before us)
            # must still happen.
            self._trainer.log(fields)
            control.should_log = self._trainer.control.should_log = True


def objective_loss_func(
    objective: Objective | str, *, prefix: str = DEFAULT_PREFIX, **options: Any
) -> ObjectiveLoss:
    """The :class:`ObjectiveLoss` of ``objective`` (an Objective or a name), for
    ``Trainer(compute_loss_func=...)``.

    Examples::

        loss = objective_loss_func("ce+0.5conf")
        trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator,
                          compute_loss_func=loss)
        loss.attach(trainer)      # logs train_objective_cross_entropy, ..._confidence, ...
        trainer.train()
    """
    return ObjectiveLoss(objective, prefix=prefix, **options)
