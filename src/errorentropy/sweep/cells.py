"""Sweep cells on disk: one (model, revision, dataset) result each, written so a kill loses nothing.

Layout of a sweep folder::

    SWEEP/cells/<cell_id>/histogram.json   the rank histogram
    SWEEP/cells/<cell_id>/tokens.npz       per-token doc, position, rank, logprob (for bootstraps)
    SWEEP/cells/<cell_id>/profile.json     optional sorted-probability profile
    SWEEP/cells/<cell_id>/cell.json        written last: the cell's identity, x axis, summary and
                                           the SHA-256 of every file above
                                           (format errorentropy-cell v1)
    SWEEP/cells/<cell_id>/failure.json     instead of cell.json when the cell failed

A cell counts as done only when ``cell.json`` verifies and every file it lists matches its
checksum; anything else (a kill mid-write, a truncated copy) is redone, never silently read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errorentropy.data.corpus import PRESET_SEED
from errorentropy.errors import UserError
from errorentropy.scoring.results import PROTOCOL_KEYS
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.tokens import TokenTable
from errorentropy.storage import read_checked_json, sha256_hex, write_checked_json

CELL_FORMAT = "errorentropy-cell"
CELL_VERSION = 1
CELLS_DIR = "cells"
CELL_FILE = "cell.json"
FAILURE_FILE = "failure.json"


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    # No leading dot: hidden names are a killed write's leftovers.
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).lstrip(".-").rstrip("-") or "x"


def step_of(revision: str | None) -> int | None:
    """The training step a revision names (``step1000``, ``step-000128``, ``step_16``), else None.

    Only names of that form count: a commit hash or a tag such as ``v1`` names no step.
    """
    if revision is None:
        return None
    match = re.fullmatch(r"step[-_]?(\d+)", revision.strip())
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class CellKey:
    """Which model, at which revision, on which dataset."""

    model: str
    revision: str | None
    dataset: str

    @property
    def cell_id(self) -> str:
        """The cell's folder name: ``MODEL__REVISION__DATASET``, each part a :func:`slug`."""
        return f"{slug(self.model)}__{slug(self.revision or 'main')}__{slug(self.dataset)}"


@dataclass(frozen=True)
class CellRecord:
    """A finished cell: its key, family, parameter counts, training step and summary."""

    key: CellKey
    family: str
    non_embedding_params: int
    total_params: int
    step: int | None
    summary: dict[str, Any]
    path: Path

    def histogram(self) -> RankHistogram:
        """The cell's rank histogram."""
        return RankHistogram.load(self.path / "histogram.json")

    def tokens(self) -> TokenTable:
        """Every token the cell scored (document, position, rank, log-probability)."""
        return TokenTable.load(self.path / "tokens.npz")


def cell_path(sweep_dir: Path | str, key: CellKey) -> Path:
    """The folder of cell ``key`` in a sweep folder."""
    return Path(sweep_dir) / CELLS_DIR / key.cell_id


def write_cell_record(
    directory: Path,
    key: CellKey,
    *,
    family: str,
    non_embedding_params: int,
    total_params: int,
    summary: dict[str, Any],
) -> None:
    """Seal a cell whose data files are already in ``directory``: checksum them and write cell.json
    last."""
    files = {
        p.name: sha256_hex(p.read_bytes())
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name not in (CELL_FILE, FAILURE_FILE) and not p.name.startswith(".")
    }
    (directory / FAILURE_FILE).unlink(missing_ok=True)
    write_checked_json(
        directory / CELL_FILE,
        {
            "format": CELL_FORMAT,
            "version": CELL_VERSION,
            "model": key.model,
            "revision": key.revision,
            "dataset": key.dataset,
            "family": family,
            "non_embedding_params": int(non_embedding_params),
            "total_params": int(total_params),
            "step": step_of(key.revision),
            "summary": summary,
            "files": files,
        },
    )


