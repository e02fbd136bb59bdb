"""Shared fixtures: a tokenizer trained on local prose and tiny random-weight models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # The fused head's Triton kernels run in Triton's CPU interpreter (tests/test_fused_head.py).
    # Triton reads this when it is first imported, and transformers imports it early: set it first.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from errorentropy.data.corpus import builtin_documents
from errorentropy.testing import save_model, tiny_model, train_bpe_tokenizer


@pytest.fixture(scope="session")
def prose_docs() -> list[str]:
    """pydoc topic pages and stdlib docstrings: real English prose on every CPython."""
    return builtin_documents("builtin:prose")


@pytest.fixture(scope="session")
def tokenizer(prose_docs):
    """A byte-level BPE tokenizer with 384 entries trained on local prose."""
    return train_bpe_tokenizer(prose_docs[:150], vocab_size=384)


@pytest.fixture(scope="session")
def short_docs(prose_docs) -> list[str]:
    """Twelve short documents of varied length (one too short to score)."""
    docs = [d[: 40 + 37 * i] for i, d in enumerate(prose_docs[200:211])]
    return docs + ["a"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny gpt2 saved as a standard model folder."""
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    return save_model(
        tiny_model("gpt2", len(tokenizer), hidden=32, layers=1, heads=2, context=128),
        tokenizer,
        directory,
    )
