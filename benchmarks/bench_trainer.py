"""(h) ``trainer.evaluate()`` on a 50,257-entry vocabulary: memory and time of three ways.

    python benchmarks/bench_trainer.py                 # about 30 minutes on 2 shared CPU cores
    python benchmarks/bench_trainer.py --parts time    # only the timing (others kept)
    python benchmarks/bench_trainer.py --quick         # one round; (a) at 8 rows only

(a) ``compute_metrics`` computing CE from the logits the Trainer accumulated (the usual way:
    the Trainer concatenates every batch's ``[8, 512, 50257]`` float32 logits, 785 MiB a batch);
(b) ``decomposition_metrics()`` (the logits become ``[8, 512, 2]`` float64 pairs per batch);
(c) no ``compute_metrics`` (the Trainer's plain evaluation loss).

Memory: each configuration runs in its own process so that peaks do not mix; the process RSS is
sampled every 2 ms during ``evaluate()`` (peak minus the RSS just before it), and the process's
``ru_maxrss`` is given too. (a) runs under a guard that stops its process when its RSS passes a
cap (default 12 GiB, less when the machine has less free) so that it cannot take the machine from
others; where it is stopped, the table says after how many of its batches.

Time: (c) and (b) alternate in one process (after a warm-up evaluation of each), so both meet the
same load; the minimum of each over the rounds is kept, of wall time and of the process's CPU
time (one intra-op thread: the work done, whatever else shares the 2 cores), and the ratio
(b)/(c) is given on the tiny body and on gpt2-small's body.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import WORK, load_tokenizer, log, machine, write_result  # noqa: E402

VOCAB = 50257
SEQ = 512
ROWS = 64
SMALL_ROWS = 8  # one batch: gpt2-small's body is ~40x the tiny one's work per token
BATCH = 8
MIB = 2**20
GOAL_EXTRA_MIB = 100
GOAL_TIME_RATIO = 1.15
BODIES = {
    "tiny": dict(hidden=64, layers=2, heads=4),
    "small": dict(hidden=768, layers=12, heads=12),
}
MODES = {
    "ce_from_logits": "(a) compute_metrics: CE from the accumulated logits",
    "decomposition": "(b) decomposition_metrics()",
    "none": "(c) no compute_metrics (plain eval loss)",
}


# ---- the child: one configuration, one process ----------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """The peak RSS between start() and stop(); stops the process above ``cap`` bytes, first
    writing what it knows to ``report`` (one JSON line on stdout)."""

    def __init__(self, cap: int, report: dict[str, Any]) -> None:
        self.cap, self.report, self.peak = cap, report, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _rss()
            self.peak = max(self.peak, rss)
            if rss > self.cap:
                self.report.update(stopped_at_rss_mib=round(rss / MIB), stopped=True)
                print(json.dumps(self.report), flush=True)
                os._exit(3)
            time.sleep(0.002)

    def start(self) -> None:
        self.peak = _rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        return max(self.peak, _rss())


def _rows(n_rows: int) -> list[dict[str, list[int]]]:
    """``n_rows`` rows of SEQ token ids cut from local prose (labels: the ids)."""
    from errorentropy.data.corpus import builtin_documents

    tokenizer = load_tokenizer()
    stream: list[int] = []
    docs = builtin_documents("builtin:prose")
    i = 0
    while len(stream) < n_rows * SEQ:
        stream += tokenizer(docs[i % len(docs)])["input_ids"]
        i += 1
    cut = [stream[r * SEQ : (r + 1) * SEQ] for r in range(n_rows)]
    return [{"input_ids": ids, "labels": ids} for ids in cut]


def _ce_from_logits(eval_pred: Any) -> dict[str, float]:
    """The usual compute_metrics: CE of the accumulated logits against the shifted labels."""
    import torch

    logits = torch.from_numpy(eval_pred.predictions)
    labels = torch.from_numpy(eval_pred.label_ids)
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
    )
    return {"cross_entropy": float(loss)}


def _trainer(model: Any, mode: str, n_rows: int, callbacks: list[Any]) -> Any:
    """A Trainer evaluating ``n_rows`` rows with configuration ``mode`` of MODES."""
    from transformers import Trainer, TrainingArguments, default_data_collator

    from errorentropy.integrations.transformers import decomposition_metrics

    preprocess, compute = {
        "ce_from_logits": (None, _ce_from_logits),
        "decomposition": decomposition_metrics(),
        "none": (None, None),
    }[mode]
    args = TrainingArguments(
        output_dir=str(WORK / "trainer-bench"),
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        per_device_eval_batch_size=BATCH,
    )
    return Trainer(
        model=model,
        args=args,
        eval_dataset=_rows(n_rows),
        data_collator=default_data_collator,
        preprocess_logits_for_metrics=preprocess,
        compute_metrics=compute,
        callbacks=callbacks,
    )


def child(mode: str, n_rows: int, evaluations: int, cap: int, model_path: str) -> None:
    """Memory: ``evaluations`` evaluations of one configuration, RSS sampled throughout."""
    import torch
    from transformers import AutoModelForCausalLM, TrainerCallback

    class Batches(TrainerCallback):
        def on_prediction_step(self, args, state, control, **kwargs):
            report["batches_done"] = report.get("batches_done", 0) + 1

    report: dict[str, Any] = {"mode": mode, "rows": n_rows, "tokens": n_rows * SEQ}
    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    trainer = _trainer(model, mode, n_rows, [Batches()])
    report["threads"] = torch.get_num_threads()
    sampler = Sampler(cap, report)
    runs = []
    for _ in range(evaluations):
        report["batches_done"] = 0
        gc.collect()
        before = _rss()
        sampler.start()
        started = time.perf_counter()
        metrics = trainer.evaluate()
        seconds = time.perf_counter() - started
        peak = sampler.stop()
        runs.append(
            {
                "seconds": round(seconds, 3),
                "rss_before_mib": round(before / MIB, 1),
                "peak_rss_mib": round(peak / MIB, 1),
                "peak_over_before_mib": round((peak - before) / MIB, 1),
            }
        )
    report["evaluations"] = runs
    report["ru_maxrss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    keep = ("eval_loss", "eval_cross_entropy", "eval_error_entropy", "eval_n_tokens")
    report["metrics"] = {k: metrics[k] for k in keep if k in metrics}
    print(json.dumps(report), flush=True)


def timing_child(n_rows: int, rounds: int, model_path: str) -> None:
    """Time: (c) and (b) on one model in one process, alternating, so both meet the same load;
    wall time and this process's CPU time (1 intra-op thread: the work, whatever the sharing)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    trainers = {mode: _trainer(model, mode, n_rows, []) for mode in ("none", "decomposition")}
    for trainer in trainers.values():  # warm-up: model preparation, first-call costs
        trainer.evaluate()
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in trainers}
    for _ in range(rounds):
        for mode, trainer in trainers.items():
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            trainer.evaluate()
            runs[mode].append(
                {
                    "wall": round(time.perf_counter() - wall, 3),
                    "cpu": round(time.process_time() - cpu, 3),
                }
            )
    print(json.dumps({"rows": n_rows, "rounds": rounds, "runs": runs}), flush=True)


