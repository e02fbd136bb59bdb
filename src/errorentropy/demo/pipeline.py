"""``errorentropy demo``: a miniature of the paper, end to end, offline, on real trained models.

1. Corpora ``builtin:prose`` and ``builtin:code``, each split by a seeded permutation into
   held-out documents (the first 10%) and training documents (the rest).
2. A byte-level BPE tokenizer trained on the training split, saved in Hugging Face format.
3. A ladder of GPT-NeoX (Pythia-like) models trained from scratch on the same token blocks in the
   same order, checkpointed at step 0 and log-spaced steps; each saved as a standard model folder
   ``DIR/models/NAME/`` (final weights + tokenizer) with ``checkpoints/stepK/`` revisions.
4. Exactly what a user runs next: a sweep spec ``DIR/sweep.toml`` over every model and checkpoint
   on held-out prose and code, the sweep into ``DIR/sweep/``, the fits and the report.

Everything is cached: a model whose settings hash matches is not retrained, the sweep skips
finished cells. The same seed gives the same numbers on the same machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from errorentropy.data.corpus import builtin_sources, fingerprint
from errorentropy.demo.tokenizer import train_bpe_tokenizer
from errorentropy.demo.training import (
    ModelShape,
    TrainSettings,
    checkpoint_steps,
    dense_steps,
    neox_config,
    pack_tokens,
    parse_shapes,
    save_pretrained_atomic,
    token_blocks,
    train_model,
)
from errorentropy.errors import UserError
from errorentropy.options import ScoreOptions
from errorentropy.report.page import build_report
from errorentropy.storage import (
    atomic_write_text,
    canonical_json,
    read_checked_json,
    write_checked_json,
)
from errorentropy.sweep.cells import CELL_FILE, CELLS_DIR, CellKey, load_cells, slug
from errorentropy.sweep.run import run_sweep
from errorentropy.version import __version__

CORPORA = ("builtin:prose", "builtin:code")
DEMO_FORMAT = "errorentropy-demo-model"
DEMO_VERSION = 2  # 2: held-out split by source file, near-copies dropped
CPU_TRAIN_THREADS = 1  # intra-op threads of each model trained on a CPU (weights depend on it)
MODEL_RECORD = "demo-model.json"
TOKENIZER_RECORD = "demo-tokenizer.json"
REPORT_RECORD = "demo-report.json"
HELDOUT_FRACTION = 0.125
DENSE_DIR = "dense"  # DIR/dense/cells/: the held-out scorings made during training
DENSE_CORPUS = "builtin:prose"  # the corpus scored during training

DEFAULT_SIZES = "16x1,32x2,64x2,128x3,192x4,256x4"
TINY_SIZES = "8x1,16x1,32x2"


@dataclass(frozen=True)
class DemoSettings:
    """Everything that determines the demo's numbers (and so its caches)."""

    shapes: tuple[ModelShape, ...]
    steps: int = 384
    batch_size: int = 8
    block: int = 128
    lr: float = 2e-3
    vocab_size: int = 4096
    seed: int = 0
    eval_docs: int = 64
    max_length: int = 128
    n_boot: int = 1000
    tokenizer_docs: int | None = None  # training documents per corpus the tokenizer sees (all)
    n_log_checkpoints: int = 5
    score_batch_size: int = 16
    dense_points: int = 16  # log-spaced steps scored during training (0: none), with checkpoints

    def train_settings(self) -> TrainSettings:
        """How every model of the ladder is trained."""
        return TrainSettings(
            steps=self.steps,
            batch_size=self.batch_size,
            block=self.block,
            lr=self.lr,
            warmup=max(1, self.steps // 20),
            seed=self.seed,
        )

    @property
    def checkpoints(self) -> list[int]:
        """The steps checkpointed: 0, log-spaced ones, and the last."""
        return checkpoint_steps(self.steps, self.n_log_checkpoints)

    @property
    def dense_steps(self) -> list[int]:
        """The steps whose held-out prose is scored during training (checkpoints included)."""
        return dense_steps(self.steps, self.dense_points, self.checkpoints)

    def score_options(self) -> ScoreOptions:
        """The scoring options of the sweep (its spec's ``[scoring]``) and of dense scoring."""
        return ScoreOptions(
            max_length=self.max_length, batch_size=self.score_batch_size, profile=True
        )

    @property
    def train_tokens(self) -> int:
        """Training tokens per model."""
        return self.steps * self.batch_size * self.block


def tiny_settings(seed: int = 0) -> DemoSettings:
    """The seconds-long version for CI: three very small models, a few steps, a few documents."""
    return DemoSettings(
        shapes=tuple(parse_shapes(TINY_SIZES)),
        steps=12,
        batch_size=4,
        block=32,
        lr=3e-3,
        vocab_size=384,
        seed=seed,
        eval_docs=6,
        max_length=32,
        n_boot=50,
        tokenizer_docs=40,
        n_log_checkpoints=2,
        dense_points=8,
    )


# ---- data --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One corpus split deterministically: training documents and held-out documents (seeded
    order)."""

    corpus: str
    train: list[str]
    heldout: list[str]


def split_by_source(
    sources: dict[str, Sequence[tuple[str, str]]], seed: int, fraction: float = HELDOUT_FRACTION
) -> dict[str, Split]:
    """Split several corpora whose documents share sources (a module's docstrings in one, its code
    in the other) so that nothing held out is trained on under another name.

    Sources (``topic:KEY`` or a module path) are held out together: the first ``fraction`` of a
    ``seed`` permutation of all of them, across the corpora. Empty documents are dropped, and so is
    a held-out document that is (nearly) a copy of training text: the same text as a training or
    an earlier held-out document, or most of its long lines found among the training documents'
    lines (the standard library's generated codec modules differ only in their tables' values).
    Held-out documents keep the permutation's order.
    """
    keys = sorted({key for docs in sources.values() for key, _ in docs})
    order = np.random.default_rng(seed).permutation(len(keys))
    n_held = max(1, int(round(fraction * len(keys))))
    rank = {keys[i]: position for position, i in enumerate(order)}
    held = {keys[i] for i in order[:n_held]}
    train = {
        c: [text for key, text in docs if key not in held and text.strip()]
        for c, docs in sources.items()
    }
    seen = {text for texts in train.values() for text in texts}
    train_lines = {line for texts in train.values() for text in texts for line in _long_lines(text)}
    splits = {}
    for corpus, docs in sources.items():
        heldout = []
        for _, text in sorted(
            ((key, text) for key, text in docs if key in held), key=lambda kt: rank[kt[0]]
        ):
            lines = _long_lines(text)
            copied = (
                sum(line in train_lines for line in lines) > NEAR_COPY * len(lines)
                if lines
                else False
            )
            if text.strip() and text not in seen and not copied:
                heldout.append(text)
                seen.add(text)
        splits[corpus] = Split(corpus, train[corpus], heldout)
    return splits


# A held-out document with more than this share of its long lines in training text is a copy.
NEAR_COPY = 0.5


def _long_lines(text: str) -> list[str]:
    """The lines that say something (stripped, 20 characters or more): what a near-copy shares."""
    return [line for line in (raw.strip() for raw in text.splitlines()) if len(line) >= 20]


@functools.lru_cache(maxsize=4)
def load_splits(seed: int) -> dict[str, Split]:
    """Both built-in corpora, split by source (kept for the process: reading the standard library
    takes seconds)."""
    return split_by_source({c: builtin_sources(c) for c in CORPORA}, seed)


def corpus_label(corpus: str) -> str:
    """The short name of a built-in corpus: ``prose`` for ``builtin:prose``."""
    return corpus.split(":", 1)[1]


def document_head(tokenizer: Any, text: str, max_length: int, margin: int = 16) -> str:
    """The beginning of ``text`` that holds its first ``max_length + margin`` tokens.

    Scoring truncates every document to its first ``max_length`` tokens, so the held-out files
    keep only that much text (tokenizing whole standard-library files for 128 tokens each cost
    more than scoring them). The cut is checked: if the kept text does not tokenize to the same
    first ``max_length`` tokens, the whole document is kept."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoding["input_ids"], encoding["offset_mapping"]
    keep = max_length + margin
    if len(ids) <= keep:
        return text
    head = text[: offsets[keep - 1][1]]
    if tokenizer(head, add_special_tokens=False)["input_ids"][:max_length] != ids[:max_length]:
        return text
    return head


