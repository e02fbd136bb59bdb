"""Corpora: where the documents come from, which ones are taken, and a fingerprint of them.

A data spec is one of
* a preset of the paper: ``wikipedia``, ``c4``, ``github`` (loaded with ``datasets``);
* any hub dataset: ``hf:PATH[:CONFIG[:SPLIT]]`` (split ``train`` unless named; ``text_field``
  names the column), sampled like a preset;
* ``builtin:prose`` or ``builtin:code``: text every CPython carries (no network);
* a file or folder: ``.jsonl`` (field ``text`` unless told), ``.txt`` (one file, one document;
  a folder of them), ``.parquet``.

Sampling: shuffle with ``seed`` (a permutation from ``numpy.random.default_rng(seed)``, the same
one ``datasets.Dataset.shuffle(seed=...)`` draws), then take the first ``samples`` documents.
Presets default to 1000 documents and seed 42 as in the paper; files and built-ins default to all
documents in their own order.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from errorentropy.errors import ArgumentError, UserError, as_path_text, check_int, check_str

BUILTINS = ("builtin:prose", "builtin:code")
HUB_PREFIX = "hf:"


@dataclass(frozen=True)
class Preset:
    """A hub dataset as the paper used it."""

    path: str
    name: str | None
    split: str
    text_field: str = "text"
    data_files: dict[str, str] | None = None
    subset_field: str | None = None  # keep rows whose field (or meta.field) equals subset_value
    subset_value: str | None = None
    note: str = ""


PRESETS: dict[str, Preset] = {
    "wikipedia": Preset(
        "wikimedia/wikipedia", "20231101.en", "train", note="English Wikipedia dump of 2023-11-01"
    ),
    "c4": Preset(
        "allenai/c4",
        None,
        "train",
        data_files={"train": "en/c4-train.00000-of-01024.json.gz"},
        note="C4 en, first of 1024 training shards (356,317 documents) rather than all 305 GB",
    ),
    "github": Preset(
        "monology/pile-uncopyrighted",
        None,
        "test",
        data_files={"test": "test.jsonl.zst"},
        subset_field="pile_set_name",
        subset_value="Github",
        note="the Pile's test split, documents whose pile_set_name is Github",
    ),
}

PRESET_SAMPLES = 1000
PRESET_SEED = 42


@dataclass
class Corpus:
    """Documents ready to score, with what produced them."""

    spec: str
    documents: list[str]
    fingerprint: str
    samples: int | None
    seed: int | None
    total_documents: int
    text_field: str = "text"
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        """What a summary records about the data."""
        return {
            "data": self.spec,
            "data_fingerprint": self.fingerprint,
            "samples": self.samples,
            "seed": self.seed,
            "text_field": self.text_field,
            "n_documents_available": self.total_documents,
            **self.extra,
        }


def fingerprint(documents: Sequence[str]) -> str:
    """SHA-256 over the documents' UTF-8 bytes, each prefixed by its length (order matters)."""
    digest = hashlib.sha256()
    for doc in documents:
        raw = doc.encode("utf-8", errors="surrogatepass")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def check_seed(seed: int | None) -> None:
    """Shuffle seeds are non-negative integers (what numpy and ``datasets`` accept)."""
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
    ):
        raise ArgumentError(f"seed must be a non-negative integer (got {seed!r})", "seed")


def sample_indices(n_available: int, samples: int | None, seed: int | None) -> np.ndarray:
    """The indices taken: all in order, or the first ``samples`` of a seeded permutation."""
    check_int(samples, "samples", 1, optional=True)
    check_seed(seed)
    if samples is None and seed is None:
        return np.arange(n_available)
    if samples is not None and samples > n_available:
        raise ArgumentError(
            f"samples={samples} is larger than the corpus ({n_available} documents); "
            f"ask for at most {n_available}",
            "samples",
        )
    order = np.random.default_rng(PRESET_SEED if seed is None else seed).permutation(n_available)
    return order if samples is None else order[:samples]


