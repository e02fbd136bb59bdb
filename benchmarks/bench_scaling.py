"""(d) How scoring time grows with tokens, max-length and vocabulary size (in-process, same
batching for `errorentropy`'s scoring and for the bare forward pass + cross_entropy)."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from bench_ce import bare_cross_entropy
from common import load_tokenizer, log, long_documents, model_dir


def time_pair(
    model: torch.nn.Module,
    tokenizer: Any,
    docs: list[str],
    max_length: int,
    batch_size: int,
    repeats: int,
) -> dict[str, Any]:
    import time

    from errorentropy.data.windows import batches, make_windows, tokenize
    from errorentropy.options import ScoreOptions
    from errorentropy.scoring.engine import score_documents

    options = ScoreOptions(max_length=max_length, batch_size=batch_size)
    windows, _ = make_windows(tokenize(tokenizer, docs, "auto"), max_length)
    prepared = list(batches(windows, batch_size, tokenizer.pad_token_id, max_length))
    ours, bare, tokens = [], [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = score_documents(model, tokenizer, docs, options)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_cross_entropy(model, prepared)
        bare.append(time.perf_counter() - start)
        tokens = result.histogram.n_tokens
    o, b = statistics.median(ours), statistics.median(bare)
    return {
        "tokens": tokens,
        "errorentropy_s": o,
        "bare_s": b,
        "ratio": o / b,
        "errorentropy_tok_per_s": tokens / o,
    }


def run(quick: bool, threads: int) -> dict[str, Any]:
    from errorentropy.models.loading import load_model

    repeats = 1 if quick else 2
    tokenizer = load_tokenizer()
    base_docs = 4 if quick else 8
    docs = long_documents(4 * base_docs, 512, tokenizer)
    rows = []
    model, _ = load_model(str(model_dir("pythia14m")), device="cpu", dtype="float32")
    time_pair(model, tokenizer, docs[:2], 64, 8, 1)  # warm-up
    for n in (base_docs, 2 * base_docs, 4 * base_docs):
        rows.append(
            {
                "vary": "tokens",
                "vocab_size": 50304,
                "max_length": 128,
                "documents": n,
                **time_pair(model, tokenizer, docs[:n], 128, 8, repeats),
            }
        )
        log(f"(d) {rows[-1]}")
    for length in (64, 128, 256) if quick else (64, 128, 256, 512):
        n = max(2, base_docs * 128 // length)  # about the same number of tokens
        rows.append(
            {
                "vary": "max_length",
                "vocab_size": 50304,
                "max_length": length,
                "documents": n,
                **time_pair(model, tokenizer, docs[:n], length, 8, repeats),
            }
        )
        log(f"(d) {rows[-1]}")
    for vocab in (8192, 32768, 131072) if quick else (8192, 32768, 65536, 131072):
        model, _ = load_model(
            str(model_dir("pythia14m", vocab_size=vocab)), device="cpu", dtype="float32"
        )
        rows.append(
            {
                "vary": "vocab_size",
                "vocab_size": vocab,
                "max_length": 128,
                "documents": base_docs,
                **time_pair(model, tokenizer, docs[:base_docs], 128, 8, repeats),
            }
        )
        log(f"(d) {rows[-1]}")
    return {
        "benchmark": "d_scaling",
        "model": "pythia14m body (gpt_neox, hidden 128, 6 layers; random weights), vocabulary "
        "varied",
        "threads": threads,
        "rows": rows,
    }
