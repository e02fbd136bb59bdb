"""Sweeps: every (model, revision, dataset) cell of a spec, by any number of workers at once,
resumable after any kill.

``errorentropy sweep SPEC --out DIR`` scores each cell not yet done. Any number of such processes
(``--workers K`` on one machine, a Slurm array over many) work on one folder together: each
claims a cell before computing it (:mod:`errorentropy.sweep.claims`), so no cell is computed twice
while
its worker lives, and the cell of a worker that died is taken up by another once its lease runs
out (at once on the same machine). A worker keeps its model loaded for every cell of that model
and revision it can claim, and prefers models no other worker is on. Each cell is built in a
hidden temporary folder beside its final place, sealed (``cell.json`` with every file's SHA-256,
written last) and renamed into ``DIR/cells/<cell_id>`` in one step, so a kill at any moment leaves
each cell either whole or absent. A finished cell is never recomputed; a damaged one (truncated
file, failed checksum), or one computed with other settings, on other documents or from other
weights, is redone; a failed cell is recorded with its one-line error and the sweep goes on.
``errorentropy merge OUT SRC...`` unites sweep folders.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from errorentropy.data.corpus import HUB_PREFIX, PRESETS, Corpus, load_corpus
from errorentropy.errors import UserError
from errorentropy.models.provenance import (
    FINGERPRINTS_DIR,
    Provenance,
    local_fingerprint,
    model_provenance,
    weights_change,
)
from errorentropy.scoring.results import HISTOGRAM_FILE, TOKENS_FILE, summarize, write_result
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable
from errorentropy.storage import atomic_write_text, commit_folder
from errorentropy.sweep.cells import (
    CELL_FILE,
    CELLS_DIR,
    CellKey,
    CellRecord,
    SameWeights,
    distinct_weights,
    mixed_settings,
    read_cell,
    read_failure,
    write_cell_record,
    write_failure,
)
from errorentropy.sweep.claims import FINAL, WORKER_ENV, Claim, ClaimBoard, Holder
from errorentropy.sweep.costs import (
    TimeLeft,
    TokenEstimate,
    Wanted,
    read_timing,
    throughputs,
    time_left,
    token_estimates,
)
from errorentropy.sweep.spec import (
    DatasetSpec,
    ModelSpec,
    SweepSpec,
    cell_settings,
    legacy_cell_settings,
    load_spec,
    settings_digest,
)

if TYPE_CHECKING:
    from errorentropy.models.loading import ParameterCounts
    from errorentropy.scoring.engine import ScoreResult

SPEC_COPY = "spec.toml"
LOCK_FILE = ".sweep.lock"
TIMING_FILE = "timing.json"
EXIT_CELLS_FAILED = 3
# A temporary file of an atomic write in the sweep folder lives for milliseconds: one this old is
# a killed writer's, never a running worker's.
STALE_TMP_S = 600.0

Status = Literal["done", "failed", "pending", "running"]


@dataclass(frozen=True)
class Cell:
    """One planned cell: which model at which revision on which dataset, and its settings digest."""

    key: CellKey
    model: ModelSpec
    revision: str | None
    dataset: DatasetSpec
    digest: str
    legacy_digest: str | None = None  # what an older errorentropy digested for the same settings

    @property
    def cell_id(self) -> str:
        """The cell's folder name."""
        return self.key.cell_id

    @property
    def group(self) -> tuple[str, str | None]:
        """The (model label, revision) whose weights the cell needs: loaded once for all of
        them."""
        return (self.model.label, self.revision)

    def matches(self, digest: Any) -> bool:
        """Whether a finished cell's recorded digest stands for this cell's settings."""
        return digest is not None and digest in (self.digest, self.legacy_digest)


@dataclass(frozen=True)
class CellState:
    """Where a cell stands on disk: done, failed (with its error), running (by whom) or pending
    (with why, if redone)."""

    cell: Cell
    status: Status
    detail: str = ""
    record: CellRecord | None = None  # the finished cell, when done


@dataclass
class SweepOutcome:
    """What a sweep did: the final state of every cell and how many were computed now; for a dry
    run also the tokens each cell scores and the time left."""

    out_dir: Path
    states: list[CellState]
    computed: int = 0
    failed_now: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    # Cell folders in out_dir that the spec does not plan.
    orphans: list[str] = field(default_factory=list)
    # Revisions of one model that hold identical weights (fits and report use each set once).
    same_weights: list[SameWeights] = field(default_factory=list)
    tokens: dict[str, TokenEstimate] = field(default_factory=dict)  # by cell id
    time_left: TimeLeft | None = None

    def count(self, status: Status) -> int:
        """How many cells stand at ``status``."""
        return sum(1 for s in self.states if s.status == status)

    @property
    def ok(self) -> bool:
        """True when every cell is done."""
        return all(s.status == "done" for s in self.states)

    def summary_line(self) -> str:
        """One line for the terminal: cells done, running, failed and pending, what is left, and
        what to do next."""
        running = self.count("running")
        line = (
            f"sweep {self.out_dir}: {self.count('done')} done, "
            + (f"{running} running, " if running else "")
            + f"{self.count('failed')} failed, {self.count('pending')} pending of "
            f"{len(self.states)} cells"
        )
        if not self.dry_run:
            line += f"; computed {self.computed} now in {self.elapsed_s:.1f} s"
        line += self._left()
        if self.count("failed"):
            line += (
                "; see each cells/<cell_id>/failure.json, rerun with --retry-failed to retry them"
            )
        if self.orphans:
            line += (
                f"; {len(self.orphans)} cell folder(s) there are not in this spec (e.g. "
                f"{self.orphans[0]}, from a renamed label or an"
                " earlier spec): fit and report include them; delete them if they do not belong"
            )
        return line

    def _left(self) -> str:
        """``; 1,234 tokens to score; about 3 min of work left`` (a dry run's estimates)."""
        todo = [
            self.tokens[s.cell.cell_id]
            for s in self.states
            if s.status in ("pending", "running") and s.cell.cell_id in self.tokens
        ]
        text = ""
        if todo:
            approx = "~" if any(t.how == "characters" for t in todo) else ""
            text += f"; {approx}{sum(t.tokens for t in todo):,} tokens to score"
        if self.time_left is not None and self.time_left.text():
            text += f"; {self.time_left.text()}"
        return text

    def notes(self) -> list[str]:
        """One line per set of revisions found to hold identical weights."""
        return [s.message() for s in self.same_weights]