def load_corpus(
    spec: str | os.PathLike[str],
    *,
    samples: int | None = None,
    seed: int | None = None,
    text_field: str = "text",
) -> Corpus:
    """Resolve a data spec (a preset, ``hf:PATH``, a built-in, or a file or folder path) into a
    :class:`Corpus` (see the module docstring). Bad arguments raise
    :class:`~errorentropy.errors.ArgumentError` naming the keyword.

    Examples:
        >>> corpus = load_corpus(tiny_corpus_path)  # a .jsonl file: every document, in order
        >>> len(corpus.documents), corpus.documents[0][:32]
        (6, 'The rank of the ground truth is ')
        >>> sampled = load_corpus(tiny_corpus_path, samples=3, seed=0)
        >>> len(sampled.documents), sampled.settings()["n_documents_available"]
        (3, 6)
        >>> load_corpus("no-such-corpus")
        Traceback (most recent call last):
        errorentropy.errors.UserError: unknown data 'no-such-corpus': not a preset (wikipedia, ...
    """
    spec = as_path_text(spec, "spec")
    check_int(samples, "samples", 1, optional=True)
    check_seed(seed)
    check_str(text_field, "text_field")
    if not spec.strip():
        raise ArgumentError(
            "spec is empty; name a preset ("
            + ", ".join(PRESETS)
            + "), a built-in corpus, a file or a folder",
            "spec",
        )
    if spec in PRESETS:
        return load_preset(spec, samples=samples, seed=seed)
    if spec.startswith(HUB_PREFIX):
        return load_preset(spec, samples=samples, seed=seed, preset=hub_preset(spec, text_field))
    if spec in BUILTINS:
        docs = builtin_documents(spec)
        extra = {"python_version": sys.version.split()[0]}
    elif spec.startswith("builtin:"):
        raise UserError(f"unknown built-in corpus {spec!r}; choose {' or '.join(BUILTINS)}")
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise UserError(
                f"unknown data {spec!r}: not a preset ({', '.join(PRESETS)}), not "
                f"{' or '.join(BUILTINS)}, not a hub dataset (hf:PATH[:CONFIG[:SPLIT]]), "
                "and no such file or folder"
            )
        docs = read_documents(path, text_field)
        extra = {}
    if not docs:
        raise UserError(f"data {spec!r} holds no documents; pass a non-empty corpus")
    chosen = sample_indices(len(docs), samples, seed)
    documents = [docs[i] for i in chosen]
    if seed is None and samples is not None:
        seed = PRESET_SEED  # what sample_indices shuffled with: the summary records the seed used
    return Corpus(
        spec, documents, fingerprint(documents), samples, seed, len(docs), text_field, extra
    )