# ---- the driver ------------------------------------------------------------------------------


def model_dir(body: str = "tiny") -> Path:
    """A gpt2 configuration with gpt2's 50,257-entry vocabulary and random weights: the ``tiny``
    body (hidden 64, 2 layers) or gpt2-small's ``small`` one (hidden 768, 12 layers)."""
    path = WORK / "models" / f"gpt2-{body}-50257"
    if not (path / "config.json").exists():
        from errorentropy.testing import save_model, tiny_model

        model = tiny_model("gpt2", VOCAB, **BODIES[body], context=SEQ)
        save_model(model, load_tokenizer(), path)
    return path


def run_child(
    mode: str, rows: int, evaluations: int, cap: int, threads: int, body: str = "tiny"
) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", mode, str(rows), str(evaluations), str(cap), body]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"{mode} {rows} failed ({done.returncode}): {done.stderr[-2000:]}")
    row = json.loads(lines[-1])
    what = (
        f"stopped at {row['stopped_at_rss_mib']} MiB after {row.get('batches_done')} batches"
        if row.get("stopped")
        else f"peak +{row['evaluations'][0]['peak_over_before_mib']:.0f} MiB, "
        f"{min(e['seconds'] for e in row['evaluations']):.2f} s"
    )
    log(f"(h) {body} {mode} x{rows}: {what}")
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat; (a) at 8 rows only")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--rounds", type=int, default=4, help="timed evaluations per mode")
    parser.add_argument("--cap-gib", type=float, default=12.0, help="RSS guard for (a)")
    parser.add_argument(
        "--parts",
        default="memory,logits,time,body",
        help="memory: (b) and (c) peaks; logits: (a)'s peaks; time: (b)/(c) on the tiny body; "
        "body: (b)/(c) on gpt2-small's body (others are kept from results/trainer.json)",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, rows, evaluations, cap, body = args.child
        if mode == "pair":
            timing_child(int(rows), int(evaluations), str(model_dir(body)))
        else:
            child(mode, int(rows), int(evaluations), int(cap), str(model_dir(body)))
        return 0
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    old_path = Path(__file__).resolve().parent / "results" / "trainer.json"
    old = json.loads(old_path.read_text()) if old_path.exists() and parts != PARTS else {}
    before = machine()
    memory = {
        k: v
        for k, v in old.get("memory", {}).items()
        if ("memory" if k.startswith(("none", "decomposition")) else "logits") not in parts
    }
    cap = old.get("guard_cap_mib", 0) * MIB
    if "memory" in parts:
        memory |= measure_memory_bc(args)
    if "logits" in parts:
        found, cap = measure_memory_a(args)
        memory |= found
    rounds = 1 if args.quick else args.rounds
    timing = old.get("time", {})
    if "time" in parts:
        timing = {"tiny": measure_time("tiny", ROWS, rounds, args.threads)}
    if "body" in parts:
        timing = {**timing, "small": measure_time("small", SMALL_ROWS, rounds, args.threads)}
    elif "small" in old.get("time", {}):
        timing["small"] = old["time"]["small"]
    result = summarise(memory, timing, cap, args, before)
    write_result("trainer", result)
    print(section(result))
    return 0


PARTS = {"memory", "logits", "time", "body"}


def measure_memory_bc(args: Any) -> dict[str, Any]:
    """Peak memory of (c) and (b) at ROWS and twice that."""
    model_dir()
    memory = {}
    for rows in (ROWS, 2 * ROWS):
        for mode in ("none", "decomposition"):
            memory[f"{mode}@{rows}"] = run_child(mode, rows, 1, 1 << 62, args.threads)
    return memory


def measure_memory_a(args: Any) -> tuple[dict[str, Any], int]:
    """Peak memory of (a) on growing sets until the guard stops it; and the guard's cap."""
    model_dir()
    free_cap = int(_mem_available() - 3 * 2**30)  # leave others 3 GiB whatever happens
    cap = max(2**30, min(int(args.cap_gib * 2**30), free_cap))
    memory = {}
    for rows in [8] if args.quick else [8, 16, 32, ROWS, 2 * ROWS]:
        memory[f"ce_from_logits@{rows}"] = row = run_child(
            "ce_from_logits", rows, 1, cap, args.threads
        )
        if row.get("stopped"):
            break  # a larger set only stops earlier
    return memory, cap


def measure_time(body: str, rows: int, rounds: int, threads: int) -> dict[str, Any]:
    """evaluate() wall and CPU seconds of (c) and (b), alternating in one process."""
    model_dir(body)
    cmd = [sys.executable, __file__, "--child", "pair", str(rows), str(rounds), "0", body]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"timing {body} failed ({done.returncode}): {done.stderr[-2000:]}")
    runs = json.loads(lines[-1])["runs"]
    ratio = {
        k: min(r[k] for r in runs["decomposition"]) / min(r[k] for r in runs["none"])
        for k in ("wall", "cpu")
    }
    log(f"(h) {body} time ratio (b)/(c): wall {ratio['wall']:.3f}, cpu {ratio['cpu']:.3f}")
    return {"rows": rows, "runs": runs, "ratio_min": {k: round(v, 3) for k, v in ratio.items()}}


