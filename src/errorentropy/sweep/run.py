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
import time
from pathlib import Path
from typing import TYPE_CHECKING

from errorentropy.errors import ArgumentError, UserError, as_path_text
from errorentropy.storage import atomic_write_text
from errorentropy.sweep.cells import (
    CELLS_DIR,
)
from errorentropy.sweep.claims import ClaimBoard
from errorentropy.sweep.costs import (
    TokenEstimate,
    Wanted,
    read_timing,
    throughputs,
    time_left,
    token_estimates,
)
from errorentropy.sweep.inputs import _Inputs
from errorentropy.sweep.plan import (
    SPEC_COPY,
    STALE_TMP_S,
    SweepOutcome,
    check_data,
    check_weights,
    clean_leftovers,
    mark_running,
    orphan_cells,
    same_weights,
    sweep_lock,
    sweep_states,
)
from errorentropy.sweep.spec import (
    SweepSpec,
    load_spec,
)
from errorentropy.sweep.worker import _Runner

if TYPE_CHECKING:
    pass


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
    spec = load_spec(as_path_text(spec_path, "spec_path"))
    out = Path(as_path_text(out_dir, "out_dir"))
    if out.exists() and not out.is_dir():
        raise ArgumentError(
            f"out_dir={str(out)!r} is a file; pass a folder for the sweep results", "out_dir"
        )
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
            check_data(
                sweep_states(spec, out),
                runner.inputs.corpus,
                hub_loaded=runner.inputs.loaded_datasets(),
            ),
            runner.inputs.weights_now,
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
    reader = _Inputs(out, reads_weights=False)
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
