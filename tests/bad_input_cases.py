"""The bad-input table: every row is one command against one bad input and the message it gives.

The same rows drive ``tests/test_bad_input.py`` (each row is a test) and ``docs/bad-input.md``
(the table users read). Regenerate the docs after changing a message or a row with::

    python tests/bad_input_cases.py          # rewrites docs/bad-input.md

Rows name their inputs relative to a workspace folder built by :func:`build_workspace`; in argv
``{W}`` stands for that folder. Messages are recorded with the folder replaced by ``DIR``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC_PATH = ROOT / "docs" / "bad-input.md"
MAX_MESSAGE = (
    400  # characters: an error message is one readable line, never an echo of a whole input
)


@dataclass(frozen=True)
class Case:
    """One row: ``errorentropy ARGV`` must fail with one line containing ``expect``."""

    id: str
    command: str
    problem: str
    argv: tuple[str, ...]
    expect: str
    subprocess: bool = False  # also run as ``python -m errorentropy`` in a real process


def _score(*extra: str, data: str = "{W}/good.jsonl", model: str = "{W}/model") -> tuple[str, ...]:
    return (
        "score",
        "--quiet",
        "--model",
        model,
        "--data",
        data,
        "--out",
        "{W}/out",
        "--max-length",
        "32",
        *extra,
    )


CASES: tuple[Case, ...] = (
    # ---- corpora -------------------------------------------------------------------------
    Case(
        "data-missing",
        "score",
        "--data names no file, preset or built-in",
        _score(data="{W}/nope.jsonl"),
        "unknown data",
        subprocess=True,
    ),
    Case("data-empty-name", "score", "--data ''", _score(data=""), "--data is empty"),
    Case(
        "data-unknown-preset",
        "score",
        "unknown preset name",
        _score(data="wikipdia"),
        "not a preset (wikipedia, c4, github)",
    ),
    Case(
        "data-unknown-builtin",
        "score",
        "unknown built-in corpus",
        _score(data="builtin:poetry"),
        "unknown built-in corpus 'builtin:poetry'",
    ),
    Case(
        "data-bad-hub-spec",
        "score",
        "malformed hub dataset spec",
        _score(data="hf:allenai/c4:en:train:extra"),
        "write a hub dataset as hf:PATH",
    ),
    Case(
        "data-hub-missing",
        "score",
        "hub dataset that cannot be loaded (offline, or no such dataset)",
        _score(data="hf:{W}/no-such-dataset"),
        "cannot load hub dataset",
    ),
    Case(
        "data-empty-file",
        "score",
        "empty .jsonl file",
        _score(data="{W}/empty.jsonl"),
        "holds no documents",
    ),
    Case(
        "data-blank-lines",
        "score",
        ".jsonl of blank lines only",
        _score(data="{W}/blank.jsonl"),
        "holds no documents",
    ),
    Case(
        "data-empty-folder",
        "score",
        "folder without .txt files",
        _score(data="{W}/emptydir"),
        "holds no .txt files",
    ),
    Case(
        "data-unknown-format",
        "score",
        "file with an unknown extension",
        _score(data="{W}/data.csv"),
        "cannot tell the format",
    ),
    Case(
        "data-not-utf8-jsonl",
        "score",
        ".jsonl with non-UTF-8 bytes",
        _score(data="{W}/latin1.jsonl"),
        "line 2 is not valid UTF-8",
    ),
    Case(
        "data-not-utf8-txt",
        "score",
        ".txt with non-UTF-8 bytes",
        _score(data="{W}/latin1.txt"),
        "is not valid UTF-8",
    ),
    Case(
        "data-bad-json",
        "score",
        ".jsonl line that is not JSON",
        _score(data="{W}/badjson.jsonl"),
        "line 2 is not valid JSON",
    ),
    Case(
        "data-long-bad-line",
        "score",
        ".jsonl with a 1 MB line that is not JSON",
        _score(data="{W}/longbad.jsonl"),
        "line 1 is not valid JSON",
    ),
    Case(
        "data-not-object",
        "score",
        ".jsonl line that is a JSON array",
        _score(data="{W}/array.jsonl"),
        "is a JSON list, not an object",
    ),
    Case(
        "data-wrong-field",
        "score",
        ".jsonl without the text field",
        _score(data="{W}/wrongfield.jsonl"),
        "has no field 'text' (fields: body, id); pass --text-field NAME",
    ),
    Case(
        "data-wrong-field-many",
        "score",
        ".jsonl row with 5000 other fields",
        _score(data="{W}/manyfields.jsonl"),
        "has no field 'text'",
    ),
    Case(
        "data-wrong-type",
        "score",
        "text field holding a number",
        _score(data="{W}/wrongtype.jsonl"),
        "field 'text' is a int, not a string",
    ),
    Case(
        "data-text-field",
        "score",
        "--text-field naming no field",
        _score("--text-field", "content", data="{W}/good.jsonl"),
        "has no field 'content'",
    ),
    Case(
        "data-parquet-garbage",
        "score",
        ".parquet that is not parquet",
        _score(data="{W}/garbage.parquet"),
        "is not a readable parquet file",
    ),
    Case(
        "data-parquet-column",
        "score",
        ".parquet without the text column",
        _score(data="{W}/nocol.parquet"),
        "has no column 'text'",
    ),
    Case(
        "data-parquet-type",
        "score",
        ".parquet whose text column holds integers",
        _score(data="{W}/intcol.parquet"),
        "holds int64, not strings",
    ),
    Case(
        "data-all-too-short",
        "score",
        "every document shorter than 2 tokens",
        _score(data="{W}/short.jsonl"),
        "was skipped (fewer than 2 tokens each",
    ),
    # ---- sampling and windows ------------------------------------------------------------
    Case(
        "samples-too-many",
        "score",
        "--samples larger than the corpus",
        _score("--samples", "50"),
        "--samples 50 is larger than the corpus (3 documents)",
    ),
    Case(
        "samples-zero",
        "score",
        "--samples 0",
        _score("--samples", "0"),
        "expected an integer >= 1, got 0",
    ),
    Case(
        "seed-not-integer",
        "score",
        "a non-integer seed",
        _score("--seed", "4.2"),
        "argument --seed: expected an integer, got '4.2'",
        subprocess=True,
    ),
    Case(
        "seed-negative",
        "score",
        "a negative seed",
        _score("--seed", "-1", "--samples", "2"),
        "--seed must be a non-negative integer (got -1)",
    ),
    Case(
        "seed-huge-text",
        "score",
        "a 100,000-character non-integer seed",
        _score("--seed", "x" * 100_000),
        "argument --seed: expected an integer",
    ),
    Case(
        "max-length-1",
        "score",
        "--max-length 1",
        _score("--max-length", "1"),
        "--max-length must be at least 2",
    ),
    Case(
        "max-length-not-integer",
        "score",
        "--max-length abc",
        _score("--max-length", "abc"),
        "argument --max-length: expected an integer, got 'abc'",
    ),
    Case(
        "rbp-k-zero",
        "score",
        "--rbp-k 0 (refused before a model is loaded)",
        _score("--rbp-k", "0"),
        "--rbp-k must hold integers >= 1, got 0",
    ),
    Case(
        "stride-missing",
        "score",
        "--window stride without --stride",
        _score("--window", "stride"),
        "--window stride needs --stride K",
    ),
    Case(
        "stride-too-large",
        "score",
        "--stride >= --max-length",
        _score("--window", "stride", "--stride", "32"),
        "--stride must be between 1 and --max-length - 1 = 31 (got 32)",
    ),
    Case(
        "stride-zero",
        "score",
        "--stride 0",
        _score("--window", "stride", "--stride", "0"),
        "--stride must be between 1 and --max-length - 1",
    ),
    Case(
        "batch-size-zero",
        "score",
        "--batch-size 0",
        _score("--batch-size", "0"),
        "argument --batch-size: expected an integer >= 1, got 0",
    ),
    Case(
        "window-unknown",
        "score",
        "--window with an unknown mode",
        _score("--window", "slide"),
        "argument --window: invalid choice: 'slide'",
    ),
    Case(
        "max-length-over-context",
        "score",
        "--max-length beyond the model's context",
        _score("--max-length", "4096"),
        "exceeds the model's context of 128 tokens",
    ),
    # ---- models --------------------------------------------------------------------------
    Case(
        "model-missing-path",
        "score",
        "--model path that does not exist",
        _score(model="{W}/no-such-model"),
        "model path DIR/no-such-model does not exist",
    ),
    Case(
        "model-not-a-model",
        "score",
        "--model folder without config.json",
        _score(model="{W}/emptydir"),
        "cannot load model DIR/emptydir",
    ),
    Case(
        "model-no-tokenizer",
        "score",
        "model folder without a tokenizer",
        _score(model="{W}/model-no-tokenizer"),
        "has no usable tokenizer",
    ),
    Case(
        "revision-missing",
        "score",
        "--revision that does not exist",
        _score("--revision", "step999", model="{W}/model"),
        "has no revision 'step999'",
    ),
    Case(
        "bos-always-no-bos",
        "score",
        "--bos always, tokenizer with neither BOS nor EOS",
        _score("--bos", "always", model="{W}/model-no-bos"),
        "--bos always needs a BOS or EOS token",
    ),
    Case(
        "nan-logits",
        "score",
        "a model whose output head is NaN",
        _score(model="{W}/model-nan"),
        "the model produced NaN or inf logits",
        subprocess=True,
    ),
    Case(
        "nan-logits-chunked",
        "score",
        "a NaN output head, scored through the chunked head",
        _score("--head", "chunked", model="{W}/model-nan"),
        "the model produced NaN or inf logits",
    ),
    Case(
        "device-unknown",
        "score",
        "--device tpu",
        _score("--device", "tpu"),
        "unknown --device tpu",
    ),
    Case(
        "dtype-unknown",
        "score",
        "--dtype float8",
        _score("--dtype", "float8"),
        "argument --dtype: invalid choice: 'float8'",
    ),
    Case(
        "out-is-file",
        "score",
        "--out names an existing file",
        (
            "score",
            "--quiet",
            "--model",
            "{W}/model",
            "--data",
            "{W}/good.jsonl",
            "--out",
            "{W}/good.jsonl",
        ),
        "is a file; pass a folder",
    ),
    Case(
        "out-inside-file",
        "score",
        "--out inside an existing file",
        (
            "score",
            "--quiet",
            "--model",
            "{W}/model",
            "--data",
            "{W}/good.jsonl",
            "--out",
            "{W}/good.jsonl/result",
        ),
        "which is a file; pass a folder path",
    ),
    Case(
        "params-missing",
        "params",
        "model path that does not exist",
        ("params", "{W}/no-such-model"),
        "model path DIR/no-such-model does not exist",
    ),
    Case(
        "params-revision-missing",
        "params",
        "--revision that does not exist",
        ("params", "{W}/model", "--revision", "step999"),
        "has no revision 'step999'",
    ),
    # ---- saved histograms ----------------------------------------------------------------
    Case(
        "hist-missing",
        "decompose",
        "result folder that does not exist",
        ("decompose", "{W}/no-such-result"),
        "no histogram at DIR/no-such-result",
    ),
    Case(
        "hist-truncated",
        "decompose",
        "histogram.json cut short",
        ("decompose", "{W}/hist/truncated.json"),
        "is corrupted or truncated (not valid JSON)",
    ),
    Case(
        "hist-edited",
        "decompose",
        "histogram.json edited after writing",
        ("decompose", "{W}/hist/edited.json"),
        "fails its checksum",
    ),
    Case(
        "hist-no-checksum",
        "decompose",
        "JSON file without a checksum",
        ("decompose", "{W}/hist/plain.json"),
        "has no checksum",
    ),
    Case(
        "hist-not-utf8",
        "decompose",
        "histogram.json with non-UTF-8 bytes",
        ("decompose", "{W}/hist/binary.json"),
        "is corrupted or truncated",
    ),
    Case(
        "hist-empty",
        "decompose",
        "empty histogram.json",
        ("decompose", "{W}/hist/empty.json"),
        "is corrupted or truncated",
    ),
    Case(
        "hist-wrong-format",
        "decompose",
        "checksummed JSON of another kind",
        ("decompose", "{W}/hist/profile.json"),
        "is not an errorentropy histogram",
    ),
    Case(
        "hist-newer-version",
        "decompose",
        "histogram format version from the future",
        ("decompose", "{W}/hist/v99.json"),
        "histogram format version 99, newer than",
    ),
    Case(
        "hist-nan",
        "decompose",
        "histogram.json holding NaN",
        ("decompose", "{W}/hist/nan.json"),
        "is corrupted or truncated",
    ),
    Case(
        "hist-twice",
        "decompose",
        "the same result twice (a folder and its histogram.json)",
        ("decompose", "{W}/hist/res-a", "{W}/hist/res-a/histogram.json"),
        "are the same result; pass each once",
    ),
    Case(
        "hist-mixed",
        "decompose",
        "results scored with other settings",
        ("decompose", "{W}/hist/res-a", "{W}/hist/res-b"),
        "differ in max_length",
    ),
    Case(
        "hist-negative-rank",
        "decompose",
        "checksummed histogram with a negative rank",
        ("decompose", "{W}/hist/negative-rank.json"),
        "is malformed",
    ),
    Case(
        "hist-zero-tokens",
        "decompose",
        "histogram with no scored tokens",
        ("decompose", "{W}/hist/zero.json"),
        "the rank histogram is empty",
    ),
    # ---- the command line itself ---------------------------------------------------------
    Case(
        "no-command", "(none)", "no subcommand", (), "the following arguments are required: command"
    ),
    Case(
        "unknown-command",
        "(none)",
        "unknown subcommand",
        ("scroe",),
        "argument command: invalid choice: 'scroe'",
    ),
    Case(
        "missing-option",
        "score",
        "--model left out",
        ("score", "--data", "{W}/good.jsonl", "--out", "{W}/out"),
        "the following arguments are required: --model",
    ),
)


def command_cases() -> tuple[Case, ...]:
    """Rows for the sweep, fit, report and demo commands."""
    rows: list[Case] = []
    rows += [
        Case(
            "spec-missing",
            "sweep",
            "spec file that does not exist",
            ("sweep", "{W}/no-such-spec.toml", "--out", "{W}/sweep"),
            "no-such-spec.toml not found",
        ),
        Case(
            "spec-malformed",
            "sweep",
            "malformed TOML",
            ("sweep", "{W}/malformed.toml", "--out", "{W}/sweep"),
            "invalid TOML",
        ),
        Case(
            "spec-not-utf8",
            "sweep",
            "spec with non-UTF-8 bytes",
            ("sweep", "{W}/latin1.toml", "--out", "{W}/sweep"),
            "is not valid UTF-8",
        ),
        Case(
            "spec-unknown-key",
            "sweep",
            "spec with a misspelt key",
            ("sweep", "{W}/typo.toml", "--out", "{W}/sweep"),
            "max_lenght",
        ),
        Case(
            "spec-no-models",
            "sweep",
            "spec without [[models]]",
            ("sweep", "{W}/nomodels.toml", "--out", "{W}/sweep"),
            "no [[models]] given",
        ),
        Case(
            "merge-not-sweep",
            "merge",
            "a source that is not a sweep folder",
            ("merge", "{W}/merged", "{W}/emptydir"),
            "emptydir",
        ),
    ]
    rows.append(
        Case(
            "report-not-sweep",
            "report",
            "a folder that is not a sweep folder",
            ("report", "{W}/emptydir"),
            "emptydir",
        )
    )
    rows += [
        Case(
            "fit-not-sweep",
            "fit",
            "a folder that is not a sweep folder",
            ("fit", "{W}/emptydir"),
            "emptydir",
        ),
        Case(
            "fit-seed-not-integer",
            "fit",
            "a non-integer seed",
            ("fit", "{W}/emptydir", "--seed", "4.2"),
            "--seed",
        ),
    ]
    return tuple(rows)


def all_cases() -> tuple[Case, ...]:
    """Every row of the table."""
    return CASES + command_cases()


# ---- the workspace -------------------------------------------------------------------------


def _write_parquet(path: Path, column: str, values: list[Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({column: values}), path)


def build_workspace(root: Path, tokenizer: Any = None) -> Path:
    """Create every bad input the rows name under ``root`` (tiny models included, ~2 s)."""
    import torch

    from errorentropy.stats.histogram import RankHistogram
    from errorentropy.storage import write_checked_json
    from errorentropy.testing import save_model, tiny_model, train_bpe_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    good = [
        "The quick brown fox jumps over the lazy dog. " * 4,
        "A second document, with some words in it.",
        "Third one here, short but scorable.",
    ]
    (root / "good.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in good))
    (root / "empty.jsonl").write_bytes(b"")
    (root / "blank.jsonl").write_text("\n\n   \n")
    (root / "emptydir").mkdir(exist_ok=True)
    (root / "data.csv").write_text("text\nhello\n")
    (root / "latin1.jsonl").write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    (root / "latin1.txt").write_bytes(b"na\xefve caf\xe9 text")
    (root / "badjson.jsonl").write_text('{"text": "fine"}\n{"text": "unterminated\n')
    (root / "longbad.jsonl").write_text('{"text": "' + "x" * 1_000_000 + "\n")
    (root / "array.jsonl").write_text("[1, 2, 3]\n")
    (root / "wrongfield.jsonl").write_text('{"body": "hello", "id": 1}\n')
    (root / "manyfields.jsonl").write_text(json.dumps({f"field{i}": i for i in range(5000)}) + "\n")
    (root / "wrongtype.jsonl").write_text('{"text": 5}\n')
    (root / "garbage.parquet").write_bytes(b"PAR1 this is not parquet at all")
    _write_parquet(root / "nocol.parquet", "body", ["hello world"])
    _write_parquet(root / "intcol.parquet", "text", [1, 2, 3])
    (root / "short.jsonl").write_text('{"text": ""}\n{"text": "a"}\n')
    (root / "malformed.toml").write_text('[sweep\nmodels = ["a"\n')
    (root / "latin1.toml").write_bytes(b'name = "caf\xe9"\n')
    (root / "typo.toml").write_text(
        '[scoring]\nmax_lenght = 64\n[[models]]\nid = "model"\n[[datasets]]\ndata = "good.jsonl"\n'
    )
    (root / "nomodels.toml").write_text('[[datasets]]\ndata = "good.jsonl"\n')

    if tokenizer is None:
        from pydoc_data.topics import topics

        tokenizer = train_bpe_tokenizer([topics[k] for k in sorted(topics)][:80], vocab_size=300)
    vocab = len(tokenizer)
    kw = dict(hidden=32, layers=1, heads=2, context=128)
    save_model(tiny_model("gpt2", vocab, **kw), tokenizer, root / "model")
    tiny_model("gpt2", vocab, **kw).save_pretrained(root / "model-no-tokenizer")
    nan_model = tiny_model("gpt2", vocab, tie_word_embeddings=False, **kw)
    with torch.no_grad():
        nan_model.lm_head.weight.fill_(float("nan"))
    save_model(nan_model, tokenizer, root / "model-nan")
    from pydoc_data.topics import topics

    no_bos = train_bpe_tokenizer(
        [topics[k] for k in sorted(topics)][:20], vocab_size=vocab, bos_eos=False
    )
    save_model(tiny_model("gpt2", len(no_bos), **kw), no_bos, root / "model-no-bos")

    hist = root / "hist"
    hist.mkdir(exist_ok=True)
    good_hist = RankHistogram.from_tokens([0, 0, 1, 3], [-0.1, -0.2, -1.5, -3.0], n_documents=1)
    good_hist.save(hist / "good.json")
    text = (hist / "good.json").read_text()
    (hist / "truncated.json").write_text(text[: len(text) // 2])
    (hist / "edited.json").write_text(text.replace('"n_documents": 1', '"n_documents": 2'))
    (hist / "plain.json").write_text(json.dumps(good_hist.to_dict()))
    (hist / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (hist / "empty.json").write_bytes(b"")
    for name, max_length in (
        ("res-a", 32),
        ("res-b", 16),
    ):  # two result folders scored with other max-lengths
        folder = hist / name
        folder.mkdir(exist_ok=True)
        good_hist.save(folder / "histogram.json")
        (folder / "summary.json").write_text(
            json.dumps(
                {
                    "model": "m",
                    "revision": None,
                    "max_length": max_length,
                    "data": f"{name}.jsonl",
                    "data_fingerprint": name,
                }
            )
        )
    write_checked_json(
        hist / "profile.json",
        {"format": "errorentropy-profile", "version": 1, "sums": [], "counts": []},
    )
    write_checked_json(hist / "v99.json", {**good_hist.to_dict(), "version": 99})
    (hist / "nan.json").write_text(text.replace('"n_documents": 1', '"n_documents": NaN'))
    write_checked_json(hist / "negative-rank.json", {**good_hist.to_dict(), "ranks": [0, 1, -1]})
    RankHistogram(n_skipped=3).save(hist / "zero.json")
    return root


# ---- the Python API --------------------------------------------------------------------------


@dataclass(frozen=True)
class PythonCase:
    """One row of the Python API: ``call`` (Python, run with ``ee``, the workspace folder ``W``
    and ``model, tokenizer = ee.load_model(W / "model")``) raises a one-line
    :class:`~errorentropy.errors.UserError` containing ``expect``, in keyword names."""

    id: str
    problem: str
    call: str
    expect: str


PYTHON_CASES: tuple[PythonCase, ...] = (
    PythonCase(
        "score-none-document",
        "a document that is None",
        'ee.score(model, tokenizer, ["x", None])',
        "corpus[1] is None",
    ),
    PythonCase(
        "score-none-model",
        "no model",
        'ee.score(None, tokenizer, ["x"])',
        "model must be a Hugging Face causal LM",
    ),
    PythonCase(
        "score-swapped",
        "model and tokenizer swapped",
        'ee.score(tokenizer, model, ["x"])',
        "model and tokenizer are swapped",
    ),
    PythonCase(
        "score-name-for-model",
        "a model name instead of a model",
        'ee.score("EleutherAI/pythia-160m", tokenizer, ["x"])',
        "load one by name with errorentropy.load_model",
    ),
    PythonCase(
        "score-none-tokenizer",
        "no tokenizer",
        'ee.score(model, None, ["x"])',
        "tokenizer must be the model's tokenizer",
    ),
    PythonCase(
        "score-path-corpus",
        "a file path instead of a corpus",
        'ee.score(model, tokenizer, W / "good.jsonl")',
        "load a file with errorentropy.load_corpus",
    ),
    PythonCase(
        "score-max-length-1",
        "max_length=1",
        'ee.score(model, tokenizer, ["x"], max_length=1)',
        "max_length must be at least 2",
    ),
    PythonCase(
        "score-stride-missing",
        "window='stride' without stride",
        'ee.score(model, tokenizer, ["x"], window="stride")',
        "needs stride=K",
    ),
    PythonCase(
        "score-over-context",
        "max_length beyond the model's context",
        'ee.score(model, tokenizer, ["x y z"], max_length=4096)',
        "max_length=4096 exceeds the model's context of 128 tokens",
    ),
    PythonCase(
        "score-progress",
        "progress that is not a bool",
        'ee.score(model, tokenizer, ["x"], progress="yes")',
        "progress must be True or False",
    ),
    PythonCase(
        "options-type",
        "an option of the wrong type",
        'ee.ScoreOptions(max_length="64")',
        "max_length must be an integer",
    ),
    PythonCase(
        "options-batch", "batch_size=0", "ee.ScoreOptions(batch_size=0)", "batch_size must be >= 1"
    ),
    PythonCase(
        "corpus-none",
        "no data spec",
        "ee.load_corpus(None)",
        "spec must be a str or os.PathLike, got None",
    ),
    PythonCase(
        "corpus-int",
        "a number as the data spec",
        "ee.load_corpus(123)",
        "spec must be a str or os.PathLike",
    ),
    PythonCase(
        "corpus-samples-str",
        "samples as a string",
        'ee.load_corpus(W / "good.jsonl", samples="5")',
        "samples must be an integer",
    ),
    PythonCase(
        "corpus-samples-big",
        "more samples than documents",
        'ee.load_corpus(W / "good.jsonl", samples=50)',
        "samples=50 is larger than the corpus",
    ),
    PythonCase(
        "corpus-seed",
        "a negative seed",
        'ee.load_corpus(W / "good.jsonl", seed=-1)',
        "seed must be a non-negative integer",
    ),
    PythonCase(
        "corpus-text-field",
        "a text field the file lacks",
        'ee.load_corpus(W / "wrongfield.jsonl")',
        "pass text_field=NAME",
    ),
    PythonCase(
        "model-none",
        "no model name",
        "ee.load_model(None)",
        "name must be a str or os.PathLike, got None",
    ),
    PythonCase(
        "model-revision-int",
        "a revision that is a number",
        'ee.load_model(W / "model", revision=5)',
        "revision must be a non-empty string",
    ),
    PythonCase(
        "model-dtype",
        "an unknown dtype",
        'ee.load_model(W / "model", dtype="f8")',
        "unknown dtype='f8'",
    ),
    PythonCase(
        "model-device",
        "an unknown device",
        'ee.load_model(W / "model", device="tpu")',
        "unknown device='tpu'",
    ),
    PythonCase(
        "model-trust",
        "trust_remote_code that is not a bool",
        'ee.load_model(W / "model", trust_remote_code="yes")',
        "trust_remote_code must be True or False",
    ),
    PythonCase(
        "histogram-counts",
        "counts that are not numbers",
        'ee.RankHistogram(counts="x")',
        "counts and logprob_sums must be 1-D arrays of numbers",
    ),
    PythonCase(
        "histogram-load",
        "no path",
        "ee.RankHistogram.load(None)",
        "path must be a str or os.PathLike",
    ),
    PythonCase(
        "histogram-update",
        "logits that are not tensors",
        "ee.RankHistogram().update(None, None)",
        "logits and labels must be torch tensors",
    ),
    PythonCase(
        "token-table",
        "columns that are not arrays",
        "ee.TokenTable(None, None, None, None)",
        "doc must be a 1-D numpy array of numbers",
    ),
    PythonCase(
        "token-stats",
        "logits that are not tensors",
        'ee.token_stats([1.0], "x")',
        "logits and labels must be torch tensors",
    ),
    PythonCase(
        "sweep-none",
        "no spec path",
        'ee.run_sweep(None, W / "sweep")',
        "spec_path must be a str or os.PathLike",
    ),
    PythonCase(
        "fit-int",
        "a number as the sweep folder",
        "ee.fit_sweep(5)",
        "sweep_dir must be a str or os.PathLike",
    ),
    PythonCase(
        "fit-n-boot", "a negative n_boot", "ee.fit_sweep(W, n_boot=-1)", "n_boot must be at least 0"
    ),
    PythonCase(
        "report-none",
        "no sweep folder",
        "ee.build_report(None)",
        "sweep_dir must be a str or os.PathLike",
    ),
)


def python_namespace(workspace: Path) -> dict[str, Any]:
    """What a :class:`PythonCase` call sees: ``ee``, ``W``, and the tiny model and tokenizer."""
    import errorentropy as ee

    model, tokenizer = ee.load_model(workspace / "model")
    return {"ee": ee, "W": workspace, "model": model, "tokenizer": tokenizer}


def run_python(case: PythonCase, namespace: dict[str, Any]) -> BaseException | None:
    """Run the row's call; returns what it raised (None when it raised nothing)."""
    try:
        eval(case.call, dict(namespace))  # noqa: S307 - the rows' own fixed calls
    except Exception as exc:  # noqa: BLE001 - the row's test judges what was raised
        return exc
    return None


