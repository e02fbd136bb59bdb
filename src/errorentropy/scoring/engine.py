"""The scoring engine: a model over a corpus to per-token (rank, log-prob) and a rank histogram."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from errorentropy.data.windows import Window, batches, make_windows, tokenize
from errorentropy.errors import ArgumentError
from errorentropy.head.full import score_logits
from errorentropy.head.logits import TokenScores
from errorentropy.head.select import OutputHead, choose_head
from errorentropy.models.loading import context_length, input_device
from errorentropy.options import DEFAULT_OPTIONS, ScoreOptions
from errorentropy.scoring.results import ScoredCorpus
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.profile import PROFILE_TOP, RankProfile
from errorentropy.stats.tokens import TokenTable

PROGRESS_DELAY_S = 1.0  # seconds before the scoring bar shows
BatchScores = tuple[TokenScores, np.ndarray, np.ndarray]  # scores, documents, positions


def check_context(model: torch.nn.Module, max_length: int) -> None:
    """Refuse a max_length beyond the positions the model has (in keyword names; the command
    line shows the flag)."""
    limit = context_length(getattr(model, "config", None))
    if limit is not None and max_length > limit:
        raise ArgumentError(
            f"max_length={max_length} exceeds the model's context of {limit} tokens; "
            f"use max_length={limit} or less",
            "max_length",
        )


@torch.no_grad()
def score_batch(
    model: torch.nn.Module,
    head: OutputHead | None,
    batch_ids: torch.Tensor,
    mask: torch.Tensor,
    windows: Sequence[Any],
    options: ScoreOptions,
) -> BatchScores:
    """Score one batch; returns the scores and each scored token's document and position."""
    device = input_device(model)
    rows: list[int] = []
    cols: list[int] = []
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
        scores = head.score(
            selected,
            targets,
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
    options: ScoreOptions = DEFAULT_OPTIONS,
    *,
    progress: bool = False,
    doc_ids: Sequence[int] | None = None,
) -> ScoredCorpus:
    """Score every document: rank and log-prob of each scored token, and their histogram.

    ``doc_ids`` restricts scoring to those documents (a shard of the corpus); token tables keep
    corpus-wide document indices, so shards merge by concatenation and histograms by addition.
    """
    check_context(model, options.max_length)  # the options were checked when built
    chosen = list(range(len(documents))) if doc_ids is None else list(doc_ids)
    token_ids = tokenize(tokenizer, [documents[i] for i in chosen], options.bos)
    windows, n_skipped = make_windows(token_ids, options.max_length, options.window, options.stride)
    windows = [type(w)(chosen[w.doc], w.offset, w.input_ids, w.score_from) for w in windows]
    if not windows:
        empty = np.zeros(0, dtype=np.int32)
        tokens = TokenTable(empty, empty, empty, np.zeros(0))
        hist = RankHistogram(n_skipped=n_skipped)
        return ScoredCorpus(hist, tokens, "none", 0, RankProfile() if options.profile else None)
    head = choose_head(model, options.head, windows[0].input_ids, profile=options.profile)
    parts, profile = _score_windows(model, head, windows, options, progress)
    tokens, n_tied = _sorted_tokens(parts)
    n_docs = int(np.unique(tokens.doc).size)
    hist = tokens.histogram(n_documents=n_docs, n_skipped=n_skipped, n_tied=n_tied)
    path = "full" if head is None else "fused" if head.fused else "chunked"
    return ScoredCorpus(hist, tokens, path, len(windows), profile, _notes(model, head, hist))


def _score_windows(
    model: torch.nn.Module,
    head: OutputHead | None,
    windows: list[Window],
    options: ScoreOptions,
    progress: bool,
) -> tuple[list[BatchScores], RankProfile | None]:
    """Every batch's scores, documents and positions, and the profile when one is asked for."""
    # Padded positions are masked and never scored; the tokenizer's pad id may lie outside the
    # model's vocabulary.
    pad = 0
    parts: list[BatchScores] = []
    profile = RankProfile() if options.profile else None
    bar = tqdm(
        total=sum(w.n_scored for w in windows),
        unit="tok",
        unit_scale=True,
        disable=not progress,
        file=sys.stderr,
        desc="scoring",
        delay=PROGRESS_DELAY_S,  # a run that ends (or fails) sooner prints no bar
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
    return parts, profile


def _sorted_tokens(parts: list[BatchScores]) -> tuple[TokenTable, int]:
    """The scored tokens sorted by (document, position), and how many tied their ground truth."""
    doc = np.concatenate([p[1] for p in parts])
    pos = np.concatenate([p[2] for p in parts])
    rank = np.concatenate([p[0].rank.cpu().numpy() for p in parts]).astype(np.int32)
    logprob = np.concatenate([p[0].logprob.cpu().numpy() for p in parts]).astype(np.float64)
    tied = np.concatenate([p[0].tied.cpu().numpy() for p in parts])
    order = np.lexsort((pos, doc))
    tokens = TokenTable(doc[order], pos[order], rank[order], logprob[order])
    return tokens, int((tied > 0).sum())


def _notes(model: torch.nn.Module, head: OutputHead | None, hist: RankHistogram) -> list[str]:
    """What a reader of the summary should know about how the ranks were computed."""
    notes = [head.note] if head is not None and head.note else []
    dtype = next(model.parameters()).dtype
    if head is None and dtype in (torch.bfloat16, torch.float16):
        notes.append(
            f"ranks come from the model's own {str(dtype).removeprefix('torch.')} logits, "
            "whose rounding makes ties commoner "
            f"({hist.n_tied} of {hist.n_tokens} tokens tied their ground truth) than the "
            "float32 logits of the chunked head: "
            "compare EE only between cells with the same head_path"
        )
    return notes
