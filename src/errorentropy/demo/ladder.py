"""Training the ladder: one job per model shape, cached by a key of everything its weights depend
on, trained alone or in a pool of processes, each saved with its checkpoints and a record."""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorentropy.demo.data import Split, digest, training_blocks
from errorentropy.demo.dense import DenseScoring, dense_done, dense_scorer, dense_scoring
from errorentropy.demo.objective import PLAIN_CE, TermsLog, batch_loss, models_dir
from errorentropy.demo.settings import (
    CPU_TRAIN_THREADS,
    DEMO_FORMAT,
    DEMO_VERSION,
    MODEL_RECORD,
    DemoSettings,
)
from errorentropy.demo.training import (
    ModelShape,
    neox_config,
    save_pretrained_atomic,
    train_model,
)
from errorentropy.errors import UserError
from errorentropy.storage import (
    read_checked_json,
    write_checked_json,
)


def model_key(
    config: Any,
    settings: DemoSettings,
    tokenizer_key: str,
    blocks: np.ndarray,
    device_kind: str,
    objective: str = PLAIN_CE,
) -> str:
    """What a trained model depends on; a folder whose record holds another key is retrained
    (plain ``"ce"`` is left out, so the demo's models keep their keys)."""
    cfg = {
        k: v
        for k, v in config.to_dict().items()
        if k not in ("transformers_version", "_name_or_path")
    }
    return digest(
        {
            "format": DEMO_FORMAT,
            "version": DEMO_VERSION,
            "config": cfg,
            "train": settings.train_settings().as_dict(),
            "checkpoints": settings.checkpoints,
            "tokenizer": tokenizer_key,
            "blocks": hashlib.sha256(np.ascontiguousarray(blocks).tobytes()).hexdigest(),
            "device": device_kind,
            **({} if objective == PLAIN_CE else {"objective": objective}),
        }
    )


def cached_model(folder: Path, key: str, checkpoints: Sequence[int]) -> bool:
    """True when ``folder`` holds a finished model trained with ``key`` and all its checkpoints."""
    record = folder / MODEL_RECORD
    if not record.exists():
        return False
    try:
        body = read_checked_json(record, "demo model record")
    except UserError:
        return False
    if body.get("key") != key:
        return False
    return (
        all((folder / "checkpoints" / f"step{s}" / "config.json").exists() for s in checkpoints)
        and (folder / "config.json").exists()
    )


@dataclass(frozen=True)
class TrainJob:
    """One model to train: everything a worker process needs (picklable)."""

    shape: ModelShape
    folder: Path
    config: dict[str, Any]
    key: str
    settings: DemoSettings
    blocks: np.ndarray
    tokenizer_dir: Path
    device: str
    threads: int
    dense: DenseScoring | None = None  # held-out scoring during training (none: skipped)
    objective: str = PLAIN_CE  # the training loss (:mod:`errorentropy.demo.objective`)


def train_one(job: TrainJob, queue: Any = None, progress: bool = True) -> dict[str, Any]:
    """Train one model of the ladder into its folder and return its record (written last).

    With ``queue`` (a worker process), progress goes to the parent as ``(name, steps)`` messages."""
    import torch
    from transformers import AutoTokenizer, GPTNeoXConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    threads_before = torch.get_num_threads()
    if job.device == "cpu":
        torch.set_num_threads(job.threads)  # in the pool and alone alike: the weights depend on it
    started = time.perf_counter()
    cpu_started = time.process_time()
    (job.folder / MODEL_RECORD).unlink(missing_ok=True)
    # No step folder of an earlier training survives.
    shutil.rmtree(job.folder / "checkpoints", ignore_errors=True)

    def save(step: int, model: Any) -> None:
        save_pretrained_atomic(model, job.folder / "checkpoints" / f"step{step}")

    def tick(step: int) -> None:
        if queue is not None:
            queue.put((job.shape.name, step))

    config = GPTNeoXConfig.from_dict(job.config)
    dense_timing = {"dense_score_seconds": 0.0}
    terms = TermsLog()
    on_eval = dense_scorer(job, dense_timing) if job.dense is not None else None
    try:
        model, losses = train_model(
            config,
            job.blocks,
            job.settings.train_settings(),
            save,
            checkpoints=job.settings.checkpoints,
            device=job.device,
            progress=progress and queue is None,
            label=job.shape.name,
            on_step=tick,
            on_eval=on_eval,
            eval_steps=job.dense.steps if job.dense is not None else (),
            loss_fn=batch_loss(job.objective),
            on_terms=terms,
        )
    finally:
        torch.set_num_threads(threads_before)
    model.save_pretrained(str(job.folder))
    AutoTokenizer.from_pretrained(str(job.tokenizer_dir)).save_pretrained(str(job.folder))
    body = _model_record(job, model, losses, started, cpu_started)
    body["dense_score_seconds"] = round(dense_timing["dense_score_seconds"], 2)
    body.update({"objective": job.objective, **terms.record()})
    write_checked_json(job.folder / MODEL_RECORD, body)
    return body