def write_heldout(
    out: Path, splits: dict[str, Split], settings: DemoSettings, tokenizer: Any
) -> dict[str, Path]:
    """The scored held-out documents (their first ``max_length`` tokens' worth of text) as
    ``DIR/data/heldout-<corpus>.jsonl``, rewritten only when their content changes."""
    paths = {}
    for corpus, split in splits.items():
        if settings.eval_docs > len(split.heldout):
            raise UserError(
                f"--eval-docs {settings.eval_docs} is more than the {len(split.heldout)} "
                f"held-out documents of {corpus}; ask for at most {len(split.heldout)}"
            )
        docs = [
            document_head(tokenizer, d, settings.max_length)
            for d in split.heldout[: settings.eval_docs]
        ]
        text = "".join(json.dumps({"text": d}, ensure_ascii=False) + "\n" for d in docs)
        path = out / "data" / f"heldout-{corpus_label(corpus)}.jsonl"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
        paths[corpus] = path
    return paths


def digest(payload: Any) -> str:
    """SHA-256 of a JSON-able payload's canonical form."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def text_digest(documents: Sequence[str]) -> str:
    """The fingerprint of a list of documents (:func:`errorentropy.data.corpus.fingerprint`)."""
    return fingerprint(documents)


# ---- tokenizer ---------------------------------------------------------------------------------


def tokenizer_texts(splits: dict[str, Split], limit: int | None) -> list[str]:
    """The training documents the tokenizer learns from: all (or the first ``limit``) of each
    corpus."""
    texts: list[str] = []
    for corpus in CORPORA:
        docs = splits[corpus].train
        texts.extend(docs if limit is None else docs[:limit])
    return texts


def build_tokenizer(
    out: Path, splits: dict[str, Split], settings: DemoSettings, log: Any
) -> tuple[Any, str]:
    """The demo's tokenizer, trained once and reused while its inputs are unchanged; returns
    (tokenizer, key)."""
    from transformers import AutoTokenizer

    texts = tokenizer_texts(splits, settings.tokenizer_docs)
    key = digest(
        {"vocab_size": settings.vocab_size, "texts": text_digest(texts), "version": DEMO_VERSION}
    )
    folder = out / "tokenizer"
    record = folder / TOKENIZER_RECORD
    if record.exists():
        try:
            if read_checked_json(record, "tokenizer record").get("key") == key:
                log(f"tokenizer: reusing {folder}")
                return AutoTokenizer.from_pretrained(str(folder)), key
        except UserError:
            pass
    started = time.perf_counter()
    tokenizer = train_bpe_tokenizer(texts, settings.vocab_size)
    record.unlink(missing_ok=True)  # a kill while saving must leave no new files under it
    tokenizer.save_pretrained(str(folder))
    write_checked_json(record, {"key": key, "vocab_size": len(tokenizer), "documents": len(texts)})
    log(
        f"tokenizer: {len(tokenizer)} entries from {len(texts)} training documents "
        f"({time.perf_counter() - started:.1f} s)"
    )
    return AutoTokenizer.from_pretrained(str(folder)), key


def training_blocks(tokenizer: Any, splits: dict[str, Split], settings: DemoSettings) -> np.ndarray:
    """The token blocks every model trains on, in order: half prose, half code, seeded shuffle.

    Documents are tokenized in their seeded order only until each corpus has enough tokens, so
    a short demo does not tokenize the whole standard library."""
    n_blocks = settings.steps * settings.batch_size
    per_corpus = [n_blocks // 2, n_blocks - n_blocks // 2]
    parts = []
    for corpus, want in zip(CORPORA, per_corpus):
        need_tokens = want * settings.block
        ids: list[list[int]] = []
        have = 0
        for doc in splits[corpus].train:
            tokens = tokenizer(doc, add_special_tokens=False)["input_ids"]
            ids.append(tokens)
            have += len(tokens) + 1
            if have >= need_tokens:
                break
        stream = pack_tokens(ids, tokenizer.eos_token_id)
        parts.append(token_blocks(stream, settings.block, want, settings.seed))
    blocks = np.concatenate(parts)
    return blocks[np.random.default_rng(settings.seed).permutation(len(blocks))]


# ---- models ------------------------------------------------------------------------------------


def model_key(
    config: Any, settings: DemoSettings, tokenizer_key: str, blocks: np.ndarray, device_kind: str
) -> str:
    """What a trained model depends on; a folder whose record holds another key is retrained."""
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
class DenseScoring:
    """What a model scores during training: ``documents`` (the sweep's held-out file ``data``,
    dataset ``dataset``) at ``steps``, with the sweep's ``options``, each a cell under ``out``."""

    out: Path
    documents: tuple[str, ...]
    dataset: str
    data: str
    steps: tuple[int, ...]
    options: ScoreOptions


