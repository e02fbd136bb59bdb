"""The objectives experiment: the demo's ladder trained under several training objectives (the
same data, seeds and steps), every final model scored with the exact decomposition in one sweep
whose families are the objectives, so the per-family fits give each objective's power laws.

Plain ``"ce"`` is the demo's own ladder (``DIR/models``, with its scoring during training); the
others live under ``DIR/objectives/<objective>/models``. The spec is ``DIR/objectives.toml``, the
sweep, fits and report ``DIR/objectives/sweep/``, the summary ``DIR/objectives/summary.json``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from errorentropy.demo.analysis import run_analysis
from errorentropy.demo.data import corpus_label, digest
from errorentropy.demo.ladder import train_ladder
from errorentropy.demo.objective import OBJECTIVES_DIR, PLAIN_CE, models_dir
from errorentropy.demo.settings import DemoRun, DemoSettings, Prepared
from errorentropy.report.objectives import objective_fits, objective_rows, write_objectives_list
from errorentropy.storage import atomic_write_text, read_checked_json, write_checked_json
from errorentropy.sweep.cells import CELLS_DIR

SPEC_NAME = "objectives.toml"
INPUTS_RECORD = "objectives-inputs.json"


def model_label(objective: str, name: str) -> str:
    """A model's label in the experiment's sweep: ``ce+conf/neox-8x1``."""
    return f"{objective}/{name}"


def experiment_spec_text(
    out: Path,
    settings: DemoSettings,
    ladders: dict[str, list[dict[str, Any]]],
    heldout: dict[str, Path],
    device: str,
) -> str:
    """The sweep spec of the experiment: each objective's final models (family = objective) on
    the held-out prose and code, paths relative to ``out``."""
    lines = [
        "# Written by `errorentropy demo --objectives`: each objective's final models on "
        "held-out prose and code.",
        "",
        "[scoring]",
        f"max_length = {settings.max_length}",
        f"batch_size = {settings.score_batch_size}",
        "profile = true",
        "",
        "[run]",
        'dtype = "float32"',
        f'device = "{device}"',
    ]
    for objective, records in ladders.items():
        root = models_dir(out, objective).relative_to(out).as_posix()
        for record in records:
            lines += [
                "",
                "[[models]]",
                f'id = "{root}/{record["name"]}"',
                f'label = "{model_label(objective, record["name"])}"',
                f'family = "{objective}"',
                f'revisions = ["step{settings.steps}"]',
            ]
    for corpus, path in heldout.items():
        rel = path.relative_to(out).as_posix()
        lines += ["", "[[datasets]]", f'data = "{rel}"', f'label = "{corpus_label(corpus)}"']
    return "\n".join(lines) + "\n"


def _fresh_cells(sweep_dir: Path, inputs: dict[str, Any], log: Any) -> None:
    """Remove the experiment's cells when any model or held-out file changed since they were
    computed (the sweep knows a cell by its label, not by the weights inside)."""
    record = sweep_dir / INPUTS_RECORD
    previous: dict[str, Any] = {}
    if record.exists():
        previous = read_checked_json(record, "objectives sweep inputs")
    cells = sweep_dir / CELLS_DIR
    if previous != inputs and cells.is_dir():
        shutil.rmtree(cells)
        log("objectives: removed the sweep's cells of other weights or held-out documents")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_checked_json(record, inputs)


def _train_all(
    run: DemoRun, prepared: Prepared, objectives: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each objective's ladder (plain CE with the demo's scoring during training)."""
    splits, tokenizer, tokenizer_key, heldout = prepared
    ladders = {}
    for objective in objectives:
        run.log(f"objective {objective}: ladder of {len(run.settings.shapes)} models")
        ladders[objective] = train_ladder(
            run.out,
            run.settings,
            tokenizer,
            tokenizer_key,
            splits,
            run.device,
            threads=run.threads,
            progress=run.progress,
            log=run.log,
            heldout=heldout if objective == PLAIN_CE else None,
            objective=objective,
        )
    return ladders


def run_objectives(
    run: DemoRun, prepared: Prepared, objectives: Sequence[str], *, analyse: bool, report: bool
) -> tuple[dict[str, Any], Path]:
    """Train every objective's ladder, sweep the final models, fit and report; the summary and
    where it is saved."""
    out, settings = run.out, run.settings
    heldout = prepared[3]
    t = time.perf_counter()
    ladders = _train_all(run, prepared, objectives)
    run.timings["train_s"] = time.perf_counter() - t
    spec_path = out / SPEC_NAME
    atomic_write_text(spec_path, experiment_spec_text(out, settings, ladders, heldout, run.device))
    keys = ("name", "non_embedding_params", "final_train_loss", "train_seconds", "objective")
    summary: dict[str, Any] = {
        "out": str(out),
        "device": run.device,
        "objectives": list(objectives),
        "models": [
            {**{k: r.get(k) for k in keys}, "final_terms": r.get("final_terms")}
            for records in ladders.values()
            for r in records
        ],
        "spec": str(spec_path),
    }
    if analyse:
        sweep_dir = out / OBJECTIVES_DIR / "sweep"
        inputs = {
            "models": {o: [r["key"] for r in rs] for o, rs in ladders.items()},
            "data": {c: digest(p.read_text(encoding="utf-8")) for c, p in heldout.items()},
        }
        _fresh_cells(sweep_dir, inputs, run.log)
        write_objectives_list(sweep_dir, objectives)
        t = time.perf_counter()
        summary["analysis"] = run_analysis(
            out,
            spec_path,
            settings,
            progress=run.progress,
            log=run.log,
            report=report,
            sweep_dir=sweep_dir,
        )
        run.timings["analysis_s"] = time.perf_counter() - t
        summary["table"] = objective_rows(sweep_dir, objectives)
        if report:
            summary["fits"] = objective_fits(sweep_dir, objectives)
        run.log("final models, held-out nats per token:\n" + format_table(summary["table"]))
    return summary, out / OBJECTIVES_DIR / "summary.json"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The side-by-side table as aligned text lines."""
    lines = [
        f"{'dataset':<8} {'objective':<14} {'model':<12} {'N':>9} {'CE':>7} {'EE':>7} "
        f"{'SA':>7} {'Conf':>7} {'top-1':>6}"
    ]
    for r in rows:
        lines.append(
            f"{r['dataset']:<8} {r['objective']:<14} {r['model'].split('/')[-1]:<12} "
            f"{r['non_embedding_params']:>9,} {r['CE']:>7.4f} {r['EE']:>7.4f} {r['SA']:>7.4f} "
            f"{r['Conf']:>7.4f} {r['top1']:>6.3f}"
        )
    return "\n".join(lines)
