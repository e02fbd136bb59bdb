"""A scored result on disk: one folder with the histogram, the tokens behind it and a summary.

Layout of a result folder (all files written atomically)::

    histogram.json   the rank histogram (checksummed JSON, format errorentropy-histogram v1)
    tokens.npz       every scored token: doc, position, rank, logprob (sorted by doc, position)
    profile.json     the sorted-probability profile, only with --profile
    summary.json     the decomposition and every setting that produced it
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from errorentropy.errors import UserError
from errorentropy.options import DEFAULT_RBP_KS, ScoreOptions
from errorentropy.stats.convergence import corrected_estimates, ee_convergence
from errorentropy.stats.histogram import Decomposition, RankHistogram
from errorentropy.stats.profile import RankProfile
from errorentropy.stats.tokens import TokenTable
from errorentropy.storage import atomic_write_text
from errorentropy.version import __version__

HISTOGRAM_FILE = "histogram.json"
TOKENS_FILE = "tokens.npz"
PROFILE_FILE = "profile.json"
SUMMARY_FILE = "summary.json"
RESULT_FILES = (HISTOGRAM_FILE, TOKENS_FILE, PROFILE_FILE, SUMMARY_FILE)


@dataclass
class ScoredCorpus:
    """A scored corpus: its rank histogram, every scored token, how they were computed, and (once
    summarized) the summary.

    What the scoring engine returns (``summary`` still empty), what :func:`errorentropy.score`
    returns, and what a result folder holds. ``summary`` is the dict ``errorentropy score``
    writes to ``summary.json``: the counts, the four quantities and every setting that produced
    them (model, revision, dtype, device, data, options, head path, notes, processes, timings).
    """

    histogram: RankHistogram
    tokens: TokenTable
    head_path: str
    n_windows: int
    profile: RankProfile | None = None
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def decompose(self) -> Decomposition:
        """CE = EE + SA - Conf of the whole corpus (``self.histogram.decompose()``)."""
        return self.histogram.decompose()


def require_tokens(result: ScoredCorpus, data_label: str, bos_hint: str) -> None:
    """Refuse a result without one scored token: every document was too short. ``data_label``
    names the documents and ``bos_hint`` the caller's way to prepend a BOS token."""
    if result.histogram.n_tokens == 0:
        raise UserError(
            f"every document of {data_label} was skipped (fewer than 2 tokens each: "
            f"{result.histogram.n_skipped} documents); use longer documents or {bos_hint}"
        )


