"""Sweeps: every (model, revision, dataset) cell of a spec, resumable after any kill.

``errorentropy sweep SPEC --out DIR`` scores each cell not yet done. A model is loaded once per
revision for all its datasets, a corpus once for all models. Each cell is built in a hidden
temporary folder beside its final place, sealed (``cell.json`` with every file's SHA-256, written
last) and renamed into ``DIR/cells/<cell_id>`` in one step, so a kill at any moment leaves each
cell either whole or absent. A finished cell is never recomputed; a damaged one (truncated file,
failed checksum) or one computed with other settings is redone; a failed cell is recorded with its
one-line error and the sweep goes on. ``errorentropy merge OUT SRC...`` unites sweep folders.
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
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .cells import (
    CELLS_DIR,
    CellKey,
    CellRecord,
    mixed_settings,
    read_cell,
    read_failure,
    write_cell_record,
    write_failure,
)
from .corpus import HUB_PREFIX, PRESETS, Corpus, load_corpus
from .errors import UserError
from .histogram import RankHistogram
from .results import HISTOGRAM_FILE, TOKENS_FILE, summarize, write_result
from .spec import (
    DatasetSpec,
    ModelSpec,
    SweepSpec,
    cell_settings,
    legacy_cell_settings,
    load_spec,
    settings_digest,
)
from .storage import atomic_write_text, commit_folder
from .tokens import TokenTable

if TYPE_CHECKING:
    from .engine import ScoreResult
    from .models import ParameterCounts

SPEC_COPY = "spec.toml"
LOCK_FILE = ".sweep.lock"
TIMING_FILE = "timing.json"
EXIT_CELLS_FAILED = 3

Status = Literal["done", "failed", "pending"]


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

    def matches(self, digest: Any) -> bool:
        """Whether a finished cell's recorded digest stands for this cell's settings."""
        return digest is not None and digest in (self.digest, self.legacy_digest)


@dataclass(frozen=True)
class CellState:
    """Where a cell stands on disk: done, failed (with its error) or pending (with why, if
    redone)."""

    cell: Cell
    status: Status
    detail: str = ""
    record: CellRecord | None = None  # the finished cell, when done


@dataclass
class SweepOutcome:
    """What a sweep did: the final state of every cell and how many were computed now."""

    out_dir: Path
    states: list[CellState]
    computed: int = 0
    failed_now: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False
    # Cell folders in out_dir that the spec does not plan.
    orphans: list[str] = field(default_factory=list)

    def count(self, status: Status) -> int:
        """How many cells stand at ``status``."""
        return sum(1 for s in self.states if s.status == status)

    @property
    def ok(self) -> bool:
        """True when every cell is done."""
        return all(s.status == "done" for s in self.states)

    def summary_line(self) -> str:
        """One line for the terminal: cells done, failed and pending, and what to do next."""
        line = (
            f"sweep {self.out_dir}: {self.count('done')} done, {self.count('failed')} failed, "
            f"{self.count('pending')} pending of {len(self.states)} cells"
        )
        if not self.dry_run:
            line += f"; computed {self.computed} now in {self.elapsed_s:.1f} s"
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


def clean_leftovers(cells_root: Path) -> None:
    """Delete the hidden temporary folders a killed sweep left behind, and the hidden temporary
    files (``.NAME.XXXX.tmp``) of its atomic writes in the sweep folder itself."""
    if cells_root.parent.is_dir():
        for entry in cells_root.parent.iterdir():
            if entry.is_file() and entry.name.startswith(".") and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)
    if not cells_root.is_dir():
        return
    for entry in cells_root.iterdir():
        if entry.name.startswith(".") and (".tmp-" in entry.name or ".old-" in entry.name):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


@contextmanager
def sweep_lock(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out_dir`` (released by the OS even on SIGKILL)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / LOCK_FILE, "a+")
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no lock
            pass
        except OSError:
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


class _Runner:
    """Runs the pending cells of one sweep; corpora are loaded once and kept."""

    def __init__(self, spec: SweepSpec, out_dir: Path, progress: bool, writes: bool = True) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.cells_root = out_dir / CELLS_DIR
        self.progress = progress and writes
        # False on the non-zero ranks of a torchrun launch: they score, rank 0 writes.
        self.writes = writes
        self.options = spec.score_options()
        self.corpora: dict[str, Corpus | Exception] = {}
        self.done_count = 0
        self.total = 0
        self.computed = 0
        self.failed = 0

    def log(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

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

    def fail(self, cell: Cell, stage: str, exc: BaseException, family: str | None) -> None:
        message = _one_line(exc)
        if self.writes:
            commit_folder(
                self.cells_root,
                cell.cell_id,
                lambda d: write_failure(
                    d, cell.key, error=message, stage=stage, family=family, spec_digest=cell.digest
                ),
            )
        self.failed += 1
        self.done_count += 1
        self.log(f"[{self.done_count}/{self.total}] {cell.cell_id}: FAILED ({stage}): {message}")

    def run_model(self, model_spec: ModelSpec, revision: str | None, cells: list[Cell]) -> None:
        """Load one model at one revision and score its pending cells."""
        from .distributed import agree
        from .models import count_parameters, family_of, load_model

        started = time.perf_counter()
        error: str | None = None
        try:
            model, tokenizer = load_model(
                model_spec.source,
                revision=revision,
                dtype=self.spec.model_dtype(model_spec),
                device=self.spec.run.device,
                trust_remote_code=self.spec.model_trust(model_spec),
                device_map=self.spec.run.device_map,
            )
        except Exception as exc:  # noqa: BLE001 - every cell of this model is recorded as failed
            error = _one_line(exc)
        # Under torchrun: all processes skip the model if any failed to load it.
        error = agree(error)
        if error is not None:
            for cell in cells:
                self.fail(cell, "load model", UserError(error), model_spec.family)
            return
        load_s = time.perf_counter() - started
        try:
            try:
                counts = count_parameters(model)
                family = model_spec.family or family_of(model)
            except Exception as exc:  # noqa: BLE001 - an unusual model: its cells fail, the sweep goes on
                for cell in cells:
                    self.fail(cell, "count parameters", exc, model_spec.family)
                return
            for cell in cells:
                try:
                    self.run_cell(cell, model, tokenizer, counts, family, load_s)
                except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
                    stage = (
                        "load data"
                        if cell.dataset.label in self.corpora
                        and isinstance(self.corpora[cell.dataset.label], Exception)
                        else "score"
                    )
                    self.fail(cell, stage, exc, family)
        finally:
            del model, tokenizer
            _release_memory()

    def run_all(self, todo: list[Cell]) -> None:
        """Score the cells ``todo``, model by model and revision by revision (each loaded once)."""
        for model_spec in self.spec.models:
            for revision in model_spec.revisions:
                mine = [c for c in todo if c.model is model_spec and c.revision == revision]
                if mine:
                    self.run_model(model_spec, revision, mine)

    def agreed_corpus(self, cell: Cell) -> Corpus:
        """The cell's corpus; under torchrun, every process raises if any failed to load it."""
        from .distributed import agree

        error: str | None = None
        try:
            corpus = self.corpus(cell.dataset)
        except Exception as exc:  # noqa: BLE001 - shared, so that every process fails the cell together
            error = _one_line(exc)
        error = agree(error)
        if error is not None:
            raise UserError(error)
        return corpus

    def run_cell(
        self,
        cell: Cell,
        model: Any,
        tokenizer: Any,
        counts: ParameterCounts,
        family: str,
        load_s: float,
    ) -> None:
        """Score one cell with a loaded model; the writing process commits the cell's folder."""
        from .distributed import shard_and_score

        corpus = self.agreed_corpus(cell)
        started = time.perf_counter()
        result = shard_and_score(
            model, tokenizer, corpus.documents, self.options, progress=self.progress
        )
        elapsed = time.perf_counter() - started
        if not self.writes:
            return
        if result.histogram.n_tokens == 0:
            raise UserError(
                f"every document of {cell.dataset.label} was skipped (fewer than 2 tokens "
                'each); use longer documents or bos = "always"'
            )
        settings = self.settings(cell, model, counts, family, corpus, result)
        summary = summarize(
            result.histogram, settings, rbp_ks=self.options.rbp_k, tokens=result.tokens
        )
        timing = {
            "elapsed_s": round(elapsed, 4),
            "model_load_s": round(load_s, 4),
            "tokens_per_s": round(result.histogram.n_tokens / elapsed, 1) if elapsed > 0 else None,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
        }
        self.commit(cell, result, summary, timing, family, counts)
        self.computed += 1
        self.done_count += 1
        self.log(
            f"[{self.done_count}/{self.total}] {cell.cell_id}: CE "
            f"{summary['cross_entropy']:.4f} = EE {summary['error_entropy']:.4f}"
            f" + SA {summary['self_alignment']:.4f} - Conf {summary['confidence']:.4f} "
            f"({summary['n_tokens']} tokens, {elapsed:.1f} s)"
        )

    def settings(
        self,
        cell: Cell,
        model: Any,
        counts: ParameterCounts,
        family: str,
        corpus: Corpus,
        result: ScoreResult,
    ) -> dict[str, Any]:
        """What a cell's summary records about how it was computed."""
        parameter = next(model.parameters())
        return {
            "model": cell.key.model,
            "model_id": cell.model.id,
            "revision": cell.revision,
            "family": family,
            "non_embedding_params": counts.non_embedding,
            "total_params": counts.total,
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
        family: str,
        counts: ParameterCounts,
    ) -> None:
        """Write the cell's files into a hidden folder, seal it, and rename it into place."""

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