def _model_record(
    job: TrainJob, model: Any, losses: list[float], started: float, cpu_started: float
) -> dict[str, Any]:
    """What the demo records about a trained model (its wall and CPU time counted from
    ``started`` and ``cpu_started``)."""
    import torch

    from errorentropy.models.loading import count_parameters

    counts = count_parameters(model)
    return {
        "key": job.key,
        "name": job.shape.name,
        "hidden": job.shape.hidden,
        "layers": job.shape.layers,
        "heads": job.shape.heads,
        **{f"{k}_params": v for k, v in counts.as_dict().items()},
        "checkpoints": [f"step{s}" for s in job.settings.checkpoints],
        "train_tokens": job.settings.train_tokens,
        "final_train_loss": float(np.mean(losses[-max(1, len(losses) // 20) :])),
        "losses": [round(x, 5) for x in losses],
        "train_seconds": round(time.perf_counter() - started, 2),
        "train_cpu_seconds": round(time.process_time() - cpu_started, 2),
        # What it trained with.
        "threads": job.threads if job.device == "cpu" else torch.get_num_threads(),
        "device": job.device,
    }


def _train_parallel(
    jobs: Sequence[TrainJob], workers: int, progress: bool, log: Any
) -> dict[str, dict[str, Any]]:
    """Train CPU jobs in ``workers`` spawned processes, largest first; one aggregate progress
    bar."""
    import multiprocessing as mp
    import queue as queue_module
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    context = mp.get_context("spawn")  # fork after torch's thread pools were started can hang
    manager = context.Manager()
    messages = manager.Queue()
    done: dict[str, dict[str, Any]] = {}
    steps = {job.shape.name: 0 for job in jobs}
    total = sum(job.settings.steps for job in jobs)
    bar = tqdm(
        total=total,
        desc=f"train {len(jobs)} models ({workers} processes)",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            pending = {pool.submit(train_one, job, messages, False): job for job in jobs}
            while pending:
                finished, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        name, step = messages.get_nowait()
                    except queue_module.Empty:
                        break
                    bar.update(step - steps[name])
                    steps[name] = step
                for future in finished:
                    job = pending.pop(future)
                    body = future.result()
                    bar.update(job.settings.steps - steps[job.shape.name])
                    steps[job.shape.name] = job.settings.steps
                    done[job.shape.name] = body
                    _log_trained(
                        body,
                        job.settings.steps,
                        (lambda m: bar.write(f"[demo] {m}")) if progress else log,
                    )
    finally:
        bar.close()
        manager.shutdown()
    return done


def _log_trained(body: dict[str, Any], steps: int, log: Any) -> None:
    terms = ", ".join(f"{k} {v:.3f}" for k, v in body.get("final_terms", {}).items())
    log(
        f"model {_name(body)}: non-embedding {body['non_embedding_params']:,}, {steps} "
        f"steps in {body['train_seconds']:.1f} s "
        f"({body['train_cpu_seconds']:.1f} s CPU), final training loss "
        f"{body['final_train_loss']:.3f}" + (f" (terms: {terms})" if terms else "")
    )


def _name(body: dict[str, Any]) -> str:
    """A model's name in the log, with its objective unless that is plain CE."""
    objective = body.get("objective", PLAIN_CE)
    return body["name"] if objective == PLAIN_CE else f"{body['name']} [{objective}]"


PARALLEL_MIN_TOKENS = 65536  # below this, starting worker processes costs more than it saves


def training_workers(device: str, n_jobs: int, threads: int, train_tokens: int) -> int:
    """Processes to train in: on CPU one per core (small models use one core poorly), else one."""
    if device != "cpu" or n_jobs < 2 or threads < 2 or train_tokens < PARALLEL_MIN_TOKENS:
        return 1
    return min(n_jobs, threads)


def train_ladder(
    out: Path,
    settings: DemoSettings,
    tokenizer: Any,
    tokenizer_key: str,
    splits: dict[str, Split],
    device: str,
    *,
    threads: int,
    progress: bool,
    log: Any,
    heldout: dict[str, Path] | None = None,
    objective: str = PLAIN_CE,
) -> list[dict[str, Any]]:
    """Train (or reuse) every model of the ladder with ``objective`` (its models under
    :func:`models_dir`); returns one record per model, smallest first. With ``heldout`` (the
    held-out files), each model scores the held-out prose during training
    (:class:`DenseScoring`); a model whose dense cells are missing is retrained."""
    dense = dense_scoring(out, settings, heldout) if heldout and settings.dense_points else None
    records, jobs = _plan_ladder(
        out, settings, tokenizer, tokenizer_key, splits, device, log, dense, objective
    )
    records.update(_train_jobs(jobs, settings, device, threads=threads, progress=progress, log=log))
    return [records[shape.name] for shape in settings.shapes]


def _plan_ladder(
    out: Path,
    settings: DemoSettings,
    tokenizer: Any,
    tokenizer_key: str,
    splits: dict[str, Split],
    device: str,
    log: Any,
    dense: DenseScoring | None = None,
    objective: str = PLAIN_CE,
) -> tuple[dict[str, dict[str, Any]], list[TrainJob]]:
    """The records of the models already trained with these inputs, and the jobs for the rest."""
    blocks = None
    device_kind = "cuda" if device.startswith("cuda") else device
    records: dict[str, dict[str, Any]] = {}
    jobs: list[TrainJob] = []
    for shape in settings.shapes:
        folder = models_dir(out, objective) / shape.name
        config = neox_config(
            shape, len(tokenizer), settings.block, bos_eos_id=tokenizer.eos_token_id
        )
        if blocks is None:
            blocks = training_blocks(tokenizer, splits, settings)
        key = model_key(config, settings, tokenizer_key, blocks, device_kind, objective)
        if cached_model(folder, key, settings.checkpoints) and (
            dense is None or dense_done(dense, shape.name)
        ):
            records[shape.name] = read_checked_json(folder / MODEL_RECORD, "demo model record")
            log(
                f"model {_name(records[shape.name])}: reusing (non-embedding parameters "
                f"{records[shape.name]['non_embedding_params']:,})"
            )
            continue
        # One intra-op thread per CPU model, in the pool and alone alike (the cores go to parallel
        # models): a model retrained alone, after a kill or in a smaller ladder, gets the same
        # weights.
        jobs.append(
            TrainJob(
                shape,
                folder,
                config.to_dict(),
                key,
                settings,
                blocks,
                out / "tokenizer",
                device,
                CPU_TRAIN_THREADS,
                dense,
                objective,
            )
        )
    return records, jobs


def _train_jobs(
    jobs: list[TrainJob],
    settings: DemoSettings,
    device: str,
    *,
    threads: int,
    progress: bool,
    log: Any,
) -> dict[str, dict[str, Any]]:
    """Train the jobs, in a pool of processes where that pays; each model's record by name."""
    from transformers.utils import logging as hf_logging

    workers = training_workers(device, len(jobs), threads, settings.train_tokens)
    if workers > 1:
        # Longest first balances the pool.
        jobs.sort(key=lambda j: -(j.shape.hidden**2 * j.shape.layers))
        return _train_parallel(jobs, workers, progress, log)
    records = {}
    was_enabled = hf_logging.is_progress_bar_enabled()
    try:
        for job in jobs:
            body = train_one(job, None, progress)
            _log_trained(body, settings.steps, log)
            records[job.shape.name] = body
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
    return records