def dense_scoring(out: Path, settings: DemoSettings, heldout: dict[str, Path]) -> DenseScoring:
    """The dense scoring of ``settings``: the held-out prose file's documents, as the sweep reads
    them."""
    path = heldout[DENSE_CORPUS]
    lines = path.read_text(encoding="utf-8").splitlines()
    return DenseScoring(
        out / DENSE_DIR,
        tuple(json.loads(line)["text"] for line in lines if line.strip()),
        corpus_label(DENSE_CORPUS),
        path.relative_to(out).as_posix(),
        tuple(settings.dense_steps),
        settings.score_options(),
    )


def dense_cell(dense: DenseScoring, name: str, step: int) -> Path:
    """The folder of model ``name``'s dense cell at ``step`` (under ``dense.out``)."""
    return dense.out / CELLS_DIR / CellKey(name, f"step{step}", dense.dataset).cell_id


def dense_done(dense: DenseScoring, name: str) -> bool:
    """True when every dense cell of model ``name`` is there, scored from these documents with
    these options (a changed ``--max-length`` or held-out file redoes them)."""
    if not all((dense_cell(dense, name, s) / CELL_FILE).exists() for s in dense.steps):
        return False
    wanted = {"data_fingerprint": fingerprint(dense.documents), **dense.options.settings()}
    for step in dense.steps:
        try:
            summary = json.loads((dense_cell(dense, name, step) / "summary.json").read_text())
        except (OSError, ValueError):
            return False
        if any(summary.get(k) != v for k, v in wanted.items()):
            return False
    return True


