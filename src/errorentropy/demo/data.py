"""The demo's data: the built-in prose and code split by source (held-out sources never trained on,
near-copies dropped), the held-out files the sweep scores, the tokenizer and the training blocks."""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorentropy.data.corpus import builtin_sources, fingerprint
from errorentropy.demo.settings import (
    CORPORA,
    DEMO_VERSION,
    HELDOUT_FRACTION,
    TOKENIZER_RECORD,
    DemoSettings,
)
from errorentropy.demo.tokenizer import train_bpe_tokenizer
from errorentropy.demo.training import (
    pack_tokens,
    token_blocks,
)
from errorentropy.errors import UserError
from errorentropy.storage import (
    atomic_write_text,
    canonical_json,
    read_checked_json,
    write_checked_json,
)


@dataclass(frozen=True)
class Split:
    """One corpus split deterministically: training documents and held-out documents (seeded
    order)."""

    corpus: str
    train: list[str]
    heldout: list[str]


def split_by_source(
    sources: dict[str, Sequence[tuple[str, str]]], seed: int, fraction: float = HELDOUT_FRACTION
) -> dict[str, Split]:
    """Split several corpora whose documents share sources (a module's docstrings in one, its code
    in the other) so that nothing held out is trained on under another name.

    Sources (``topic:KEY`` or a module path) are held out together: the first ``fraction`` of a
    ``seed`` permutation of all of them, across the corpora. Empty documents are dropped, and so is
    a held-out document that is (nearly) a copy of training text: the same text as a training or
    an earlier held-out document, or most of its long lines found among the training documents'
    lines (the standard library's generated codec modules differ only in their tables' values).
    Held-out documents keep the permutation's order.
    """
    keys = sorted({key for docs in sources.values() for key, _ in docs})
    order = np.random.default_rng(seed).permutation(len(keys))
    n_held = max(1, int(round(fraction * len(keys))))
    rank = {keys[i]: position for position, i in enumerate(order)}
    held = {keys[i] for i in order[:n_held]}
    train = {
        c: [text for key, text in docs if key not in held and text.strip()]
        for c, docs in sources.items()
    }
    seen = {text for texts in train.values() for text in texts}
    train_lines = {line for texts in train.values() for text in texts for line in _long_lines(text)}
    splits = {}
    for corpus, docs in sources.items():
        heldout = []
        for _, text in sorted(
            ((key, text) for key, text in docs if key in held), key=lambda kt: rank[kt[0]]
        ):
            lines = _long_lines(text)
            copied = (
                sum(line in train_lines for line in lines) > NEAR_COPY * len(lines)
                if lines
                else False
            )
            if text.strip() and text not in seen and not copied:
                heldout.append(text)
                seen.add(text)
        splits[corpus] = Split(corpus, train[corpus], heldout)
    return splits


# A held-out document with more than this share of its long lines in training text is a copy.
NEAR_COPY = 0.5


def _long_lines(text: str) -> list[str]:
    """The lines that say something (stripped, 20 characters or more): what a near-copy shares."""
    return [line for line in (raw.strip() for raw in text.splitlines()) if len(line) >= 20]


@functools.lru_cache(maxsize=4)
def load_splits(seed: int) -> dict[str, Split]:
    """Both built-in corpora, split by source (kept for the process: reading the standard library
    takes seconds)."""
    return split_by_source({c: builtin_sources(c) for c in CORPORA}, seed)


def corpus_label(corpus: str) -> str:
    """The short name of a built-in corpus: ``prose`` for ``builtin:prose``."""
    return corpus.split(":", 1)[1]


