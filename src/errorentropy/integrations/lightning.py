"""Lightning: log CE = EE + SA - Conf at the end of every validation (and test) epoch.

:class:`DecompositionMonitor` is a ``Callback``. After each validation batch it adds the batch's
tokens to a :class:`~errorentropy.integrations.torchmetrics.CrossEntropyDecomposition` (a rank
histogram of fixed length, nothing per step is kept); at the end of the epoch it sums the
histograms of all processes and logs the decomposition through ``pl_module.log``, so every
logger of the trainer receives it and ``EarlyStopping`` / ``ModelCheckpoint`` can monitor it.

The contract with the ``LightningModule``: ``validation_step`` (``test_step``) returns a dict
with ``"logits"`` (``[B, T, V]``) and ``"labels"`` (``[B, T]``, Hugging Face causal-LM labels),
or a Hugging Face model output (which has ``logits``) with the labels in ``batch["labels"]``; an
``"attention_mask"`` in the outputs or the batch is used (no label is scored from a pad
position). Or the callback is given ``get_logits_and_labels(outputs, batch)`` that returns
``(logits, labels)`` or ``(logits, labels, attention_mask)`` (and may compute float32 logits from
hidden states there, one batch at a time: :func:`errorentropy.integrations.common.float32_logits`).

This module imports lightning (``pip install 'errorentropy[lightning]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from errorentropy.integrations.common import DEFAULT_RBP_KS
from errorentropy.integrations.torchmetrics import CrossEntropyDecomposition, field_names
from errorentropy.stats.quantities import QUANTITIES

__all__ = ["DEFAULT_FIELDS", "DecompositionMonitor", "logits_and_labels"]

# What is logged unless told otherwise (any of torchmetrics.field_names() may be asked for);
# n_tied counts the tokens whose logit tied another's (many: 16-bit logits, see common.py).
DEFAULT_FIELDS = (*(q.field for q in QUANTITIES), "top1_accuracy", "n_tied")

# (outputs, batch) -> (logits, labels) or (logits, labels, attention_mask)
LogitsAndLabels = Callable[[Any, Any], tuple[torch.Tensor, ...]]
STAGES = {"validate": "val", "test": "test"}


class DecompositionMonitor(Callback):
    """Log the decomposition of every validation (and test) epoch, summed over all processes.

    Logged names are ``name_format.format(stage=..., field=...)``, by default
    ``val/cross_entropy``, ``val/error_entropy``, ``val/self_alignment``, ``val/confidence``,
    ``val/top1_accuracy`` and ``val/n_tied`` (``test/...`` for ``trainer.test``), in nats per
    token (``n_tied``: tokens whose logit tied another's), once per epoch.
    The sanity-check epoch is not logged. Under DDP each process adds its own batches; the
    fixed-length histograms are summed across processes before the decomposition, so the numbers
    are those of one process over all the batches (counts exact, sums to float64 round-off).

    Args:
        get_logits_and_labels: ``(outputs, batch) -> (logits, labels[, attention_mask])``; None
            reads ``outputs["logits"]``, ``outputs["labels"]`` (else ``batch["labels"]``) and
            the attention mask (:func:`logits_and_labels`).
        vocab_size: the logits' last dimension, None to take it from the first batch.
        ignore_index: the label value of positions not scored.
        shift: True when the labels are the input ids (the causal-LM shift is applied here).
        fields: which of the metric's fields to log
            (:func:`errorentropy.integrations.torchmetrics.field_names`).
        rbp_ks: the k of the ``rbp_at_{k}`` fields.
        name_format: the logged name, from ``stage`` (``val`` or ``test``) and ``field``.
        stages: the loops to monitor, among ``"validate"`` and ``"test"``.
        prog_bar: also show the values in the progress bar.

    Examples:
        >>> from errorentropy.integrations.lightning import DecompositionMonitor
        >>> monitor = DecompositionMonitor()
        >>> monitor.names("val")[:2]
        ['val/cross_entropy', 'val/error_entropy']
    """

    def __init__(
        self,
        get_logits_and_labels: LogitsAndLabels | None = None,
        *,
        vocab_size: int | None = None,
        ignore_index: int = -100,
        shift: bool = True,
        fields: Sequence[str] = DEFAULT_FIELDS,
        rbp_ks: Sequence[int] = DEFAULT_RBP_KS,
        name_format: str = "{stage}/{field}",
        stages: Sequence[str] = ("validate", "test"),
        prog_bar: bool = False,
    ) -> None:
        known = field_names(rbp_ks)
        unknown = sorted(set(fields) - set(known)) + sorted(set(stages) - set(STAGES))
        if unknown:
            raise ValueError(
                f"unknown field or stage {', '.join(map(repr, unknown))}; fields are "
                f"{', '.join(known)} and stages {', '.join(STAGES)}"
            )
        self.get_logits_and_labels = get_logits_and_labels or logits_and_labels
        self.fields = tuple(fields)
        self.name_format = name_format
        self.stages = tuple(stages)
        self.prog_bar = prog_bar
        self.metrics = {
            stage: CrossEntropyDecomposition(
                vocab_size, ignore_index=ignore_index, shift=shift, rbp_ks=rbp_ks
            )
            for stage in self.stages
        }

    def names(self, stage: str) -> list[str]:
        """The logged names of a stage (``val`` or ``test``), in logging order."""
        return [self.name_format.format(stage=stage, field=f) for f in self.fields]

    # ---- the hooks ------------------------------------------------------------------------

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the epoch's histogram empty, on the module's device."""
        self._start("validate", pl_module)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add the batch's labelled tokens (every validation dataloader into one histogram)."""
        self._add("validate", outputs, batch)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Sum over processes and log (except in the sanity check)."""
        self._log("validate", trainer, pl_module)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start the epoch's histogram empty, on the module's device."""
        self._start("test", pl_module)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add the batch's labelled tokens (every test dataloader into one histogram)."""
        self._add("test", outputs, batch)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Sum over processes and log."""
        self._log("test", trainer, pl_module)

    # ---- the work -------------------------------------------------------------------------

    def _start(self, stage: str, pl_module: LightningModule) -> None:
        if stage in self.metrics:
            metric = self.metrics[stage]
            metric.reset()
            metric.to(pl_module.device)

    def _add(self, stage: str, outputs: Any, batch: Any) -> None:
        if stage in self.metrics:
            logits, labels, *mask = self.get_logits_and_labels(outputs, batch)
            self.metrics[stage].update(logits, labels, *mask)

    def _log(self, stage: str, trainer: Trainer, pl_module: LightningModule) -> None:
        if stage not in self.metrics or trainer.sanity_checking:
            return
        values = self.metrics[stage].compute()  # every process: the sum over all of them
        for name, field in zip(self.names(STAGES[stage]), self.fields):
            # Already equal on every process: a max across them changes no bit (a mean could),
            # and sync_dist=True keeps Lightning from advising it.
            pl_module.log(
                name,
                values[field],
                on_step=False,
                on_epoch=True,
                prog_bar=self.prog_bar,
                sync_dist=True,
                reduce_fx="max",
                batch_size=1,
                add_dataloader_idx=False,
            )


def logits_and_labels(outputs: Any, batch: Any) -> tuple[torch.Tensor, ...]:
    """The default reader: ``outputs["logits"]`` and ``outputs["labels"]``, else
    ``batch["labels"]`` (a dict or a Hugging Face model output returned by the step), and
    ``outputs["attention_mask"]``, else ``batch["attention_mask"]``, where there is one."""
    if not isinstance(outputs, Mapping) or outputs.get("logits") is None:
        raise TypeError(
            "DecompositionMonitor needs the step's logits: return {'logits': ..., 'labels': ...} "
            "from validation_step/test_step, or pass get_logits_and_labels=(outputs, batch) -> "
            f"(logits, labels) (the step returned {type(outputs).__name__})"
        )
    labels = outputs.get("labels")
    if labels is None and isinstance(batch, Mapping):
        labels = batch.get("labels")
    if labels is None:
        raise TypeError(
            "DecompositionMonitor found logits but no labels: return 'labels' beside 'logits' "
            "from the step, put them in batch['labels'], or pass get_logits_and_labels"
        )
    mask = outputs.get("attention_mask")
    if mask is None and isinstance(batch, Mapping):
        mask = batch.get("attention_mask")
    return (outputs["logits"], labels) if mask is None else (outputs["logits"], labels, mask)