def hub_preset(spec: str, text_field: str = "text") -> Preset:
    """``hf:PATH[:CONFIG[:SPLIT]]`` as a :class:`Preset` (an empty CONFIG is none:
    ``hf:PATH::test``)."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    if not parts[0].strip() or len(parts) > 3 or any(not p.strip() for p in parts[2:]):
        raise UserError(
            f"data {spec!r}: write a hub dataset as hf:PATH, hf:PATH:CONFIG or "
            "hf:PATH:CONFIG:SPLIT (e.g. hf:allenai/c4:en:validation)"
        )
    path, config, split = (
        parts[0],
        (parts[1] if len(parts) > 1 and parts[1] else None),
        (parts[2] if len(parts) > 2 else "train"),
    )
    return Preset(
        path,
        config,
        split,
        text_field=text_field,
        note=f"hub dataset {path}" + (f", config {config}" if config else "") + f", split {split}",
    )


def load_preset(
    name: str, *, samples: int | None = None, seed: int | None = None, preset: Preset | None = None
) -> Corpus:
    """Load a paper preset from the hub (or the local datasets cache) with ``datasets``."""
    preset = preset or PRESETS[name]
    samples = PRESET_SAMPLES if samples is None else samples
    seed = PRESET_SEED if seed is None else seed
    check_seed(seed)
    ds = _checked_rows(_load_hub_dataset(name, preset), name, preset, samples)
    available = len(ds)
    ds = ds.shuffle(seed=seed).select(range(samples))
    # A missing text is an empty document (skipped), as in parquet files.
    documents = ["" if t is None else t for t in ds[preset.text_field]]
    extra = {
        "preset_source": preset.path,
        "preset_config": preset.name,
        "preset_split": preset.split,
    }
    return Corpus(
        name, documents, fingerprint(documents), samples, seed, available, preset.text_field, extra
    )


def _load_hub_dataset(name: str, preset: Preset) -> Any:
    """The preset's split as a ``datasets.Dataset``; any failure is one :class:`UserError`."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency
        raise UserError("the presets need the `datasets` package; pip install datasets") from None
    try:
        ds = datasets.load_dataset(
            preset.path, preset.name, split=preset.split, data_files=preset.data_files
        )
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot load {_what(name)} ({preset.path}): {first}; check the network or "
            "the datasets cache (HF_DATASETS_OFFLINE=1 uses the cache)"
        ) from None
    # load_dataset with a split returns a Dataset, never a DatasetDict.
    if isinstance(ds, datasets.DatasetDict):  # pragma: no cover
        raise UserError(f"{_what(name)} gave several splits; name one: hf:PATH:CONFIG:SPLIT")
    return ds


def _checked_rows(ds: Any, name: str, preset: Preset, samples: int) -> Any:
    """The dataset's rows of the preset's subset, checked: a text field, enough documents."""
    if preset.text_field not in ds.column_names:
        fix = "; pass text_field=NAME" if name.startswith(HUB_PREFIX) else ""
        raise ArgumentError(
            f"{_what(name)} has no field {preset.text_field!r} (fields: "
            f"{', '.join(ds.column_names)}){fix}",
            "text_field",
        )
    if preset.subset_field:
        ds = ds.filter(lambda row: _subset_value(row, preset.subset_field) == preset.subset_value)
    if len(ds) == 0:
        raise UserError(
            f"{_what(name)} is empty"
            + (
                f" after selecting {preset.subset_field} == {preset.subset_value!r}"
                if preset.subset_field
                else ""
            )
        )
    if samples > len(ds):
        raise ArgumentError(
            f"samples={samples} is larger than {_what(name)} ({len(ds)} documents); ask "
            f"for at most {len(ds)}",
            "samples",
        )
    feature = ds.features.get(preset.text_field)
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise ArgumentError(
            f"{_what(name)}: field {preset.text_field!r} holds {feature}, not text"
            + ("; pass text_field=NAME of a text column" if name.startswith(HUB_PREFIX) else ""),
            "text_field",
        )
    return ds


def _what(name: str) -> str:
    return f"hub dataset {name}" if name.startswith(HUB_PREFIX) else f"preset {name}"


def _subset_value(row: dict[str, Any], key: str | None) -> Any:
    if key in row:
        return row[key]
    meta = row.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            return None
    return meta.get(key) if isinstance(meta, dict) else None


# ---- files ---------------------------------------------------------------------------------


