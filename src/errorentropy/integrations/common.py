"""What every integration shares, whatever the framework: the logged fields, scoring held-out texts
from a training loop, saving a scoring as a sweep cell, summing histograms across processes, and
float32 logits from a model's own output head.

This module imports torch and the scoring engine, never transformers' ``Trainer``, torchmetrics
or lightning, so each integration (and any plain loop) uses it without the others' frameworks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from errorentropy.data.corpus import fingerprint
from errorentropy.errors import UserError
from errorentropy.head.select import find_head
from errorentropy.head.token_stats import TIE_SHARE, TiedLogitsWarning, warn_ties
from errorentropy.models.loading import count_parameters, family_of
from errorentropy.options import DEFAULT_RBP_KS, ScoreOptions
from errorentropy.scoring.engine import score_documents
from errorentropy.scoring.results import ScoredCorpus, summarize, summary_settings, write_result
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.quantities import QUANTITIES
from errorentropy.storage import commit_folder
from errorentropy.sweep.cells import CELLS_DIR, CellKey, write_cell_record

__all__ = [
    "DEFAULT_RBP_KS",
    "TIE_SHARE",
    "TiedLogitsWarning",
    "all_reduce_histogram",
    "check_ks",
    "decomposition_fields",
    "float32_logits",
    "score_texts",
    "warn_ties",
    "write_step_cell",
]

_QUANTITIES = (
    *(q.field for q in QUANTITIES),
    "error_entropy_miller_madow",
    "top1_accuracy",
)


def check_ks(rbp_ks: Iterable[int]) -> tuple[int, ...]:
    """``rbp_ks`` as a tuple of distinct positive integers, or a one-line error."""
    ks = tuple(rbp_ks)
    if not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise UserError(f"rbp_ks must be positive integers (ranks below k count), got {ks!r}")
    return tuple(dict.fromkeys(ks))


def decomposition_fields(
    histogram: RankHistogram, rbp_ks: Iterable[int] = DEFAULT_RBP_KS
) -> dict[str, float | int]:
    """The decomposition of ``histogram`` as flat numbers, the names every integration logs.

    ``cross_entropy``, ``error_entropy``, ``self_alignment``, ``confidence`` (nats per token;
    CE = EE + SA - Conf, ``identity_residual`` is the round-off of that identity),
    ``error_entropy_miller_madow``, ``top1_accuracy``, ``n_tokens``, ``n_ranks_observed``,
    ``n_tied`` (tokens whose logit exactly equalled another entry's: many of them mean 16-bit
    logits, whose ranks differ from float32 ones), ``rbp_at_{k}`` (the share of tokens whose rank
    is below k, for k in ``rbp_ks``) and ``mrr`` (the mean of 1 / (rank + 1)). An empty histogram
    gives ``n_tokens`` 0 and NaN elsewhere.

    Examples:
        >>> from errorentropy.stats.histogram import RankHistogram
        >>> hist = RankHistogram.from_tokens([0, 0, 1, 3], [-0.1, -0.2, -1.5, -3.0])
        >>> fields = decomposition_fields(hist, rbp_ks=(1, 2))
        >>> fields["n_tokens"], fields["rbp_at_1"], fields["rbp_at_2"], fields["mrr"]
        (4, 0.5, 0.75, 0.6875)
    """
    ks = check_ks(rbp_ks)
    n = histogram.n_tokens
    if n == 0:
        nan = float("nan")
        empty: dict[str, float | int] = {q: nan for q in _QUANTITIES}
        empty |= {"n_tokens": 0, "n_ranks_observed": 0, "n_tied": 0, "identity_residual": nan}
        return empty | {f"rbp_at_{k}": nan for k in ks} | {"mrr": nan}
    d = histogram.decompose()
    fields: dict[str, float | int] = {q: float(getattr(d, q)) for q in _QUANTITIES}
    fields |= {
        "n_tokens": n,
        "n_ranks_observed": int(d.ranks.size),
        "n_tied": int(histogram.n_tied),
        "identity_residual": float(d.identity_residual),
    }
    rbp = histogram.rbp_at(ks)
    fields |= {f"rbp_at_{k}": rbp[k] for k in ks}
    return fields | {"mrr": histogram.mrr()}


# ---- float32 logits and processes ----------------------------------------------------------


@torch.no_grad()
def float32_logits(model: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """The model's logits ``[..., V]`` in float32, from its final hidden states ``[..., H]``
    (``model.base_model(...).last_hidden_state``) through its own output head in float32: the
    head ``errorentropy score`` and :class:`DecompositionCallback
    <errorentropy.integrations.transformers.DecompositionCallback>` use, with the model's bias,
    logit scale and soft-cap.

    Why: a model run in bfloat16 or float16 gives 16-bit logits, which round distinct values
    together (hundreds of ties in a thousand tokens), and ranks count ties in the label's favour,
    so EE and top-1 differ from float32 logits'. Feeding these logits to ``RankHistogram.update``
    or an integration gives the numbers of ``errorentropy score`` on the same windows.
    """
    head = find_head(model)
    if head is None:
        raise UserError(
            "float32_logits needs a model whose get_output_embeddings() is a torch.nn.Linear "
            "beside a base_model; compute the logits yourself, as logits.float() of a float32 head"
        )
    weight = head.weight.float()
    return head.logit_map.apply(hidden_states.detach().to(weight.device).float() @ weight.T)


def all_reduce_histogram(histogram: RankHistogram, group: Any = None) -> RankHistogram:
    """The sum of every process's ``histogram`` in ``group`` (default: the whole world), the same
    on every process: ``counts`` exactly, ``logprob_sums`` to float64 round-off, and the
    bookkeeping ``n_documents``, ``n_skipped`` and ``n_tied``. Processes whose histograms have
    different lengths (one with no token) agree on the longest first. A collective: every process
    of the group must call it."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise UserError(
            "all_reduce_histogram needs torch.distributed initialised "
            "(torch.distributed.init_process_group); with one process, use the histogram itself"
        )
    device = torch.device("cpu")
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    size = torch.tensor([histogram.counts.size], dtype=torch.int64, device=device)
    dist.all_reduce(size, op=dist.ReduceOp.MAX, group=group)
    counts = torch.zeros(int(size.item()), dtype=torch.int64, device=device)
    sums = torch.zeros(int(size.item()), dtype=torch.float64, device=device)
    counts[: histogram.counts.size] = torch.from_numpy(histogram.counts).to(device)
    sums[: histogram.counts.size] = torch.from_numpy(histogram.logprob_sums).to(device)
    books = [histogram.n_documents, histogram.n_skipped, histogram.n_tied]
    bookkeeping = torch.tensor(books, dtype=torch.int64, device=device)
    for tensor in (counts, sums, bookkeeping):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    n_documents, n_skipped, n_tied = (int(v) for v in bookkeeping.tolist())
    return RankHistogram(
        counts.cpu().numpy(),
        sums.cpu().numpy(),
        n_documents=n_documents,
        n_skipped=n_skipped,
        n_tied=n_tied,
    )


