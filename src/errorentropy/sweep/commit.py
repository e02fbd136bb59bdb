"""Putting a finished (or failed) cell in place when other workers may be committing it too.

A cell is built in a hidden sibling folder and renamed into ``cells/<cell_id>``. Renaming a
folder onto a folder that holds files fails (ENOTEMPTY), so two commits never mix; what stands at
the final name when this worker gets there decides what happens:

* nothing, or something that may be replaced (a damaged cell, one of other settings, documents or
  weights, a failure record when a result arrives): this worker's folder goes in;
* a cell that must stay (``stands``: a verified cell of the same settings and inputs, put there
  by a worker that took this one's cell over while it was paused): this worker's folder is
  dropped; that is no error, and nothing is redone.

Whether another worker took the cell over is asked again immediately before the rename.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from errorentropy.storage import fsync_directory

# Times a commit tries again after another commit took the final name between its look and its
# rename (each try sees that commit's folder and keeps it, or replaces a replaceable one).
_TRIES = 3


def commit_cell(
    cells_root: Path,
    cell_id: str,
    build: Callable[[Path], None],
    *,
    stands: Callable[[Path], bool],
    superseded: Callable[[], bool] = lambda: False,
) -> bool:
    """Build ``cells_root/cell_id`` in a hidden folder and rename it into place, unless
    ``superseded()`` says another worker holds the cell now or the folder there ``stands``.
    Returns whether this worker's folder went in."""
    cells_root.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = cells_root / f".{cell_id}.tmp-{tag}"
    tmp.mkdir()
    try:
        build(tmp)
        for _ in range(_TRIES):
            if superseded():
                return False
            placed = _place(tmp, cells_root / cell_id, cells_root / f".{cell_id}.old-{tag}", stands)
            if placed is not None:
                return placed
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _place(tmp: Path, final: Path, old: Path, stands: Callable[[Path], bool]) -> bool | None:
    """One try: True when ``tmp`` went in, False when what stands at ``final`` stays, None when
    another commit took ``final`` meanwhile (look again)."""
    moved = False
    if final.exists():
        if stands(final):
            return False
        try:
            os.rename(final, old)  # aside: deleted once the new folder is in
        except FileNotFoundError:
            return None
        moved = True
        if stands(old):  # committed between the look and the move: it goes back
            _put_back(old, final)
            return False
    try:
        os.rename(tmp, final)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            if moved:
                _put_back(old, final)
            raise
        if moved:
            shutil.rmtree(old, ignore_errors=True)  # replaceable, and replaced by another
        return None
    except BaseException:
        if moved:
            _put_back(old, final)
        raise
    fsync_directory(final.parent)
    if moved:
        shutil.rmtree(old, ignore_errors=True)
    return True


def _put_back(old: Path, final: Path) -> None:
    """Return a moved-aside folder to its name, unless another commit took the name."""
    try:
        os.rename(old, final)
    except OSError:
        shutil.rmtree(old, ignore_errors=True)