def _dense_scorer(job: TrainJob, timings: dict[str, float]) -> Any:
    """``on_eval`` for :func:`train_model`: score the dense documents and save the cell (its
    seconds added to ``timings["dense_score_seconds"]``)."""
    from transformers import AutoTokenizer

    from errorentropy.integrations.common import score_texts, write_step_cell

    dense = job.dense
    assert dense is not None
    tokenizer = AutoTokenizer.from_pretrained(str(job.tokenizer_dir))
    for old in (dense.out / CELLS_DIR).glob(f"{slug(job.shape.name)}__*"):
        shutil.rmtree(old)

    def score(step: int, model: Any) -> None:
        started = time.perf_counter()
        result = score_texts(model, tokenizer, dense.documents, dense.options)
        write_step_cell(
            dense.out,
            result,
            model,
            label=job.shape.name,
            step=step,
            dataset=dense.dataset,
            documents=dense.documents,
            options=dense.options,
            family="demo-neox",
            data=dense.data,
        )
        timings["dense_score_seconds"] += time.perf_counter() - started

    return score


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
    on_eval = _dense_scorer(job, dense_timing) if job.dense is not None else None
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
        )
    finally:
        torch.set_num_threads(threads_before)
    model.save_pretrained(str(job.folder))
    AutoTokenizer.from_pretrained(str(job.tokenizer_dir)).save_pretrained(str(job.folder))
    body = _model_record(job, model, losses, started, cpu_started)
    body["dense_score_seconds"] = round(dense_timing["dense_score_seconds"], 2)
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
    log(
        f"model {body['name']}: non-embedding {body['non_embedding_params']:,}, {steps} "
        f"steps in {body['train_seconds']:.1f} s "
        f"({body['train_cpu_seconds']:.1f} s CPU), final training loss "
        f"{body['final_train_loss']:.3f}"
    )


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
) -> list[dict[str, Any]]:
    """Train (or reuse) every model of the ladder; returns one record per model, smallest first.
    With ``heldout`` (the held-out files), each model scores the held-out prose during training
    (:class:`DenseScoring`); a model whose dense cells are missing is retrained."""
    dense = dense_scoring(out, settings, heldout) if heldout and settings.dense_points else None
    records, jobs = _plan_ladder(
        out, settings, tokenizer, tokenizer_key, splits, device, log, dense
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
) -> tuple[dict[str, dict[str, Any]], list[TrainJob]]:
    """The records of the models already trained with these inputs, and the jobs for the rest."""
    blocks = None
    device_kind = "cuda" if device.startswith("cuda") else device
    records: dict[str, dict[str, Any]] = {}
    jobs: list[TrainJob] = []
    for shape in settings.shapes:
        folder = out / "models" / shape.name
        config = neox_config(
            shape, len(tokenizer), settings.block, bos_eos_id=tokenizer.eos_token_id
        )
        if blocks is None:
            blocks = training_blocks(tokenizer, splits, settings)
        key = model_key(config, settings, tokenizer_key, blocks, device_kind)
        if cached_model(folder, key, settings.checkpoints) and (
            dense is None or dense_done(dense, shape.name)
        ):
            records[shape.name] = read_checked_json(folder / MODEL_RECORD, "demo model record")
            log(
                f"model {shape.name}: reusing (non-embedding parameters "
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


# ---- sweep, fit, report ------------------------------------------------------------------------


def sweep_spec_text(
    out: Path,
    settings: DemoSettings,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
    device: str,
) -> str:
    """The TOML spec a user would write for this ladder (paths relative to ``DIR``)."""
    lines = [
        "# Written by `errorentropy demo`: every model and checkpoint of the ladder on "
        "held-out prose and code.",
        "# Rerun by hand, from this folder: errorentropy sweep sweep.toml --out sweep && "
        "errorentropy report sweep",
        "",
        "[scoring]",
        f"max_length = {settings.max_length}",
        f"batch_size = {settings.score_batch_size}",
        "profile = true  # the sorted-probability profile of Fig. 5",
        "",
        "[run]",
        'dtype = "float32"',
        f'device = "{device}"',
    ]
    for record in records:
        revisions = ", ".join(f'"{r}"' for r in record["checkpoints"])
        lines += [
            "",
            "[[models]]",
            f'id = "models/{record["name"]}"',
            'family = "demo-neox"',
            f"revisions = [{revisions}]",
        ]
    for corpus, path in heldout.items():
        rel = path.relative_to(out).as_posix()
        lines += ["", "[[datasets]]", f'data = "{rel}"', f'label = "{corpus_label(corpus)}"']
    return "\n".join(lines) + "\n"


def invalidate_stale_cells(
    out: Path,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
    settings: DemoSettings,
    log: Any,
) -> int:
    """Delete sweep cells computed from other weights or other held-out documents.

    The sweep knows a cell by model folder, revision and dataset path, not by the weights or the
    text inside; when the demo retrains a model or rewrites a held-out file under the same name,
    the cells computed from the old ones are removed here so the sweep recomputes them."""
    record_path = out / "sweep" / "demo-inputs.json"
    data_keys = {
        corpus_label(c): digest(
            {"file": p.read_text(encoding="utf-8"), "max_length": settings.max_length}
        )
        for c, p in heldout.items()
    }
    model_keys = {r["name"]: r["key"] for r in records}
    previous: dict[str, Any] = {}
    if record_path.exists():
        try:
            previous = read_checked_json(record_path, "demo sweep inputs")
        except UserError:
            previous = {}
    cells_root = out / "sweep" / CELLS_DIR
    removed = 0
    if cells_root.is_dir():
        for cell in sorted(cells_root.iterdir()):
            model, _, rest = cell.name.partition("__")
            dataset = rest.rpartition("__")[2]
            stale_model = any(
                slug(name) == model and previous.get("models", {}).get(name) != key
                for name, key in model_keys.items()
            )
            stale_data = any(
                slug(label) == dataset and previous.get("data", {}).get(label) != key
                for label, key in data_keys.items()
            )
            dropped = model not in {slug(name) for name in model_keys} or dataset not in {
                slug(label) for label in data_keys
            }
            if stale_model or stale_data or dropped:  # a size left out of --sizes leaves too
                shutil.rmtree(cell)
                removed += 1
    if removed:
        log(
            f"sweep: removed {removed} cells computed from other weights, other held-out "
            "documents or models no longer in the ladder"
        )
    write_checked_json(record_path, {"models": model_keys, "data": data_keys})
    return removed


def share_dense_cells(
    out: Path,
    settings: DemoSettings,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
) -> int:
    """Copy each model's dense cells at steps between checkpoints into the sweep folder, where
    the report draws them with the sweep's cells (the checkpoint steps are the sweep's own cells;
    their dense twins stay under ``DIR/dense/`` to check against). Returns how many were copied."""
    if not settings.dense_points:
        return 0
    dense = dense_scoring(out, settings, heldout)
    copied = 0
    for record in records:
        for step in dense.steps:
            source = dense_cell(dense, record["name"], step)
            target = out / "sweep" / CELLS_DIR / source.name
            if step in settings.checkpoints or target.exists():
                continue
            if not (source / CELL_FILE).exists():
                continue
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp)
            tmp.rename(target)
            copied += 1
    return copied


