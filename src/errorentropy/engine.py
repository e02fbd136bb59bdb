"""The scoring engine: a model over a corpus to per-token (rank, log-prob) and a rank histogram."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from .errors import UserError
from .histogram import RankHistogram
from .models import context_length
from .profile import PROFILE_TOP, RankProfile
from .scoring import (
    DEFAULT_VOCAB_CHUNK,
    NON_FINITE_MESSAGE,
    TokenScores,
    _rescale,
    _softcap,
    score_hidden,
    score_logits,
)
from .windows import BosMode, WindowMode, batches, check_window_options, make_windows, tokenize

HeadMode = Literal["auto", "chunked", "fused", "full"]


@dataclass(frozen=True)
class ScoreOptions:
    """How documents become scored tokens; every field is recorded in a summary."""

    max_length: int = 512
    window: WindowMode = "truncate"
    stride: int | None = None
    bos: BosMode = "auto"
    batch_size: int = 8
    head: HeadMode = "auto"
    vocab_chunk: int = DEFAULT_VOCAB_CHUNK
    chunk_elements: int | None = (
        None  # float32 elements per head tile; None: 2^20 on a CPU, 2^26 on CUDA
    )
    profile: bool = False

    def settings(self) -> dict[str, Any]:
        return {
            "max_length": self.max_length,
            "window": self.window,
            "stride": self.stride,
            "bos": self.bos,
            "batch_size": self.batch_size,
            "head": self.head,
            "vocab_chunk": self.vocab_chunk,
            "profile": self.profile,
        }


@dataclass
class TokenTable:
    """Every scored token, sorted by (document, position): the per-document data a bootstrap needs."""

    doc: np.ndarray  # int32, index into the corpus's documents
    position: np.ndarray  # int32, the target's position in its document's token ids
    rank: np.ndarray  # int32
    logprob: np.ndarray  # float64

    def histogram(self, n_documents: int = 0, n_skipped: int = 0, n_tied: int = 0) -> RankHistogram:
        return RankHistogram.from_tokens(
            self.rank, self.logprob, n_documents=n_documents, n_skipped=n_skipped, n_tied=n_tied
        )

    def save(self, path: Any) -> None:
        """Compressed ``.npz`` (arrays doc, position, rank, logprob), written atomically."""
        import io

        from .storage import atomic_write_bytes

        buffer = io.BytesIO()
        np.savez_compressed(
            buffer, doc=self.doc, position=self.position, rank=self.rank, logprob=self.logprob
        )
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Any) -> TokenTable:
        try:
            with np.load(path, allow_pickle=False) as data:
                table = cls(data["doc"], data["position"], data["rank"], data["logprob"])
        except FileNotFoundError:
            raise UserError(
                f"token file {path} not found; rerun the scoring that writes it"
            ) from None
        except Exception as exc:  # noqa: BLE001 - zip, zlib, npy-header and pickle errors of a damaged file
            detail = f"{type(exc).__name__}: {str(exc)[:80]!r}" if str(exc) else type(exc).__name__
            raise UserError(
                f"token file {path} is unreadable or truncated ({detail}); delete it and recompute"
            ) from None
        arrays = (table.doc, table.position, table.rank, table.logprob)
        integer = all(a.dtype.kind in "iu" for a in arrays[:3])
        if (
            not integer
            or table.logprob.dtype.kind != "f"
            or any(a.ndim != 1 or a.shape != table.doc.shape for a in arrays)
        ):
            raise UserError(
                f"token file {path} is malformed (doc, position, rank, logprob must be 1-D arrays of equal length); delete it and recompute"
            )
        return table


@dataclass
class ScoreResult:
    """What scoring a corpus gives: the histogram, the tokens behind it, and how it was computed."""

    histogram: RankHistogram
    tokens: TokenTable
    head_path: str
    n_windows: int
    profile: RankProfile | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class OutputHead:
    """The model's final linear map from hidden states to logits, applied by us in chunks."""

    body: torch.nn.Module
    weight: torch.Tensor
    bias: torch.Tensor | None
    softcap: float | None
    logit_scale: float | None = (
        None  # logits multiplied after the head (Cohere's config.logit_scale)
    )
    logit_divisor: float | None = (
        None  # logits divided after the head (Granite's config.logits_scaling)
    )
    fused: bool = (
        False  # apply it with the fused Triton kernel (fused_head.py) instead of torch chunks
    )
    note: str | None = None  # why the fused kernel was not used where it could have been


