"""Training objectives (errorentropy.objectives) against ``cross_entropy``: forward + backward on
``[8, 512, 50257]`` float32 CPU logits, 2 torch threads. Goals: exact CE + lam Conf at most 1.2x
cross_entropy's time, the soft-EE objectives at most 2.5x, peak memory within 10% of
cross_entropy's. Prints a table and writes ``results/objectives.json``.

    python benchmarks/bench_objectives.py [--repeats 7] [--threads 2] [--quick]

Times: the cases run interleaved in one process (every repeat runs each case once), so all see
the same load; medians and minima are reported. Memory: each case runs once in a fresh process,
and its figure is the growth of the peak resident set (``VmHWM``, the address space's own
``ru_maxrss``) over the peak just before the call (logits and labels already built), so the
gradient counts and the logits do not; the peak itself is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, write_result  # noqa: E402
from errorentropy.objectives import ce_conf_loss, mixture, soft_error_entropy  # noqa: E402

SHAPE = (8, 512, 50257)
QUICK_SHAPE = (2, 512, 50257)
TIME_GOALS = {"ce_conf_lam1": 1.2, "soft_ee": 2.5, "ce+soft_ee": 2.5}
MEMORY_GOAL = 1.10
CASES = ("cross_entropy", "ce_conf_lam1", "soft_ee", "ce+soft_ee")


def inputs(shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Leaf float32 logits that require grad, causal-LM labels, and cross_entropy's targets (the
    labels shifted by one, -100 at the last position: the same tokens the objectives score)."""
    batch, length, vocab = shape
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(batch, length, vocab, generator=g).requires_grad_()
    labels = torch.randint(0, vocab, (batch, length), generator=g)
    targets = torch.full_like(labels, -100)
    targets[:, :-1] = labels[:, 1:]
    return logits, labels, targets


