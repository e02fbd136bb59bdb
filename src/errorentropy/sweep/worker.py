"""One worker's cells: claimed one at a time, scored with a model kept loaded across them, committed
(:mod:`errorentropy.sweep.commit`) and released."""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from errorentropy.data.corpus import Corpus
from errorentropy.errors import UserError
from errorentropy.models.provenance import model_provenance
from errorentropy.scoring.results import require_tokens, summarize, summary_settings, write_result
from errorentropy.storage import atomic_write_text
from errorentropy.sweep.cells import (
    CELL_FILE,
    CELLS_DIR,
    read_cell,
    write_cell_record,
    write_failure,
)
from errorentropy.sweep.claiming import _WAIT, _Claimer, _Plan
from errorentropy.sweep.claims import WORKER_ENV, Claim, ClaimBoard
from errorentropy.sweep.commit import commit_cell
from errorentropy.sweep.inputs import _Inputs, _Loaded, _one_line, _release_memory, load_group
from errorentropy.sweep.plan import (
    TIMING_FILE,
    Cell,
    plan_cells,
)
from errorentropy.sweep.spec import (
    SweepSpec,
)

if TYPE_CHECKING:
    from errorentropy.options import ScoreOptions
    from errorentropy.scoring.results import ScoredCorpus


_ERROR = "\x00error:"  # rank 0 to the other processes: stop with this error


def _broadcast(value: str | None) -> str | None:
    """Rank 0's ``value`` on every process of a torchrun launch (``value`` itself outside
    one)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    box: list[Any] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _same_cell(summary: dict[str, Any], directory: Path) -> bool:
    """Whether ``directory`` holds a verified cell computed like ``summary``'s (same key, settings,
    documents and weights): another worker's commit of this very cell."""
    record = read_cell(directory)
    if record is None:
        return False
    keys = ("model", "revision", "dataset", "spec_digest", "data_fingerprint")
    return all(record.summary.get(k) == summary.get(k) for k in (*keys, "weights_fingerprint"))


