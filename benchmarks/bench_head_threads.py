"""The chunked head alone at 1 and 2 intra-op threads: OpenMP inside each tile operation (the
old way) against whole token blocks on worker threads of one intra-op thread each (the way
``score_hidden`` runs now). Prints a table and writes ``results/f_head_threads.json``.

    python benchmarks/bench_head_threads.py [--repeats 7]

The workload is one batch of pythia-14m's shape: 2048 tokens, hidden 128, vocabulary 50,304.
Where other jobs share the cores, the medians show what a user of a shared machine gets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_result  # noqa: E402
from errorentropy.head.chunked import _score_block, score_hidden  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(2048, 128, generator=g)
    weight = torch.randn(50304, 128, generator=g) * 0.1
    targets = torch.randint(0, 50304, (2048,), generator=g)

    def at(threads: int, fn: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return fn()
            finally:
                torch.set_num_threads(before)

        return run

    def bare() -> Any:
        return torch.nn.functional.cross_entropy(hidden @ weight.T, targets)

    def openmp_tiles() -> Any:  # every tile operation split across the intra-op threads
        return [
            _score_block(hidden[s : s + 128], targets[s : s + 128], weight, None, None, 8192, 0)
            for s in range(0, 2048, 128)
        ]

    def workers() -> Any:
        return score_hidden(hidden, weight, targets)

    cases = {
        "bare logits + cross_entropy, 2 threads": at(2, bare),
        "chunked head, 1 thread": at(1, workers),
        "chunked head, 2 threads, OpenMP in each tile op": at(2, openmp_tiles),
        "chunked head, 2 threads, worker threads (now)": at(2, workers),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeats):  # interleaved, so every case sees the same load
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    rows = [
        {"case": name, "min_s": min(t), "median_s": statistics.median(t), "max_s": max(t)}
        for name, t in times.items()
    ]
    print(f"{'case':50s} {'min s':>8s} {'median s':>9s} {'max s':>8s}")
    for r in rows:
        print(f"{r['case']:50s} {r['min_s']:8.3f} {r['median_s']:9.3f} {r['max_s']:8.3f}")
    write_result(
        "f_head_threads",
        {
            "command": "python benchmarks/bench_head_threads.py --repeats " + str(args.repeats),
            "machine": machine(),
            "tokens": 2048,
            "hidden": 128,
            "vocab": 50304,
            "repeats": args.repeats,
            "rows": rows,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