def _well_formed(body: dict[str, Any]) -> bool:
    """cell.json holds every field with its type, and lists plain file names including the
    histogram."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    files = body.get("files")
    return (
        all(isinstance(body.get(k), str) for k in ("model", "dataset", "family"))
        and (body.get("revision") is None or isinstance(body.get("revision"), str))
        and is_int(body.get("non_embedding_params"))
        and is_int(body.get("total_params"))
        and (body.get("step") is None or is_int(body.get("step")))
        and isinstance(body.get("summary"), dict)
        and isinstance(files, dict)
        and "histogram.json" in files
        and all(
            isinstance(d, str)
            and isinstance(n, str)
            and n == Path(n).name
            and n not in ("", ".", "..")
            for n, d in files.items()
        )
    )


def read_cell(directory: Path) -> CellRecord | None:
    """The cell in ``directory`` if it is complete and intact, else None (to be redone)."""
    if not (directory / CELL_FILE).exists():
        return None
    try:
        body = read_checked_json(directory / CELL_FILE, "cell")
    except UserError:
        return None
    if (
        body.get("format") != CELL_FORMAT
        or body.get("version") != CELL_VERSION
        or not _well_formed(body)
    ):
        return None
    for name, digest in body["files"].items():
        try:  # a replaceable folder may be moved aside by another worker's commit meanwhile
            if sha256_hex((directory / name).read_bytes()) != digest:
                return None
        except OSError:
            return None
    key = CellKey(body["model"], body["revision"], body["dataset"])
    return CellRecord(
        key,
        body["family"],
        body["non_embedding_params"],
        body["total_params"],
        body["step"],
        body["summary"],
        directory,
    )


def write_failure(
    directory: Path,
    key: CellKey,
    *,
    error: str,
    stage: str,
    family: str | None = None,
    spec_digest: str | None = None,
    worker: str | None = None,
    attempt: int | None = None,
) -> None:
    """Record in ``directory`` that a cell failed: the one-line error, the stage it failed at, the
    digest of the settings it failed with (a failure under other settings is retried), and which
    worker failed it at which attempt (``--retry-failed`` retries a failure once per run)."""
    write_checked_json(
        directory / FAILURE_FILE,
        {
            "format": CELL_FORMAT + "-failure",
            "version": CELL_VERSION,
            "model": key.model,
            "revision": key.revision,
            "dataset": key.dataset,
            "family": family,
            "stage": stage,
            "error": error,
            "spec_digest": spec_digest,
            "worker": worker,
            "attempt": attempt,
        },
    )


def read_failure(directory: Path) -> dict[str, Any] | None:
    """The failure record in ``directory`` if there is an intact one, else None."""
    if not (directory / FAILURE_FILE).exists():
        return None
    try:
        return read_checked_json(directory / FAILURE_FILE, "failure record")
    except UserError:
        return None


def load_cells(sweep_dir: Path | str) -> list[CellRecord]:
    """Every complete cell of a sweep folder, sorted by (dataset, family, size, model, step)."""
    root = Path(sweep_dir) / CELLS_DIR
    if not root.is_dir():
        raise UserError(
            f"{sweep_dir} is not a sweep folder (no {CELLS_DIR}/ inside); run "
            f"`errorentropy sweep SPEC --out {sweep_dir}` first"
        )
    # Hidden folders are a killed write's leftovers (.NAME.tmp-*, .NAME.old-*): complete copies,
    # possibly of other settings, never results.
    records = [
        r
        for r in (
            read_cell(d)
            for d in sorted(root.iterdir())
            if d.is_dir() and not d.name.startswith(".")
        )
        if r is not None
    ]
    return sorted(
        records,
        key=lambda r: (r.key.dataset, r.family, r.non_embedding_params, r.key.model, r.step or 0),
    )


# Settings that must agree between cells of one dataset for their numbers to be comparable (the
# model, revision, dtype and head path may differ: they are what a sweep varies or notes).
COMPARABLE_KEYS = ("data_fingerprint", "samples", "seed", *PROTOCOL_KEYS)


def comparability(record: CellRecord) -> tuple[Any, ...]:
    """The settings of :data:`COMPARABLE_KEYS` a cell was computed with."""
    values = {k: record.summary.get(k) for k in COMPARABLE_KEYS}
    if values["samples"] is not None and values["seed"] is None:
        # Older cells recorded no seed where --samples alone shuffled with it.
        values["seed"] = PRESET_SEED
    return tuple(values.values())


def mixed_settings(records: list[CellRecord]) -> str | None:
    """None when every cell of each dataset shares :data:`COMPARABLE_KEYS`; else which differ, and
    where."""
    by_dataset: dict[str, dict[tuple[Any, ...], str]] = {}
    for r in records:
        by_dataset.setdefault(r.key.dataset, {}).setdefault(comparability(r), r.key.cell_id)
    for dataset, variants in sorted(by_dataset.items()):
        if len(variants) > 1:
            (a, cell_a), (b, cell_b) = list(variants.items())[:2]
            differ = ", ".join(
                f"{k} {x!r} vs {y!r}" for k, x, y in zip(COMPARABLE_KEYS, a, b) if x != y
            )
            return (
                f"dataset {dataset!r} holds cells scored differently ({differ}: {cell_a} vs "
                f"{cell_b})"
            )
    return None


# ---- revisions that hold the same weights ------------------------------------------------------


@dataclass(frozen=True)
class SameWeights:
    """Revisions of one model whose cells recorded one weights fingerprint: the same weights
    under several names (a hub branch serving another step's files). ``kept`` stands for them
    all; ``dropped`` are left out of fits and figures."""

    model: str
    fingerprint: str
    kept: str | None
    dropped: tuple[str | None, ...]
    why: str = "the lowest step"  # why ``kept`` was chosen

    def message(self) -> str:
        """One line saying which revisions hold the same weights and which one was kept."""
        names = ", ".join(_revision_name(r) for r in (self.kept, *self.dropped))
        left = ", ".join(_revision_name(r) for r in self.dropped)
        return (
            f"{self.model}: revisions {names} hold identical weights (fingerprint "
            f"{self.fingerprint[:12]}); kept {_revision_name(self.kept)} ({self.why}), "
            f"left out {left}"
        )


def _revision_name(revision: str | None) -> str:
    return revision or "main"


def _keep_first(record: CellRecord) -> tuple[Any, ...]:
    """Which of several revisions with one set of weights stands for them: the lowest step, then
    main, then the first by name."""
    revision = record.key.revision
    return (record.step is None, record.step or 0, revision not in (None, "main"), revision or "")


def _why(record: CellRecord) -> str:
    if record.step is not None:
        return "the lowest step"
    return "the main revision" if record.key.revision in (None, "main") else "the first by name"


def distinct_weights(records: list[CellRecord]) -> tuple[list[CellRecord], list[SameWeights]]:
    """The cells with each model's distinct weights once, and the revisions found to repeat
    weights.

    Within each (model, dataset), revisions whose cells recorded the same
    ``weights_fingerprint`` are one set of weights: the lowest step is kept and the others are
    dropped (cells without a fingerprint are always kept). Each repetition is reported once per
    model, whatever the datasets. Fits and the report both call this, so they agree on the cells.
    """
    groups: dict[tuple[str, str, str], list[CellRecord]] = {}
    for record in records:
        fingerprint = record.summary.get("weights_fingerprint")
        if isinstance(fingerprint, str) and fingerprint:
            key = (record.key.model, record.key.dataset, fingerprint)
            groups.setdefault(key, []).append(record)
    dropped: set[str] = set()
    found: dict[tuple[str, str, str | None, tuple[str | None, ...]], SameWeights] = {}
    for (model, _, fingerprint), members in groups.items():
        if len({m.key.revision for m in members}) < 2:
            continue
        ordered = sorted(members, key=_keep_first)
        dropped.update(m.key.cell_id for m in ordered[1:])
        same = SameWeights(
            model,
            fingerprint,
            ordered[0].key.revision,
            tuple(m.key.revision for m in ordered[1:]),
            _why(ordered[0]),
        )
        found.setdefault((model, fingerprint, same.kept, same.dropped), same)
    kept = [r for r in records if r.key.cell_id not in dropped]
    return kept, sorted(found.values(), key=lambda s: (s.model, s.fingerprint))
