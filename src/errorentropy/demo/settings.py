"""What determines the demo's numbers (and so its caches): :class:`DemoSettings`, the CI-sized
:func:`tiny_settings`, and the names of the demo folder's parts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from errorentropy.demo.training import (
    ModelShape,
    TrainSettings,
    checkpoint_steps,
    dense_steps,
    parse_shapes,
)
from errorentropy.options import ScoreOptions

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


# The corpora split, the tokenizer and its key, and the held-out files of a run.
Prepared = tuple[dict[str, Any], Any, str, dict[str, Path]]


@dataclass(frozen=True)
class DemoRun:
    """How this run goes: its folder, settings, device and threads, progress bars, log, and the
    timings it fills in (seconds by name)."""

    out: Path
    settings: DemoSettings
    device: str
    threads: int
    progress: bool
    log: Any
    timings: dict[str, float]
