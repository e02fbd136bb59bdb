"""(e) The GPU path: tokens/s of scoring against the bare bf16 forward pass with ``cross_entropy``.

    python benchmarks/bench_gpu.py            # on a CUDA machine: Qwen2.5-0.5B's architecture, bf16
    python benchmarks/bench_gpu.py --tiny     # a small model on the CPU: checks the script runs

A random-weight model with Qwen2.5-0.5B's configuration (151,936-entry vocabulary, hidden 896,
24 layers, tied head) scores full windows of random token ids at max-length 512 and 2048. Each
head path of errorentropy (``fused``: the Triton kernel; ``chunked``: torch chunks in float32;
``full``: the model's own logits) is timed against the loop a researcher would write:
``model(ids).logits`` then ``cross_entropy`` on float32 logits (what transformers' loss does).
The same batches go through every path; times are medians of ``--repeats`` runs after a warm-up,
with ``torch.cuda.synchronize()`` around each. Figures go to ``results/e_gpu.json``.

Goals (issue 6): ratio to the bare pass <= 1.0 and >= 300k tokens/s at max-length 512 on an H100.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine  # noqa: E402

QWEN25_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
    rms_norm_eps=1e-6,
    bos_token_id=151643,
    eos_token_id=151643,
)
TINY = dict(
    vocab_size=4096,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
    bos_token_id=0,
    eos_token_id=0,
)
GOAL_RATIO = 1.0
GOAL_TOKENS_PER_S = 300_000


def build_model(tiny: bool, device: str) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model("qwen2", **(TINY if tiny else QWEN25_05B))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    return model.to(device=device, dtype=dtype).eval()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], float | None]:
    """Median seconds over ``repeats`` runs after a warm-up, every run, and peak GPU memory
    (GiB)."""
    fn()  # warm-up: kernel compilation, allocator
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return statistics.median(times), times, peak


@torch.no_grad()
def bare_cross_entropy(model: torch.nn.Module, batches: list[torch.Tensor]) -> float:
    """Mean CE by the usual loop: full logits, float32, then ``cross_entropy``."""
    total, count = torch.zeros((), dtype=torch.float64, device=batches[0].device), 0
    for ids in batches:
        logits = model(input_ids=ids, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum"
        )
        total += loss.double()
        count += ids[:, 1:].numel()
    return float(total) / count


@torch.no_grad()
def errorentropy_scores(
    model: torch.nn.Module, head: Any, batches: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank and log-prob of every target by errorentropy's batch scorer (the engine's inner
    loop)."""
    from errorentropy.data.windows import Window
    from errorentropy.options import ScoreOptions
    from errorentropy.scoring.engine import score_batch

    ranks, logprobs = [], []
    length = batches[0].shape[1]
    for ids in batches:
        windows = [Window(i, 0, [0] * length, 1) for i in range(ids.shape[0])]
        mask = torch.ones_like(ids)
        scores, _, _ = score_batch(
            model,
            head,
            ids,
            mask,
            windows,
            ScoreOptions(max_length=length, batch_size=ids.shape[0]),
        )
        ranks.append(scores.rank)
        logprobs.append(scores.logprob)
    return torch.cat(ranks), torch.cat(logprobs)


@torch.no_grad()
def rescored_fraction(head: Any, ids: torch.Tensor) -> float:
    """Share of one batch's tokens whose target logit the fused kernel's safety net rescored."""
    from errorentropy.head.fused import score_hidden_fused

    hidden = head.body(input_ids=ids, use_cache=False).last_hidden_state[:, :-1].flatten(0, 1)
    stats: dict[str, int] = {}
    score_hidden_fused(
        hidden,
        head.weight,
        ids[:, 1:].flatten(),
        bias=head.logit_map.bias,
        softcap=head.logit_map.softcap,
        stats=stats,
    )
    return stats["rescored"] / stats["tokens"]


