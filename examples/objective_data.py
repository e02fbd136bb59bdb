"""Data for the train_objective_* examples: the standard library's docstrings as text, a
byte-level BPE tokenizer trained on them, and a tiny random gpt2; all local, built in seconds."""

from __future__ import annotations

import importlib
import inspect

import torch

from errorentropy.testing import tiny_model, train_bpe_tokenizer

BLOCK = 48  # tokens per row
MODULES = (
    "argparse", "collections", "csv", "datetime", "decimal", "difflib", "fractions", "functools",
    "heapq", "itertools", "json", "logging", "pathlib", "random", "re", "statistics", "string",
    "textwrap", "typing", "unittest",
)  # fmt: skip


def docstrings() -> list[str]:
    """The docstrings of the modules above and of their public members, in a fixed order."""
    texts = []
    for name in MODULES:
        module = importlib.import_module(name)
        for _, member in [("", module), *sorted(vars(module).items())]:
            doc = inspect.getdoc(member) if callable(member) or member is module else None
            if doc and len(doc) > 200 and doc not in texts:
                texts.append(doc)
    return texts


def setup(seed: int = 0, vocab_size: int = 320):
    """``(tokenizer, model, train_rows, held_out_texts)``: a tokenizer, a tiny gpt2 in train
    mode with dropout off (so two runs of a step give one loss), ``[N, BLOCK]`` training rows
    cut from the token stream of most texts, and the other texts held out."""
    texts = docstrings()
    held_out, train = texts[::10][:12], [t for i, t in enumerate(texts) if i % 10]
    tokenizer = train_bpe_tokenizer(train[:60], vocab_size=vocab_size)
    ids: list[int] = []
    for text in train:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    stream = torch.tensor(ids)
    rows = stream[: len(stream) // BLOCK * BLOCK].view(-1, BLOCK)
    model = tiny_model(
        "gpt2", len(tokenizer), seed=seed, hidden=48, layers=2, heads=4, context=64,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return tokenizer, model.train(), rows, held_out
