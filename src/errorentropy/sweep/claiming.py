"""The claiming process of a worker: its plan (the cells left, in the spec's order), which cell it
claims next (its loaded model's first, then models no other worker is on), and whether a claimed
cell still needs computing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from errorentropy.sweep.cells import (
    CELLS_DIR,
    read_failure,
)
from errorentropy.sweep.claims import FINAL, Claim, ClaimBoard, Holder
from errorentropy.sweep.inputs import _Inputs
from errorentropy.sweep.plan import (
    Cell,
    CellState,
    _computes,
    check_data,
    check_weights,
    sweep_states,
    update_families,
)
from errorentropy.sweep.spec import (
    SweepSpec,
)

if TYPE_CHECKING:
    pass


_WAIT = "\x00wait"  # rank 0 to the other processes: nothing to compute yet, ask again


@dataclass
class _Plan:
    """What the claiming process knows: the cells left to compute (in the spec's order), every
    cell's state when planned, each cell's latest attempt then, and the claims it holds."""

    todo: list[Cell]
    states: dict[str, CellState]
    seen: dict[str, int]
    retry_failed: bool
    # The failure record of each failed cell when planned: retried only while it stands unchanged
    # (another worker may have retried it since), wherever it came from (merge copies them).
    failures: dict[str, dict[str, Any] | None] = field(default_factory=dict)
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


class _Claimer:
    """The claims of the writing process of a worker: it plans, claims the next cell, and checks
    under each fresh claim that the cell still needs computing."""

    def __init__(
        self,
        spec: SweepSpec,
        out_dir: Path,
        board: ClaimBoard,
        inputs: _Inputs,
        log: Callable[[str], None],
    ) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.cells_root = out_dir / CELLS_DIR
        self.board = board
        self.inputs = inputs
        self.log = log
        self.plan: _Plan | None = None

    def make_plan(self, retry_failed: bool) -> _Plan:
        """Read every cell's state (cells whose documents or weights changed become pending),
        write families given since, and list the cells to compute."""
        states = sweep_states(self.spec, self.out_dir)
        computed = {s.cell.dataset.label for s in states if _computes(s, retry_failed)}
        states = check_data(states, self.inputs.corpus, hub_loaded=computed)
        states = check_weights(states, self.inputs.weights_now)
        update_families(states, self.out_dir, self.board)
        todo = [s.cell for s in states if _computes(s, retry_failed)]
        seen = {c.cell_id: _attempt(self.board.latest(c.cell_id)) for c in todo}
        self.log(
            f"sweep {self.out_dir}: {len(states)} cells, {len(states) - len(todo)} already "
            f"finished or failed, {len(todo)} to compute"
        )
        self.plan = _Plan(todo, {s.cell.cell_id: s for s in states}, seen, retry_failed)
        self.plan.failures = {
            s.cell.cell_id: read_failure(self.cells_root / s.cell.cell_id)
            for s in states
            if s.status == "failed" and retry_failed
        }
        return self.plan

    def next_step(self, plan: _Plan, mine: tuple[str, str | None] | None) -> str | None:
        """The id of the next cell this worker claimed (``mine``: the group of the model it holds
        loaded); :data:`_WAIT` after a pause when every cell left is held by a living worker; None
        when no cell is left to anyone."""
        board = self.board
        holders = {c.cell_id: board.latest(c.cell_id) for c in plan.todo}
        plan.todo = [
            c for c in plan.todo if not _finished_since(holders[c.cell_id], plan.seen[c.cell_id])
        ]
        held = {c.cell_id for c in plan.todo if _alive(board, holders[c.cell_id])}
        busy = {c.group for c in plan.todo if c.cell_id in held}
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
        finished it since the plan; a failure is retried only if it is the one planned)."""
        state = self.inputs.fresh_state(cell)
        if state.status == "pending":
            return True
        if state.status == "failed" and plan.retry_failed and cell.cell_id in plan.failures:
            return read_failure(self.cells_root / cell.cell_id) == plan.failures[cell.cell_id]
        return False

    def weights_loaded(self, cell: Cell, fingerprint: str | None) -> None:
        """The weights of ``cell``'s model and revision are known now: done cells of them that
        recorded other weights (a hub branch moved) are computed again."""
        plan, board = self.plan, self.board
        if plan is None or fingerprint is None:
            return
        for cell_id, state in list(plan.states.items()):
            if state.cell.group != cell.group or state.status != "done":
                continue
            (now,) = check_weights([state], self.inputs.weights_now)
            if now.status == "pending":
                plan.states[cell_id] = now
                plan.todo.insert(0, state.cell)
                plan.seen[cell_id] = _attempt(board.latest(cell_id))
                self.log(f"{cell_id}: {now.detail}")
