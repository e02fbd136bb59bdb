"""Data parallelism over ``torch.distributed``: documents sharded across processes, one merged
result.

Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``) every process scores
the documents ``rank, rank + K, rank + 2K, ...``; the token tables are gathered and merged into the
result one process would give. Windows are padded to a width of their own, so each token's
numbers are the same bits whatever its batch-mates, and the histogram is rebuilt from the merged,
sorted token table: the result is bit-identical to one process's. Outside ``torchrun`` everything
here is a no-op wrapper around :func:`errorentropy.scoring.engine.score_documents`.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from errorentropy.errors import UserError
from errorentropy.options import DEFAULT_OPTIONS, ScoreOptions
from errorentropy.scoring.engine import score_documents
from errorentropy.scoring.results import ScoredCorpus
from errorentropy.stats.histogram import RankHistogram
from errorentropy.stats.profile import RankProfile
from errorentropy.stats.tokens import TokenTable


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a ``torchrun`` launch: global rank, process count, rank on its
    machine."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """True on the process that writes results (rank 0)."""
        return self.rank == 0


def launch_from_env(environ: dict[str, str] | None = None) -> Launch | None:
    """The launch described by torchrun's environment variables, or None for a plain single
    process."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise UserError(
            f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} / "
            f"LOCAL_RANK={env.get('LOCAL_RANK')!r} are not integers; launch with torchrun"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"RANK={rank} is outside WORLD_SIZE={world}; launch with torchrun")
    return Launch(rank, world, local)


def init_distributed(device: str = "auto", timeout_minutes: float = 60.0) -> Launch | None:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA).

    On CUDA the process uses GPU ``LOCAL_RANK`` (call this before loading the model, so
    ``--device auto`` or ``cuda`` lands there). Returns None outside torchrun or for one process.
    """
    launch = launch_from_env()
    if launch is None or launch.world_size == 1:
        return None
    import torch.distributed as dist

    use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
    if use_cuda:
        if launch.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {launch.local_rank} but only {torch.cuda.device_count()} "
                f"GPUs are visible; use --nproc-per-node {torch.cuda.device_count()} or "
                "fewer"
            )
        torch.cuda.set_device(launch.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=timeout_minutes)
        )
        atexit.register(finish)
    return launch


def shard_documents(n_documents: int, rank: int, world_size: int) -> list[int]:
    """The documents process ``rank`` of ``world_size`` scores: round-robin, so lengths balance."""
    return list(range(rank, n_documents, world_size))


def merge_results(parts: Sequence[ScoredCorpus]) -> ScoredCorpus:
    """One result from shard results over disjoint documents: tokens concatenated in (document,
    position) order, histogram rebuilt from them (bit-identical to one process), bookkeeping
    added."""
    if not parts:
        raise ValueError("no results to merge")
    doc = np.concatenate([p.tokens.doc for p in parts])
    pos = np.concatenate([p.tokens.position for p in parts])
    rank = np.concatenate([p.tokens.rank for p in parts])
    logprob = np.concatenate([p.tokens.logprob for p in parts])
    order = np.lexsort((pos, doc))
    tokens = TokenTable(doc[order], pos[order], rank[order], logprob[order])
    histogram = RankHistogram.from_tokens(
        tokens.rank,
        tokens.logprob,
        n_documents=int(np.unique(doc).size),
        n_skipped=sum(p.histogram.n_skipped for p in parts),
        n_tied=sum(p.histogram.n_tied for p in parts),
    )
    paths = sorted({p.head_path for p in parts if p.head_path != "none"}) or ["none"]
    profiles = [p.profile for p in parts if p.profile is not None]
    # Every process notes the same head: each note once.
    notes = list(dict.fromkeys(note for p in parts for note in p.notes))
    if len(paths) > 1:
        notes.append(f"processes used different head paths: {', '.join(paths)}")
    return ScoredCorpus(
        histogram,
        tokens,
        "+".join(paths),
        sum(p.n_windows for p in parts),
        sum(profiles, RankProfile()) if profiles else None,
        notes,
    )


def agree(error: str | None) -> str | None:
    """The first error any process of the group met (None if none did); every process gets the
    same answer, so all of them fail a step together instead of leaving the others waiting in a
    collective. Outside a process group: ``error`` itself."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return error
    errors: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    return next((f"process {rank}: {e}" for rank, e in enumerate(errors) if e), None)


def gather_results(local: ScoredCorpus) -> ScoredCorpus:
    """Every process's shard result, merged; every process receives the merged result."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    return merge_results(parts)


def shard_and_score(
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Sequence[str],
    options: ScoreOptions = DEFAULT_OPTIONS,
    *,
    progress: bool = False,
) -> ScoredCorpus:
    """Score ``documents`` across all processes of a torchrun launch and return the merged result
    (on every process; only rank 0 should write it). Outside torchrun: ``score_documents``.

    A failure on any process (NaN logits on its shard, out of memory) raises the same
    :class:`UserError` on every process, so none is left waiting for the others.
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return score_documents(model, tokenizer, documents, options, progress=progress)
    rank, world = dist.get_rank(), dist.get_world_size()
    local: ScoredCorpus | None = None
    try:
        local = score_documents(
            model,
            tokenizer,
            documents,
            options,
            progress=progress and rank == 0,
            doc_ids=shard_documents(len(documents), rank, world),
        )
        error = None
    except UserError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - shared with the other processes, then raised on all
        error = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
    failure = agree(error)
    if failure is not None:
        raise UserError(failure)
    assert local is not None
    return gather_results(local)


def is_main_process() -> bool:
    """True unless this is a non-zero rank of an initialised process group (those write nothing)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process of an initialised group (a no-op outside one)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def finish() -> None:
    """Leave the process group without waiting for the others (a no-op outside one): registered
    at exit by :func:`init_distributed` for the paths where waiting could hang (an internal error,
    an interrupt)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def conclude(status: int) -> int:
    """End a command under torchrun: every process learns every other's exit status, then all
    leave the group together (none tears down its connections while another still reads from
    them; gloo can abort a process that does). Returns the largest status, so every process exits
    alike: rank 0's failed cells or failed write fail the whole launch, and no rank is left
    waiting. Outside a process group: ``status``."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        return status
    statuses: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(statuses, status)
    dist.destroy_process_group()
    return max(int(s) for s in statuses)