# ---- planning ------------------------------------------------------------------------------


def plan_cells(spec: SweepSpec) -> list[Cell]:
    """Every cell of the spec, model by model, revision by revision, dataset by dataset."""
    cells = []
    for model in spec.models:
        for revision in model.revisions:
            for dataset in spec.datasets:
                digest = settings_digest(cell_settings(spec, model, revision, dataset))
                legacy = settings_digest(legacy_cell_settings(spec, model, revision, dataset))
                cells.append(
                    Cell(
                        CellKey(model.label, revision, dataset.label),
                        model,
                        revision,
                        dataset,
                        digest,
                        legacy,
                    )
                )
    return cells


def cell_state(out_dir: Path, cell: Cell) -> CellState:
    """Read a cell's folder: done only when every checksum verifies and its settings match the
    spec."""
    directory = Path(out_dir) / CELLS_DIR / cell.cell_id
    if not directory.exists():
        return CellState(cell, "pending")
    record = read_cell(directory)
    if record is not None and record.key != cell.key:
        return CellState(
            cell,
            "pending",
            f"holds {record.key.model} at {record.key.revision or 'main'} on "
            f"{record.key.dataset}, not this cell; will redo",
        )
    if record is not None:
        if not cell.matches(record.summary.get("spec_digest")):
            return CellState(cell, "pending", "done with other settings; will redo")
        return CellState(cell, "done", record=record)
    failure = read_failure(directory)
    if failure is not None:
        if failure.get("spec_digest") is not None and not cell.matches(failure.get("spec_digest")):
            return CellState(cell, "pending", "failed with other settings; will retry")
        return CellState(cell, "failed", f"{failure.get('stage', '')}: {failure.get('error', '')}")
    return CellState(cell, "pending", "damaged or incomplete; will redo")


# ---- writing cells atomically --------------------------------------------------------------


def clean_leftovers(
    cells_root: Path, *, board: ClaimBoard | None = None, min_age_s: float = 0.0
) -> None:
    """Delete the hidden temporary folders a killed sweep left behind, and the hidden temporary
    files (``.NAME.XXXX.tmp``) of its atomic writes in the sweep folder itself.

    With ``board`` (other workers may be writing now), a cell's leftovers are deleted only under a
    claim on that cell (only its holder writes there), and the sweep folder's temporary files only
    once ``min_age_s`` old.
    """
    now = time.time()
    if cells_root.parent.is_dir():
        for entry in cells_root.parent.iterdir():
            if entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime >= min_age_s:
                        entry.unlink(missing_ok=True)
    if not cells_root.is_dir():
        return
    by_cell: dict[str, list[Path]] = {}
    for entry in cells_root.iterdir():
        for marker in (".tmp-", ".old-"):
            if entry.name.startswith(".") and marker in entry.name:
                by_cell.setdefault(entry.name[1:].rpartition(marker)[0], []).append(entry)
                break
    for cell_id, entries in sorted(by_cell.items()):
        claim = board.try_claim(cell_id) if board is not None else None
        if board is not None and claim is None:
            continue  # its holder is writing it now
        try:
            for entry in entries:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        finally:
            if claim is not None:
                claim.release("cleaned")