def find_head(model: torch.nn.Module) -> OutputHead | None:
    """The model's body and linear output head, or None where the layout is not the usual one."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    body = getattr(model, "base_model", None)
    if not isinstance(head, torch.nn.Linear) or body is None or body is model:
        return None
    config = model.config
    softcap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(config, "logit_scale", None)
    divisor = getattr(config, "logits_scaling", None)
    number = lambda x: (
        float(x)
        if isinstance(x, (int, float)) and not isinstance(x, bool) and x not in (0, 1)
        else None
    )  # noqa: E731
    return OutputHead(
        body,
        head.weight,
        head.bias,
        float(softcap) if softcap else None,
        number(scale),
        number(divisor),
    )


@torch.no_grad()
def verify_head(model: torch.nn.Module, head: OutputHead, input_ids: torch.Tensor) -> bool:
    """True when body + head reproduce the model's own logits on ``input_ids`` ``[1, L]``."""
    reference = model(input_ids=input_ids, use_cache=False).logits[0].float()
    if not bool(torch.isfinite(reference).all()):
        raise UserError(NON_FINITE_MESSAGE)  # the same answer whichever head would have been used
    hidden = head.body(input_ids=input_ids, use_cache=False).last_hidden_state[0].float()
    ours = hidden @ head.weight.float().T
    if head.bias is not None:
        ours = ours + head.bias.float()
    ours = _softcap(
        _rescale(ours, head.logit_scale, head.logit_divisor), head.softcap
    )  # as score_hidden applies them
    if ours.shape != reference.shape:
        return False
    dtype = next(model.parameters()).dtype
    tolerance = 1e-4 if dtype == torch.float32 else 3e-2
    scale = max(1.0, float(reference.abs().max()))
    return bool((ours.to(reference.device) - reference).abs().max() <= tolerance * scale)


FUSED_CHECK_TOKENS = 160  # more than two token blocks of the kernel (64 rows each)


@torch.no_grad()
def check_fused(head: OutputHead, input_ids: torch.Tensor) -> str | None:
    """None when the fused kernel agrees with float32 logits computed by torch on ``input_ids``
    ``[1, L]``; else what went wrong, for a note (the chunked head is used then).

    Agreement: log-probs within 1e-5; each rank at least the count of rivals above the target
    logit by more than both logits' float32 error bound (``32 u sum|h_i w_i|``, plus the soft-cap's
    and bias's rounding) and at most the count of rivals not below it by more than that; ties no
    more than the rivals within it; and the kernel's safety net rescoring under 1% of tokens (more
    would make it slower than the chunked head).
    """
    from . import fused_head

    hidden = (
        head.body(input_ids=input_ids, use_cache=False)
        .last_hidden_state[0, :-1]
        .to(head.weight.device)
    )
    targets = input_ids[0, 1:].to(head.weight.device)
    stats: dict[str, int] = {}
    try:
        fused = fused_head.score_hidden_fused(
            hidden, head.weight, targets, bias=head.bias, softcap=head.softcap, stats=stats
        )
    except Exception as exc:  # noqa: BLE001 - a kernel that fails to compile or run is not used
        return f"the fused head failed ({type(exc).__name__}: {str(exc).strip()[:120]}); used the chunked head"
    unit = 2.0**-24
    h = hidden.float()
    logits, bound = [], []
    for v0 in range(
        0, head.weight.shape[0], 16384
    ):  # float32 copies of the head, a slice at a time
        w = head.weight[v0 : v0 + 16384].float()
        z, e = h @ w.T, 32 * unit * (h.abs() @ w.abs().T)
        if head.bias is not None:
            b = head.bias[v0 : v0 + 16384].float()
            z, e = z + b, e + unit * b.abs()
        if head.softcap:
            z, e = torch.tanh(z / head.softcap) * head.softcap, e + 8 * unit * head.softcap
        logits.append(z)
        bound.append(e)
    z, e = torch.cat(logits, dim=1), torch.cat(bound, dim=1)
    t, et = z.gather(1, targets[:, None]), e.gather(1, targets[:, None])
    gap, slack = z - t, e + et
    above = (gap > slack).sum(1)
    near = (gap.abs() <= slack).sum(1) - 1  # the target itself is not a rival
    logprob = t[:, 0].double() - torch.logsumexp(z.double(), dim=1)
    if stats["rescored"] > 0.01 * stats["tokens"]:
        return f"the fused kernel's target logits differed from its tiles' on {stats['rescored']} of {stats['tokens']} check tokens; used the chunked head"
    rank_ok = (fused.rank >= above) & (fused.rank <= above + near) & (fused.tied <= near)
    if not bool(rank_ok.all()) or float((fused.logprob - logprob).abs().max()) > 1e-5:
        return "the fused head disagreed with torch's logits on the check sample; used the chunked head"
    return None