def loss_fn(
    name: str, logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """The scalar loss of case ``name`` as a thunk."""
    vocab = logits.shape[-1]
    soft_mix = mixture(ce=1.0, soft_ee=1.0)
    cases: dict[str, Callable[[], torch.Tensor]] = {
        "cross_entropy": lambda: F.cross_entropy(logits.view(-1, vocab), targets.view(-1)),
        "ce_conf_lam1": lambda: ce_conf_loss(logits, labels, 1.0),
        "soft_ee": lambda: soft_error_entropy(logits, labels),
        "ce+soft_ee": lambda: soft_mix(logits, labels),
    }
    return cases[name]


def step(logits: torch.Tensor, fn: Callable[[], torch.Tensor]) -> tuple[float, float]:
    """One forward and backward; their wall times."""
    logits.grad = None
    start = time.perf_counter()
    loss = fn()
    mid = time.perf_counter()
    loss.backward()
    end = time.perf_counter()
    return mid - start, end - mid


def time_cases(shape: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    """Interleaved forward/backward times of every case."""
    logits, labels, targets = inputs(shape)
    fns = {name: loss_fn(name, logits, labels, targets) for name in CASES}
    values = {name: fn().item() for name, fn in fns.items()}  # warm-up, and the losses
    forward: dict[str, list[float]] = {name: [] for name in CASES}
    backward: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(repeats):
        for name, fn in fns.items():
            f, b = step(logits, fn)
            forward[name].append(f)
            backward[name].append(b)
    total = {n: [f + b for f, b in zip(forward[n], backward[n])] for n in CASES}
    median = {n: statistics.median(v) for n, v in total.items()}
    minimum = {n: min(v) for n, v in total.items()}
    return {
        "loss_values": values,
        "forward_s": forward,
        "backward_s": backward,
        "median_s": median,
        "min_s": minimum,
        "median_forward_s": {n: statistics.median(v) for n, v in forward.items()},
        "median_backward_s": {n: statistics.median(v) for n, v in backward.items()},
        "ratio_median": {n: median[n] / median["cross_entropy"] for n in CASES},
        "ratio_min": {n: minimum[n] / minimum["cross_entropy"] for n in CASES},
    }


def peak_rss_mib() -> float:
    """This process's peak resident set so far: ``VmHWM`` of its own address space where Linux
    has it; ``ru_maxrss`` elsewhere (which survives ``exec``, so a child started by a large
    parent would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_case(name: str, shape: tuple[int, int, int], threads: int) -> dict[str, float]:
    """Run in a fresh process: the peak RSS growth of one forward and backward of ``name``."""
    torch.set_num_threads(threads)
    logits, labels, targets = inputs(shape)
    fn = loss_fn(name, logits, labels, targets)
    before = peak_rss_mib()
    step(logits, fn)
    after = peak_rss_mib()
    return {"peak_before_mib": before, "peak_after_mib": after, "growth_mib": after - before}


def memory_cases(shape: tuple[int, int, int], threads: int) -> dict[str, dict[str, float]]:
    """Every case's :func:`memory_case`, each in its own process."""
    rows = {}
    for name in CASES:
        cmd = [sys.executable, __file__, "--memory-case", name, "--threads", str(threads)]
        cmd += ["--shape", *map(str, shape)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=900)
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return rows


def verdicts(timing: dict[str, Any], memory: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Each goal against its figure."""
    ce_growth = memory["cross_entropy"]["growth_mib"]
    ce_peak = memory["cross_entropy"]["peak_after_mib"]
    out: dict[str, Any] = {}
    for name, goal in TIME_GOALS.items():
        growth = memory[name]["growth_mib"] / ce_growth
        peak = memory[name]["peak_after_mib"] / ce_peak
        out[name] = {
            "time_goal": goal,
            "time_ratio_median": timing["ratio_median"][name],
            "time_met": timing["ratio_median"][name] <= goal,
            "memory_growth_ratio": growth,
            "memory_peak_ratio": peak,
            "memory_met": peak <= MEMORY_GOAL,
        }
    return out


def run(shape: tuple[int, int, int], threads: int, repeats: int) -> dict[str, Any]:
    """Every figure as written to ``results/objectives.json``."""
    before_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        machine_before = machine()
        memory = memory_cases(shape, threads)
        timing = time_cases(shape, repeats)
        machine_after = machine()
    finally:
        torch.set_num_threads(before_threads)
    goals = verdicts(timing, memory)
    missed = [name for name, g in goals.items() if not (g["time_met"] and g["memory_met"])]
    summary = (
        "All goals met."
        if not missed
        else f"Goals missed by {', '.join(missed)}: see the figures; rerun on a quieter machine."
    )
    return {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]).strip(),
        "shape": list(shape),
        "dtype": "float32",
        "device": "cpu",
        "threads": threads,
        "repeats": repeats,
        "timing": timing,
        "memory": memory,
        "goals": goals,
        "all_met": all(g["time_met"] and g["memory_met"] for g in goals.values()),
        "loadavg_before": machine_before["loadavg_1_5_15"],
        "loadavg_after": machine_after["loadavg_1_5_15"],
        "machine_before": machine_before,
        "machine": machine_after,
        "notes": [summary, *NOTES],
    }


NOTES = [
    "cross_entropy keeps its [B*T, V] log-softmax for backward and builds a second [B*T, V] "
    "tensor (nll_loss's gradient) before its input gradient; the objectives keep only the "
    "logits and O(B*T) vectors and write the gradient block by block, so they need less memory.",
    "Times are forward + backward; the objectives read the logits once forward and once "
    "backward, in 4 MiB blocks of rows spread over the torch threads (one thread per block).",
    "The machine is shared with other jobs (see loadavg_*): medians move with the load; the "
    "cases run interleaved, so ratios are steadier than the times themselves.",
    "Memory is VmHWM (the process's own peak RSS; ru_maxrss survives exec, so a child of a "
    "large parent would start at the parent's peak), measured in a fresh process per case.",
]


def table(body: dict[str, Any]) -> str:
    """The figures as a Markdown table."""
    b, t, v = body["shape"]
    timing, memory = body["timing"], body["memory"]
    lines = [
        f"Logits [{b}, {t}, {v}] float32, CPU, {body['threads']} torch thread(s), "
        f"{body['repeats']} interleaved repeats, load {body['loadavg_before']} -> "
        f"{body['loadavg_after']}.",
        "",
        "| case | fwd s | bwd s | median s | min s | ratio (median) | peak RSS growth MiB "
        "| peak RSS MiB | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in CASES:
        goal = body["goals"].get(name)
        verdict = "-" if goal is None else (
            f"<= {goal['time_goal']}x time: {'met' if goal['time_met'] else 'NOT met'}; "
            f"memory: {'met' if goal['memory_met'] else 'NOT met'}"
        )  # fmt: skip
        lines.append(
            f"| {name} | {timing['median_forward_s'][name]:.3f} | "
            f"{timing['median_backward_s'][name]:.3f} | {timing['median_s'][name]:.3f} | "
            f"{timing['min_s'][name]:.3f} | {timing['ratio_median'][name]:.2f} | "
            f"{memory[name]['growth_mib']:.0f} | {memory[name]['peak_after_mib']:.0f} | {verdict} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help=f"{list(QUICK_SHAPE)}, 3 repeats")
    parser.add_argument("--shape", type=int, nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-case", choices=CASES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = tuple(args.shape) if args.shape else (QUICK_SHAPE if args.quick else SHAPE)
    if args.memory_case:  # the child process of memory_cases
        print(json.dumps(memory_case(args.memory_case, shape, args.threads)))  # type: ignore[arg-type]
        return 0
    body = run(shape, args.threads, 3 if args.quick else args.repeats)  # type: ignore[arg-type]
    if not args.quick:
        write_result("objectives", body)
    print(table(body))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
