"""Which cells the fits use: each (dataset, model)'s final revision, the members of a dataset's
fits, and notes on cells that were scored unlike the others.

Each function returns what it found and the notes it has to say (:class:`FitNote`), never
appending to a caller's list: the fit gathers the notes in order.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from errorentropy.errors import UserError
from errorentropy.fits.records import FitNote
from errorentropy.sweep.cells import CellRecord, load_cells, mixed_settings

Noted = tuple[list[CellRecord], list[FitNote]]  # the chosen cells and what to say about them


def _is_main(revision: str | None) -> bool:
    return revision is None or revision == "main"


def choose_final(cells: list[CellRecord]) -> Noted:
    """Each (dataset, model)'s final revision: ``main`` (or no revision) if present, else the
    largest step; with a note for each model whose choice was a guess.

    Other revisions (training-dynamics checkpoints) are left to the report. When no revision
    is main and none names a step, the first by name is used and a note says so.
    """
    by_model: dict[tuple[str, str], list[CellRecord]] = defaultdict(list)
    for cell in cells:
        by_model[(cell.key.dataset, cell.key.model)].append(cell)
    finals, notes = [], []
    for (dataset, model), group in sorted(by_model.items()):
        mains = [c for c in group if _is_main(c.key.revision)]
        stepped = [c for c in group if c.step is not None]
        if mains:
            finals.append(mains[0])
        elif stepped:
            finals.append(max(stepped, key=lambda c: c.step or 0))
        else:
            chosen = sorted(group, key=lambda c: c.key.revision or "")[0]
            finals.append(chosen)
            if len(group) > 1:
                message = (
                    f"{model} on {dataset}: no main revision and no step in its revision names; "
                    f"used {chosen.key.revision!r}"
                )
                notes.append(FitNote("revision", dataset, None, None, message))
    return finals, notes


def select_final(cells: list[CellRecord]) -> list[CellRecord]:
    """Each (dataset, model)'s final revision, as :func:`choose_final` picks it."""
    return choose_final(cells)[0]


def settings_notes(cells: list[CellRecord]) -> list[FitNote]:
    """Notes on cells of one dataset scored with different data, windows, dtype or head."""
    notes = []
    for dataset in sorted({c.key.dataset for c in cells}):
        group = [c for c in cells if c.key.dataset == dataset]
        mixed = mixed_settings(group)
        if mixed:
            message = (
                f"{mixed}: its fits compare unlike numbers; rescore the odd cells or give them "
                "another dataset label"
            )
            notes.append(FitNote("mixed-settings", dataset, None, None, message))
        for key in ("dtype", "head_path"):
            values = sorted({str(c.summary.get(key)) for c in group})
            if len(values) > 1:
                message = (
                    f"{dataset}: cells were scored with {key} {', '.join(values)}; EE counts "
                    "ties, which 16-bit logits make commoner, so compare such cells with care"
                )
                notes.append(FitNote("mixed-settings", dataset, None, None, message))
    return notes


def fit_members(finals: list[CellRecord], dataset: str) -> Noted:
    """A dataset's final cells with a positive parameter count, by size; a note for each other."""
    members, notes = [], []
    for c in finals:
        if c.key.dataset != dataset:
            continue
        if c.non_embedding_params <= 0:
            message = (
                f"{c.key.model} on {dataset}: non-embedding parameter count is "
                f"{c.non_embedding_params}; left out of the fits"
            )
            notes.append(FitNote("no-params", dataset, None, None, message))
            continue
        members.append(c)
    return sorted(members, key=lambda c: (c.non_embedding_params, c.key.model)), notes


def load_finished(sweep_dir: Path | str) -> list[CellRecord]:
    """The sweep's finished cells; a folder without any is the user's error."""
    cells = load_cells(sweep_dir)
    if not cells:
        raise UserError(
            f"{sweep_dir} has no finished cells; run or resume `errorentropy sweep` first"
        )
    return cells