def choose_head(
    model: torch.nn.Module, mode: HeadMode, sample_ids: Sequence[int], *, profile: bool = False
) -> OutputHead | None:
    """The output head to apply ourselves, or None for the model's full logits.

    ``auto``: the chunked head when it reproduces the model's logits on a sample, run by the
    fused kernel where that can run (CUDA and Triton, no ``profile``) and agrees with it.
    ``chunked`` and ``fused`` force a path; ``full`` always reads the model's logits.
    """
    from .fused_head import available

    if mode == "full":
        return None
    head = find_head(model)
    if head is None:
        if mode in ("chunked", "fused"):
            raise UserError(
                f"--head {mode}: cannot find a linear output head on {type(model).__name__}; use --head full"
            )
        return None
    scaled = head.logit_scale is not None or head.logit_divisor is not None
    if mode == "fused":
        reason = available(head.weight.device)
        if reason is not None:
            raise UserError(f"--head fused: {reason}; use --head chunked")
        if scaled:
            raise UserError(
                "--head fused does not apply a logit scale after the head (this model has one); use --head chunked"
            )
        if profile:
            raise UserError(
                "--head fused does not compute the top log-probabilities --profile needs; use --head chunked"
            )
    ids = torch.tensor([list(sample_ids[:32])], dtype=torch.long, device=input_device(model))
    if not verify_head(model, head, ids):
        if mode in ("chunked", "fused"):  # forcing a head never buys wrong numbers
            raise UserError(
                f"--head {mode}: the output head found on {type(model).__name__} does not reproduce the model's own logits (a scaling or other step after it?); use --head auto or full"
            )
        return None
    if mode == "fused":
        return replace(head, fused=True)
    if mode == "chunked":
        return head
    if profile or head.weight.device.type != "cuda" or available(head.weight.device) is not None:
        return head
    if scaled:
        return replace(
            head,
            note="the fused kernel does not apply a logit scale after the head; used the chunked head",
        )
    note = check_fused(
        head,
        torch.tensor([list(sample_ids[:FUSED_CHECK_TOKENS])], dtype=torch.long, device=ids.device),
    )
    return replace(head, fused=note is None, note=note)


