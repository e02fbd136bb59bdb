"""The decomposition as a torchmetrics ``Metric``: CE = EE + SA - Conf in any evaluation loop.

:class:`CrossEntropyDecomposition` takes a causal LM's logits and labels batch by batch and keeps
the rank histogram as two fixed-length states, ``counts`` (n_e, int64) and ``logprob_sums`` (S_e,
float64), one entry per vocabulary entry. Both are reduced by sum, so a DDP sync adds the
processes' histograms: the counts exactly, the sums to float64 round-off, as
:class:`errorentropy.stats.histogram.RankHistogram` adds shards. Each batch goes through
:meth:`RankHistogram.update <errorentropy.stats.histogram.RankHistogram.update>`, so a metric and a
histogram fed the same batches in the same order hold the same bits.

This is the only module of the package that imports torchmetrics (``pip install
'errorentropy[torchmetrics]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from errorentropy.integrations.common import DEFAULT_RBP_KS, decomposition_fields
from errorentropy.stats.histogram import RankHistogram

__all__ = ["FIELDS", "CrossEntropyDecomposition", "field_names"]


def field_names(rbp_ks: Iterable[int] = DEFAULT_RBP_KS) -> tuple[str, ...]:
    """The keys of ``compute()``, in order: the fields every integration logs
    (:func:`errorentropy.integrations.common.decomposition_fields`)."""
    return tuple(decomposition_fields(RankHistogram(), rbp_ks))


FIELDS = field_names()  # with the default rbp_ks


class CrossEntropyDecomposition(Metric):
    """Corpus cross-entropy split into Error-Entropy, Self-Alignment and Confidence (nats/token).

    ``update(logits, labels)`` takes ``[B, T, V]`` logits and ``[B, T]`` labels (Hugging Face
    causal-LM conventions: ``ignore_index`` marks unlabelled positions; with ``shift=True`` the
    labels are the input ids and ``logits[:, t]`` predicts ``labels[:, t + 1]``). ``compute()``
    returns a dict of float64 scalar tensors, the fields every integration logs
    (:func:`field_names`): ``cross_entropy``, ``error_entropy``, ``self_alignment``,
    ``confidence``, ``error_entropy_miller_madow``, ``top1_accuracy``, ``n_tokens``,
    ``n_ranks_observed``, ``n_tied`` (tokens whose logit tied another's: 16-bit logits),
    ``identity_residual`` (CE - (EE + SA - Conf), float64 round-off),
    ``rbp_at_{k}`` for k in ``rbp_ks`` (share of tokens ranked below k) and ``mrr``. With no
    scored token every value is NaN and ``n_tokens`` is 0.

    Ranks count over the logits' whole last axis (padding entries of the vocabulary included),
    so the states have that length: ``vocab_size`` if given, else the first update's ``V``.
    Processes whose lengths differ (one that saw no batch) agree on the longest before a sync.
    Two scalar states keep RankHistogram's bookkeeping: ``n_documents`` (rows with a labelled
    token) and ``n_tied`` (tokens whose logit tied another entry's); :meth:`histogram` gives it all.

    Args:
        vocab_size: the logits' last dimension; None to take it from the first update.
        ignore_index: the label value of positions not scored.
        shift: True when the labels are the input ids (the causal-LM shift is applied here).
        rbp_ks: the k of the ``rbp_at_{k}`` fields (share of tokens ranked below k).
        **kwargs: torchmetrics ``Metric`` options (``process_group``, ``sync_on_compute``, ...).

    Examples:
        >>> import torch
        >>> from errorentropy.integrations.torchmetrics import CrossEntropyDecomposition
        >>> _ = torch.manual_seed(0)
        >>> metric = CrossEntropyDecomposition()
        >>> for _ in range(3):
        ...     metric.update(torch.randn(2, 8, 50), torch.randint(0, 50, (2, 8)))
        >>> out = metric.compute()
        >>> int(out["n_tokens"])  # 3 batches of 2 rows with 7 targets each
        42
        >>> ce = out["error_entropy"] + out["self_alignment"] - out["confidence"]
        >>> bool(torch.isclose(out["cross_entropy"], ce, rtol=0, atol=1e-12))
        True
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    counts: torch.Tensor
    logprob_sums: torch.Tensor
    n_documents: torch.Tensor
    n_tied: torch.Tensor

    def __init__(
        self,
        vocab_size: int | None = None,
        *,
        ignore_index: int = -100,
        shift: bool = True,
        rbp_ks: Iterable[int] = DEFAULT_RBP_KS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        ks = tuple(rbp_ks)
        self.fields = field_names(ks)  # refuses k that are not positive integers
        self.rbp_ks = tuple(dict.fromkeys(ks))
        if vocab_size is not None and (
            isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1
        ):
            raise ValueError(f"vocab_size must be a positive int or None, got {vocab_size!r}")
        self.vocab_size = vocab_size
        self.ignore_index = ignore_index
        self.shift = shift
        size = vocab_size or 0
        self.add_state("counts", torch.zeros(size, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("logprob_sums", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("n_documents", "n_tied"):  # RankHistogram's bookkeeping, summed too
            self.add_state(name, torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> None:
        """Add the labelled tokens of one batch (``[B, T, V]`` logits, ``[B, T]`` labels); with
        the batch's ``attention_mask`` (padded batches), no label is scored from a pad position.
        Float32 logits from a float32 head give ``errorentropy score``'s numbers (16-bit logits
        tie; see :func:`errorentropy.integrations.common.float32_logits`)."""
        vocab = int(logits.shape[-1])
        if self.vocab_size is not None and vocab > self.vocab_size:
            raise ValueError(
                f"logits have {vocab} vocabulary entries but this metric holds ranks below "
                f"{self.vocab_size}; construct it with vocab_size={vocab} (the logits' last "
                "dimension, padding entries included)"
            )
        batch = RankHistogram()
        batch.update(
            logits,
            labels,
            ignore_index=self.ignore_index,
            shift=self.shift,
            attention_mask=attention_mask,
        )
        self.vocab_size = self.vocab_size or vocab
        self._grow(self.vocab_size)
        observed = np.flatnonzero(batch.counts)
        if observed.size:  # each observed rank added once: S_e + s, as RankHistogram adds
            index = torch.from_numpy(observed).to(self.counts.device)
            self.counts.index_add_(0, index, _tensor(batch.counts[observed], self.counts))
            sums = _tensor(batch.logprob_sums[observed], self.logprob_sums)
            self.logprob_sums.index_add_(0, index, sums)
        self.n_documents += batch.n_documents
        self.n_tied += batch.n_tied

    def compute(self) -> dict[str, torch.Tensor]:
        """The decomposition of every token seen (over all processes when synced)."""
        values = decomposition_fields(self.histogram(), self.rbp_ks)
        return {
            name: torch.tensor(float(value), dtype=torch.float64, device=self.counts.device)
            for name, value in values.items()
        }

    def histogram(self) -> RankHistogram:
        """The current states as a :class:`RankHistogram` (this process's own unless synced),
        to save, merge with scored corpora, or decompose in full (``p_e``, ``q_e``)."""
        return RankHistogram(
            self.counts.detach().cpu().numpy(),
            self.logprob_sums.detach().cpu().numpy(),
            n_documents=int(self.n_documents),
            n_tied=int(self.n_tied),
        )

    def merge_state(self, incoming_state: dict[str, Any] | Metric) -> None:
        """Add another metric's tokens (or its ``metric_state`` dict) to this one's."""
        super().merge_state(incoming_state)
        self._update_count += 1  # merged tokens count as an update: compute() does not warn
        self._computed = None  # nor return a value cached before the merge

    def _grow(self, size: int) -> None:
        """Pad both states with empty ranks up to ``size`` entries (never shrinks)."""
        missing = size - self.counts.numel()
        if missing > 0:
            self.counts = torch.cat([self.counts, self.counts.new_zeros(missing)])
            self.logprob_sums = torch.cat([self.logprob_sums, self.logprob_sums.new_zeros(missing)])

    def _reduce_states(self, incoming_state: dict[str, Any]) -> None:
        """Sum another state into this one (``merge_state``, ``forward``), lengths padded."""
        size = max(self.counts.numel(), incoming_state["counts"].numel())
        self._grow(size)
        incoming = dict(incoming_state)
        for name in ("counts", "logprob_sums"):
            incoming[name] = _padded(incoming_state[name], size)
        super()._reduce_states(incoming)

    def _sync_dist(
        self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None
    ) -> None:
        """Agree on the longest state first (a process without batches holds none), then sum."""
        size = torch.tensor([self.counts.numel()], dtype=torch.int64, device=self.counts.device)
        dist.all_reduce(size, op=dist.ReduceOp.MAX, group=process_group or self.process_group)
        self._grow(int(size.item()))
        super()._sync_dist(dist_sync_fn, process_group=process_group)


def _tensor(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``values`` as a tensor of ``like``'s dtype on its device."""
    return torch.from_numpy(np.ascontiguousarray(values)).to(like.device, like.dtype)


def _padded(state: torch.Tensor, size: int) -> torch.Tensor:
    """``state`` with zeros appended up to ``size`` entries."""
    missing = size - state.numel()
    return torch.cat([state, state.new_zeros(missing)]) if missing > 0 else state