@contextmanager
def sweep_lock(out_dir: Path, *, shared: bool = False) -> Iterator[None]:
    """Lock ``out_dir``: ``shared`` for sweep workers (any number at once), exclusive for a merge
    (alone). The OS releases it even on SIGKILL; where flock does not reach across machines it
    keeps apart only the processes of one machine."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / LOCK_FILE, "a+")
    try:
        try:
            import fcntl

            mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no lock
            pass
        except OSError:
            if shared:
                raise UserError(
                    f"an errorentropy merge is writing to {out_dir}; wait for it to finish, "
                    "then run the sweep again"
                ) from None
            raise UserError(
                f"another errorentropy sweep or merge is writing to {out_dir}; wait for "
                "it or use another --out"
            ) from None
        yield
    finally:
        handle.close()


# ---- running -------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if isinstance(exc, UserError) else f"{type(exc).__name__}: {first}".rstrip(": ")


def _release_memory() -> None:
    """Give a dropped model's GPU memory back (a full collection costs ~0.5 s, so only with
    CUDA)."""
    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()


_WAIT = "\x00wait"  # rank 0 to the other processes: nothing to compute yet, ask again
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


@dataclass
class _Loaded:
    """The model a worker holds: one model at one revision, loaded once for all its cells."""

    group: tuple[str, str | None]
    model: Any = None
    tokenizer: Any = None
    counts: ParameterCounts | None = None
    family: str | None = None
    load_s: float = 0.0
    error: str | None = None  # why it is not usable: every cell of it fails with this
    stage: str = "load model"
    provenance: Provenance = field(default_factory=lambda: Provenance(None, None))


@dataclass
class _Plan:
    """What the claiming process knows: the cells left to compute (in the spec's order), every
    cell's state when planned, each cell's latest attempt then, and the claims it holds."""

    todo: list[Cell]
    states: dict[str, CellState]
    seen: dict[str, int]
    retry_failed: bool
    claims: dict[str, Claim] = field(default_factory=dict)
    waiting: bool = False  # said once that it waits for other workers


def _attempt(holder: Holder | None) -> int:
    """The last attempt on a cell that was over when this worker planned: an attempt still held
    then (or whose holder died) may end after, so it counts as not yet seen."""
    if holder is None:
        return 0
    return holder.attempt if holder.outcome is not None else holder.attempt - 1


def _alive(board: ClaimBoard, holder: Holder | None) -> bool:
    return holder is not None and board.alive(holder)


def _finished_since(holder: Holder | None, seen: int) -> bool:
    """Another worker finished (or failed) the cell after this one planned."""
    return holder is not None and holder.outcome in FINAL and holder.attempt > seen


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
        self.corpora: dict[str, Corpus | Exception] = {}
        self.loaded: _Loaded | None = None
        self.plan: _Plan | None = None
        # Fingerprint of the weights each (model, revision) names now (None: not known).
        self.fingerprints: dict[tuple[str, str | None], str | None] = {}
        self.known = out_dir / FINGERPRINTS_DIR  # local weights' fingerprints by their files' key
        self.computed = 0
        self.failed = 0

    def log(self, text: str) -> None:
        if self.progress:
            label = os.environ.get(WORKER_ENV)
            print(f"[{label}] {text}" if label else text, file=sys.stderr, flush=True)

    def corpus(self, dataset: DatasetSpec) -> Corpus:
        """The dataset's corpus, loaded on first use; a loading error is kept and re-raised."""
        if dataset.label not in self.corpora:
            try:
                self.corpora[dataset.label] = load_corpus(
                    dataset.source,
                    samples=dataset.samples,
                    seed=dataset.seed,
                    text_field=dataset.text_field,
                )
            except Exception as exc:  # noqa: BLE001 - recorded in the cell
                self.corpora[dataset.label] = exc
        value = self.corpora[dataset.label]
        if isinstance(value, Exception):
            raise value
        return value

    def loaded_datasets(self) -> set[str]:
        """Labels of the datasets this worker has loaded."""
        return {label for label, v in self.corpora.items() if not isinstance(v, Exception)}

    def weights_now(self, cell: Cell) -> str | None:
        """The fingerprint of the weights ``cell``'s model and revision name now: read (and
        noted by the files' size and mtime) for a local model, hashed only by a writing process;
        for a hub model, only once this worker loaded it."""
        if cell.group not in self.fingerprints:
            self.fingerprints[cell.group] = _local_fingerprint(
                cell.model, cell.revision, self.known, read=self.writes
            )
        return self.fingerprints[cell.group]

    def fresh_state(self, cell: Cell) -> CellState:
        """The cell's state now, documents and weights compared as planning compares them."""
        states = check_data(
            [cell_state(self.out_dir, cell)], self.corpus, hub_loaded=self.loaded_datasets()
        )
        return check_weights(states, self.weights_now)[0]

    # ---- the claiming process --------------------------------------------------------------

    def make_plan(self, retry_failed: bool) -> _Plan:
        """Read every cell's state (cells whose documents or weights changed become pending),
        write families given since, and list the cells to compute."""
        assert self.board is not None
        states = sweep_states(self.spec, self.out_dir)
        computed = {s.cell.dataset.label for s in states if _computes(s, retry_failed)}
        states = check_data(states, self.corpus, hub_loaded=computed)
        states = check_weights(states, self.weights_now)
        update_families(states, self.out_dir, self.board)
        todo = [s.cell for s in states if _computes(s, retry_failed)]
        seen = {c.cell_id: _attempt(self.board.latest(c.cell_id)) for c in todo}
        self.log(
            f"sweep {self.out_dir}: {len(states)} cells, {len(states) - len(todo)} already "
            f"finished or failed, {len(todo)} to compute"
        )
        self.plan = _Plan(todo, {s.cell.cell_id: s for s in states}, seen, retry_failed)
        return self.plan

    def next_step(self, plan: _Plan) -> str | None:
        """The id of the next cell this worker claimed; :data:`_WAIT` after a pause when every
        cell left is held by a living worker; None when no cell is left to anyone."""
        board = self.board
        assert board is not None
        holders = {c.cell_id: board.latest(c.cell_id) for c in plan.todo}
        plan.todo = [
            c for c in plan.todo if not _finished_since(holders[c.cell_id], plan.seen[c.cell_id])
        ]
        held = {c.cell_id for c in plan.todo if _alive(board, holders[c.cell_id])}
        busy = {c.group for c in plan.todo if c.cell_id in held}
        mine = self.loaded.group if self.loaded is not None else None
        candidates = [c for c in plan.todo if c.cell_id not in held]
        while candidates:
            # The loaded model's cells first, then models no other worker is on, in spec order.
            cell = min(candidates, key=lambda c: (c.group != mine, c.group in busy))
            candidates.remove(cell)
            claim = board.try_claim(cell.cell_id)
            if claim is None:  # another worker was quicker
                busy.add(cell.group)
                continue
            plan.todo.remove(cell)
            if self.still_todo(cell, plan):
                plan.claims[cell.cell_id] = claim
                plan.waiting = False
                return cell.cell_id
            claim.release("skipped")
        if not plan.todo:
            return None
        if not plan.waiting:
            plan.waiting = True
            self.log(
                f"waiting: {len(plan.todo)} cell(s) left, all held by other workers (a dead "
                f"worker's cells are taken over once its lease of {board.lease_s:.0f} s runs out)"
            )
        time.sleep(board.poll_s)
        return _WAIT

    def still_todo(self, cell: Cell, plan: _Plan) -> bool:
        """Under a fresh claim: whether the cell still needs computing (another worker may have
        finished it since the plan; a failure is retried only if it predates the plan)."""
        state = self.fresh_state(cell)
        if state.status == "pending":
            return True
        if state.status == "failed" and plan.retry_failed:
            failure = read_failure(self.cells_root / cell.cell_id) or {}
            return int(failure.get("attempt") or 0) <= plan.seen.get(cell.cell_id, 0)
        return False

    def weights_loaded(self, cell: Cell, fingerprint: str | None) -> None:
        """The weights of ``cell``'s model and revision are known now: done cells of them that
        recorded other weights (a hub branch moved) are computed again."""
        self.fingerprints[cell.group] = fingerprint
        # Noted with its files' key for later plans and dry runs (loading just hashed them).
        _local_fingerprint(cell.model, cell.revision, self.known, read=True)
        plan, board = self.plan, self.board
        if plan is None or board is None or fingerprint is None:
            return
        for cell_id, state in list(plan.states.items()):
            if state.cell.group != cell.group or state.status != "done":
                continue
            (now,) = check_weights([state], self.weights_now)
            if now.status == "pending":
                plan.states[cell_id] = now
                plan.todo.insert(0, state.cell)
                plan.seen[cell_id] = _attempt(board.latest(cell_id))
                self.log(f"{cell_id}: {now.detail}")

    # ---- every process ---------------------------------------------------------------------

    def work(self, retry_failed: bool) -> None:
        """Compute cells until none is left to anyone: claim, score, commit, release; wait while
        other workers hold the last ones, and take over those whose holder died."""
        plan = self.make_plan(retry_failed) if self.writes else None
        try:
            while True:
                error: Exception | None = None
                try:
                    step = self.next_step(plan) if plan is not None else None
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
                value = self.corpora.get(cell.dataset.label)
                stage = "load data" if isinstance(value, Exception) else "score"
                outcome = self.fail(cell, stage, exc, loaded.family, claim)
        finally:
            if claim is not None:
                claim.release(outcome)

    def load(self, cell: Cell) -> _Loaded:
        """``cell``'s model at its revision, unless this worker holds it already; under torchrun
        every process learns whether any failed to load it."""
        if self.loaded is not None and self.loaded.group == cell.group:
            return self.loaded
        self.unload()
        from errorentropy.models.loading import count_parameters, family_of, load_model
        from errorentropy.scoring.distributed import agree

        loaded = _Loaded(cell.group)
        started = time.perf_counter()
        try:
            loaded.model, loaded.tokenizer = load_model(
                cell.model.source,
                revision=cell.revision,
                dtype=self.spec.model_dtype(cell.model),
                device=self.spec.run.device,
                trust_remote_code=self.spec.model_trust(cell.model),
                device_map=self.spec.run.device_map,
            )
        except Exception as exc:  # noqa: BLE001 - every cell of this model is recorded as failed
            loaded.error = _one_line(exc)
        loaded.error = agree(loaded.error)
        loaded.load_s = time.perf_counter() - started
        if loaded.error is None:
            try:
                loaded.counts = count_parameters(loaded.model)
                loaded.family = cell.model.family or family_of(loaded.model)
            except Exception as exc:  # noqa: BLE001 - an unusual model: its cells fail
                loaded.error, loaded.stage = _one_line(exc), "count parameters"
        if loaded.error is not None:
            loaded.model = loaded.tokenizer = None
        elif self.writes:
            loaded.provenance = model_provenance(loaded.model)
            self.weights_loaded(cell, loaded.provenance.weights_fingerprint)
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
            if claim is not None and claim.superseded():
                self.log(f"{cell.cell_id}: taken over by another worker; its failure not written")
                return "superseded"
            worker = self.board.worker.name if self.board is not None else None
            commit_folder(
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
            )
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

    def agreed_corpus(self, cell: Cell) -> Corpus:
        """The cell's corpus; under torchrun, every process raises if any failed to load it."""
        from errorentropy.scoring.distributed import agree

        error: str | None = None
        try:
            corpus = self.corpus(cell.dataset)
        except Exception as exc:  # noqa: BLE001 - shared, so that every process fails the cell together
            error = _one_line(exc)
        error = agree(error)
        if error is not None:
            raise UserError(error)
        return corpus

    def run_cell(self, cell: Cell, loaded: _Loaded, claim: Claim | None) -> str:
        """Score one cell with the loaded model; the writing process commits the cell's folder
        (unless another worker took the cell over meanwhile). Returns the claim's outcome."""
        from errorentropy.scoring.distributed import shard_and_score

        corpus = self.agreed_corpus(cell)
        started = time.perf_counter()
        result = shard_and_score(
            loaded.model, loaded.tokenizer, corpus.documents, self.options, progress=self.progress
        )
        elapsed = time.perf_counter() - started
        if not self.writes:
            return "done"
        if result.histogram.n_tokens == 0:
            raise UserError(
                f"every document of {cell.dataset.label} was skipped (fewer than 2 tokens "
                'each); use longer documents or bos = "always"'
            )
        settings = self.settings(cell, loaded, corpus, result)
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
        if claim is not None and claim.superseded():
            self.log(f"{cell.cell_id}: taken over by another worker (lease expired); not written")
            return "superseded"
        self.commit(cell, result, summary, timing, loaded)
        self.computed += 1
        self.log(
            f"{self.tally()} {cell.cell_id}: CE "
            f"{summary['cross_entropy']:.4f} = EE {summary['error_entropy']:.4f}"
            f" + SA {summary['self_alignment']:.4f} - Conf {summary['confidence']:.4f} "
            f"({summary['n_tokens']} tokens, {elapsed:.1f} s)"
        )
        return "done"

    def settings(
        self, cell: Cell, loaded: _Loaded, corpus: Corpus, result: ScoreResult
    ) -> dict[str, Any]:
        """What a cell's summary records about how it was computed (and from which weights)."""
        assert loaded.counts is not None
        parameter = next(loaded.model.parameters())
        return {
            "model": cell.key.model,
            "model_id": cell.model.id,
            "revision": cell.revision,
            **loaded.provenance.fields(),  # model_commit, weights_fingerprint
            "family": loaded.family,
            "non_embedding_params": loaded.counts.non_embedding,
            "total_params": loaded.counts.total,
            "dtype": str(parameter.dtype).removeprefix("torch."),
            "device": str(parameter.device),
            "dataset": cell.dataset.label,
            **corpus.settings(),
            "data": cell.dataset.data,
            **self.options.settings(),
            "head_path": result.head_path,
            "notes": result.notes,
            "n_windows": result.n_windows,
            "spec_digest": cell.digest,
        }

    def commit(
        self,
        cell: Cell,
        result: ScoreResult,
        summary: dict[str, Any],
        timing: dict[str, Any],
        loaded: _Loaded,
    ) -> None:
        """Write the cell's files into a hidden folder, seal it, and rename it into place."""
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

        commit_folder(self.cells_root, cell.cell_id, build)


def _local_fingerprint(
    model: ModelSpec, revision: str | None, store: Path, *, read: bool
) -> str | None:
    """The fingerprint of a local model's weights at ``revision`` (None for a hub model, or a
    folder that is not there), hashed only where its files changed since ``store`` noted it
    (and only with ``read``: :func:`~errorentropy.models.provenance.local_fingerprint`)."""
    if not Path(model.source).is_dir():
        return None
    from errorentropy.models.loading import resolve_revision

    try:
        folder, _ = resolve_revision(model.source, revision)
    except UserError:
        return None
    return local_fingerprint(folder, store, read=read)


def sweep_states(spec: SweepSpec, out_dir: Path | str) -> list[CellState]:
    """The state of every cell of ``spec`` in ``out_dir`` (nothing is loaded or written)."""
    return [cell_state(Path(out_dir), cell) for cell in plan_cells(spec)]


def is_local_data(dataset: DatasetSpec) -> bool:
    """A file, folder or built-in corpus: cheap to read again, unlike a hub dataset."""
    return dataset.data not in PRESETS and not dataset.data.startswith(HUB_PREFIX)


def check_data(
    states: list[CellState],
    corpus: Callable[[DatasetSpec], Corpus],
    *,
    hub_loaded: set[str] | frozenset[str] = frozenset(),
) -> list[CellState]:
    """Done cells whose documents are not what their dataset holds now become pending.

    The settings digest knows a dataset by its spec (a path, a preset); the documents behind it
    may change (a file rewritten, another Python's built-ins). Each done cell recorded the
    fingerprint of its documents: a cell whose fingerprint differs from the corpus as loaded now
    is redone. A hub dataset is compared only when its label is in ``hub_loaded`` (the datasets
    this run loads anyway, for cells it computes).
    """
    out = []
    for state in states:
        dataset = state.cell.dataset
        if (
            state.status == "done"
            and state.record is not None
            and (is_local_data(dataset) or dataset.label in hub_loaded)
        ):
            try:
                now = corpus(dataset).fingerprint
            except Exception:  # noqa: BLE001 - unreadable now: the pending cells will say why; done ones stand
                now = None
            recorded = state.record.summary.get("data_fingerprint")
            if now is not None and recorded is not None and recorded != now:
                state = CellState(
                    state.cell,
                    "pending",
                    f"done on other documents (fingerprint {str(recorded)[:12]}, now "
                    f"{now[:12]}); will redo",
                )
        out.append(state)
    return out


def check_weights(
    states: list[CellState], current: Callable[[Cell], str | None]
) -> list[CellState]:
    """Done cells computed from other weights than their model and revision hold now become
    pending: a local folder rewritten, a hub branch moved to another commit.

    Each cell recorded its weights' fingerprint (``weights_fingerprint``); ``current`` gives
    today's, or None where it is not known (a hub model this run has not loaded), which compares
    nothing.
    """
    out = []
    for state in states:
        record = state.record
        recorded = record.summary.get("weights_fingerprint") if record is not None else None
        if state.status == "done" and isinstance(recorded, str):
            now = current(state.cell)
            if now is not None and now != recorded:
                state = CellState(state.cell, "pending", weights_change(recorded, now))
        out.append(state)
    return out


def mark_running(states: list[CellState], board: ClaimBoard) -> tuple[list[CellState], set[str]]:
    """Cells not done that a living worker holds become ``running`` (by whom, since when), and
    the workers holding them."""
    out, workers = [], set()
    for state in states:
        holder = board.latest(state.cell.cell_id) if state.status != "done" else None
        if holder is not None and board.alive(holder):
            workers.add(holder.worker)
            since = datetime.fromtimestamp(holder.since).strftime("%Y-%m-%d %H:%M:%S")
            state = CellState(
                state.cell,
                "running",
                f"by {holder.who} since {since}, attempt {holder.attempt}, heartbeat "
                f"{max(0.0, time.time() - holder.beat):.0f} s ago",
                state.record,
            )
        out.append(state)
    return out, workers


def same_weights(states: list[CellState]) -> list[SameWeights]:
    """Revisions whose done cells recorded identical weights (see
    :func:`errorentropy.sweep.cells.distinct_weights`)."""
    return distinct_weights([s.record for s in states if s.status == "done" and s.record])[1]


def orphan_cells(spec: SweepSpec, out_dir: Path) -> list[str]:
    """Cell folders in ``out_dir`` that ``spec`` does not plan (hidden leftovers aside)."""
    root = out_dir / CELLS_DIR
    if not root.is_dir():
        return []
    planned = {c.cell_id for c in plan_cells(spec)}
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and not d.name.startswith(".")
        and d.name not in planned
        and not _scored_in_training(d)
    )