# ---- running a row -------------------------------------------------------------------------


def expand(argv: tuple[str, ...], workspace: Path) -> list[str]:
    """Row argv with ``{W}`` replaced by the workspace folder."""
    return [a.replace("{W}", str(workspace)) for a in argv]


def normalise(message: str, workspace: Path) -> str:
    """A message with the workspace path replaced by ``DIR`` and argparse's list of subcommands
    by ``...`` (so the docs depend on neither the folder nor which commands are installed)."""
    message = message.replace(str(workspace), "DIR")
    # argparse lists every subcommand; the docs show "..." so they do not depend on which are
    # installed
    return re.sub(
        r"(argument command: invalid choice: '[^']*' \(choose from )[^)]*\)", r"\1...)", message
    )


def run_in_process(case: Case, workspace: Path) -> tuple[int, str, str]:
    """Run ``errorentropy.cli.main`` on the row; returns (exit code, stdout, stderr)."""
    from errorentropy.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(expand(case.argv, workspace))
    return code, out.getvalue(), err.getvalue()


def display_argv(case: Case) -> str:
    """The row's command as the docs show it."""
    parts = []
    argv = list(case.argv)
    skip = set()
    for i, arg in enumerate(
        argv[:-1]
    ):  # an option given again later: argparse keeps the last, so show only that
        if arg.startswith("--") and arg in argv[i + 1 :] and not argv[i + 1].startswith("--"):
            skip.update((i, i + 1))
    for i, arg in enumerate(argv):
        if i in skip:
            continue
        arg = arg.replace("{W}/", "./").replace(
            "{W}", "."
        )  # "./model": as typed, a path (a bare name is a hub id)
        if len(arg) > 40:
            arg = arg[:12] + f"...({len(arg)} chars)"
        parts.append(arg)
    return "errorentropy " + " ".join(p for p in parts if p != "--quiet")


