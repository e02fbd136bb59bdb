"""(c) Peak memory on a 151,936-entry vocabulary at max-length 2048, batch 8 (full float32 logits
alone: 8 * 2048 * 151936 * 4 bytes = 9.3 GiB), each figure from a fresh process."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from common import log, model_dir, run_process

HERE = Path(__file__).resolve().parent
GOAL_MIB = 1024


def probe(model: Path, threads: int, *extra: str) -> dict[str, Any]:
    _, out = run_process(
        [sys.executable, str(HERE / "probe_memory.py"), str(model), *extra],
        threads=threads,
        timeout=900,
    )
    row = json.loads(out.strip().splitlines()[-1])
    log(f"(c) {' '.join(extra)}: peak RSS {row['peak_rss_mib']:.0f} MiB")
    return row


def run(quick: bool, threads: int) -> dict[str, Any]:
    model = model_dir("qwen2-tiny-151k")
    rows = [probe(model, threads, "--load-only")]
    chunks = [8192] if quick else [2048, 8192, 32768]
    for chunk in chunks:
        rows.append(
            probe(
                model, threads, "--batch", "8", "--max-length", "2048", "--vocab-chunk", str(chunk)
            )
        )
    # The whole `errorentropy score` command on the same documents (corpus reading, convergence
    # check, fingerprint, token table and writing included): the figure users see.
    rows.append(
        probe(
            model, threads, "--cli", "--batch", "8", "--max-length", "2048", "--vocab-chunk", "8192"
        )
    )
    # Full logits for comparison at batch 1 only (batch 8 would need 9.3 GiB for the logits alone).
    rows.append(probe(model, threads, "--batch", "1", "--max-length", "2048", "--head", "full"))
    main = [
        r
        for r in rows
        if r.get("head") == "chunked"
        and not r.get("load_only")
        and r.get("batch") == 8
        and "tokens" in r
    ]
    full_logits_gib = 8 * 2048 * 151936 * 4 / 2**30
    return {
        "benchmark": "c_memory",
        "model": "qwen2-tiny-151k (qwen2 config, vocab 151936, hidden 64, 2 layers, tied head; "
        "random weights)",
        "threads": threads,
        "full_float32_logits_gib_at_batch8": round(full_logits_gib, 2),
        "rows": rows,
        "goal": f"peak RSS < {GOAL_MIB} MiB with the chunked head at batch 8, max-length 2048",
        "met": all(r["peak_rss_mib"] < GOAL_MIB for r in main),
    }
