"""The benchmark suite: one command, a table on stdout, ``results/*.json`` and ``RESULTS.md``.

    python benchmarks/run.py            # full run (about 10 minutes on 2 CPU cores)
    python benchmarks/run.py --quick    # a smaller run (about 3 minutes)
    python benchmarks/run.py --only a,c # some benchmarks

(a) scoring time against the bare forward pass + cross_entropy; (b) whole-process time against
minicons and lm-evaluation-harness, and per-token agreement with minicons; (c) peak memory on a
151,936-entry vocabulary at max-length 2048, batch 8; (d) time against tokens, max-length and
vocabulary size; (g) token_stats on [8, 512, 50257] logits against cross_entropy alone, at the
machine's cores rather than --threads. Models are random-weight real configurations built locally
(no downloads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, ROOT, machine, write_result  # noqa: E402
from summary import write_summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads, one repeat")
    parser.add_argument("--only", default="a,b,c,d,g", help="comma-separated subset of a,b,c,d,g")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op CPU threads for every measurement (default 1; see RESULTS.md)",
    )
    parser.add_argument(
        "--vocab-chunk", type=int, default=8192, help="vocabulary entries per head chunk"
    )
    args = parser.parse_args(argv)
    wanted = {x.strip() for x in args.only.split(",") if x.strip()}
    if not wanted <= {"a", "b", "c", "d", "g"}:
        parser.error(f"--only takes a subset of a,b,c,d,g, got {args.only!r}")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    meta = {"command": command.strip(), "quick": args.quick, "machine_before": machine()}
    results = {}
    if "a" in wanted:
        import bench_ce

        results["a"] = bench_ce.run(args.quick, args.vocab_chunk, args.threads)
    if "b" in wanted:
        import bench_tools

        results["b"] = bench_tools.run(args.quick, args.threads)
    if "c" in wanted:
        import bench_memory

        results["c"] = bench_memory.run(args.quick, args.threads)
    if "d" in wanted:
        import bench_scaling

        results["d"] = bench_scaling.run(args.quick, args.threads)
    if "g" in wanted:
        import bench_token_stats

        results["g"] = bench_token_stats.run(args.quick)
    meta["machine_after"] = machine()
    meta["total_s"] = round(time.perf_counter() - started, 1)
    names = {"a": "a_ce_ratio", "b": "b_tools", "c": "c_memory", "d": "d_scaling"}
    names["g"] = "token_stats"
    for key, body in results.items():
        write_result(names[key], {**meta, **body})
    write_result("run", {**meta, "benchmarks": sorted(results)})
    text = write_summary(RESULTS, ROOT / "RESULTS.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