def summary_settings(
    model: Any,
    result: ScoredCorpus,
    options: ScoreOptions,
    *,
    identity: Mapping[str, Any],
    data: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a summary records about how ``result`` was computed, in one order for every writer
    (``errorentropy score``, :func:`errorentropy.score`, a sweep cell, the training callback):
    the model's ``identity`` (name, revision, provenance, ...), its dtype and device, the
    ``data`` settings, the recorded options, the head path, notes and window count, then
    ``extra`` (timings, a spec digest)."""
    parameter = next(model.parameters())
    return {
        **identity,
        "dtype": str(parameter.dtype).removeprefix("torch."),
        "device": str(parameter.device),
        **data,
        **options.settings(),
        "head_path": result.head_path,
        "notes": result.notes,
        "n_windows": result.n_windows,
        **(extra or {}),
    }


def summarize(
    histogram: RankHistogram,
    settings: dict[str, Any] | None = None,
    *,
    rbp_ks: Iterable[int] = DEFAULT_RBP_KS,
    tokens: TokenTable | None = None,
) -> dict[str, Any]:
    """The summary of a histogram: counts, the four quantities, extras, then the settings.

    ``rbp_at`` maps each k of ``rbp_ks`` (as a string, JSON's keys) to RBP_k, the share of tokens
    ranked below k (:meth:`RankHistogram.rbp_at`); ``mrr`` is the mean of 1 / (rank + 1). Given
    the ``tokens`` behind the histogram, ``ee_bias`` is the bias left in EE (nats, from random
    halves of the documents), ``ee_bias_interval`` its 95% interval and ``ee_convergence`` the
    whole check (:func:`errorentropy.stats.convergence.ee_convergence`).
    ``error_entropy_grassberger`` and ``error_entropy_chao_shen`` are bias-corrected EE from
    the histogram's counts, beside Miller-Madow.

    Examples:
        >>> import numpy as np
        >>> from errorentropy.stats.histogram import Decomposition, RankHistogram
        >>> ranks, probs = [0, 0, 1, 3], [0.5, 0.4, 0.2, 0.05]
        >>> summary = summarize(RankHistogram.from_tokens(ranks, np.log(probs)), {"model": "mine"})
        >>> summary["n_tokens"], summary["top1_accuracy"], summary["n_ranks_observed"]
        (4, 0.5, 3)
        >>> bool(abs(summary["cross_entropy"] + np.log(probs).mean()) < 1e-12), summary["model"]
        (True, 'mine')
        >>> summary["rbp_at"], summary["mrr"]
        ({'1': 0.5, '10': 1.0, '100': 1.0, '1000': 1.0}, 0.6875)
    """
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
        **corrected_estimates(histogram.counts),
        "top1_accuracy": decomposition.top1_accuracy,
        "n_ranks_observed": int(decomposition.ranks.size),
        "identity_residual": decomposition.identity_residual,
        "rbp_at": {str(k): v for k, v in histogram.rbp_at(rbp_ks).items()},
        "mrr": histogram.mrr(),
        "errorentropy_version": __version__,
    }
    if tokens is not None:
        check = ee_convergence(tokens)
        summary["ee_bias"] = check.bias
        summary["ee_bias_interval"] = None if check.interval is None else list(check.interval)
        summary["ee_convergence"] = check.to_dict()
    summary.update(settings or {})
    return summary


def write_summary(directory: Path, summary: dict[str, Any]) -> None:
    """Write ``summary`` as the folder's summary.json."""
    atomic_write_text(
        directory / SUMMARY_FILE, json.dumps(summary, indent=1, sort_keys=False) + "\n"
    )


def write_result(directory: Path, result: ScoredCorpus, summary: dict[str, Any]) -> None:
    """Write a :class:`ScoredCorpus` and its summary as a result folder's files."""
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
        raise UserError(
            f"no histogram at {source}; pass a folder written by `errorentropy score "
            f"--out` or its {HISTOGRAM_FILE}"
        )
    return path


def load_histograms(sources: list[str]) -> RankHistogram:
    """Merge the histograms of several result folders or files (no checks: see
    :func:`merge_saved`)."""
    return sum((RankHistogram.load(find_histogram(s)) for s in sources), RankHistogram())


# The summary settings that define how documents became scored tokens.
PROTOCOL_KEYS = ("text_field", "max_length", "window", "stride", "bos")
# What must agree for histograms to be one model's numbers on one protocol; the data may differ
# (shards of a corpus scored separately), but not be the same documents twice.
MERGE_KEYS = ("model", "revision", "dtype", *PROTOCOL_KEYS)


def merge_saved(
    sources: list[str], *, allow_mixed: bool = False
) -> tuple[RankHistogram, dict[str, Any]]:
    """Merge saved results into one histogram, and the settings they share.

    Refused (:class:`UserError`): the same result twice (a folder and its histogram.json, a link),
    two results over the same documents (equal data fingerprints), and, unless ``allow_mixed``,
    results whose :data:`MERGE_KEYS` differ (read from each folder's summary.json).
    """
    paths = [find_histogram(s) for s in sources]
    for i, a in enumerate(paths):
        for b in paths[:i]:
            if a.resolve() == b.resolve() or os.path.samefile(a, b):
                raise UserError(f"{a} and {b} are the same result; pass each once")
    summaries: list[dict[str, Any] | None] = []
    for path in paths:
        try:
            body = json.loads((path.parent / SUMMARY_FILE).read_text(encoding="utf-8"))
            summaries.append(body if isinstance(body, dict) else None)
        except (OSError, ValueError):
            summaries.append(None)
    known = [(str(src), s) for src, s in zip(sources, summaries) if s is not None]
    fingerprints: dict[tuple[Any, ...], str] = {}
    for src, summary in known:
        fp = summary.get("data_fingerprint")
        scored = (summary.get("model"), summary.get("revision"), fp)
        if fp and scored in fingerprints:
            raise UserError(
                f"{fingerprints[scored]} and {src} scored the same documents with the same "
                f"model (data fingerprint {fp[:12]}); merging would count them twice"
            )
        if fp:
            fingerprints[scored] = src
    settings: dict[str, Any] = {}
    for key in MERGE_KEYS:
        values = {json.dumps(s.get(key)) for _, s in known}
        if len(values) == 1:
            settings[key] = known[0][1].get(key)
        elif len(values) > 1 and not allow_mixed:
            shown = ", ".join(f"{src}: {s.get(key)!r}" for src, s in known[:4])
            raise UserError(
                f"the results differ in {key} ({shown}); their sum would be no one "
                "model's numbers. Pass --allow-mixed to merge them anyway"
            )
    data = [s.get("data") for _, s in known]
    settings["data"] = data[0] if len(set(map(str, data))) == 1 and data else data
    unknown = [str(src) for src, s in zip(sources, summaries) if s is None]
    if unknown:
        settings["notes"] = [
            f"no summary.json beside {', '.join(unknown)}: their settings were not checked"
        ]
    settings["merged_from"] = [str(s) for s in sources]
    return load_histograms([str(p) for p in paths]), settings