def _scored_in_training(directory: Path) -> bool:
    """True for a cell written during training (DecompositionCallback, the demo's dense points):
    no spec planned it (its ``spec_digest`` is null), so it is no orphan of this spec."""
    record = read_cell(directory)
    return (
        record is not None
        and "spec_digest" in record.summary
        and (record.summary["spec_digest"] is None)
    )


def update_families(
    states: list[CellState], out_dir: Path, board: ClaimBoard | None = None
) -> None:
    """A family given in the spec after a cell was finished is written into its cell.json (the
    numbers do not change, so nothing is recomputed). With ``board``, under a claim on the cell:
    a cell another worker holds is left to it."""
    for state in states:
        family, record = state.cell.model.family, state.record
        if not (
            state.status == "done"
            and record is not None
            and family is not None
            and record.family != family
        ):
            continue
        directory = out_dir / CELLS_DIR / state.cell.cell_id
        claim = board.try_claim(state.cell.cell_id) if board is not None else None
        if board is not None and claim is None:
            continue
        try:
            current = read_cell(directory) if claim is not None else record
            if current is not None and current.family != family:
                write_cell_record(
                    directory,
                    current.key,
                    family=family,
                    non_embedding_params=current.non_embedding_params,
                    total_params=current.total_params,
                    summary=current.summary,
                )
        finally:
            if claim is not None:
                claim.release("family")


