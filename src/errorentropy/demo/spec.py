"""The sweep spec a user would write for the ladder (``DIR/sweep.toml``), and the removal of sweep
cells computed from other weights or other held-out documents."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from errorentropy.demo.data import corpus_label, digest
from errorentropy.demo.settings import DemoSettings
from errorentropy.errors import UserError
from errorentropy.storage import (
    atomic_write_text,
    read_checked_json,
    write_checked_json,
)
from errorentropy.sweep.cells import CELLS_DIR, slug


def sweep_spec_text(
    out: Path,
    settings: DemoSettings,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
    device: str,
) -> str:
    """The TOML spec a user would write for this ladder (paths relative to ``DIR``)."""
    lines = [
        "# Written by `errorentropy demo`: every model and checkpoint of the ladder on "
        "held-out prose and code.",
        "# Rerun by hand, from this folder: errorentropy sweep sweep.toml --out sweep && "
        "errorentropy report sweep",
        "",
        "[scoring]",
        f"max_length = {settings.max_length}",
        f"batch_size = {settings.score_batch_size}",
        "profile = true  # the sorted-probability profile of Fig. 5",
        "",
        "[run]",
        'dtype = "float32"',
        f'device = "{device}"',
    ]
    for record in records:
        revisions = ", ".join(f'"{r}"' for r in record["checkpoints"])
        lines += [
            "",
            "[[models]]",
            f'id = "models/{record["name"]}"',
            'family = "demo-neox"',
            f"revisions = [{revisions}]",
        ]
    for corpus, path in heldout.items():
        rel = path.relative_to(out).as_posix()
        lines += ["", "[[datasets]]", f'data = "{rel}"', f'label = "{corpus_label(corpus)}"']
    return "\n".join(lines) + "\n"


def write_spec(
    out: Path,
    settings: DemoSettings,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
    device: str,
) -> Path:
    """``DIR/sweep.toml`` (:func:`sweep_spec_text`), rewritten only when its text changes."""
    spec_path = out / "sweep.toml"
    text = sweep_spec_text(out, settings, records, heldout, device)
    if not spec_path.exists() or spec_path.read_text(encoding="utf-8") != text:
        atomic_write_text(spec_path, text)
    return spec_path


def invalidate_stale_cells(
    out: Path,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
    settings: DemoSettings,
    log: Any,
) -> int:
    """Delete sweep cells computed from other weights or other held-out documents.

    The sweep knows a cell by model folder, revision and dataset path, not by the weights or the
    text inside; when the demo retrains a model or rewrites a held-out file under the same name,
    the cells computed from the old ones are removed here so the sweep recomputes them."""
    record_path = out / "sweep" / "demo-inputs.json"
    data_keys = {
        corpus_label(c): digest(
            {"file": p.read_text(encoding="utf-8"), "max_length": settings.max_length}
        )
        for c, p in heldout.items()
    }
    model_keys = {r["name"]: r["key"] for r in records}
    previous: dict[str, Any] = {}
    if record_path.exists():
        try:
            previous = read_checked_json(record_path, "demo sweep inputs")
        except UserError:
            previous = {}
    cells_root = out / "sweep" / CELLS_DIR
    removed = 0
    if cells_root.is_dir():
        for cell in sorted(cells_root.iterdir()):
            model, _, rest = cell.name.partition("__")
            dataset = rest.rpartition("__")[2]
            stale_model = any(
                slug(name) == model and previous.get("models", {}).get(name) != key
                for name, key in model_keys.items()
            )
            stale_data = any(
                slug(label) == dataset and previous.get("data", {}).get(label) != key
                for label, key in data_keys.items()
            )
            dropped = model not in {slug(name) for name in model_keys} or dataset not in {
                slug(label) for label in data_keys
            }
            if stale_model or stale_data or dropped:  # a size left out of --sizes leaves too
                shutil.rmtree(cell)
                removed += 1
    if removed:
        log(
            f"sweep: removed {removed} cells computed from other weights, other held-out "
            "documents or models no longer in the ladder"
        )
    write_checked_json(record_path, {"models": model_keys, "data": data_keys})
    return removed