def document_head(tokenizer: Any, text: str, max_length: int, margin: int = 16) -> str:
    """The beginning of ``text`` that holds its first ``max_length + margin`` tokens.

    Scoring truncates every document to its first ``max_length`` tokens, so the held-out files
    keep only that much text (tokenizing whole standard-library files for 128 tokens each cost
    more than scoring them). The cut is checked: if the kept text does not tokenize to the same
    first ``max_length`` tokens, the whole document is kept."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    keep = max_length + margin
    if len(ids) <= keep:
        return text
    head = text[: offsets[keep - 1][1]]
    if tokenizer(head, add_special_tokens=False)["input_ids"][:max_length] != ids[:max_length]:
        return text
    return head


def write_heldout(
    out: Path, splits: dict[str, Split], settings: DemoSettings, tokenizer: Any
) -> dict[str, Path]:
    """The scored held-out documents (their first ``max_length`` tokens' worth of text) as
    ``DIR/data/heldout-<corpus>.jsonl``, rewritten only when their content changes."""
    paths = {}
    for corpus, split in splits.items():
        if settings.eval_docs > len(split.heldout):
            raise UserError(
                f"--eval-docs {settings.eval_docs} is more than the {len(split.heldout)} "
                f"held-out documents of {corpus}; ask for at most {len(split.heldout)}"
            )
        docs = [
            document_head(tokenizer, d, settings.max_length)
            for d in split.heldout[: settings.eval_docs]
        ]
        text = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
        path = out / "data" / f"heldout-{corpus_label(corpus)}.jsonl"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        paths[corpus] = path
    return paths


def digest(payload: Any) -> str:
    """SHA-256 of a JSON-able payload's canonical form."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def text_digest(documents: Sequence[str]) -> str:
    """The fingerprint of a list of documents (:func:`errorentropy.data.corpus.fingerprint`)."""
    return fingerprint(documents)


def checked_splits(settings: DemoSettings) -> dict[str, Split]:
    """The built-in corpora split for ``settings.seed``, each holding out at least
    ``settings.eval_docs`` documents."""
    splits = load_splits(settings.seed)
    for corpus, split in splits.items():
        if settings.eval_docs > len(split.heldout):
            raise UserError(
                f"--eval-docs {settings.eval_docs} is more than the {len(split.heldout)} "
                f"held-out documents of {corpus}; ask for at most {len(split.heldout)}"
            )
    return splits


def tokenizer_texts(splits: dict[str, Split], limit: int | None) -> list[str]:
    """The training documents the tokenizer learns from: all (or the first ``limit``) of each
    corpus."""
    texts: list[str] = []
    for corpus in CORPORA:
        docs = splits[corpus].train
        texts.extend(docs if limit is None else docs[:limit])
    return texts


def build_tokenizer(
    out: Path, splits: dict[str, Split], settings: DemoSettings, log: Any
) -> tuple[Any, str]:
    """The demo's tokenizer, trained once and reused while its inputs are unchanged; returns
    (tokenizer, key)."""
    from transformers import AutoTokenizer

    texts = tokenizer_texts(splits, settings.tokenizer_docs)
    key = digest(
        {"vocab_size": settings.vocab_size, "texts": text_digest(texts), "version": DEMO_VERSION}
    )
    folder = out / "tokenizer"
    record = folder / TOKENIZER_RECORD
    if record.exists():
        try:
            if read_checked_json(record, "tokenizer record").get("key") == key:
                log(f"tokenizer: reusing {folder}")
                return AutoTokenizer.from_pretrained(str(folder)), key
        except UserError:
            pass
    started = time.perf_counter()
    tokenizer = train_bpe_tokenizer(texts, settings.vocab_size)
    record.unlink(missing_ok=True)  # a kill while saving must leave no new files under it
    tokenizer.save_pretrained(str(folder))
    write_checked_json(record, {"key": key, "vocab_size": len(tokenizer), "documents": len(texts)})
    log(
        f"tokenizer: {len(tokenizer)} entries from {len(texts)} training documents "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return AutoTokenizer.from_pretrained(str(folder)), key


def training_blocks(tokenizer: Any, splits: dict[str, Split], settings: DemoSettings) -> np.ndarray:
    """The token blocks every model trains on, in order: half prose, half code, seeded shuffle.

    Documents are tokenized in their seeded order only until each corpus has enough tokens, so
    a short demo does not tokenize the whole standard library."""
    n_blocks = settings.steps * settings.batch_size
    per_corpus = [n_blocks // 2, n_blocks - n_blocks // 2]
    parts = []
    for corpus, want in zip(CORPORA, per_corpus):
        need_tokens = want * settings.block
        ids: list[list[int]] = []
        have = 0
        for doc in splits[corpus].train:
            tokens = tokenizer(doc, add_special_tokens=False)["input_ids"]
            ids.append(tokens)
            have += len(tokens) + 1
            if have >= need_tokens:
                break
        stream = pack_tokens(ids, tokenizer.eos_token_id)
        parts.append(token_blocks(stream, settings.block, want, settings.seed))
    blocks = np.concatenate(parts)
    return blocks[np.random.default_rng(settings.seed).permutation(len(blocks))]