def run_sweep(
    spec_path: Path | str,
    out_dir: Path | str,
    *,
    dry_run: bool = False,
    progress: bool = True,
    retry_failed: bool = False,
    lease_s: float | None = None,
) -> SweepOutcome:
    """Run (or with ``dry_run`` only survey) every cell of the spec at ``spec_path`` into
    ``out_dir``, alongside any other workers on the same folder.

    Finished cells are skipped, damaged or stale ones redone, failed ones skipped unless
    ``retry_failed``. ``lease_s`` (default ``$ERRORENTROPY_LEASE_S`` or 300) is how long a
    worker's claim outlives its last heartbeat. The returned outcome holds every cell's final
    state; ``outcome.ok`` is True when all are done. Raises :class:`UserError` for a bad spec or
    an unusable ``out_dir``.

    Examples:
        One local model over one local corpus (a spec may list many of each; docs/sweep.md):

        >>> spec = workdir / "sweep.toml"
        >>> _ = spec.write_text(f'''
        ... [scoring]
        ... max_length = 64
        ... [run]
        ... device = "cpu"
        ... [[models]]
        ... id = "{tiny_model_path}"
        ... label = "tiny"
        ... [[datasets]]
        ... data = "{tiny_corpus_path}"
        ... label = "notes"
        ... ''')
        >>> outcome = run_sweep(spec, workdir / "sweep", progress=False)
        >>> outcome.ok, outcome.computed, [(s.cell.cell_id, s.status) for s in outcome.states]
        (True, 1, [('tiny__main__notes', 'done')])
        >>> run_sweep(spec, workdir / "sweep", progress=False).computed  # resumed: nothing left
        0
    """
    spec = load_spec(spec_path)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for the sweep results")
    if dry_run:
        return survey(spec, out, lease_s=lease_s)
    started = time.perf_counter()
    from errorentropy.scoring.distributed import init_distributed, is_main_process

    init_distributed(spec.run.device)  # under torchrun: every process scores a shard, rank 0 writes
    main = is_main_process()
    with contextlib.ExitStack() as stack:
        _share_everywhere(stack, out, main)
        board = ClaimBoard(out, lease_s) if main else None
        if board is not None:
            stack.callback(board.close)
            atomic_write_text(out / SPEC_COPY, spec.text)
            clean_leftovers(out / CELLS_DIR, board=board, min_age_s=STALE_TMP_S)
        runner = _Runner(spec, out, progress, writes=main, board=board)
        runner.work(retry_failed)
        states = check_weights(
            check_data(sweep_states(spec, out), runner.corpus, hub_loaded=runner.loaded_datasets()),
            runner.weights_now,
        )
        if board is not None:
            states, _ = mark_running(states, board)
    return SweepOutcome(
        out,
        states,
        runner.computed,
        runner.failed,
        time.perf_counter() - started,
        orphans=orphan_cells(spec, out),
        same_weights=same_weights(states),
    )


