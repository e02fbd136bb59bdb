"""Has EE settled with the documents scored? Each cell's check
(:func:`errorentropy.stats.convergence.ee_convergence`), read from its summary or computed from its
token table, as rows of fits.json, and one note per dataset naming the cells that have not."""

from __future__ import annotations

from errorentropy.errors import UserError
from errorentropy.fits.records import CellConvergence, FitNote
from errorentropy.stats.convergence import Convergence, ee_convergence
from errorentropy.stats.quantities import EE
from errorentropy.sweep.cells import CellRecord


def _cell_convergence(cell: CellRecord) -> Convergence | None:
    """The cell's :class:`~errorentropy.stats.convergence.Convergence`: read from its summary, or
    computed from its token table (cells scored before summaries held it); None without tokens.
    """
    recorded = cell.summary.get("ee_convergence")
    if isinstance(recorded, dict):
        try:
            return Convergence.from_dict(recorded)
        except (KeyError, TypeError, ValueError, IndexError):
            pass  # damaged: computed again below
    try:
        table = cell.tokens()
    except UserError:
        return None  # the bootstrap notes the missing tokens
    return ee_convergence(table) if table.rank.size else None


def convergence_rows(cells: list[CellRecord], final_ids: set[str]) -> list[CellConvergence]:
    """Every cell's convergence check, by dataset then size (cells without tokens left out)."""
    rows = []
    for c in sorted(cells, key=lambda c: (c.key.dataset, c.non_embedding_params, c.key.cell_id)):
        check = _cell_convergence(c)
        if check is not None:
            final = c.key.cell_id in final_ids
            rows.append(
                CellConvergence(
                    c.key.cell_id, c.key.model, c.key.dataset, c.non_embedding_params, final, check
                )
            )
    return rows


def convergence_notes(rows: list[CellConvergence]) -> list[FitNote]:
    """One note per dataset naming the final cells whose EE has not settled, and one counting
    the other revisions' (training checkpoints) that have not."""
    notes = []
    for dataset in sorted({r.dataset for r in rows}):
        here = [r for r in rows if r.dataset == dataset and r.check.settled is not None]
        for final in (True, False):
            group = [r for r in here if r.final == final]
            loose = [r for r in group if not r.check.settled]
            if not loose:
                continue
            mm = sum(bool(r.check.settled_miller_madow) for r in loose)
            if final:
                names = ", ".join(f"{r.model} ({r.check.change:+.3f})" for r in loose)
                what = f"EE has not settled in {len(loose)} of {len(group)} final cells: {names}"
            else:
                what = (
                    f"EE has not settled in {len(loose)} of {len(group)} cells at other "
                    "revisions (training checkpoints)"
                )
            message = (
                f"{dataset}: {what}. From half to all documents the plug-in EE moved by more "
                f"than its bootstrap interval allows (Miller-Madow settled in {mm} of "
                f"{len(loose)}): these values still depend on how many documents were scored; "
                "score more documents"
            )
            notes.append(FitNote("ee-not-settled", dataset, None, EE.key, message))
    return notes