def input_device(model: torch.nn.Module) -> torch.device:
    """Where inputs go: the device of the input embedding (the first shard under device_map)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embedding is not None and getattr(embedding, "weight", None) is not None:
        return embedding.weight.device
    return next(model.parameters()).device


def check_context(model: torch.nn.Module, max_length: int) -> None:
    """Refuse a max-length beyond the positions the model has."""
    limit = context_length(model.config)
    if limit is not None and max_length > limit:
        raise UserError(
            f"--max-length {max_length} exceeds the model's context of {limit} tokens; use --max-length {limit} or less"
        )


@torch.no_grad()
def score_batch(
    model: torch.nn.Module,
    head: OutputHead | None,
    batch_ids: torch.Tensor,
    mask: torch.Tensor,
    windows: Sequence[Any],
    options: ScoreOptions,
) -> tuple[TokenScores, np.ndarray, np.ndarray]:
    """Score one batch; returns the scores and each scored token's document and position."""
    device = input_device(model)
    rows, cols = [], []
    for row, w in enumerate(windows):
        span = range(w.score_from, len(w.input_ids))
        rows.extend([row] * len(span))
        cols.extend(span)
    row_t = torch.tensor(rows, dtype=torch.long)
    col_t = torch.tensor(cols, dtype=torch.long)
    targets = batch_ids[row_t, col_t]
    ids, attn = batch_ids.to(device), mask.to(device)
    topk = PROFILE_TOP if options.profile else 0
    if head is not None:
        hidden = head.body(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
        selected = hidden[row_t.to(hidden.device), (col_t - 1).to(hidden.device)]
        selected, targets = selected.to(head.weight.device), targets.to(head.weight.device)
        if head.fused:
            from .fused_head import score_hidden_fused

            scores = score_hidden_fused(
                selected, head.weight, targets, bias=head.bias, softcap=head.softcap
            )
        else:
            scores = score_hidden(
                selected,
                head.weight,
                targets,
                bias=head.bias,
                softcap=head.softcap,
                logit_scale=head.logit_scale,
                logit_divisor=head.logit_divisor,
                vocab_chunk=options.vocab_chunk,
                chunk_elements=options.chunk_elements,
                topk=topk,
            )
    else:
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        selected = logits[row_t.to(logits.device), (col_t - 1).to(logits.device)]
        del logits
        scores = score_logits(selected, targets.to(selected.device), topk=topk)
    docs = np.asarray([windows[r].doc for r in rows], dtype=np.int32)
    positions = np.asarray([windows[r].offset + c for r, c in zip(rows, cols)], dtype=np.int32)
    return scores, docs, positions


def score_documents(
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Sequence[str],
    options: ScoreOptions = ScoreOptions(),
    *,
    progress: bool = False,
    doc_ids: Sequence[int] | None = None,
) -> ScoreResult:
    """Score every document: rank and log-prob of each scored token, and their histogram.

    ``doc_ids`` restricts scoring to those documents (a shard of the corpus); token tables keep
    corpus-wide document indices, so shards merge by concatenation and histograms by addition.
    """
    check_window_options(options.max_length, options.window, options.stride)
    check_context(model, options.max_length)
    chosen = list(range(len(documents))) if doc_ids is None else list(doc_ids)
    token_ids = tokenize(tokenizer, [documents[i] for i in chosen], options.bos)
    windows, n_skipped = make_windows(token_ids, options.max_length, options.window, options.stride)
    windows = [type(w)(chosen[w.doc], w.offset, w.input_ids, w.score_from) for w in windows]
    if not windows:
        empty = np.zeros(0, dtype=np.int32)
        tokens = TokenTable(empty, empty, empty, np.zeros(0))
        hist = RankHistogram(n_skipped=n_skipped)
        return ScoreResult(hist, tokens, "none", 0, RankProfile() if options.profile else None)
    head = choose_head(model, options.head, windows[0].input_ids, profile=options.profile)
    pad = 0  # padded positions are masked and never scored; the tokenizer's pad id may lie outside the model's vocabulary
    parts: list[tuple[TokenScores, np.ndarray, np.ndarray]] = []
    profile = RankProfile() if options.profile else None
    from tqdm.auto import tqdm

    bar = tqdm(
        total=sum(w.n_scored for w in windows),
        unit="tok",
        unit_scale=True,
        disable=not progress,
        file=sys.stderr,
        desc="scoring",
    )
    for batch in batches(windows, options.batch_size, pad, options.max_length):
        scores, docs, positions = score_batch(
            model, head, batch.input_ids, batch.attention_mask, batch.windows, options
        )
        if profile is not None and scores.top_logprobs is not None:
            profile.add_tokens(scores.rank.cpu().numpy(), scores.top_logprobs.cpu().numpy())
        scores.top_logprobs = None
        parts.append((scores, docs, positions))
        bar.update(len(docs))
    bar.close()
    doc = np.concatenate([p[1] for p in parts])
    pos = np.concatenate([p[2] for p in parts])
    rank = np.concatenate([p[0].rank.cpu().numpy() for p in parts]).astype(np.int32)
    logprob = np.concatenate([p[0].logprob.cpu().numpy() for p in parts]).astype(np.float64)
    tied = np.concatenate([p[0].tied.cpu().numpy() for p in parts])
    order = np.lexsort((pos, doc))
    tokens = TokenTable(doc[order], pos[order], rank[order], logprob[order])
    n_docs = int(np.unique(doc).size)
    hist = tokens.histogram(n_documents=n_docs, n_skipped=n_skipped, n_tied=int((tied > 0).sum()))
    path = "full" if head is None else "fused" if head.fused else "chunked"
    notes = [head.note] if head is not None and head.note else []
    dtype = next(model.parameters()).dtype
    if head is None and dtype in (torch.bfloat16, torch.float16):
        notes.append(
            f"ranks come from the model's own {str(dtype).removeprefix('torch.')} logits, whose rounding makes ties commoner "
            f"({hist.n_tied} of {hist.n_tokens} tokens tied their ground truth) than the float32 logits of the chunked head: "
            "compare EE only between cells with the same head_path"
        )
    return ScoreResult(hist, tokens, path, len(windows), profile, notes)