def run_analysis(
    out: Path,
    spec_path: Path,
    settings: DemoSettings,
    *,
    progress: bool,
    log: Any,
    report: bool = True,
) -> dict[str, Any]:
    """The user's path: sweep, fits, report (``report=False``: the sweep only)."""
    sweep_dir = out / "sweep"
    result: dict[str, Any] = {"spec": str(spec_path), "sweep_dir": str(sweep_dir)}
    started = time.perf_counter()
    outcome = run_sweep(spec_path, sweep_dir, progress=progress)
    result["sweep_seconds"] = round(time.perf_counter() - started, 2)
    result["cells"] = {
        "done": outcome.count("done"),
        "failed": outcome.count("failed"),
        "computed_now": outcome.computed,
    }
    log(outcome.summary_line())
    if not outcome.ok:
        raise UserError(
            f"{outcome.count('failed')} sweep cells failed (see "
            f"{sweep_dir}/cells/*/failure.json); rerun `errorentropy sweep {spec_path} "
            f"--out {sweep_dir} --retry-failed`"
        )
    if report:
        result.update(_report(sweep_dir, settings, log))
    return result


def _report(sweep_dir: Path, settings: DemoSettings, log: Any) -> dict[str, Any]:
    """Fit and report the sweep, or reuse the report drawn from the same cells and settings."""
    cells = sorted((sweep_dir / "cells").glob("*/cell.json"))
    key = digest(
        {
            "cells": {p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in cells},
            "n_boot": settings.n_boot,
            "seed": settings.seed,
            "version": __version__,
        }
    )
    record = sweep_dir / REPORT_RECORD
    previous = _previous_report(record, sweep_dir)
    if previous.get("key") == key:
        log(
            f"report: reusing {previous['report_html']} (same cells, same fit "
            f"settings; `errorentropy report {sweep_dir}` redraws it)"
        )
        keys = ("report_md", "report_html", "notes")
        reused: dict[str, Any] = {k: previous[k] for k in keys if k in previous}
        return {**reused, "report_seconds": 0.0}
    started = time.perf_counter()
    built = build_report(sweep_dir, run_fit=True, n_boot=settings.n_boot, seed=settings.seed)
    seconds = round(time.perf_counter() - started, 2)
    kept = {k: v for k, v in built.items() if k in ("report_md", "report_html", "notes")}
    write_checked_json(record, {"key": key, **kept})
    log(f"report: {built.get('report_html')} ({seconds:.1f} s)")
    return {"report_seconds": seconds, **kept}