def summarise(
    memory: dict[str, Any],
    timing: dict[str, Any],
    cap: int,
    args: Any,
    before: Any,
) -> dict[str, Any]:
    """The figures and the goals, as results/trainer.json holds them."""

    def extra(mode: str, rows: int) -> float | None:
        row = memory.get(f"{mode}@{rows}")
        if row is None or row.get("stopped"):
            return None
        return row["evaluations"][0]["peak_over_before_mib"]

    b_over_c = {rows: extra("decomposition", rows) - extra("none", rows) for rows in (64, 128)}
    ratio = timing["tiny"]["ratio_min"]
    logits_gib = {r: r * SEQ * VOCAB * 4 / 2**30 for r in (ROWS, 2 * ROWS)}
    return {
        "benchmark": "h_trainer",
        "command": "python benchmarks/bench_trainer.py"
        + (" --quick" if args.quick else "")
        + (f" --parts {args.parts}" if set(args.parts.split(",")) != PARTS else ""),
        "model": f"gpt2 config, vocab {VOCAB}, hidden 64, 2 layers, random weights",
        "eval_set": f"{ROWS} (and {2 * ROWS}) rows x {SEQ} tokens, eval batch {BATCH}",
        "threads": args.threads,
        "accumulated_logits_gib": {str(k): round(v, 2) for k, v in logits_gib.items()},
        "guard_cap_mib": round(cap / MIB),
        "memory": memory,
        "time_note": "evaluate() seconds, (c) and (b) alternating in one process after a "
        "warm-up evaluation of each; wall and process CPU time; ratio of the minima",
        "time": timing,
        "bodies": {
            "tiny": f"hidden 64, 2 layers, {ROWS} rows x {SEQ}",
            "small": f"gpt2-small's body: hidden 768, 12 layers, {SMALL_ROWS} rows x {SEQ}",
        },
        "b_minus_c_peak_mib": {str(k): round(v, 1) for k, v in b_over_c.items()},
        "goals": {
            "b_extra_under_mib": GOAL_EXTRA_MIB,
            "memory_met": all(v < GOAL_EXTRA_MIB for v in b_over_c.values()),
            "time_ratio_at_most": GOAL_TIME_RATIO,
            "time_met_wall": ratio["wall"] <= GOAL_TIME_RATIO,
            "time_met_cpu": ratio["cpu"] <= GOAL_TIME_RATIO,
        },
        "machine_before": before,
        "machine_after": machine(),
    }


