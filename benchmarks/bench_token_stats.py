"""(g) ``token_stats`` on logits a user already has, against ``cross_entropy`` alone on the same
logits: ``[8, 512, 50257]`` float32 on the CPU, random labels, torch threads = the machine's cores
(goal: at most 1.5x cross_entropy's time). Prints a table and writes ``results/token_stats.json``.

    python benchmarks/bench_token_stats.py [--repeats 9] [--threads N] [--quick]

The two run interleaved, so both see the same load; medians and minima are both reported (on a
machine shared with other jobs the minima are the steadier figures).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_result  # noqa: E402
from errorentropy.head.token_stats import token_stats  # noqa: E402

GOAL = 1.5


def run(quick: bool = False, threads: int | None = None, repeats: int = 9) -> dict[str, Any]:
    """Time both on one batch of logits; the figures as written to ``results/token_stats.json``."""
    threads = threads or os.cpu_count() or 1
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(quick, threads, 3 if quick else repeats)
    finally:
        torch.set_num_threads(before_threads)


def _measure(quick: bool, threads: int, repeats: int) -> dict[str, Any]:
    batch, length, vocab = (2, 512, 50257) if quick else (8, 512, 50257)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, length, vocab, generator=g)
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    # cross_entropy on the same [B*T, V] rows and the targets token_stats scores (shifted).
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]
    flat, flat_targets = logits.view(-1, vocab), targets.view(-1)
    machine_before = machine()

    def ce() -> Any:
        return torch.nn.functional.cross_entropy(flat, flat_targets)

    def ours() -> Any:
        return token_stats(logits, labels)

    stats = ours()  # warm-up, and a check that both score the same tokens to round-off
    mean_ce = float(ce())
    mean_ours = -float(stats.logprob[stats.labelled].mean())
    times: dict[str, list[float]] = {"cross_entropy": [], "token_stats": []}
    for _ in range(repeats):
        for name, fn in (("cross_entropy", ce), ("token_stats", ours)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in times.items()}
    minimum = {k: min(v) for k, v in times.items()}
    ratio_median = median["token_stats"] / median["cross_entropy"]
    ratio_min = minimum["token_stats"] / minimum["cross_entropy"]
    return {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]).strip(),
        "shape": [batch, length, vocab],
        "dtype": "float32",
        "threads": threads,
        "repeats": repeats,
        "times_s": times,
        "median_s": median,
        "min_s": minimum,
        "ratio_median": ratio_median,
        "ratio_min": ratio_min,
        "goal": GOAL,
        "met": ratio_median <= GOAL,
        "mean_ce_cross_entropy": mean_ce,
        "mean_ce_token_stats": mean_ours,
        "machine_before": machine_before,
        "machine": machine(),
    }


def table(body: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    b, t, v = body["shape"]
    lines = [
        f"Logits [{b}, {t}, {v}] {body['dtype']}, CPU, {body['threads']} torch thread(s), "
        f"{body['repeats']} interleaved repeats.",
        "",
        "| | median s | min s |",
        "|---|---|---|",
    ]
    for name in ("cross_entropy", "token_stats"):
        lines.append(f"| {name} | {body['median_s'][name]:.3f} | {body['min_s'][name]:.3f} |")
    lines.append(
        f"| ratio token_stats / cross_entropy | {body['ratio_median']:.2f} | "
        f"{body['ratio_min']:.2f} |"
    )
    verdict = "met" if body["met"] else "not met"
    lines += ["", f"Goal <= {body['goal']}x (medians): **{verdict}**."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="default: the machine's cores")
    parser.add_argument("--quick", action="store_true", help="[2, 512, 50257], 3 repeats")
    args = parser.parse_args(argv)
    body = run(args.quick, args.threads, args.repeats)
    write_result("token_stats", body)
    print(table(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