def survey(
    spec: SweepSpec, out: Path, *, lease_s: float | None = None, estimate: bool = True
) -> SweepOutcome:
    """The dry run: every cell's state (running ones by whom and since when), and with
    ``estimate`` the tokens each cell scores and the time left (:mod:`errorentropy.sweep.costs`).
    Loads no model; writes nothing."""
    reader = _Runner(spec, out, progress=False, writes=False)
    states = check_weights(check_data(sweep_states(spec, out), reader.corpus), reader.weights_now)
    states, workers = mark_running(states, ClaimBoard(out, lease_s))
    outcome = SweepOutcome(
        out,
        states,
        dry_run=True,
        orphans=orphan_cells(spec, out),
        same_weights=same_weights(states),
    )
    if not estimate:
        return outcome
    left = [s for s in states if s.status != "done"]
    outcome.tokens = {
        s.cell.cell_id: TokenEstimate(int(s.record.summary.get("n_tokens", 0)), "scored")
        for s in states
        if s.status == "done" and s.record is not None
    }
    wanted = [Wanted(s.cell.cell_id, s.cell.model, s.cell.revision, s.cell.dataset) for s in left]
    outcome.tokens.update(token_estimates(spec, wanted, reader.corpus))
    timings = [
        (s.cell.key.model, t)
        for s in states
        if s.status == "done" and (t := read_timing(out / CELLS_DIR / s.cell.cell_id))
    ]
    cells_left = [
        (s.cell.key.model, s.cell.revision, _tokens(outcome.tokens, s.cell.cell_id)) for s in left
    ]
    outcome.time_left = time_left(cells_left, throughputs(timings), workers=len(workers))
    return outcome