def _previous_report(record: Path, sweep_dir: Path) -> dict[str, Any]:
    """The record of the report last drawn in ``sweep_dir``, or {} when there is none that is
    readable and whose files are there (a demo folder moved or copied elsewhere redraws its own
    report)."""
    if not record.exists():
        return {}
    try:
        previous = read_checked_json(record, "demo report record")
    except UserError:
        return {}
    here = all(
        Path(previous.get(k, "")).exists()
        and Path(previous[k]).resolve().parent == sweep_dir.resolve()
        for k in ("report_md", "report_html")
    )
    return previous if here else {}


def headline(sweep_dir: Path, steps: int) -> dict[str, list[dict[str, Any]]]:
    """Per dataset, each model's final-checkpoint components (nats per token), smallest first."""
    table: dict[str, list[dict[str, Any]]] = {}
    for cell in load_cells(sweep_dir):
        if cell.step != steps:
            continue
        s = cell.summary
        table.setdefault(cell.key.dataset, []).append(
            {
                "model": cell.key.model,
                "non_embedding_params": cell.non_embedding_params,
                **{
                    k: round(s[key], 4)
                    for k, key in (
                        ("CE", "cross_entropy"),
                        ("EE", "error_entropy"),
                        ("SA", "self_alignment"),
                        ("Conf", "confidence"),
                    )
                },
            }
        )
    for rows in table.values():
        rows.sort(key=lambda r: r["non_embedding_params"])
    return table


