"""Scoring during training: each model scores the held-out prose at log-spaced steps into cells
under ``DIR/dense/``, and the steps between checkpoints are shared with the sweep."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from errorentropy.data.corpus import fingerprint
from errorentropy.demo.data import corpus_label
from errorentropy.demo.settings import DENSE_CORPUS, DENSE_DIR, DemoSettings
from errorentropy.options import ScoreOptions
from errorentropy.sweep.cells import CELL_FILE, CELLS_DIR, CellKey, slug

if TYPE_CHECKING:  # the ladder imports this module
    from errorentropy.demo.ladder import TrainJob


@dataclass(frozen=True)
class DenseScoring:
    """What a model scores during training: ``documents`` (the sweep's held-out file ``data``,
    dataset ``dataset``) at ``steps``, with the sweep's ``options``, each a cell under ``out``."""

    out: Path
    documents: tuple[str, ...]
    dataset: str
    data: str
    steps: tuple[int, ...]
    options: ScoreOptions


def dense_scoring(out: Path, settings: DemoSettings, heldout: dict[str, Path]) -> DenseScoring:
    """The dense scoring of ``settings``: the held-out prose file's documents, as the sweep reads
    them."""
    path = heldout[DENSE_CORPUS]
    lines = path.read_text(encoding="utf-8").splitlines()
    return DenseScoring(
        out / DENSE_DIR,
        tuple(json.loads(line)["text"] for line in lines if line.strip()),
        corpus_label(DENSE_CORPUS),
        path.relative_to(out).as_posix(),
        tuple(settings.dense_steps),
        settings.score_options(),
    )


def dense_cell(dense: DenseScoring, name: str, step: int) -> Path:
    """The folder of model ``name``'s dense cell at ``step`` (under ``dense.out``)."""
    return dense.out / CELLS_DIR / CellKey(name, f"step{step}", dense.dataset).cell_id


def dense_done(dense: DenseScoring, name: str) -> bool:
    """True when every dense cell of model ``name`` is there, scored from these documents with
    these options (a changed ``--max-length`` or held-out file redoes them)."""
    if not all((dense_cell(dense, name, s) / CELL_FILE).exists() for s in dense.steps):
        return False
    wanted = {"data_fingerprint": fingerprint(dense.documents), **dense.options.settings()}
    for step in dense.steps:
        try:
            summary = json.loads((dense_cell(dense, name, step) / "summary.json").read_text())
        except (OSError, ValueError):
            return False
        if any(summary.get(k) != v for k, v in wanted.items()):
            return False
    return True


def dense_scorer(job: TrainJob, timings: dict[str, float]) -> Any:
    """``on_eval`` for :func:`train_model`: score the dense documents and save the cell (its
    seconds added to ``timings["dense_score_seconds"]``)."""
    from transformers import AutoTokenizer

    from errorentropy.integrations.common import score_texts, write_step_cell

    dense = job.dense
    assert dense is not None
    tokenizer = AutoTokenizer.from_pretrained(str(job.tokenizer_dir))
    for old in (dense.out / CELLS_DIR).glob(f"{slug(job.shape.name)}__*"):
        shutil.rmtree(old)

    def score(step: int, model: Any) -> None:
        started = time.perf_counter()
        result = score_texts(model, tokenizer, dense.documents, dense.options)
        write_step_cell(
            dense.out,
            result,
            model,
            label=job.shape.name,
            step=step,
            dataset=dense.dataset,
            documents=dense.documents,
            options=dense.options,
            family="demo-neox",
            data=dense.data,
        )
        timings["dense_score_seconds"] += time.perf_counter() - started

    return score


def share_dense_cells(
    out: Path,
    settings: DemoSettings,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
) -> int:
    """Copy each model's dense cells at steps between checkpoints into the sweep folder, where
    the report draws them with the sweep's cells (the checkpoint steps are the sweep's own cells;
    their dense twins stay under ``DIR/dense/`` to check against). Returns how many were copied."""
    if not settings.dense_points:
        return 0
    dense = dense_scoring(out, settings, heldout)
    copied = 0
    for record in records:
        for step in dense.steps:
            source = dense_cell(dense, record["name"], step)
            target = out / "sweep" / CELLS_DIR / source.name
            if step in settings.checkpoints or target.exists():
                continue
            if not (source / CELL_FILE).exists():
                continue
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            tmp.rename(target)
            copied += 1
    return copied