def markdown(rows: list[tuple[Case, str]]) -> str:
    """The docs page from (row, actual message) pairs."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "# Bad input: what errorentropy says",
        "",
        "Every row is a test (`tests/test_bad_input.py`): the command exits non-zero (2) "
        "and prints",
        "exactly one line on stderr, no traceback, and never touches finished results. "
        "The messages",
        "below are the actual ones, generated by `python tests/bad_input_cases.py`; `DIR` stands",
        "for the folder holding the inputs. `model` is a tiny local model folder; "
        "`model-nan` has a",
        "NaN output head; `model-no-bos` has a tokenizer with neither BOS nor EOS.",
        "",
        "| command | bad input | invocation | message |",
        "|---|---|---|---|",
    ]
    for case, message in rows:
        lines.append(
            f"| {case.command} | {cell(case.problem)} | `{cell(display_argv(case))}` | "
            f"{cell(message)} |"
        )
    return "\n".join(lines) + "\n"


def python_markdown(rows: list[tuple[PythonCase, str]]) -> str:
    """The Python API's table from (row, actual message) pairs."""
    lines = [
        "",
        "## The Python API",
        "",
        "Every public function checks its arguments at the door and raises",
        "`errorentropy.UserError` (an `ArgumentError`, also a `ValueError`) naming the keyword,",
        "never an AttributeError or TypeError from deep inside. `W` is the folder of inputs;",
        '`model, tokenizer = ee.load_model(W / "model")`.',
        "",
        "| bad input | call | message |",
        "|---|---|---|",
    ]
    for case, message in rows:
        cell = message.replace("|", "\\|")
        lines.append(f"| {case.problem} | `{case.call}` | {cell} |")
    return "\n".join(lines) + "\n"


def generate(workspace: Path) -> str:
    """Run every row in-process and render the docs page."""
    rows = []
    for case in all_cases():
        _, _, err = run_in_process(case, workspace)
        rows.append((case, normalise(err.strip(), workspace)))
    namespace = python_namespace(workspace)
    python_rows = []
    for py in PYTHON_CASES:
        raised = run_python(py, namespace)
        shown = f"{type(raised).__name__}: {raised}" if raised is not None else "(no error)"
        python_rows.append((py, normalise(shown, workspace)))
    return markdown(rows) + python_markdown(python_rows)


def _main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        workspace = build_workspace(Path(tmp) / "ws")
        text = generate(workspace)
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH} ({text.count(chr(10)) - 10} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
