"""Test scaffolding: small local stand-ins for hub artefacts (randomly initialised models from
real architecture configs, and a byte-level BPE tokenizer trained on local text), for tests,
benchmarks and docstring examples. Nothing here is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.optimize import brentq

from errorentropy.demo.tokenizer import train_bpe_tokenizer
from errorentropy.scoring.results import summarize
from errorentropy.stats.tokens import TokenTable
from errorentropy.sweep.cells import CellKey, cell_path, write_cell_record

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "ARCHITECTURES",
    "save_model",
    "synthetic_sweep",
    "tiny_config",
    "tiny_model",
    "train_bpe_tokenizer",
]

ARCHITECTURES = ("gpt2", "gpt_neox", "llama", "qwen2", "opt", "mistral")


def tiny_config(
    arch: str,
    vocab_size: int,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    context: int = 256,
    **overrides: Any,
) -> Any:
    """A small config of a real architecture (``ARCHITECTURES``)."""
    from transformers import AutoConfig

    kw = _architecture_kwargs(arch, hidden, layers, heads, context)
    kw.update(vocab_size=vocab_size)
    kw.update(overrides)
    return AutoConfig.for_model(arch, **kw)


def _architecture_kwargs(
    arch: str, hidden: int, layers: int, heads: int, context: int
) -> dict[str, Any]:
    """The config keywords of a small ``arch`` model, in that architecture's own names."""
    if arch == "gpt2":
        return dict(
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=context,
            bos_token_id=0,
            eos_token_id=0,
        )
    if arch == "gpt_neox":
        return dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
            max_position_embeddings=context,
            rotary_pct=0.25,
            bos_token_id=0,
            eos_token_id=0,
            tie_word_embeddings=False,
        )
    if arch in ("llama", "mistral", "qwen2"):
        kw: dict[str, Any] = dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 2),
            intermediate_size=2 * hidden,
            max_position_embeddings=context,
            bos_token_id=0,
            eos_token_id=0,
        )
        if arch == "qwen2":
            kw["tie_word_embeddings"] = True
        return kw
    if arch == "opt":
        return dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            ffn_dim=4 * hidden,
            max_position_embeddings=context,
            word_embed_proj_dim=hidden,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=1,
        )
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")


def tiny_model(
    arch: str, vocab_size: int, *, seed: int = 0, **config_overrides: Any
) -> PreTrainedModel:
    """A randomly initialised causal LM of architecture ``arch`` in eval mode, reproducible by
    ``seed``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, vocab_size, **config_overrides))
    return model.eval()


def save_model(model: PreTrainedModel, tokenizer: Any, directory: Path | str) -> Path:
    """Save model and tokenizer as a standard folder that ``from_pretrained`` loads."""
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def synthetic_sweep(
    directory: Path | str,
    sizes: tuple[float, ...] = (1e6, 4e6, 1.6e7, 6.4e7),
    *,
    family: str = "toy",
    dataset: str = "synth",
    n_docs: int = 20,
    doc_len: int = 100,
    seed: int = 0,
) -> Path:
    """A sweep folder from synthetic per-token data, no model: one family whose population
    Error-Entropy is ``12 N^-0.09`` (geometric ranks), for docstring examples of the fits and
    the report. Reproducible by ``seed``; returns ``directory``."""

    def entropy(r: float) -> float:  # of p_e = (1 - r) r^e, e = 0, 1, ...
        return float((-(1 - r) * np.log1p(-r) - r * np.log(r)) / (1 - r))

    rng = np.random.default_rng(seed)
    n = n_docs * doc_len
    for i, size in enumerate(sizes):
        target = 12.0 * size**-0.09
        r = brentq(lambda r, t=target: entropy(r) - t, 1e-9, 1 - 1e-12)
        rank = rng.geometric(1 - r, n) - 1
        logprob = 1.3 * (np.log1p(-r) + rank * np.log(r)) - rng.uniform(0.0, 0.1, n)
        table = TokenTable(
            np.repeat(np.arange(n_docs, dtype=np.int32), doc_len),
            np.tile(np.arange(1, doc_len + 1, dtype=np.int32), n_docs),
            rank.astype(np.int32),
            logprob,
        )
        key = CellKey(f"{family}-{i}", None, dataset)
        folder = cell_path(directory, key)
        folder.mkdir(parents=True, exist_ok=True)
        histogram = table.histogram(n_documents=n_docs)
        histogram.save(folder / "histogram.json")
        table.save(folder / "tokens.npz")
        write_cell_record(
            folder,
            key,
            family=family,
            non_embedding_params=int(size),
            total_params=int(size) + 1000,
            summary=summarize(histogram, {"model": key.model, "revision": None}),
        )
    return Path(directory)
