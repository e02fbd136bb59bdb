"""Scoring from Python: :func:`load_model` and :func:`score`, the ``score`` command's way.

The ``score`` command and :func:`score` both run :func:`score_corpus`, so a summary made in
Python is the command's summary to the last bit (timings aside). Under ``torchrun`` both join the
process group from the environment and shard the documents across the processes; every process
receives the merged result.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from errorentropy.data.corpus import Corpus, fingerprint
from errorentropy.errors import ArgumentError, as_path_text, check_bool, type_name
from errorentropy.models.loading import context_length, input_device
from errorentropy.models.loading import load_model as _load_model
from errorentropy.models.provenance import model_provenance
from errorentropy.options import DEFAULT_OPTIONS, ScoreOptions
from errorentropy.scoring.distributed import init_distributed, shard_and_score
from errorentropy.scoring.results import (
    ScoredCorpus,
    require_tokens,
    summarize,
    summary_settings,
)

# The name and revision each model was loaded by (load_model), for its summaries.
_LOADED_AS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[str, str | None]] = (
    weakref.WeakKeyDictionary()
)


__all__ = ["ScoredCorpus", "load_model", "score", "score_corpus"]


def load_model(
    name: str | os.PathLike[str],
    *,
    revision: str | None = None,
    dtype: str = "auto",
    device: str = "auto",
    trust_remote_code: bool = False,
    device_map: str | None = None,
) -> tuple[torch.nn.Module, Any]:
    """A causal LM and its tokenizer, by hub id or local folder, in eval mode.

    As :func:`errorentropy.models.loading.load_model`, after joining the process group when
    launched by
    ``torchrun`` (so each process loads onto its own GPU, as the ``score`` command does); the
    name and revision are remembered for the summaries of :func:`score`.

    Args:
        name: a hub id (``EleutherAI/pythia-160m``) or a local model folder.
        revision: a hub branch or tag (``step1000``), or a local ``checkpoints/NAME`` folder.
        dtype: ``auto`` (float32 on a CPU, the checkpoint's dtype on a GPU), ``float32``,
            ``bfloat16`` or ``float16``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        trust_remote_code: allow a hub model's own Python code.
        device_map: ``"auto"`` spreads a model too large for one GPU over all GPUs.

    Examples:
        >>> import errorentropy as ee
        >>> model, tokenizer = ee.load_model(tiny_model_path, device="cpu")
        >>> model.training, str(next(model.parameters()).dtype)
        (False, 'torch.float32')
        >>> tokenizer("hello world", add_special_tokens=False)["input_ids"] != []
        True
    """
    name = as_path_text(name, "name")
    check_bool(trust_remote_code, "trust_remote_code")
    if not isinstance(device, str):
        raise ArgumentError(
            f"device must be a string (auto, cpu, cuda or cuda:N), got {type_name(device)}",
            "device",
        )
    init_distributed(device)
    model, tokenizer = _load_model(
        name,
        revision=revision,
        dtype=dtype,
        device=device,
        trust_remote_code=trust_remote_code,
        device_map=device_map,
    )
    _LOADED_AS[model] = (name, revision)
    return model, tokenizer


def score(
    model: torch.nn.Module,
    tokenizer: Any,
    corpus: Corpus | Sequence[str],
    *,
    progress: bool = False,
    **options: Any,
) -> ScoredCorpus:
    """Score ``model`` over a corpus and decompose its cross-entropy, as ``errorentropy score``.

    Args:
        model: a causal LM (from :func:`load_model` or ``AutoModelForCausalLM``).
        tokenizer: its tokenizer.
        corpus: a :class:`~errorentropy.data.corpus.Corpus`
            (:func:`~errorentropy.data.corpus.load_corpus`) or a list of documents.
        progress: show a progress bar on stderr.
        **options: the fields of :class:`~errorentropy.options.ScoreOptions` (``max_length``,
            ``window``, ``stride``, ``bos``, ``batch_size``, ``head``, ``vocab_chunk``,
            ``chunk_elements``, ``profile``, ``rbp_k``), checked when the
            :class:`~errorentropy.options.ScoreOptions` is built. Without ``max_length``, a
            model whose context is shorter than the default 512 is scored in windows of its
            context, and the summary's first note says so.

    Under ``torchrun`` the documents are sharded across the processes (the process group is
    joined from the environment if need be) and every process receives the merged result.
    Raises :class:`~errorentropy.errors.UserError` (one line, naming the keyword) for a model,
    tokenizer, option or corpus that will not do, before anything is scored.

    Examples:
        >>> import errorentropy as ee
        >>> model, tokenizer = ee.load_model(tiny_model_path, device="cpu")
        >>> result = ee.score(model, tokenizer, ee.load_corpus(tiny_corpus_path), max_length=64)
        >>> d = result.histogram.decompose()
        >>> abs(d.cross_entropy - (d.error_entropy + d.self_alignment - d.confidence)) < 1e-12
        True
        >>> s = result.summary
        >>> s["n_documents"], s["max_length"], s["processes"], s["cross_entropy"] == d.cross_entropy
        (6, 64, 1, True)
        >>> ee.score(model, tokenizer, ["Any list of strings will do."]).summary["data"] is None
        True
        >>> ee.score(model, tokenizer, ["text"], max_lenght=64)
        Traceback (most recent call last):
        errorentropy.errors.UserError: errorentropy.score(): unknown option 'max_lenght'; ...
    """
    check_bool(progress, "progress")
    check_model(model, tokenizer)
    fitted, note = _fit_context(model, options)
    checked = ScoreOptions.from_mapping(fitted, "errorentropy.score()")
    documents, data_settings, label = _documents(corpus)
    init_distributed(str(input_device(model)))
    name, revision = _LOADED_AS.get(model) or (_model_name(model), None)
    return score_corpus(
        model,
        tokenizer,
        documents,
        checked,
        model_name=name,
        revision=revision,
        data_settings=data_settings,
        data_label=label,
        bos_hint="bos='always'",
        progress=progress,
        notes=[note] if note else [],
    )


def check_model(model: Any, tokenizer: Any) -> None:
    """Refuse what is not a causal LM and its tokenizer (swapped, None, a name) in the caller's
    terms, before anything deep fails on it."""
    if isinstance(tokenizer, torch.nn.Module) and not isinstance(model, torch.nn.Module):
        raise ArgumentError(
            "model and tokenizer are swapped: call score(model, tokenizer, corpus)",
            "model",
            "tokenizer",
        )
    if not isinstance(model, torch.nn.Module) or getattr(model, "config", None) is None:
        named = isinstance(model, (str, os.PathLike))
        hint = "; load one by name with errorentropy.load_model" if named else ""
        raise ArgumentError(
            "model must be a Hugging Face causal LM (a torch.nn.Module with a config), got "
            f"{type_name(model)}{hint}",
            "model",
        )
    if next(model.parameters(), None) is None:
        raise ArgumentError("model has no parameters; pass a causal LM with its weights", "model")
    if isinstance(tokenizer, (str, bytes, torch.nn.Module)) or not callable(tokenizer):
        raise ArgumentError(
            "tokenizer must be the model's tokenizer (callable on text, e.g. the second value "
            f"of errorentropy.load_model), got {type_name(tokenizer)}",
            "tokenizer",
        )


def _fit_context(model: torch.nn.Module, options: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The options, with ``max_length`` lowered to the model's context when the caller left it
    at its default and the model is shorter; and the note saying so (or "")."""
    limit = context_length(getattr(model, "config", None))
    default = DEFAULT_OPTIONS.max_length
    if "max_length" in options or limit is None or limit >= default:
        return options, ""
    note = (
        f"max_length {limit}: the model's context, shorter than the default {default} "
        "(pass max_length to choose)"
    )
    return {**options, "max_length": limit}, note


def _model_name(model: torch.nn.Module) -> str:
    """What a model loaded some other way than :func:`load_model` calls itself."""
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or type(model).__name__)