def section(body: dict[str, Any]) -> str:
    """RESULTS.md's section (h), from results/trainer.json (summary.py renders it)."""
    lines = [
        "## (h) Hugging Face Trainer evaluation (goals: (b) adds < 100 MiB over (c) and stays "
        "flat when the set doubles; (b) <= 1.15x (c)'s time)",
        "",
        f"`trainer.evaluate()` (transformers {body['machine_before'].get('transformers')}, CPU, "
        f"{body['threads']} intra-op thread(s)) on a {body['model']}, {body['eval_set']}: "
        f"{MODES['ce_from_logits']} (the usual way); {MODES['decomposition']}; "
        f"{MODES['none']}. Memory: each configuration in its own process, RSS sampled every "
        "2 ms during `evaluate()`, peak minus the RSS just before it; (a) ran under a guard "
        f"that stops its process above {body['guard_cap_mib']} MiB, so that it could not take "
        f"the shared machine from others. Command: `{body['command']}` (parts not named there "
        "are kept from an earlier run: `--parts logits`, `memory`, `time`, `body`).",
        "",
        *_memory_table(body),
        "",
        f"Time: {body['time_note']}.",
        "",
        "| body | (b) wall / CPU s | (c) wall / CPU s | ratio (b)/(c) | goal <= 1.15 |",
        "|---|---|---|---|---|",
    ]
    for name, what in body["bodies"].items():
        t = body["time"].get(name)
        if t:
            runs, ratio = t["runs"], t["ratio_min"]
            b, c = (
                {k: min(r[k] for r in runs[m]) for k in ("wall", "cpu")}
                for m in ("decomposition", "none")
            )
            met = "met" if ratio["wall"] <= GOAL_TIME_RATIO else "met on CPU time"
            met = met if ratio["cpu"] <= GOAL_TIME_RATIO else "**not met**"
            lines.append(
                f"| {what} | {b['wall']:.2f} / {b['cpu']:.2f} | {c['wall']:.2f} / "
                f"{c['cpu']:.2f} | {ratio['wall']:.2f} wall, {ratio['cpu']:.2f} CPU | {met} |"
            )
    loads = (body["machine_before"]["loadavg_1_5_15"], body["machine_after"]["loadavg_1_5_15"])
    lines += [
        "",
        f"Load average before and after the last command: {loads[0]}, {loads[1]} on "
        f"{body['machine_before'].get('logical_cpus')} cores. Where it is above the core count "
        "other jobs shared the cores: wall times then vary between repeats, and the process's "
        "CPU time (one thread) is the measure the sharing distorts least.",
        "",
        *_verdicts(body),
        "",
    ]
    return "\n".join(lines)