def format_headline(table: dict[str, list[dict[str, Any]]]) -> str:
    """The headline table as aligned text lines."""
    lines = []
    for dataset, rows in sorted(table.items()):
        lines.append(
            f"{dataset}: {'model':<12} {'N (non-emb.)':>12} {'CE':>7} {'EE':>7} {'SA':>7} "
            f"{'Conf':>7} {'EE/CE':>6}"
        )
        for r in rows:
            lines.append(
                f"{'':<{len(dataset) + 1}} {r['model']:<12} "
                f"{r['non_embedding_params']:>12,} {r['CE']:>7.4f} {r['EE']:>7.4f} "
                f"{r['SA']:>7.4f} {r['Conf']:>7.4f} {r['EE'] / r['CE']:>6.3f}"
            )
    return "\n".join(lines)


# ---- orchestration -----------------------------------------------------------------------------


def resolve_training_device(device: str) -> str:
    """``auto``: CUDA when available, else CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu or auto"
        )
    if not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"--device {device!r}: choose auto, cpu, cuda or cuda:N")
    return device


def set_threads() -> int:
    """Use every core this process may run on (the container's share, not the host's)."""
    import torch

    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


def run_demo(
    out: Path | str,
    settings: DemoSettings,
    *,
    device: str = "auto",
    progress: bool = True,
    analyse: bool = True,
    report: bool = True,
    log: Any = None,
) -> dict[str, Any]:
    """Build (or reuse) the whole miniature in ``out`` and return a summary of what was done
    (``analyse=False``: stop after training and the spec; ``report=False``: stop after the
    sweep)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    out.mkdir(parents=True, exist_ok=True)
    say = log or (lambda msg: print(f"[demo] {msg}", flush=True))
    dev = resolve_training_device(device)
    threads = set_threads()
    timings: dict[str, float] = {}
    started = time.perf_counter()
    cpu_started = time.process_time()

    splits, tokenizer, tokenizer_key, heldout = _prepare_data(out, settings, say, timings)

    t = time.perf_counter()
    say(_ladder_line(settings, dev, threads))
    records = train_ladder(
        out,
        settings,
        tokenizer,
        tokenizer_key,
        splits,
        dev,
        threads=threads,
        progress=progress,
        log=say,
        heldout=heldout,
    )
    timings["train_s"] = time.perf_counter() - t

    spec_path = write_spec(out, settings, records, heldout, dev)
    summary = _summary(out, dev, threads, records, spec_path)
    if analyse:
        invalidate_stale_cells(out, records, heldout, settings, say)
        share_dense_cells(out, settings, records, heldout)
        t = time.perf_counter()
        summary["analysis"] = run_analysis(
            out, spec_path, settings, progress=progress, log=say, report=report
        )
        timings["analysis_s"] = time.perf_counter() - t
        summary["final"] = headline(out / "sweep", settings.steps)
        say("final checkpoints, held-out nats per token:\n" + format_headline(summary["final"]))
    timings["total_s"] = time.perf_counter() - started
    # All threads: wall time on a shared machine overstates.
    timings["cpu_s"] = time.process_time() - cpu_started
    summary["timings"] = {k: round(v, 2) for k, v in timings.items()}
    write_checked_json(out / "demo-summary.json", summary)
    report_html = summary.get("analysis", {}).get("report_html", spec_path)
    say(f"done in {timings['total_s']:.1f} s; open {report_html}")
    return summary