class _Runner:
    """One worker's cells: claimed one at a time, scored with a model kept loaded across them.

    Under torchrun every process of the launch runs one ``_Runner``: rank 0 (``writes``) plans,
    claims and commits, and tells the others which cell comes next; all of them load the model
    and score a shard of each cell's documents.
    """

    def __init__(
        self,
        spec: SweepSpec,
        out_dir: Path,
        progress: bool,
        writes: bool = True,
        board: ClaimBoard | None = None,
    ) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.cells_root = out_dir / CELLS_DIR
        self.progress = progress and writes
        # False on the non-zero ranks of a torchrun launch: they score, rank 0 writes.
        self.writes = writes
        self.board = board
        self.options = spec.score_options()
        self.cells = {c.cell_id: c for c in plan_cells(spec)}
        self.inputs = _Inputs(out_dir, reads_weights=writes)
        # Rank 0 claims (``board``); the other ranks of a launch follow it.
        self.claimer = _Claimer(spec, out_dir, board, self.inputs, self.log) if board else None
        self.loaded: _Loaded | None = None
        self.computed = 0
        self.failed = 0

    def log(self, text: str) -> None:
        if self.progress:
            label = os.environ.get(WORKER_ENV)
            print(f"[{label}] {text}" if label else text, file=sys.stderr, flush=True)

    def work(self, retry_failed: bool) -> None:
        """Compute cells until none is left to anyone: claim, score, commit, release; wait while
        other workers hold the last ones, and take over those whose holder died."""
        plan = self.claimer.make_plan(retry_failed) if self.claimer is not None else None
        try:
            while True:
                error: Exception | None = None
                try:
                    step = self.next_step(plan)
                except Exception as exc:  # noqa: BLE001 - told to the other processes, then raised
                    step, error = _ERROR + _one_line(exc), exc
                step = _broadcast(step)
                if error is not None:
                    raise error
                if step is None:
                    break
                if step.startswith(_ERROR):
                    raise UserError(f"process 0: {step[len(_ERROR) :]}")
                if step != _WAIT:
                    self.compute(self.cells[step], plan.claims.pop(step) if plan else None)
        finally:
            self.unload()

    def next_step(self, plan: _Plan | None) -> str | None:
        """The claiming process's next step (None on the other ranks: they learn it)."""
        if plan is None or self.claimer is None:
            return None
        return self.claimer.next_step(plan, self.loaded.group if self.loaded else None)

    def compute(self, cell: Cell, claim: Claim | None) -> None:
        """Score one claimed cell (every process of a launch together), commit it, let go."""
        loaded = self.load(cell)
        outcome = "interrupted"
        try:
            if loaded.error is not None:
                family = loaded.family or cell.model.family
                outcome = self.fail(cell, loaded.stage, UserError(loaded.error), family, claim)
                return
            try:
                outcome = self.run_cell(cell, loaded, claim)
            except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                value = self.inputs.corpora.get(cell.dataset.label)
                stage = "load data" if isinstance(value, Exception) else "score"
                outcome = self.fail(cell, stage, exc, loaded.family, claim)
        finally:
            if claim is not None:
                claim.release(outcome)

    def load(self, cell: Cell) -> _Loaded:
        """``cell``'s model at its revision, unless this worker holds it already; the writing
        process records the weights' provenance (done cells of other weights are redone)."""
        if self.loaded is not None and self.loaded.group == cell.group:
            return self.loaded
        self.unload()
        loaded = load_group(self.spec, cell)
        if loaded.error is None and self.writes:
            loaded.provenance = model_provenance(loaded.model)
            fingerprint = loaded.provenance.weights_fingerprint
            self.inputs.note_loaded(cell, fingerprint)
            if self.claimer is not None:
                self.claimer.weights_loaded(cell, fingerprint)
        self.loaded = loaded
        return loaded

    def unload(self) -> None:
        """Drop the model this worker holds, and give its GPU memory back."""
        if self.loaded is not None:
            had_model = self.loaded.model is not None
            self.loaded = None
            if had_model:
                _release_memory()

    def fail(
        self,
        cell: Cell,
        stage: str,
        exc: BaseException,
        family: str | None,
        claim: Claim | None,
    ) -> str:
        """Record the cell as failed (the writing process commits failure.json); returns the
        claim's outcome."""
        message = _one_line(exc)
        if self.writes:
            worker = self.board.worker.name if self.board is not None else None
            written = commit_cell(
                self.cells_root,
                cell.cell_id,
                lambda d: write_failure(
                    d,
                    cell.key,
                    error=message,
                    stage=stage,
                    family=family,
                    spec_digest=cell.digest,
                    worker=worker,
                    attempt=claim.attempt if claim is not None else None,
                ),
                stands=lambda d: read_cell(d) is not None,  # a failure never replaces a result
                superseded=claim.superseded if claim is not None else lambda: False,
            )
            if not written:
                self.log(f"{cell.cell_id}: {message}; not recorded: another worker has the cell")
                return "superseded"
        self.failed += 1
        self.log(f"{self.tally()} {cell.cell_id}: FAILED ({stage}): {message}")
        return "failed"

    def tally(self) -> str:
        """``[finished/planned]``: cells of the spec with a result folder, over the whole
        sweep."""
        finished = sum(
            (self.cells_root / c / CELL_FILE).exists()
            or (self.cells_root / c / "failure.json").exists()
            for c in self.cells
        )
        return f"[{finished}/{len(self.cells)}]"

    def run_cell(self, cell: Cell, loaded: _Loaded, claim: Claim | None) -> str:
        """Score one cell with the loaded model; the writing process commits the cell's folder
        (unless another worker took the cell over meanwhile). Returns the claim's outcome."""
        from errorentropy.scoring.distributed import shard_and_score

        corpus = agreed_corpus(self.inputs, cell)
        started = time.perf_counter()
        result = shard_and_score(
            loaded.model, loaded.tokenizer, corpus.documents, self.options, progress=self.progress
        )
        elapsed = time.perf_counter() - started
        if not self.writes:
            return "done"
        require_tokens(result, cell.dataset.label, 'bos = "always"')
        settings = cell_settings_of(cell, loaded, corpus, result, self.options)
        summary = summarize(
            result.histogram, settings, rbp_ks=self.options.rbp_k, tokens=result.tokens
        )
        timing = {
            "elapsed_s": round(elapsed, 4),
            "model_load_s": round(loaded.load_s, 4),
            "tokens_per_s": round(result.histogram.n_tokens / elapsed, 1) if elapsed > 0 else None,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "worker": self.board.worker.name if self.board is not None else None,
            "attempt": claim.attempt if claim is not None else None,
        }
        if not commit_result(self.cells_root, cell, result, summary, timing, loaded, claim):
            self.log(f"{cell.cell_id}: taken over and committed by another worker; theirs kept")
            return "superseded"
        self.computed += 1
        self.log(
            f"{self.tally()} {cell.cell_id}: CE "
            f"{summary['cross_entropy']:.4f} = EE {summary['error_entropy']:.4f}"
            f" + SA {summary['self_alignment']:.4f} - Conf {summary['confidence']:.4f} "
            f"({summary['n_tokens']} tokens, {elapsed:.1f} s)"
        )
        return "done"