def _memory_table(body: dict[str, Any]) -> list[str]:
    lines = [
        "| configuration | rows x 512 | peak RSS during evaluate() over before, MiB | "
        "process ru_maxrss MiB | evaluate() wall s (this one run) |",
        "|---|---|---|---|---|",
    ]

    def order(key: str) -> tuple[bool, int, bool]:
        mode, rows = key.split("@")
        return mode == "ce_from_logits", int(rows), mode != "none"

    for key in sorted(body["memory"], key=order):
        row = body["memory"][key]
        mode, rows = key.split("@")
        if row.get("stopped"):
            lines.append(
                f"| {MODES[mode]} | {rows} | stopped by the guard at "
                f"{row['stopped_at_rss_mib']} MiB RSS after {row.get('batches_done')} of "
                f"{int(rows) // BATCH} batches | - | - |"
            )
            continue
        e = row["evaluations"]
        lines.append(
            f"| {MODES[mode]} | {rows} | {e[0]['peak_over_before_mib']:.0f} | "
            f"{row['ru_maxrss_mib']:.0f} | {min(x['seconds'] for x in e):.2f} |"
        )
    return lines


def _verdicts(body: dict[str, Any]) -> list[str]:
    """The goals, met or not, and why, every number from ``body``."""
    extra = body["b_minus_c_peak_mib"]
    memory = body["memory"]
    c64 = memory[f"none@{ROWS}"]["evaluations"][0]["peak_over_before_mib"]
    measured = {
        int(k.split("@")[1]): v["evaluations"][0]["peak_over_before_mib"]
        for k, v in memory.items()
        if k.startswith("ce_from_logits") and not v.get("stopped")
    }
    largest = max(measured)
    per_row = measured[largest] / largest
    row_mib = SEQ * VOCAB * 4 / MIB
    stopped = [v for k, v in memory.items() if k.startswith("ce_from_logits") and v.get("stopped")]
    out = [
        f"- Memory, {'**met**' if body['goals']['memory_met'] else '**not met**'}: (b)'s peak "
        f"is {extra[str(ROWS)]:+.0f} MiB from (c)'s at {ROWS} x {SEQ} and "
        f"{extra[str(2 * ROWS)]:+.0f} MiB at {2 * ROWS} x {SEQ}, flat as the set doubles: "
        "what (b) keeps is 16 bytes per token plus the labels. The "
        f"{c64 / 1024:.1f} GiB that (b) and (c) share is one batch's float32 logits "
        f"({BATCH * row_mib:.0f} MiB) and the loss's log-softmax of the same size, which the "
        "Trainer's forward makes for every batch whatever the metrics.",
        f"- (a) grows by about {per_row:.0f} MiB per {SEQ}-token row ({per_row / row_mib:.1f} "
        f"times the row's {row_mib:.0f} MiB of logits: the Trainer's concatenation holds the "
        "old and the new copy, then the metric's reshape and log-softmax copy them again): "
        f"about {per_row * ROWS / 1024:.0f} GiB at {ROWS} x {SEQ} and "
        f"{per_row * 2 * ROWS / 1024:.0f} GiB at {2 * ROWS} x {SEQ}"
        + (
            f"; the guard stopped {stopped[0]['rows']} x {SEQ} after "
            f"{stopped[0].get('batches_done')} of its {stopped[0]['rows'] // BATCH} batches, "
            "and larger sets were not run."
            if stopped
            else "."
        ),
    ]
    tiny, small = body["time"].get("tiny"), body["time"].get("small")
    if tiny:
        batches = tiny["rows"] // BATCH
        c_cpu = min(r["cpu"] for r in tiny["runs"]["none"]) / batches
        b_cpu = min(r["cpu"] for r in tiny["runs"]["decomposition"]) / batches
        met = tiny["ratio_min"]["cpu"] <= GOAL_TIME_RATIO
        out.append(
            f"- Time on the tiny body, {'**met**' if met else '**not met**'} "
            f"({tiny['ratio_min']['cpu']:.2f}x CPU): its evaluation is almost all vocabulary "
            "work (the head product and the loss's log-softmax over "
            f"{BATCH * SEQ * VOCAB / 1e6:.0f} M logits a batch, {c_cpu:.2f} s of CPU a batch), "
            "and token_stats reads the same "
            f"logits again for the ranks and the log-sum-exp ({b_cpu - c_cpu:.2f} s a batch, "
            f"section (g): about cross_entropy's own time). {GOAL_TIME_RATIO}x would need it "
            f"under {(GOAL_TIME_RATIO - 1) * c_cpu:.2f} s a batch. "
            + (
                f"With a real body the same work is a small share: "
                f"{small['ratio_min']['cpu']:.2f}x CPU ({small['ratio_min']['wall']:.2f}x wall) "
                "with gpt2-small's body."
                if small
                else ""
            )
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
