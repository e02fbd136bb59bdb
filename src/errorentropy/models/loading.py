"""Model specifics, kept at the edge: loading, parameter counts, the output head, context length."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from errorentropy.errors import ArgumentError, UserError, as_path_text, check_bool, check_str
from errorentropy.models.provenance import remember

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ArgumentError(
            f"device={device!r} asked for, but no CUDA GPU is visible; use device='cpu' or 'auto'",
            "device",
        )
    try:
        return torch.device(device)
    except (RuntimeError, ValueError):
        raise ArgumentError(
            f"unknown device={device!r}; use auto, cpu, cuda or cuda:N", "device"
        ) from None


def resolve_dtype(dtype: str, config: Any, device: torch.device) -> torch.dtype:
    """``auto``: the checkpoint's own dtype on a GPU, float32 on the CPU (half precision is slow and
    lossy there)."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise ArgumentError(
                f"unknown dtype={dtype!r}; choose auto, float32, bfloat16 or float16", "dtype"
            )
        return DTYPES[dtype]
    if device.type == "cpu":
        return torch.float32
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(stored, str):
        stored = DTYPES.get(stored)
    return stored if isinstance(stored, torch.dtype) else torch.float32


def load_config(name: str, revision: str | None = None, trust_remote_code: bool = False) -> Any:
    """The model's config, with loading problems turned into one clear line."""
    from transformers import AutoConfig

    path = Path(name).expanduser()
    if name.startswith((".", "/", "~")) and not path.exists():
        raise UserError(
            f"model path {name} does not exist; pass a local model directory or a hub id "
            "like EleutherAI/pythia-160m"
        )
    try:
        return AutoConfig.from_pretrained(
            str(path) if path.exists() else name,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
    except Exception as exc:  # transformers raises OSError/ValueError/HTTP errors with long texts
        raise _load_error(name, revision, exc) from None


def _load_error(name: str, revision: str | None, exc: Exception) -> UserError:
    """A failed load as one line: the first line of transformers' message, and the likely fix."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if revision and "revision" in str(exc).lower():
        return ArgumentError(
            f"model {name} has no revision {revision!r} ({first}); list its branches on the "
            "hub or drop revision",
            "revision",
        )
    if "trust_remote_code" in str(exc):
        return ArgumentError(
            f"model {name} needs its own code; pass trust_remote_code=True if you trust it",
            "trust_remote_code",
        )
    hint = ""
    parts = Path(name).parts
    if Path(name).expanduser().is_dir():
        hint = " (a local folder, but no model loads from it: does it hold config.json?)"
    elif len(parts) > 1 and not Path(name).is_absolute() and Path(parts[0]).expanduser().is_dir():
        hint = (
            f" (taken as a hub id; if you meant a local folder: {parts[0]}/ exists here but "
            f"{name} does not)"
        )
    elif ("huggingface.co" in first or "offline" in first.lower()) and not _offline():
        hint = " (no network? HF_HUB_OFFLINE=1 loads from the local cache without retrying)"
    return UserError(f"cannot load model {name}{'@' + revision if revision else ''}: {first}{hint}")


def _offline() -> bool:
    """Whether the hub is already told to stay offline (then no hint says to set it)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def check_load_arguments(
    revision: object, dtype: object, device: object, trust_remote_code: object, device_map: object
) -> None:
    """The arguments of :func:`load_model` other than the name, checked at the door in the
    caller's keyword names (the command line shows its flags)."""
    check_str(revision, "revision", optional=True)
    check_str(dtype, "dtype")
    if dtype != "auto" and dtype not in DTYPES:
        raise ArgumentError(
            f"unknown dtype={dtype!r}; choose auto, float32, bfloat16 or float16", "dtype"
        )
    check_str(device, "device")
    check_bool(trust_remote_code, "trust_remote_code")
    check_str(device_map, "device_map", optional=True)


def load_model(
    name: str | os.PathLike[str],
    *,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """Load ``AutoModelForCausalLM`` and its tokenizer by hub id or local path, in eval mode.

    A local checkpoint folder ``NAME/checkpoints/REVISION`` (as ``errorentropy demo`` writes)
    stands for ``--revision REVISION`` of a local model; hub revisions are branches or tags.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = as_path_text(name, "name")
    check_load_arguments(revision, dtype, device, trust_remote_code, device_map)
    source, hub_revision = resolve_revision(name, revision)
    config = load_config(source, hub_revision, trust_remote_code)
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, config, dev)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_source(name, source),
            revision=hub_revision,
            trust_remote_code=trust_remote_code,
        )
    except Exception as exc:
        raise UserError(
            f"model {name} has no usable tokenizer "
            f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}); "
            "save one beside the weights with tokenizer.save_pretrained"
        ) from None
    if not tokenizer("hello world", add_special_tokens=False)["input_ids"]:
        # transformers 5 builds an empty tokenizer from config.json alone when no tokenizer files
        # exist
        raise UserError(
            f"model {name} has no usable tokenizer (it turns text into no tokens: no "
            "tokenizer files beside the weights?); save one there with "
            "tokenizer.save_pretrained"
        )
    kwargs: dict[str, Any] = {
        "revision": hub_revision,
        "dtype": torch_dtype,
        "trust_remote_code": trust_remote_code,
    }
    if device_map:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise _load_error(name, revision, exc) from None
    if not device_map:
        # transformers types the wrapped .to() as taking the model, not a device.
        model.to(dev)  # type: ignore[arg-type]
    model.eval()
    # Where the weights came from, for the summary's model_commit and weights_fingerprint.
    remember(model, source, hub_revision)
    return model, tokenizer


def resolve_revision(name: str, revision: str | None) -> tuple[str, str | None]:
    """Map (model, revision) to what ``from_pretrained`` takes: local checkpoint folders become
    paths."""
    path = Path(name).expanduser()
    if path.is_dir():
        if revision is None or revision == "main":
            return str(path), None
        local = path / "checkpoints" / revision
        if local.is_dir():
            return str(local), None
        available = (
            sorted(p.name for p in (path / "checkpoints").glob("*") if p.is_dir())
            if (path / "checkpoints").is_dir()
            else []
        )
        raise UserError(
            f"local model {name} has no revision {revision!r} (no folder {local}); "
            f"available: {', '.join(available) or 'none'}"
        )
    if name.startswith((".", "/", "~")):
        raise UserError(
            f"model path {name} does not exist; pass a local model directory or a hub id "
            "like EleutherAI/pythia-160m"
        )
    return name, revision


def tokenizer_source(name: str, source: str) -> str:
    """Checkpoint folders may lack a tokenizer; then the model root's tokenizer serves."""
    src = Path(source)
    if src.is_dir() and not any(
        (src / f).exists()
        for f in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
    ):
        return str(Path(name).expanduser())
    return source


def context_length(config: Any) -> int | None:
    """The longest input the model's positions allow, if the config says."""
    for key in (
        "max_position_embeddings",
        "n_positions",
        "n_ctx",
        "max_sequence_length",
        "seq_length",
    ):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    text = getattr(config, "text_config", None)
    return context_length(text) if text is not None else None


@dataclass(frozen=True)
class ParameterCounts:
    """Unique parameters split by the convention of docs/design.md (the scaling fits' x axis)."""

    total: int
    embedding: int
    non_embedding: int

    def as_dict(self) -> dict[str, int]:
        """The three counts by name (as ``errorentropy params`` prints them)."""
        return {
            "total": self.total,
            "embedding": self.embedding,
            "non_embedding": self.non_embedding,
        }


def count_parameters(model: torch.nn.Module) -> ParameterCounts:
    """Total unique parameters, every embedding table (token, position, untied output head), and the
    rest."""
    unique: dict[int, torch.nn.Parameter] = {id(p): p for p in model.parameters()}
    embedding_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            embedding_ids.update(id(p) for p in module.parameters(recurse=False))
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    if head is not None and getattr(head, "weight", None) is not None:
        embedding_ids.add(id(head.weight))
    total = sum(p.numel() for p in unique.values())
    embedding = sum(unique[i].numel() for i in embedding_ids if i in unique)
    return ParameterCounts(total=total, embedding=embedding, non_embedding=total - embedding)


def count_parameters_from_config(
    name: str, revision: str | None = None, trust_remote_code: bool = False
) -> ParameterCounts:
    """Parameter counts from the config alone: the model is built on the meta device, no weights."""
    from transformers import AutoModelForCausalLM

    source, hub_revision = resolve_revision(name, revision)
    config = load_config(source, hub_revision, trust_remote_code)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except ValueError as exc:
        raise UserError(
            f"{name} is not a causal language model ({str(exc).splitlines()[0]}); pass a "
            "decoder-only LM"
        ) from None
    return count_parameters(model)


def family_of(model_or_config: Any) -> str:
    """A default family label: the config's ``model_type``."""
    config = getattr(model_or_config, "config", model_or_config)
    return str(getattr(config, "model_type", "unknown"))


def input_device(model: torch.nn.Module) -> torch.device:
    """Where inputs go: the device of the input embedding (the first shard under device_map)."""
    get_embedding = getattr(model, "get_input_embeddings", None)
    embedding = get_embedding() if get_embedding is not None else None
    if embedding is not None and getattr(embedding, "weight", None) is not None:
        return embedding.weight.device
    return next(model.parameters()).device