def _documents(corpus: Corpus | Sequence[str]) -> tuple[list[str], dict[str, Any], str]:
    """The documents, the data settings a summary records, and how a message names them."""
    if isinstance(corpus, Corpus):
        return corpus.documents, corpus.settings(), corpus.spec
    if isinstance(corpus, (str, bytes, os.PathLike)) or not isinstance(corpus, Sequence):
        hint = (
            " (load a file with errorentropy.load_corpus)"
            if isinstance(corpus, (str, os.PathLike))
            else ""
        )
        raise ArgumentError(
            f"errorentropy.score(): corpus must be a Corpus (errorentropy.load_corpus) or a "
            f"list of strings{hint}, got {type_name(corpus)}",
            "corpus",
        )
    documents = list(corpus)
    for i, document in enumerate(documents):
        if not isinstance(document, str):
            raise ArgumentError(
                f"errorentropy.score(): every document must be a str; corpus[{i}] is "
                f"{type_name(document)}",
                "corpus",
            )
    if not documents:
        raise ArgumentError("errorentropy.score(): no documents to score (an empty list)", "corpus")
    settings = {
        "data": None,  # documents given in Python
        "data_fingerprint": fingerprint(documents),
        "samples": None,
        "seed": None,
        "text_field": None,
        "n_documents_available": len(documents),
    }
    return documents, settings, "the given list"


def score_corpus(
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Sequence[str],
    options: ScoreOptions,
    *,
    model_name: str,
    revision: str | None,
    data_settings: Mapping[str, Any],
    data_label: str,
    bos_hint: str = "--bos always",
    progress: bool = False,
    notes: Sequence[str] = (),
) -> ScoredCorpus:
    """Score ``documents`` (sharded under torchrun) and summarize them: the ``score`` command
    and :func:`score` both end here. ``data_label`` and ``bos_hint`` word the error raised when
    every document is too short to score; ``notes`` come first among the result's notes."""
    import torch.distributed as dist

    started = time.perf_counter()
    result = shard_and_score(model, tokenizer, documents, options, progress=progress)
    elapsed = time.perf_counter() - started
    require_tokens(result, data_label, bos_hint)
    grouped = dist.is_available() and dist.is_initialized()
    result.notes = [*notes, *result.notes]
    provenance = model_provenance(model)
    if provenance.note:  # the model changed since it was loaded: no fingerprint, and why
        result.notes.append(provenance.note)
    settings = summary_settings(
        model,
        result,
        options,
        identity={
            "model": model_name,
            "revision": revision,
            **provenance.fields(),  # model_commit, weights_fingerprint
        },
        data=data_settings,
        extra={
            "processes": dist.get_world_size() if grouped else 1,
            "elapsed_s": round(elapsed, 3),
            "tokens_per_s": round(result.histogram.n_tokens / elapsed, 1) if elapsed > 0 else None,
        },
    )
    result.summary = summarize(
        result.histogram, settings, rbp_ks=options.rbp_k, tokens=result.tokens
    )
    return result