def agreed_corpus(inputs: _Inputs, cell: Cell) -> Corpus:
    """The cell's corpus; under torchrun, every process raises if any failed to load it."""
    from errorentropy.scoring.distributed import agree

    error: str | None = None
    try:
        corpus = inputs.corpus(cell.dataset)
    except Exception as exc:  # noqa: BLE001 - shared, so that every process fails the cell together
        error = _one_line(exc)
    error = agree(error)
    if error is not None:
        raise UserError(error)
    return corpus


def cell_settings_of(
    cell: Cell, loaded: _Loaded, corpus: Corpus, result: ScoredCorpus, options: ScoreOptions
) -> dict[str, Any]:
    """What a cell's summary records about how it was computed (and from which weights)."""
    assert loaded.counts is not None
    identity = {
        "model": cell.key.model,
        "model_id": cell.model.id,
        "revision": cell.revision,
        **loaded.provenance.fields(),  # model_commit, weights_fingerprint
        "family": loaded.family,
        "non_embedding_params": loaded.counts.non_embedding,
        "total_params": loaded.counts.total,
    }
    data = {"dataset": cell.dataset.label, **corpus.settings(), "data": cell.dataset.data}
    return summary_settings(
        loaded.model,
        result,
        options,
        identity=identity,
        data=data,
        extra={"spec_digest": cell.digest},
    )


def commit_result(
    cells_root: Path,
    cell: Cell,
    result: ScoredCorpus,
    summary: dict[str, Any],
    timing: dict[str, Any],
    loaded: _Loaded,
    claim: Claim | None,
) -> bool:
    """Write the cell's files into a hidden folder, seal it, and rename it into place, unless
    another worker took the cell over or put the same cell there first; returns whether it
    went in."""
    assert loaded.counts is not None and loaded.family is not None
    family, counts = loaded.family, loaded.counts

    def build(directory: Path) -> None:
        write_result(directory, result, summary)
        atomic_write_text(directory / TIMING_FILE, json.dumps(timing, indent=1) + "\n")
        write_cell_record(
            directory,
            cell.key,
            family=family,
            non_embedding_params=counts.non_embedding,
            total_params=counts.total,
            summary=summary,
        )

    return commit_cell(
        cells_root,
        cell.cell_id,
        build,
        stands=functools.partial(_same_cell, summary),
        superseded=claim.superseded if claim is not None else lambda: False,
    )
