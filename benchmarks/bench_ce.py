"""(a) `errorentropy score`'s scoring against the bare forward pass that computes mean CE alone:
``model(...).logits`` then ``cross_entropy``, on the same tokens with the same batches."""

from __future__ import annotations

from typing import Any

import torch

from common import documents, load_tokenizer, log, median_time, model_dir

GOAL = 0.85


def bare_cross_entropy(model: torch.nn.Module, batches: list[Any]) -> tuple[float, int]:
    """Mean CE over the scored tokens by the usual loop: full logits, then cross_entropy."""
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logits = model(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
            ).logits
            labels = batch.input_ids.clone()
            labels[batch.attention_mask == 0] = -100
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1),
                labels[:, 1:].flatten(),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(loss)
            count += int((labels[:, 1:] != -100).sum())
    return total / count, count


def measure(
    name: str, n_docs: int, max_length: int, batch_size: int, repeats: int, vocab_chunk: int
) -> dict[str, Any]:
    from errorentropy.data.windows import batches, make_windows, tokenize
    from errorentropy.models.loading import load_model
    from errorentropy.options import ScoreOptions
    from errorentropy.scoring.engine import score_documents

    model, _ = load_model(str(model_dir(name)), device="cpu", dtype="float32")
    tokenizer = load_tokenizer()
    docs = documents(n_docs, max_chars=6 * max_length)
    options = ScoreOptions(max_length=max_length, batch_size=batch_size, vocab_chunk=vocab_chunk)
    windows, _ = make_windows(tokenize(tokenizer, docs, "auto"), max_length)
    prepared = list(batches(windows, batch_size, tokenizer.pad_token_id, max_length))
    # warm-up of both paths (first-call allocations, kernel choice)
    score_documents(model, tokenizer, docs[:batch_size], options)
    bare_cross_entropy(model, prepared[:1])
    result = score_documents(model, tokenizer, docs, options)
    ours_ce = result.histogram.decompose().cross_entropy
    bare_ce, bare_tokens = bare_cross_entropy(model, prepared)
    ours_t, ours_all, bare_t, bare_all = [], [], [], []
    for _ in range(repeats):  # interleaved so that load changes hit both alike
        t, _ = median_time(lambda: score_documents(model, tokenizer, docs, options), 1)
        ours_all.append(t)
        t, _ = median_time(lambda: bare_cross_entropy(model, prepared), 1)
        bare_all.append(t)
    import statistics

    ours_t, bare_t = statistics.median(ours_all), statistics.median(bare_all)
    row = {
        "model": name,
        "threads": torch.get_num_threads(),
        "vocab_size": model.config.vocab_size,
        "documents": n_docs,
        "tokens": result.histogram.n_tokens,
        "max_length": max_length,
        "batch_size": batch_size,
        "vocab_chunk": vocab_chunk,
        "head_path": result.head_path,
        "errorentropy_s": ours_t,
        "bare_forward_ce_s": bare_t,
        "ratio": ours_t / bare_t,
        "goal": f"<= {GOAL}",
        "met": ours_t / bare_t <= GOAL,
        "runs_errorentropy_s": ours_all,
        "runs_bare_s": bare_all,
        "same_tokens": bare_tokens == result.histogram.n_tokens,
        "ce_errorentropy": ours_ce,
        "ce_bare": bare_ce,
        "ce_abs_diff": abs(ours_ce - bare_ce),
    }
    log(
        f"(a) {name}: errorentropy {ours_t:.2f}s, bare forward+CE {bare_t:.2f}s, ratio "
        f"{row['ratio']:.3f}"
    )
    return row


def run(quick: bool, vocab_chunk: int, threads: int) -> dict[str, Any]:
    """Rows at ``threads`` intra-op threads, plus (full run) the pythia row at 2 threads."""
    if quick:
        rows = [measure("pythia14m", 16, 128, 8, 2, vocab_chunk)]
    else:
        rows = [
            measure("pythia14m", 32, 256, 8, 3, vocab_chunk),
            measure("qwen2-tiny-151k", 16, 256, 8, 3, vocab_chunk),
        ]
        if threads == 1:
            torch.set_num_threads(2)
            rows.append(measure("pythia14m", 32, 256, 8, 2, vocab_chunk))
            torch.set_num_threads(threads)
    return {"benchmark": "a_ce_ratio", "rows": rows}
