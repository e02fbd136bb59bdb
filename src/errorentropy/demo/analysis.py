"""The user's path after training: the sweep, the fits and the report (reused when its cells and
fit settings are unchanged)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from errorentropy.demo.data import digest
from errorentropy.demo.settings import REPORT_RECORD, DemoSettings
from errorentropy.errors import UserError
from errorentropy.report.page import build_report
from errorentropy.storage import (
    read_checked_json,
    write_checked_json,
)
from errorentropy.sweep.run import run_sweep
from errorentropy.version import __version__


def run_analysis(
    out: Path,
    spec_path: Path,
    settings: DemoSettings,
    *,
    progress: bool,
    log: Any,
    report: bool = True,
    sweep_dir: Path | None = None,
) -> dict[str, Any]:
    """The user's path: sweep, fits, report (``report=False``: the sweep only), into
    ``sweep_dir`` (default ``DIR/sweep``)."""
    sweep_dir = sweep_dir or out / "sweep"
    result: dict[str, Any] = {"spec": str(spec_path), "sweep_dir": str(sweep_dir)}
    started = time.perf_counter()
    outcome = run_sweep(spec_path, sweep_dir, progress=progress)
    result["sweep_seconds"] = round(time.perf_counter() - started, 2)
    result["cells"] = {
        "done": outcome.count("done"),
        "failed": outcome.count("failed"),
        "computed_now": outcome.computed,
    }
    log(outcome.summary_line())
    if not outcome.ok:
        raise UserError(
            f"{outcome.count('failed')} sweep cells failed (see "
            f"{sweep_dir}/cells/*/failure.json); rerun `errorentropy sweep {spec_path} "
            f"--out {sweep_dir} --retry-failed`"
        )
    if report:
        result.update(_report(sweep_dir, settings, log))
    return result


def _report(sweep_dir: Path, settings: DemoSettings, log: Any) -> dict[str, Any]:
    """Fit and report the sweep, or reuse the report drawn from the same cells and settings."""
    cells = sorted((sweep_dir / "cells").glob("*/cell.json"))
    key = digest(
        {
            "cells": {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in cells},
            "n_boot": settings.n_boot,
            "seed": settings.seed,
            "version": __version__,
        }
    )
    record = sweep_dir / REPORT_RECORD
    previous = _previous_report(record, sweep_dir)
    if previous.get("key") == key:
        log(
            f"report: reusing {previous['report_html']} (same cells, same fit "
            f"settings; `errorentropy report {sweep_dir}` redraws it)"
        )
        keys = ("report_md", "report_html", "notes")
        reused: dict[str, Any] = {k: previous[k] for k in keys if k in previous}
        return {**reused, "report_seconds": 0.0}
    started = time.perf_counter()
    built = build_report(sweep_dir, run_fit=True, n_boot=settings.n_boot, seed=settings.seed)
    seconds = round(time.perf_counter() - started, 2)
    kept = {k: v for k, v in built.items() if k in ("report_md", "report_html", "notes")}
    write_checked_json(record, {"key": key, **kept})
    log(f"report: {built.get('report_html')} ({seconds:.1f} s)")
    return {"report_seconds": seconds, **kept}


def _previous_report(record: Path, sweep_dir: Path) -> dict[str, Any]:
    """The record of the report last drawn in ``sweep_dir``, or {} when there is none that is
    readable and whose files are there (a demo folder moved or copied elsewhere redraws its own
    report)."""
    if not record.exists():
        return {}
    try:
        previous = read_checked_json(record, "demo report record")
    except UserError:
        return {}
    here = all(
        Path(previous.get(k, "")).exists()
        and Path(previous[k]).resolve().parent == sweep_dir.resolve()
        for k in ("report_md", "report_html")
    )
    return previous if here else {}