def measure(
    model: torch.nn.Module,
    length: int,
    batch_size: int,
    n_batches: int,
    repeats: int,
    paths: list[str],
) -> list[dict[str, Any]]:
    from errorentropy.head.select import choose_head

    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(length)
    vocab = model.config.vocab_size
    batches = [
        torch.randint(0, vocab, (batch_size, length), generator=generator).to(device)
        for _ in range(n_batches)
    ]
    tokens = n_batches * batch_size * (length - 1)
    bare_s, bare_runs, bare_peak = timed(lambda: bare_cross_entropy(model, batches), repeats)
    bare_ce = bare_cross_entropy(model, batches)
    rows = [
        dict(
            path="bare forward + cross_entropy",
            max_length=length,
            batch_size=batch_size,
            tokens=tokens,
            seconds=bare_s,
            runs=bare_runs,
            tokens_per_s=tokens / bare_s,
            ratio=1.0,
            mean_ce=bare_ce,
            peak_gpu_gib=bare_peak,
        )
    ]
    reference: tuple[torch.Tensor, torch.Tensor] | None = None
    for path in paths:
        head = choose_head(model, path, batches[0][0, :32].tolist())
        run = functools.partial(errorentropy_scores, model, head, batches)
        seconds, runs, peak = timed(run, repeats)
        rank, logprob = errorentropy_scores(model, head, batches)
        used = "full" if head is None else "fused" if head.fused else "chunked"
        row = dict(
            path=path,
            used=used,
            note=head.note if head is not None else None,
            max_length=length,
            batch_size=batch_size,
            tokens=tokens,
            seconds=seconds,
            runs=runs,
            tokens_per_s=tokens / seconds,
            ratio=seconds / bare_s,
            mean_ce=float(-logprob.mean()),
            peak_gpu_gib=peak,
        )
        row["ce_abs_diff_vs_bare"] = abs(row["mean_ce"] - bare_ce)
        if head is not None and head.fused:
            row["rescored_fraction"] = rescored_fraction(head, batches[0])
        if path == "chunked":
            reference = (rank, logprob)
        elif reference is not None:
            row["rank_agreement_vs_chunked"] = float((rank == reference[0]).double().mean())
            row["max_logprob_diff_vs_chunked"] = float((logprob - reference[1]).abs().max())
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="a small model on the CPU (checks the script; figures are not GPU figures)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--tokens", type=int, default=65536, help="tokens per timed run at each max-length"
    )
    parser.add_argument(
        "--paths", default="chunked,fused,full", help="errorentropy head paths to time"
    )
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        parser.error(
            "no CUDA device: run on a GPU machine, or pass --tiny to check the script on the CPU"
        )
    device = "cuda" if cuda else "cpu"
    paths = [p for p in args.paths.split(",") if p]
    if not cuda:
        from errorentropy.head.fused import available

        if available("cpu") is not None:
            paths = [p for p in paths if p != "fused"]
    model = build_model(args.tiny, device)
    rows = []
    for length, batch_size in ((512, 32), (2048, 8)):
        if args.tiny:
            length, batch_size = length // 8, batch_size
        n_batches = max(1, args.tokens // (length * batch_size))
        rows += measure(model, length, batch_size, n_batches, args.repeats, paths)
        print(f"max-length {length} done", file=sys.stderr, flush=True)
    fastest_512 = max(
        (
            r["tokens_per_s"]
            for r in rows
            if r["max_length"] == (64 if args.tiny else 512)
            and r["path"] != "bare forward + cross_entropy"
        ),
        default=0.0,
    )
    result = {
        "benchmark": "e: GPU path, tokens/s against the bare bf16 forward pass with cross_entropy",
        "command": "python benchmarks/bench_gpu.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": "random-weight Qwen2.5-0.5B architecture"
        if not args.tiny
        else "tiny qwen2 (script check only)",
        "dtype": "bfloat16" if cuda else "float32",
        "machine": machine(),
        "rows": rows,
        "goals": {"ratio": f"<= {GOAL_RATIO}", "tokens_per_s_at_512": f">= {GOAL_TOKENS_PER_S}"},
        "goal_tokens_per_s_met": fastest_512 >= GOAL_TOKENS_PER_S if cuda else None,
    }
    print(f"{'path':32} {'max-len':>7} {'tokens':>8} {'seconds':>8} {'tok/s':>10} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['path']:32} {r['max_length']:>7} {r['tokens']:>8} {r['seconds']:>8.3f} "
            f"{r['tokens_per_s']:>10.0f} {r['ratio']:>6.3f}"
        )
    name = "e_gpu.json" if cuda else "e_gpu_tiny_cpu.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / name).write_text(json.dumps(result, indent=1) + "\n")
    from summary import write_summary

    write_summary(RESULTS, RESULTS.parent / "RESULTS.md")
    print(f"wrote {RESULTS / name} and RESULTS.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