def orphan_cells(spec: SweepSpec, out_dir: Path) -> list[str]:
    """Cell folders in ``out_dir`` that ``spec`` does not plan (hidden leftovers aside)."""
    root = out_dir / CELLS_DIR
    if not root.is_dir():
        return []
    planned = {c.cell_id for c in plan_cells(spec)}
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir() and not d.name.startswith(".") and d.name not in planned
    )


def update_families(states: list[CellState], out_dir: Path) -> None:
    """A family given in the spec after a cell was finished is written into its cell.json (the
    numbers do not change, so nothing is recomputed)."""
    for state in states:
        family, record = state.cell.model.family, state.record
        if (
            state.status == "done"
            and record is not None
            and family is not None
            and record.family != family
        ):
            write_cell_record(
                out_dir / CELLS_DIR / state.cell.cell_id,
                record.key,
                family=family,
                non_embedding_params=record.non_embedding_params,
                total_params=record.total_params,
                summary=record.summary,
            )


def run_sweep(
    spec_path: Path | str,
    out_dir: Path | str,
    *,
    dry_run: bool = False,
    progress: bool = True,
    retry_failed: bool = False,
) -> SweepOutcome:
    """Run (or with ``dry_run`` only list) every cell of the spec at ``spec_path`` into ``out_dir``.

    Finished cells are skipped, damaged or stale ones redone, failed ones skipped unless
    ``retry_failed``. The returned outcome holds every cell's final state; ``outcome.ok`` is True
    when all are done. Raises :class:`UserError` for a bad spec or an unusable ``out_dir``.

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
        states = check_data(
            sweep_states(spec, out), _Runner(spec, out, progress=False, writes=False).corpus
        )
        return SweepOutcome(out, states, dry_run=True, orphans=orphan_cells(spec, out))
    started = time.perf_counter()
    from .distributed import init_distributed, is_main_process

    init_distributed(spec.run.device)  # under torchrun: every process scores a shard, rank 0 writes
    main = is_main_process()
    with contextlib.ExitStack() as stack:
        _lock_everywhere(stack, out, main)
        if main:
            clean_leftovers(out / CELLS_DIR)
            atomic_write_text(out / SPEC_COPY, spec.text)
        runner = _Runner(spec, out, progress, writes=main)
        runner.run_all(_cells_to_compute(spec, out, runner, retry_failed=retry_failed))
        states = check_data(
            sweep_states(spec, out),
            runner.corpus,
            hub_loaded={
                label for label, value in runner.corpora.items() if not isinstance(value, Exception)
            },
        )
    return SweepOutcome(
        out,
        states,
        runner.computed,
        runner.failed,
        time.perf_counter() - started,
        orphans=orphan_cells(spec, out),
    )


def _lock_everywhere(stack: contextlib.ExitStack, out: Path, main: bool) -> None:
    """Lock ``out`` on the writing process (until ``stack`` closes); under torchrun every process
    stops if it could not."""
    from .distributed import agree

    lock_error = None
    if main:
        try:
            stack.enter_context(sweep_lock(out))
        except UserError as exc:
            lock_error = str(exc)
    lock_error = agree(lock_error)
    if lock_error is not None:
        raise UserError(lock_error)


def _computes(state: CellState, retry_failed: bool) -> bool:
    return state.status == "pending" or (retry_failed and state.status == "failed")


def _cells_to_compute(
    spec: SweepSpec, out: Path, runner: _Runner, *, retry_failed: bool
) -> list[Cell]:
    """The cells this run computes (pending ones, failed ones too with ``retry_failed``), after
    redoing cells whose documents changed and writing families given since."""
    from .distributed import barrier

    states = sweep_states(spec, out)
    computed = {s.cell.dataset.label for s in states if _computes(s, retry_failed)}
    states = check_data(states, runner.corpus, hub_loaded=computed)
    barrier()  # every process has read the same states before rank 0 writes anything
    if runner.writes:
        update_families(states, out)
    todo = [s.cell for s in states if _computes(s, retry_failed)]
    runner.total = len(todo)
    skipped = len(states) - len(todo)
    runner.log(
        f"sweep {out}: {len(states)} cells, {skipped} already finished or failed, "
        f"{len(todo)} to compute"
    )
    return todo


def format_states(states: list[CellState]) -> str:
    """A plain-text table of cell states (the ``--dry-run`` listing)."""
    rows = [("STATUS", "CELL", "MODEL", "REVISION", "DATASET", "DETAIL")]
    for s in states:
        k = s.cell.key
        rows.append((s.status, s.cell.cell_id, k.model, k.revision or "main", k.dataset, s.detail))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join(
        "  ".join(r[i].ljust(widths[i]) for i in range(5)) + ("  " + r[5] if r[5] else "")
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