# ---- scoring and saving from any training loop ---------------------------------------------------


def score_texts(
    model: torch.nn.Module, tokenizer: Any, documents: Sequence[str], options: ScoreOptions
) -> ScoredCorpus:
    """Score ``documents`` with ``model`` as it is now (a
    :class:`~errorentropy.scoring.engine.ScoredCorpus`): in eval mode under ``torch.no_grad``,
    drawing no random numbers, and leaving every module's train/eval mode and the gradients as
    they were. What ``DecompositionCallback`` runs at each step; usable from any training loop."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return score_documents(model, tokenizer, list(documents), options)
    finally:
        for module, mode in modes:
            module.training = mode


def write_step_cell(
    out: str | Path,
    result: ScoredCorpus,
    model: torch.nn.Module,
    *,
    label: str,
    step: int,
    dataset: str,
    documents: Sequence[str],
    options: ScoreOptions,
    family: str | None = None,
    text_field: str = "text",
    rbp_ks: Iterable[int] = DEFAULT_RBP_KS,
    data: str | None = None,
) -> Path:
    """Save ``result`` (of :func:`score_texts` on ``documents`` with ``options``) as the sweep
    cell ``cells/<label>__step{step}__<dataset>/`` under ``out``, what a sweep over checkpoints
    writes, which ``errorentropy report out`` draws as training dynamics; returns its folder.
    ``data`` is the data source recorded (default: a count of held-out texts)."""
    if result.histogram.n_tokens == 0:
        raise UserError("the held-out texts gave no scored tokens; nothing to save")
    counts = count_parameters(model)
    family = family or family_of(model)
    key = CellKey(label, f"step{step}", dataset)
    settings = summary_settings(  # the identity's data keys keep their places, given values here
        model,
        result,
        options,
        identity=step_settings(model, key, counts, family),
        data={
            "data": data or f"{len(documents)} held-out texts (DecompositionCallback)",
            "data_fingerprint": fingerprint(documents),
            "text_field": text_field,
            "n_documents_available": len(documents),
        },
        extra={"spec_digest": None},
    )
    summary = summarize(result.histogram, settings, rbp_ks=check_ks(rbp_ks), tokens=result.tokens)

    def build(directory: Path) -> None:
        write_result(directory, result, summary)
        write_cell_record(
            directory,
            key,
            family=family,
            non_embedding_params=counts.non_embedding,
            total_params=counts.total,
            summary=summary,
        )

    return commit_folder(Path(out) / CELLS_DIR, key.cell_id, build)


def step_settings(model: torch.nn.Module, key: CellKey, counts: Any, family: str) -> dict[str, Any]:
    """What a sweep cell's summary records about the model (cells.COMPARABLE_KEYS and the rest
    are added by :func:`write_step_cell`, in the sweep's names and order)."""
    parameter = next(model.parameters())
    config = getattr(model, "config", None)
    return {
        "model": key.model,
        "model_id": getattr(config, "name_or_path", "") or key.model,
        "revision": key.revision,
        # The weights are the training run's, in memory: no hub commit, no weight files.
        "model_commit": None,
        "weights_fingerprint": None,
        "family": family,
        "non_embedding_params": counts.non_embedding,
        "total_params": counts.total,
        "dtype": str(parameter.dtype).removeprefix("torch."),
        "device": str(parameter.device),
        "dataset": key.dataset,
        "data": None,
        "data_fingerprint": None,
        "samples": None,
        "seed": None,
    }
