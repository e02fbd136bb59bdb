"""``errorentropy demo``: a miniature of the paper, end to end, offline, on real trained models.

1. Corpora ``builtin:prose`` and ``builtin:code``, each split by a seeded permutation into
   held-out documents (the first 10%) and training documents (the rest).
2. A byte-level BPE tokenizer trained on the training split, saved in Hugging Face format.
3. A ladder of GPT-NeoX (Pythia-like) models trained from scratch on the same token blocks in the
   same order, checkpointed at step 0 and log-spaced steps; each saved as a standard model folder
   ``DIR/models/NAME/`` (final weights + tokenizer) with ``checkpoints/stepK/`` revisions.
4. Exactly what a user runs next: a sweep spec ``DIR/sweep.toml`` over every model and checkpoint
   on held-out prose and code, the sweep into ``DIR/sweep/``, the fits and the report.

Everything is cached: a model whose settings hash matches is not retrained, the sweep skips
finished cells. The same seed gives the same numbers on the same machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from errorentropy.demo.analysis import run_analysis
from errorentropy.demo.data import build_tokenizer, checked_splits, write_heldout
from errorentropy.demo.dense import share_dense_cells
from errorentropy.demo.experiment import run_objectives
from errorentropy.demo.headline import format_headline, headline
from errorentropy.demo.ladder import train_ladder
from errorentropy.demo.objective import PLAIN_CE
from errorentropy.demo.settings import DemoRun, DemoSettings, Prepared
from errorentropy.demo.spec import invalidate_stale_cells, write_spec
from errorentropy.errors import UserError
from errorentropy.storage import (
    write_checked_json,
)


def resolve_training_device(device: str) -> str:
    """``auto``: CUDA when available, else CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu or auto"
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
    return device


def set_threads() -> int:
    """Use every core this process may run on (the container's share, not the host's)."""
    import torch

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def run_demo(
    out: Path | str,
    settings: DemoSettings,
    *,
    device: str = "auto",
    progress: bool = True,
    analyse: bool = True,
    report: bool = True,
    log: Any = None,
    objectives: Sequence[str] = (PLAIN_CE,),
) -> dict[str, Any]:
    """Build (or reuse) the whole miniature in ``out`` and return a summary of what was done
    (``analyse=False``: stop after training and the spec; ``report=False``: stop after the
    sweep). ``objectives`` other than plain ``("ce",)``: one ladder per training objective,
    compared in one sweep (:func:`errorentropy.demo.experiment.run_objectives`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda msg: print(f"[demo] {msg}", flush=True))
    dev = resolve_training_device(device)
    run = DemoRun(out, settings, dev, set_threads(), progress, say, {})
    started = time.perf_counter()
    cpu_started = time.process_time()
    prepared = _prepare_data(out, settings, say, run.timings)
    if tuple(objectives) == (PLAIN_CE,):
        summary, path = _plain_demo(run, prepared, analyse=analyse, report=report)
    else:
        summary, path = run_objectives(run, prepared, objectives, analyse=analyse, report=report)
    timings = run.timings
    timings["total_s"] = time.perf_counter() - started
    # All threads: wall time on a shared machine overstates.
    timings["cpu_s"] = time.process_time() - cpu_started
    summary["timings"] = {k: round(v, 2) for k, v in timings.items()}
    write_checked_json(path, summary)
    report_html = summary.get("analysis", {}).get("report_html", summary["spec"])
    say(f"done in {timings['total_s']:.1f} s; open {report_html}")
    return summary


def _plain_demo(
    run: DemoRun, prepared: Prepared, *, analyse: bool, report: bool
) -> tuple[dict[str, Any], Path]:
    """The demo's own ladder (plain CE): train, spec, sweep, fits, report; the summary and
    where it is saved."""
    out, settings, say = run.out, run.settings, run.log
    splits, tokenizer, tokenizer_key, heldout = prepared
    t = time.perf_counter()
    say(_ladder_line(settings, run.device, run.threads))
    records = train_ladder(
        out,
        settings,
        tokenizer,
        tokenizer_key,
        splits,
        run.device,
        threads=run.threads,
        progress=run.progress,
        log=say,
        heldout=heldout,
    )
    run.timings["train_s"] = time.perf_counter() - t
    spec_path = write_spec(out, settings, records, heldout, run.device)
    summary = _summary(out, run.device, run.threads, records, spec_path)
    if analyse:
        invalidate_stale_cells(out, records, heldout, settings, say)
        share_dense_cells(out, settings, records, heldout)
        t = time.perf_counter()
        summary["analysis"] = run_analysis(
            out, spec_path, settings, progress=run.progress, log=say, report=report
        )
        run.timings["analysis_s"] = time.perf_counter() - t
        summary["final"] = headline(out / "sweep", settings.steps)
        say("final checkpoints, held-out nats per token:\n" + format_headline(summary["final"]))
    return summary, out / "demo-summary.json"


def _ladder_line(settings: DemoSettings, device: str, threads: int) -> str:
    """What is about to be trained, in one line."""
    return (
        f"ladder: {len(settings.shapes)} GPT-NeoX models on {device} ({threads} threads), "
        f"{settings.steps} steps x {settings.batch_size} x {settings.block} tokens = "
        f"{settings.train_tokens:,} tokens, checkpoints at steps {settings.checkpoints}"
    )


def _prepare_data(
    out: Path, settings: DemoSettings, say: Any, timings: dict[str, float]
) -> Prepared:
    """The corpora split, the tokenizer and its key, and the held-out files (timed in
    ``timings``)."""
    t = time.perf_counter()
    splits = checked_splits(settings)
    timings["data_s"] = time.perf_counter() - t
    counts = ", ".join(
        f"{c}: {len(s.train)} train / {len(s.heldout)} held out" for c, s in splits.items()
    )
    say(f"data: {counts}; scoring {settings.eval_docs} documents each")

    t = time.perf_counter()
    tokenizer, tokenizer_key = build_tokenizer(out, splits, settings, say)
    heldout = write_heldout(out, splits, settings, tokenizer)
    timings["tokenizer_s"] = time.perf_counter() - t
    return splits, tokenizer, tokenizer_key, heldout


def _summary(
    out: Path, device: str, threads: int, records: Sequence[dict[str, Any]], spec_path: Path
) -> dict[str, Any]:
    """The start of demo-summary.json: where, on what, which models, which spec."""
    keys = ("name", "non_embedding_params", "total_params", "final_train_loss", "train_seconds")
    # dense_score_seconds: of train_seconds, the held-out scoring during training (None: a
    # model trained before the demo scored during training, with dense_points=0).
    return {
        "out": str(out),
        "device": device,
        "threads": threads,
        "models": [
            {**{k: r[k] for k in keys}, "dense_score_seconds": r.get("dense_score_seconds")}
            for r in records
        ],
        "spec": str(spec_path),
    }
