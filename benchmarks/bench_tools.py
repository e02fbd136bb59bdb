"""(b) Whole-process time of `errorentropy score` against minicons and lm-evaluation-harness on the
same local model and documents, and per-token agreement with minicons."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

from common import WORK, documents, load_tokenizer, log, model_dir, run_process

GOALS = {"minicons": 5.0, "lm_eval": 1.8}
HERE = Path(__file__).resolve().parent


def write_documents(n: int, max_length: int) -> tuple[Path, int]:
    """``n`` documents that fit in ``max_length`` tokens (minicons does not truncate); their token
    count."""
    tok = load_tokenizer()
    docs, n_tokens = [], 0
    for text in documents(4 * n, max_chars=5 * max_length):
        ids = tok(text)["input_ids"]
        while len(ids) > max_length:
            text = text[: int(len(text) * 0.9)]
            ids = tok(text)["input_ids"]
        if len(ids) >= 2:
            docs.append(text)
            n_tokens += len(ids) - 1
        if len(docs) == n:
            break
    path = WORK / f"docs-{n}-{max_length}.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path, n_tokens


def agreement(result_dir: Path, minicons_file: Path) -> dict[str, Any]:
    """Ranks (minicons' 1-based argsort rank minus 1) and log-probs, token by token."""
    from errorentropy.stats.tokens import TokenTable

    ours = TokenTable.load(result_dir / "tokens.npz")
    rows = json.loads(minicons_file.read_text())
    theirs_lp = np.concatenate([np.asarray(r["logprob"], dtype=np.float64) for r in rows])
    theirs_rank = np.concatenate([np.asarray(r["rank"], dtype=np.int64) - 1 for r in rows])
    if theirs_lp.size != ours.logprob.size:
        return {
            "comparable": False,
            "tokens_errorentropy": int(ours.logprob.size),
            "tokens_minicons": int(theirs_lp.size),
        }
    mismatched = np.flatnonzero(theirs_rank != ours.rank)
    return {
        "comparable": True,
        "tokens": int(theirs_lp.size),
        "mismatches_explained_by_minicons_float32_ties": explain_mismatches(
            ours, theirs_rank, mismatched
        ),
        "rank_mismatches": int((theirs_rank != ours.rank).sum()),
        "max_abs_logprob_diff": float(np.abs(theirs_lp - ours.logprob).max()),
        "ranks_exact": bool((theirs_rank == ours.rank).all()),
        "logprobs_within_1e-5": bool(np.abs(theirs_lp - ours.logprob).max() <= 1e-5),
    }


def explain_mismatches(ours: Any, theirs_rank: np.ndarray, mismatched: np.ndarray) -> int:
    """How many rank mismatches are ties in minicons' float32 log-probs (logits - logsumexp, whose
    rounding merges logits closer than ~1 ulp of the log-prob and argsort then breaks ties
    arbitrarily): both ranks lie in [#greater, #greater + #equal] of that log-prob vector,
    while the strict-> rank on the logits themselves is ours."""
    import torch

    from errorentropy.models.loading import load_model

    if mismatched.size == 0:
        return 0
    model, tokenizer = load_model(str(model_dir("pythia14m")), device="cpu", dtype="float32")
    data = sorted(WORK.glob("docs-*.jsonl"), key=lambda p: p.stat().st_mtime)[-1]
    docs = [json.loads(line)["text"] for line in data.read_text().splitlines()]
    explained = 0
    for doc in np.unique(ours.doc[mismatched]):
        ids = tokenizer(docs[doc])["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
        logprobs = logits - logits.logsumexp(1, keepdim=True)
        for i in mismatched[ours.doc[mismatched] == doc]:
            pos = int(ours.position[i])
            row, target = logprobs[pos - 1], logprobs[pos - 1, ids[pos]]
            greater, equal = int((row > target).sum()), int((row == target).sum()) - 1
            if (
                greater <= theirs_rank[i] <= greater + equal
                and greater <= ours.rank[i] <= greater + equal
            ):
                explained += 1
    return explained


def run(quick: bool, threads: int) -> dict[str, Any]:
    name = "pythia14m"
    n_docs, max_length, batch_size, repeats = (8, 256, 8, 1) if quick else (16, 512, 8, 2)
    model = model_dir(name)
    data, n_tokens = write_documents(n_docs, max_length)
    out = WORK / "bench-b-errorentropy"
    commands = {
        "errorentropy": [
            sys.executable,
            "-m",
            "errorentropy",
            "score",
            "--model",
            str(model),
            "--data",
            str(data),
            "--max-length",
            str(max_length),
            "--batch-size",
            str(batch_size),
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
        ],
        "minicons": [
            sys.executable,
            str(HERE / "probe_minicons.py"),
            str(model),
            str(data),
            str(WORK / "minicons.json"),
            str(batch_size),
        ],
        "lm_eval": [
            sys.executable,
            str(HERE / "probe_lmeval.py"),
            str(model),
            str(data),
            str(max_length),
            str(batch_size),
        ],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for tool, cmd in commands.items():
            if tool in errors:
                continue
            try:
                elapsed, _ = run_process(cmd, threads=threads)
                times[tool].append(elapsed)
                log(f"(b) {tool}: {elapsed:.1f}s")
            except Exception as exc:  # record exactly why a tool could not run
                errors[tool] = str(exc)
                log(f"(b) {tool} failed: {exc}")
    medians = {k: statistics.median(v) for k, v in times.items() if v}
    ratios = {
        tool: medians[tool] / medians["errorentropy"]
        for tool in ("minicons", "lm_eval")
        if tool in medians and "errorentropy" in medians
    }
    return {
        "benchmark": "b_tools",
        "model": name,
        "vocab_size": 50304,
        "documents": n_docs,
        "scored_tokens": n_tokens,
        "max_length": max_length,
        "batch_size": batch_size,
        "threads": threads,
        "whole_process_s": medians,
        "runs_s": times,
        "speedup": ratios,
        "goals": {k: f">= {v}x" for k, v in GOALS.items()},
        "met": {k: ratios[k] >= GOALS[k] for k in ratios},
        "errors": errors,
        "agreement_with_minicons": agreement(out, WORK / "minicons.json")
        if not errors.get("minicons") and "errorentropy" in medians
        else None,
        "note": "lm-eval scores each document's first token too (after an EOT prefix); "
        "errorentropy and minicons score tokens 2..L",
        "commands": {
            k: " ".join(Path(c).name if i < 2 else c for i, c in enumerate(v))
            for k, v in commands.items()
        },
    }
