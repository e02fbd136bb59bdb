"""Checks at the door (each refusal a one-line UserError naming the keyword), and Hugging Face
causal-LM labels turned into flat targets."""

from __future__ import annotations

import math

import torch

from ..errors import UserError

__all__ = [
    "check_finite",
    "check_inputs",
    "check_positive",
    "check_real",
    "targets_and_mask",
]

LOGIT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
MAX_VOCAB = 1 << 24  # ranks are counted as float32 sums of 0/1, exact below 2**24


def targets_and_mask(
    labels: torch.Tensor, ignore_index: int, shift: bool, vocab: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat in-vocabulary targets (0 where there is no label) and the mask of labelled rows."""
    if shift:
        shifted = torch.full_like(labels, ignore_index)
        shifted[..., :-1] = labels[..., 1:]
        labels = shifted
    flat = labels.reshape(-1).long()
    valid = flat != ignore_index
    if not bool(((flat >= 0) & (flat < vocab) | ~valid).all()):
        bad = flat[valid & ((flat < 0) | (flat >= vocab))][0].item()
        raise UserError(
            f"labels: {bad} is neither a vocabulary id (0 to {vocab - 1}) nor ignore_index "
            f"({ignore_index}); check the tokenizer matches the model"
        )
    return torch.where(valid, flat, torch.zeros_like(flat)), valid


def check_inputs(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """The vocabulary size, after refusing logits and labels that do not fit together."""
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise UserError("logits and labels must be torch tensors; convert with torch.as_tensor")
    if logits.ndim not in (2, 3) or logits.shape[-1] == 0 or logits.shape[-1] >= MAX_VOCAB:
        raise UserError(
            f"logits must be [B, T, V] (or [T, V]) with 1 <= V < {MAX_VOCAB}, got shape "
            f"{tuple(logits.shape)}"
        )
    if logits.dtype not in LOGIT_DTYPES:
        raise UserError(f"logits must be float32, bfloat16, float16 or float64, got {logits.dtype}")
    if labels.shape != logits.shape[:-1]:
        raise UserError(
            f"labels of shape {tuple(labels.shape)} do not match logits of shape "
            f"{tuple(logits.shape)}; labels are the logits' shape without the vocabulary axis"
        )
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise UserError(f"labels must be an integer tensor (token ids), got {labels.dtype}")
    if labels.device != logits.device:
        raise UserError(
            f"labels are on {labels.device} and logits on {logits.device}; move them to one device"
        )
    return int(logits.shape[-1])


def check_finite(values: torch.Tensor) -> None:
    """UserError unless every value is finite (the logits at labelled positions)."""
    if not bool(torch.isfinite(values).all()):
        raise UserError(
            "the logits are not finite (NaN or inf) at a labelled position; the model diverged "
            "or its logits overflowed (try float32)"
        )


def check_real(name: str, value: object) -> None:
    """UserError unless ``value`` is a finite int or float (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{name} must be a finite number, got {value!r}")


def check_positive(name: str, value: object) -> None:
    """UserError unless ``value`` is a finite number > 0."""
    check_real(name, value)
    if value <= 0:  # type: ignore[operator]
        raise UserError(f"{name} must be > 0, got {value!r}")