def _tokens(estimates: dict[str, TokenEstimate], cell_id: str) -> int | None:
    return estimates[cell_id].tokens if cell_id in estimates else None


def _share_everywhere(stack: contextlib.ExitStack, out: Path, main: bool) -> None:
    """Take the folder's shared lock on the writing process (until ``stack`` closes: a merge
    waits for every worker); under torchrun every process stops if it could not."""
    from errorentropy.scoring.distributed import agree

    lock_error = None
    if main:
        try:
            stack.enter_context(sweep_lock(out, shared=True))
        except UserError as exc:
            lock_error = str(exc)
    lock_error = agree(lock_error)
    if lock_error is not None:
        raise UserError(lock_error)


def _computes(state: CellState, retry_failed: bool) -> bool:
    return state.status == "pending" or (retry_failed and state.status == "failed")


def format_states(states: list[CellState], tokens: dict[str, TokenEstimate] | None = None) -> str:
    """A plain-text table of cell states, with the tokens each scores when known (the
    ``--dry-run`` listing; ``~``: estimated from characters)."""
    tokens = tokens or {}
    rows = [("STATUS", "CELL", "MODEL", "REVISION", "DATASET", "TOKENS", "DETAIL")]
    for s in states:
        k = s.cell.key
        count = tokens[s.cell.cell_id].text() if s.cell.cell_id in tokens else "?"
        rows.append(
            (s.status, s.cell.cell_id, k.model, k.revision or "main", k.dataset, count, s.detail)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    return "\n".join(
        "  ".join(r[i].rjust(widths[i]) if i == 5 else r[i].ljust(widths[i]) for i in range(6))
        + ("  " + r[6] if r[6] else "")
        for r in rows
    )


# ---- merging -------------------------------------------------------------------------------


@dataclass
class MergeOutcome:
    """What a merge did: cells copied in, cells already present, failures copied."""

    out_dir: Path
    copied: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _same_content(a: Path, b: Path) -> str | None:
    """None when two verified cells hold the same numbers, else what differs."""
    if RankHistogram.load(a / HISTOGRAM_FILE) != RankHistogram.load(b / HISTOGRAM_FILE):
        return "histograms differ"
    ta, tb = TokenTable.load(a / TOKENS_FILE), TokenTable.load(b / TOKENS_FILE)
    for name in ("doc", "position", "rank", "logprob"):
        if not np.array_equal(getattr(ta, name), getattr(tb, name)):
            return f"token {name} arrays differ"
    return None


def merge_sweeps(out_dir: Path | str, sources: list[Path | str]) -> MergeOutcome:
    """Unite the verified cells of several sweep folders into ``out_dir``.

    A cell present in several places must hold the same histogram and tokens everywhere (else a
    :class:`UserError` names it); damaged cells are ignored; a failure record is copied only where
    no source has that cell done.
    """
    out = Path(out_dir)
    roots = _source_roots(out, sources)
    outcome = MergeOutcome(out)
    with sweep_lock(out):
        out_root = out / CELLS_DIR
        clean_leftovers(out_root)
        out_root.mkdir(parents=True, exist_ok=True)
        found = _find_cells(out_root, roots)
        mixed = mixed_settings(list(found.records.values()))
        # Refused before copying anything: fits over such cells would compare unlike numbers.
        if mixed:
            raise UserError(
                f"merge would mix unlike cells: {mixed}; merge sweeps of the same data "
                "and [scoring] settings, or give the datasets different labels"
            )
        for cell_id, src in found.origin.items():
            if cell_id in found.done:
                outcome.present.append(cell_id)
                continue
            commit_folder(out_root, cell_id, functools.partial(_copy_files, src))
            if read_cell(out_root / cell_id) is None:  # pragma: no cover - a damaged copy
                raise UserError(
                    f"copy of cell {cell_id} into {out} does not verify; check the disk "
                    "and merge again"
                )
            outcome.copied.append(cell_id)
        for cell_id, src in found.failed.items():
            if cell_id not in found.origin and read_failure(out_root / cell_id) is None:
                commit_folder(out_root, cell_id, functools.partial(_copy_files, src))
                outcome.failures.append(cell_id)
        _record_sources(out, [r.parent for r in roots])
    return outcome


def _source_roots(out: Path, sources: list[Path | str]) -> list[Path]:
    """The ``cells`` folders of the sources other than ``out`` (each must be a sweep folder)."""
    roots = []
    for src in sources:
        root = Path(src) / CELLS_DIR
        if not root.is_dir():
            raise UserError(
                f"{src} is not a sweep folder (no {CELLS_DIR}/ inside); pass folders "
                "written by `errorentropy sweep --out`"
            )
        if Path(src).resolve() != out.resolve():
            roots.append(root)
    return roots


@dataclass
class _Found:
    """The cells a merge found, by cell id."""

    records: dict[str, CellRecord]  # every verified cell
    done: dict[str, Path]  # verified cells already in the target
    origin: dict[str, Path]  # where each verified cell is read from (the target first)
    failed: dict[str, Path] = field(default_factory=dict)  # failure records, first source first


def _find_cells(out_root: Path, roots: list[Path]) -> _Found:
    """The verified cells of the target and the sources; a cell in several places must hold the
    same numbers in each."""
    records: dict[str, CellRecord] = {}
    for d in sorted(out_root.iterdir()):
        record = read_cell(d) if not d.name.startswith(".") else None
        if record is not None:
            records[d.name] = record
    done = {name: out_root / name for name in records}
    found = _Found(records, done, dict(done))
    for root in roots:
        for d in sorted(root.iterdir()):
            if d.name.startswith(".") or not d.is_dir():
                continue
            record = read_cell(d)
            if record is None:
                if read_failure(d) is not None:
                    found.failed.setdefault(d.name, d)
            elif d.name in found.origin:
                problem = _same_content(found.origin[d.name], d)
                if problem:
                    raise UserError(
                        f"cell {d.name} differs between "
                        f"{found.origin[d.name].parent.parent} and {root.parent} "
                        f"({problem}); delete it from one of them and merge again"
                    )
            else:
                found.origin[d.name] = d
                found.records[d.name] = record
    return found


def _copy_files(src: Path, dst: Path) -> None:
    for item in src.iterdir():
        if item.is_file() and not item.name.startswith("."):
            shutil.copy2(item, dst / item.name)
            # On disk before the folder is renamed into place.
            with open(dst / item.name, "rb") as copied:
                os.fsync(copied.fileno())


def _record_sources(out: Path, sources: list[Path]) -> None:
    path = out / "merged_from.json"
    previous: list[str] = []
    if path.exists():
        try:
            previous = list(json.loads(path.read_text()).get("sources", []))
        except (ValueError, OSError, AttributeError):
            previous = []
    names = previous + [str(s.resolve()) for s in sources if str(s.resolve()) not in previous]
    atomic_write_text(path, json.dumps({"sources": names}, indent=1) + "\n")
    for src in sources:
        spec = src / SPEC_COPY
        if spec.exists():
            # Named by the folder and a hash of its full path: machine-a/out and machine-b/out
            # differ.
            tag = hashlib.sha256(str(src.resolve()).encode("utf-8")).hexdigest()[:8]
            atomic_write_text(
                out / "specs" / f"{src.resolve().name}-{tag}.toml", spec.read_text(encoding="utf-8")
            )


# ---- several workers on one machine --------------------------------------------------------


def worker_devices(
    k: int, device: str, device_map: str | None, visible: list[str] | None = None
) -> list[str | None]:
    """What ``CUDA_VISIBLE_DEVICES`` each of ``k`` workers gets (None: left as it is).

    On a machine with GPUs (``visible``, default: ``$CUDA_VISIBLE_DEVICES`` or every GPU torch
    sees) each worker gets its own GPU; with ``device_map`` (a model over several GPUs), its own
    block of GPUs; with more workers than GPUs they share them in turn. On the CPU: None.
    """
    if k < 1:
        raise UserError(f"--workers must be at least 1, got {k}")
    if device.startswith("cpu"):
        return [None] * k
    if visible is None:
        visible = _visible_gpus()
    if not visible:
        return [None] * k
    if device.startswith("cuda:") and k > 1:
        raise UserError(
            f'--workers gives each worker its own GPU; set [run] device = "auto" or "cuda", '
            f"not {device!r}"
        )
    if k > len(visible):
        return [visible[i % len(visible)] for i in range(k)]
    per = len(visible) // k if device_map else 1
    return [",".join(visible[i * per : (i + 1) * per]) for i in range(k)]


def _visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def run_workers(command: list[str], devices: list[str | None]) -> list[int]:
    """Start one worker process per entry of ``devices`` (``command``: an ``errorentropy sweep``
    without ``--workers``), each labelled ``w0``, ``w1``, ... and pinned to its GPUs; on the CPU
    each gets ``cores / K`` threads unless ``OMP_NUM_THREADS`` is set. Returns their exit
    statuses once all have ended (an interrupt stops them all)."""
    threads = max(1, (os.cpu_count() or 1) // max(1, len(devices)))
    processes = []
    try:
        for i, device in enumerate(devices):
            env = {**os.environ, WORKER_ENV: f"w{i}" + (f" gpu {device}" if device else "")}
            if device is not None:
                env["CUDA_VISIBLE_DEVICES"] = device
            else:
                env.setdefault("OMP_NUM_THREADS", str(threads))
            processes.append(subprocess.Popen(command, env=env))
        return [p.wait() for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            p.wait()
