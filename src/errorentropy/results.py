"""A scored result on disk: one folder with the histogram, the tokens behind it and a summary.

Layout of a result folder (all files written atomically)::

    histogram.json   the rank histogram (checksummed JSON, format errorentropy-histogram v1)
    tokens.npz       every scored token: doc, position, rank, logprob (sorted by doc, position)
    profile.json     the sorted-probability profile, only with --profile
    summary.json     the decomposition and every setting that produced it
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UserError
from .histogram import RankHistogram
from .storage import atomic_write_text

HISTOGRAM_FILE = "histogram.json"
TOKENS_FILE = "tokens.npz"
PROFILE_FILE = "profile.json"
SUMMARY_FILE = "summary.json"
RESULT_FILES = (HISTOGRAM_FILE, TOKENS_FILE, PROFILE_FILE, SUMMARY_FILE)


def summarize(histogram: RankHistogram, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The summary of a histogram: counts, the four quantities, extras, then the settings."""
    decomposition = histogram.decompose()
    summary: dict[str, Any] = {
        "n_tokens": histogram.n_tokens,
        "n_documents": histogram.n_documents,
        "n_skipped": histogram.n_skipped,
        "n_tied": histogram.n_tied,
        "cross_entropy": decomposition.cross_entropy,
        "error_entropy": decomposition.error_entropy,
        "self_alignment": decomposition.self_alignment,
        "confidence": decomposition.confidence,
        "error_entropy_miller_madow": decomposition.error_entropy_miller_madow,
        "top1_accuracy": decomposition.top1_accuracy,
        "n_ranks_observed": int(decomposition.ranks.size),
        "identity_residual": decomposition.identity_residual,
        "errorentropy_version": __version__,
    }
    summary.update(settings or {})
    return summary


def write_summary(directory: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(directory / SUMMARY_FILE, json.dumps(summary, indent=1, sort_keys=False) + "\n")


def write_result(directory: Path, result: Any, summary: dict[str, Any]) -> None:
    """Write a :class:`~errorentropy.engine.ScoreResult` and its summary as a result folder's files."""
    result.histogram.save(directory / HISTOGRAM_FILE)
    result.tokens.save(directory / TOKENS_FILE)
    if result.profile is not None:
        result.profile.save(directory / PROFILE_FILE)
    write_summary(directory, summary)


def find_histogram(source: Path | str) -> Path:
    """A histogram file, or the one inside a result folder."""
    path = Path(source)
    if path.is_dir():
        path = path / HISTOGRAM_FILE
    if not path.exists():
        raise UserError(f"no histogram at {source}; pass a folder written by `errorentropy score --out` or its {HISTOGRAM_FILE}")
    return path


def load_histograms(sources: list[str]) -> RankHistogram:
    """Merge the histograms of several result folders or files."""
    return sum((RankHistogram.load(find_histogram(s)) for s in sources), RankHistogram())
