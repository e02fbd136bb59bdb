"""What a sweep will cost, before it runs: tokens to score per cell, and the time left.

Tokens: each dataset's documents are tokenized once with each distinct tokenizer and cut into
windows exactly as scoring cuts them (:func:`errorentropy.data.windows.make_windows`), so the count
is
the number of tokens the cell will score. A model's revisions are taken to share its first
revision's tokenizer. A tokenizer that cannot be loaded without downloading (a hub model not in
the local cache) gives an estimate from characters (4 per token), marked ``~``. A finished cell
counts the tokens it scored.

Time: a model's throughput (tokens per second) and loading time are read from the
``timing.json`` of its finished cells; the cells of a model none of whose cells has run yet are
counted apart, not guessed.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errorentropy.data.corpus import Corpus
from errorentropy.options import ScoreOptions
from errorentropy.sweep.spec import DatasetSpec, ModelSpec, SweepSpec

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class TokenEstimate:
    """Tokens a cell scores: ``how`` is ``scored`` (a finished cell), ``tokenized`` (exact) or
    ``characters`` (no tokenizer at hand: characters / 4)."""

    tokens: int
    how: str

    def text(self) -> str:
        """The count for a table: exact, or ``~N`` for an estimate from characters."""
        return f"{'~' if self.how == 'characters' else ''}{self.tokens:,}"


@dataclass(frozen=True)
class Wanted:
    """A cell whose tokens are to be counted: its id, model, revision and dataset."""

    cell_id: str
    model: ModelSpec
    revision: str | None
    dataset: DatasetSpec


def scored_tokens(token_ids: Sequence[Sequence[int]], options: ScoreOptions) -> int:
    """How many tokens scoring these token ids scores, with ``options``' windows."""
    from errorentropy.data.windows import make_windows

    windows, _ = make_windows(token_ids, options.max_length, options.window, options.stride)
    return sum(w.n_scored for w in windows)


def character_tokens(documents: Sequence[str], options: ScoreOptions) -> int:
    """An estimate of :func:`scored_tokens` from characters alone (4 per token)."""
    total = 0
    for doc in documents:
        n = max(1, len(doc) // CHARS_PER_TOKEN)
        if n >= 2:
            total += (min(n, options.max_length) if options.window == "truncate" else n) - 1
    return total


def token_estimates(
    spec: SweepSpec, wanted: Sequence[Wanted], corpus_of: Callable[[DatasetSpec], Corpus]
) -> dict[str, TokenEstimate]:
    """Tokens to score for each cell of ``wanted``, each dataset tokenized once per distinct
    tokenizer; cells whose dataset cannot be read are left out."""
    options = spec.score_options()
    tokenizers: dict[str, tuple[str, Any]] = {}  # model label -> (tokenizer key, tokenizer)
    counts: dict[tuple[str, str], TokenEstimate] = {}
    out: dict[str, TokenEstimate] = {}
    for cell in wanted:
        if cell.model.label not in tokenizers:
            tokenizers[cell.model.label] = _tokenizer(spec, cell.model, cell.revision)
        key, tokenizer = tokenizers[cell.model.label]
        if (key, cell.dataset.label) not in counts:
            try:
                documents = corpus_of(cell.dataset).documents
            except Exception:  # noqa: BLE001 - an unreadable dataset: its cells will say why
                continue
            counts[(key, cell.dataset.label)] = _count(tokenizer, documents, options)
        out[cell.cell_id] = counts[(key, cell.dataset.label)]
    return out


def _count(tokenizer: Any, documents: list[str], options: ScoreOptions) -> TokenEstimate:
    if tokenizer is not None:
        from errorentropy.data.windows import tokenize

        try:
            ids = tokenize(tokenizer, documents, options.bos)
            return TokenEstimate(scored_tokens(ids, options), "tokenized")
        except Exception:  # noqa: BLE001 - e.g. bos = "always" without a BOS: estimate instead
            pass
    return TokenEstimate(character_tokens(documents, options), "characters")


def _tokenizer(spec: SweepSpec, model: ModelSpec, revision: str | None) -> tuple[str, Any]:
    """The model's tokenizer from local files only (None if there is none), and a key equal for
    tokenizers that split text alike."""
    from errorentropy.models.loading import resolve_revision, tokenizer_source

    try:
        from transformers import AutoTokenizer

        source, hub_revision = resolve_revision(model.source, revision)
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_source(model.source, source),
            revision=hub_revision,
            trust_remote_code=spec.model_trust(model),
            local_files_only=True,  # a dry run downloads nothing
        )
    except Exception:  # noqa: BLE001 - not at hand: counted from characters
        return f"none:{model.label}", None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return f"model:{model.label}", tokenizer
    text = backend.to_str() + f"|{tokenizer.bos_token_id}|{tokenizer.eos_token_id}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), tokenizer


# ---- time left ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """A model's measured speed: median tokens per second and seconds to load, over its finished
    cells."""

    tokens_per_s: float
    load_s: float


def read_timing(cell_dir: Path) -> dict[str, Any] | None:
    """A finished cell's ``timing.json``, or None."""
    try:
        body = json.loads((cell_dir / "timing.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def throughputs(timings: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Throughput]:
    """Per model label, its throughput from (model label, timing.json) pairs."""
    speeds: dict[str, list[float]] = {}
    loads: dict[str, list[float]] = {}
    for model, timing in timings:
        tps, load = timing.get("tokens_per_s"), timing.get("model_load_s")
        if isinstance(tps, (int, float)) and tps > 0:
            speeds.setdefault(model, []).append(float(tps))
        if isinstance(load, (int, float)) and load >= 0:
            loads.setdefault(model, []).append(float(load))
    return {
        m: Throughput(statistics.median(v), statistics.median(loads.get(m, [0.0])))
        for m, v in speeds.items()
    }


@dataclass(frozen=True)
class TimeLeft:
    """Work left in seconds for the cells of measured models, how many cells are of models not
    yet measured (or of unknown size), and how many workers share the work."""

    seconds: float
    measured: int
    unmeasured: int
    workers: int

    def text(self) -> str:
        """``about 2.1 h of work left (3 workers: ~42 min)``, with the unmeasured cells named."""
        if not self.measured and not self.unmeasured:
            return ""
        if self.measured:
            line = f"about {duration(self.seconds)} of work left"
            if self.workers > 1:
                line += f" ({self.workers} workers: ~{duration(self.seconds / self.workers)})"
        else:
            line = "time left unknown"
        if self.unmeasured:
            line += (
                f"{' plus' if self.measured else ':'} {self.unmeasured} cell(s) of models "
                "with no finished cell yet"
            )
        return line


def time_left(
    left: Sequence[tuple[str, str | None, int | None]],
    speeds: dict[str, Throughput],
    *,
    workers: int = 1,
) -> TimeLeft:
    """The time ``left`` takes: (model label, revision, tokens or None) per cell not done; each
    (model, revision) loaded once."""
    seconds, measured, unmeasured = 0.0, 0, 0
    loads: set[tuple[str, str | None]] = set()
    for model, revision, tokens in left:
        speed = speeds.get(model)
        if speed is None or tokens is None:
            unmeasured += 1
            continue
        measured += 1
        seconds += tokens / speed.tokens_per_s
        if (model, revision) not in loads:
            loads.add((model, revision))
            seconds += speed.load_s
    return TimeLeft(seconds, measured, unmeasured, max(1, workers))


def duration(seconds: float) -> str:
    """A duration for people: ``40 s``, ``12 min``, ``3.4 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
