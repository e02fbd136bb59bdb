"""What a worker reads besides the cells: each dataset's corpus (loaded once), the fingerprint of
the weights each model and revision names now, and the model it holds loaded."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from errorentropy.data.corpus import Corpus, load_corpus
from errorentropy.errors import UserError
from errorentropy.models.provenance import FINGERPRINTS_DIR, Provenance, local_fingerprint
from errorentropy.sweep.plan import (
    Cell,
    CellState,
    cell_state,
    check_data,
    check_weights,
)
from errorentropy.sweep.spec import (
    DatasetSpec,
    ModelSpec,
    SweepSpec,
)

if TYPE_CHECKING:
    from errorentropy.models.loading import ParameterCounts


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


class _Inputs:
    """A worker's datasets and weights fingerprints: each corpus loaded once (a loading error is
    kept and raised again for every cell of it), each fingerprint read once."""

    def __init__(self, out_dir: Path, *, reads_weights: bool) -> None:
        self.out_dir = out_dir
        self.known = out_dir / FINGERPRINTS_DIR  # local weights' fingerprints by their files' key
        self.reads_weights = reads_weights  # False in a dry run: noted fingerprints only
        self.corpora: dict[str, Corpus | Exception] = {}
        # Fingerprint of the weights each (model, revision) names now (None: not known).
        self.fingerprints: dict[tuple[str, str | None], str | None] = {}

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
                cell.model, cell.revision, self.known, read=self.reads_weights
            )
        return self.fingerprints[cell.group]

    def note_loaded(self, cell: Cell, fingerprint: str | None) -> None:
        """``cell``'s weights were just loaded (and hashed): remember them, and note a local
        folder's fingerprint with its files' key for later plans and dry runs."""
        self.fingerprints[cell.group] = fingerprint
        _local_fingerprint(cell.model, cell.revision, self.known, read=True)

    def fresh_state(self, cell: Cell) -> CellState:
        """The cell's state now, documents and weights compared as planning compares them."""
        states = check_data(
            [cell_state(self.out_dir, cell)], self.corpus, hub_loaded=self.loaded_datasets()
        )
        return check_weights(states, self.weights_now)[0]


def load_group(spec: SweepSpec, cell: Cell) -> _Loaded:
    """``cell``'s model at its revision, loaded with its parameter counts and family; under
    torchrun every process learns whether any failed to load it. A failure is kept in
    ``error``: every cell of that model fails with it."""
    from errorentropy.models.loading import count_parameters, family_of, load_model
    from errorentropy.scoring.distributed import agree

    loaded = _Loaded(cell.group)
    started = time.perf_counter()
    try:
        loaded.model, loaded.tokenizer = load_model(
            cell.model.source,
            revision=cell.revision,
            dtype=spec.model_dtype(cell.model),
            device=spec.run.device,
            trust_remote_code=spec.model_trust(cell.model),
            device_map=spec.run.device_map,
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
    return loaded
