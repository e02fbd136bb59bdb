"""``errorentropy merge OUT SRC...``: unite the verified cells of several sweep folders."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from errorentropy.errors import UserError
from errorentropy.scoring.results import HISTOGRAM_FILE, TOKENS_FILE
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable
from errorentropy.storage import atomic_write_text, commit_folder
from errorentropy.sweep.cells import (
    CELLS_DIR,
    COMPARABLE_KEYS,
    CellRecord,
    comparability,
    read_cell,
    read_failure,
)
from errorentropy.sweep.plan import (
    SPEC_COPY,
    clean_leftovers,
    sweep_lock,
)

if TYPE_CHECKING:
    pass


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

    Every verified cell, in ``out_dir`` and the sources, must be scored with the same settings
    per dataset (else a :class:`UserError` names the setting and the folders), and a cell present
    in several places must hold the same histogram and tokens everywhere (else one names it);
    both are checked before anything is created or copied. Damaged cells are ignored; a failure
    record is copied only where no source has that cell done.
    """
    out = Path(out_dir)
    roots = _source_roots(out, sources)
    out_root = out / CELLS_DIR
    _find_cells(out_root, roots)  # a refusal leaves nothing behind, not even an empty OUT
    outcome = MergeOutcome(out)
    with sweep_lock(out):
        clean_leftovers(out_root)
        out_root.mkdir(parents=True, exist_ok=True)
        found = _find_cells(out_root, roots)  # again under the lock: OUT may have changed
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
    """The verified cells of the target and the sources (reading only): all scored alike, and a
    cell in several places holding the same numbers in each."""
    located = [(root, _verified(root)) for root in [out_root, *roots]]
    _refuse_unlike(
        [(root, record) for root, (records, _) in located for record in records.values()]
    )
    records = dict(located[0][1][0])
    done = {name: out_root / name for name in records}
    found = _Found(records, done, dict(done))
    for root, (verified, failed) in located[1:]:
        for name, path in failed.items():
            found.failed.setdefault(name, path)
        for name, record in verified.items():
            if name not in found.origin:
                found.origin[name], found.records[name] = root / name, record
                continue
            problem = _same_content(found.origin[name], root / name)
            if problem:
                raise UserError(
                    f"cell {name} differs between {found.origin[name].parent.parent} and "
                    f"{root.parent} ({problem}); delete it from one of them and merge again"
                )
    return found


def _verified(root: Path) -> tuple[dict[str, CellRecord], dict[str, Path]]:
    """The verified cells of one ``cells`` folder (none if it is not there yet), and its cells
    that hold only a failure record."""
    records: dict[str, CellRecord] = {}
    failed: dict[str, Path] = {}
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.name.startswith(".") or not d.is_dir():
            continue
        record = read_cell(d)
        if record is not None:
            records[d.name] = record
        elif read_failure(d) is not None:
            failed[d.name] = d
    return records, failed


def _refuse_unlike(cells: list[tuple[Path, CellRecord]]) -> None:
    """A :class:`UserError` naming the first setting two folders scored one dataset with
    differently (fits over such cells would compare unlike numbers)."""
    seen: dict[str, tuple[tuple[Any, ...], Path, CellRecord]] = {}
    for root, record in cells:
        mine = comparability(record)
        first = seen.setdefault(record.key.dataset, (mine, root, record))
        if first[0] == mine:
            continue
        differ = ", ".join(
            f"{k} {a!r} in {first[1].parent} vs {b!r} in {root.parent}"
            for k, a, b in zip(COMPARABLE_KEYS, first[0], mine)
            if a != b
        )
        raise UserError(
            f"merge would mix cells of dataset {record.key.dataset!r} scored with different "
            f"settings ({differ}; e.g. {first[2].key.cell_id} and {record.key.cell_id}); merge "
            "only sweeps run with the same data and [scoring] settings, or give the datasets "
            "different labels"
        )


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
