"""The names docstring examples run with (``pytest --doctest-modules`` over src/errorentropy).

* ``ee``: the package (``import errorentropy as ee``);
* ``tiny_model_path``: a local model folder, a randomly initialised one-layer gpt2 (context 512)
  with a byte-level BPE tokenizer trained on :data:`DOCUMENTS`; built once per session;
* ``tiny_corpus_path``: a jsonl file holding the six :data:`DOCUMENTS` (field ``text``);
* ``workdir``: an empty folder for the example alone.

Nothing is downloaded. The text is fixed here (not the running Python's built-in prose), so the
examples print the same on every Python.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # The fused head's Triton kernels run in Triton's CPU interpreter; Triton reads this when it
    # is first imported, and transformers imports it early: set it before anything imports them.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import errorentropy  # noqa: E402

PACKAGE = Path(__file__).resolve().parent / "src" / "errorentropy"


def missing_imports(path: Path) -> list[str]:
    """Third-party modules that ``path`` imports at module level and that are not installed."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """Leave out the docstring examples of a module whose optional framework is not installed
    (Triton installs on Linux x86_64 only; Lightning and torchmetrics are the user's choice);
    the module itself could not be imported. None: pytest decides as usual."""
    path = Path(collection_path)
    if path.suffix == ".py" and PACKAGE in path.resolve().parents and missing_imports(path):
        return True
    return None


DOCUMENTS = (
    "The rank of the ground truth is the number of tokens the model scores higher.",
    "Error-Entropy is the entropy of where the ground truth lands in the model's ranking.",
    "Self-Alignment measures how well the scores follow the ranks they sit at.",
    "Confidence is the log of the summed geometric-mean scores over all ranks.",
    "Cross-entropy equals Error-Entropy plus Self-Alignment minus Confidence, exactly.",
    "Only Error-Entropy follows a clean power law in model size, the paper finds.",
)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random gpt2 and its tokenizer, saved as a model folder."""
    from errorentropy.testing import save_model, tiny_model, train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(DOCUMENTS, vocab_size=320)
    model = tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=512)
    return str(save_model(model, tokenizer, tmp_path_factory.mktemp("doctest-model")))


@pytest.fixture(scope="session")
def tiny_corpus_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The six documents as a jsonl file."""
    path = tmp_path_factory.mktemp("doctest-corpus") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCUMENTS), encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def _doctest_names(request: pytest.FixtureRequest, doctest_namespace: dict) -> None:
    """Give docstring examples their names (other tests build nothing for them)."""
    from _pytest.doctest import DoctestItem

    if not isinstance(request.node, DoctestItem):
        return
    doctest_namespace["ee"] = errorentropy
    doctest_namespace["tiny_model_path"] = request.getfixturevalue("tiny_model_path")
    doctest_namespace["tiny_corpus_path"] = request.getfixturevalue("tiny_corpus_path")
    workdir: Path = request.getfixturevalue("tmp_path")
    doctest_namespace["workdir"] = workdir
