"""Test scaffolding: small local stand-ins for hub artefacts (randomly initialised models from
real architecture configs, and a byte-level BPE tokenizer trained on local text), for tests,
benchmarks and docstring examples. Nothing here is downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .demo.tokenizer import train_bpe_tokenizer

__all__ = ["ARCHITECTURES", "save_model", "tiny_config", "tiny_model", "train_bpe_tokenizer"]

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

    common: dict[str, Any] = dict(vocab_size=vocab_size)
    if arch == "gpt2":
        kw = dict(
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=context,
            bos_token_id=0,
            eos_token_id=0,
        )
    elif arch == "gpt_neox":
        kw = dict(
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
    elif arch in ("llama", "mistral", "qwen2"):
        kw = dict(
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
    elif arch == "opt":
        kw = dict(
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
    else:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    kw.update(common)
    kw.update(overrides)
    return AutoConfig.for_model(arch, **kw)


def tiny_model(
    arch: str, vocab_size: int, *, seed: int = 0, **config_overrides: Any
) -> torch.nn.Module:
    """A randomly initialised causal LM of architecture ``arch`` in eval mode, reproducible by ``seed``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch, vocab_size, **config_overrides))
    return model.eval()


def save_model(model: torch.nn.Module, tokenizer: Any, directory: Path | str) -> Path:
    """Save model and tokenizer as a standard folder that ``from_pretrained`` loads."""
    directory = Path(directory)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
