"""Planning a sweep: its cells, where each stands on disk (done, failed, running, pending and
why), which done cells are stale (other documents or weights), orphan folders, the folder's lock
and a killed writer's leftovers, and the ``--dry-run`` table."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from errorentropy.data.corpus import HUB_PREFIX, PRESETS, Corpus
from errorentropy.errors import UserError
from errorentropy.models.provenance import weights_change
from errorentropy.sweep.cells import (
    CELLS_DIR,
    CellKey,
    CellRecord,
    SameWeights,
    distinct_weights,
    read_cell,
    read_failure,
    write_cell_record,
)
from errorentropy.sweep.claims import ClaimBoard
from errorentropy.sweep.costs import (
    TimeLeft,
    TokenEstimate,
)
from errorentropy.sweep.spec import (
    DatasetSpec,
    ModelSpec,
    SweepSpec,
    cell_settings,
    legacy_cell_settings,
    settings_digest,
)

if TYPE_CHECKING:
    pass


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