def _ladder_line(settings: DemoSettings, device: str, threads: int) -> str:
    """What is about to be trained, in one line."""
    return (
        f"ladder: {len(settings.shapes)} GPT-NeoX models on {device} ({threads} threads), "
        f"{settings.steps} steps x {settings.batch_size} x {settings.block} tokens = "
        f"{settings.train_tokens:,} tokens, checkpoints at steps {settings.checkpoints}"
    )


def _prepare_data(
    out: Path, settings: DemoSettings, say: Any, timings: dict[str, float]
) -> tuple[dict[str, Split], Any, str, dict[str, Path]]:
    """The corpora split, the tokenizer and its key, and the held-out files (timed in
    ``timings``)."""
    t = time.perf_counter()
    splits = checked_splits(settings)
    timings["data_s"] = time.perf_counter() - t
    counts = ", ".join(
        f"{c}: {len(s.train)} train / {len(s.heldout)} held out" for c, s in splits.items()
    )
    say(f"data: {counts}; scoring {settings.eval_docs} documents each")

    t = time.perf_counter()
    tokenizer, tokenizer_key = build_tokenizer(out, splits, settings, say)
    heldout = write_heldout(out, splits, settings, tokenizer)
    timings["tokenizer_s"] = time.perf_counter() - t
    return splits, tokenizer, tokenizer_key, heldout


def checked_splits(settings: DemoSettings) -> dict[str, Split]:
    """The built-in corpora split for ``settings.seed``, each holding out at least
    ``settings.eval_docs`` documents."""
    splits = load_splits(settings.seed)
    for corpus, split in splits.items():
        if settings.eval_docs > len(split.heldout):
            raise UserError(
                f"--eval-docs {settings.eval_docs} is more than the {len(split.heldout)} "
                f"held-out documents of {corpus}; ask for at most {len(split.heldout)}"
            )
    return splits


def write_spec(
    out: Path,
    settings: DemoSettings,
    records: Sequence[dict[str, Any]],
    heldout: dict[str, Path],
    device: str,
) -> Path:
    """``DIR/sweep.toml`` (:func:`sweep_spec_text`), rewritten only when its text changes."""
    spec_path = out / "sweep.toml"
    text = sweep_spec_text(out, settings, records, heldout, device)
    if not spec_path.exists() or spec_path.read_text(encoding="utf-8") != text:
        atomic_write_text(spec_path, text)
    return spec_path


def _summary(
    out: Path, device: str, threads: int, records: Sequence[dict[str, Any]], spec_path: Path
) -> dict[str, Any]:
    """The start of demo-summary.json: where, on what, which models, which spec."""
    keys = ("name", "non_embedding_params", "total_params", "final_train_loss", "train_seconds")
    # dense_score_seconds: of train_seconds, the held-out scoring during training (None: a
    # model trained before the demo scored during training, with dense_points=0).
    return {
        "out": str(out),
        "device": device,
        "threads": threads,
        "models": [
            {**{k: r[k] for k in keys}, "dense_score_seconds": r.get("dense_score_seconds")}
            for r in records
        ],
        "spec": str(spec_path),
    }