def read_documents(path: Path, text_field: str = "text") -> list[str]:
    """Documents of a ``.jsonl``/``.parquet``/``.txt`` file or a folder of ``.txt`` files."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise UserError(
                f"folder {path} holds no .txt files; put one document per .txt file there"
            )
        return [_read_text(p) for p in files]
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _read_jsonl(path, text_field)
    if suffix == ".parquet":
        return _read_parquet(path, text_field)
    if suffix in (".txt", ".text", ".md", ".py"):
        return [_read_text(path)]
    raise UserError(
        f"cannot tell the format of {path}; use .jsonl, .parquet, .txt, or a folder of .txt files"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise UserError(f"cannot read {path}: permission denied; check its permissions") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder; pass a file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


def _decode(raw: bytes, path: Path, line: int | None = None) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f" line {line}" if line is not None else ""
        raise UserError(
            f"{path}{where} is not valid UTF-8 (bad byte at offset {exc.start}); "
            "re-encode the file as UTF-8"
        ) from None


def _read_text(path: Path) -> str:
    return _decode(_read_bytes(path), path)


def _read_jsonl(path: Path, text_field: str) -> list[str]:
    documents = []
    for number, raw in enumerate(_read_bytes(path).splitlines(), start=1):
        line = _decode(raw, path, number).strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(
                f"{path} line {number} is not valid JSON ({exc.msg}); fix or remove that line"
            ) from None
        except (
            ValueError,
            RecursionError,
        ) as exc:  # a number of over 4300 digits, nesting too deep
            reason = (
                "nested too deeply"
                if isinstance(exc, RecursionError)
                else "a number too long to read"
            )
            raise UserError(
                f"{path} line {number} is not valid JSON ({reason}); fix or remove that line"
            ) from None
        if not isinstance(row, dict):
            raise UserError(
                f"{path} line {number} is a JSON {type(row).__name__}, not an object with "
                f"a {text_field!r} field"
            )
        if text_field not in row:
            names = sorted(map(str, row))
            fields = (
                ", ".join(json.dumps(n, ensure_ascii=False)[1:-1][:40] for n in names[:10])
                + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
                if names
                else "none"
            )
            raise ArgumentError(
                f"{path} line {number} has no field {text_field!r} (fields: {fields}); "
                "pass text_field=NAME",
                "text_field",
            )
        text = row[text_field]
        if not isinstance(text, str):
            raise UserError(
                f"{path} line {number}: field {text_field!r} is a {type(text).__name__}, "
                "not a string"
            )
        documents.append(text)
    return documents


def _read_parquet(path: Path, text_field: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a readable parquet file ({first})") from None
    if text_field not in schema.names:
        raise ArgumentError(
            f"{path} has no column {text_field!r} (columns: {', '.join(schema.names)}); "
            "pass text_field=NAME",
            "text_field",
        )
    try:
        column = pq.read_table(path, columns=[text_field]).column(text_field)
    except (
        pa.ArrowException,
        OSError,
        ValueError,
    ) as exc:  # a damaged file whose footer still reads
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is a damaged parquet file ({first}); re-export it") from None
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise UserError(f"{path}: column {text_field!r} holds {column.type}, not strings")
    try:
        return [t if t is not None else "" for t in column.to_pylist()]
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: column {text_field!r} holds bytes that are not valid UTF-8 (at "
            f"offset {exc.start}); re-export it as UTF-8"
        ) from None


# ---- built-in corpora ----------------------------------------------------------------------


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "test", "tests", "idle_test", "__pycache__"}
    return sorted(p for p in root.rglob("*.py") if not skip.intersection(p.relative_to(root).parts))


def builtin_documents(spec: str) -> list[str]:
    """``builtin:prose``: pydoc's topic pages then, per standard-library module, its docstrings.
    ``builtin:code``: the standard library's ``.py`` sources. Sorted, so deterministic per
    Python."""
    return [text for _, text in builtin_sources(spec)]


@functools.lru_cache(maxsize=2)
def builtin_sources(spec: str) -> tuple[tuple[str, str], ...]:
    """The documents of a built-in corpus with where each comes from: ``topic:KEY`` for a pydoc
    topic page, the module's path relative to the standard library for a file's source or its
    docstrings (so a split can keep a file's prose and code on one side)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    if spec == "builtin:code":
        docs = []
        for path in _stdlib_files():
            try:
                docs.append((str(path.relative_to(root)), path.read_text(encoding="utf-8")))
            except (UnicodeDecodeError, OSError):
                continue
        return tuple(docs)
    from pydoc_data.topics import topics

    docs = [(f"topic:{key}", topics[key]) for key in sorted(topics)]
    for path in _stdlib_files():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        nodes = [
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        strings = [s for s in (ast.get_docstring(n) for n in nodes) if s]
        if strings:
            docs.append((str(path.relative_to(root)), "\n\n".join(strings)))
    return tuple(docs)
