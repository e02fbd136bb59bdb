"""Training small GPT-NeoX (Pythia-like) language models from scratch, reproducibly.

Every model of a ladder sees the same token blocks in the same order (:func:`token_blocks` is
a pure function of the token stream, the block size and the seed) and is checkpointed at step 0
and at log-spaced steps (:func:`checkpoint_steps`), each checkpoint a standard folder that
``from_pretrained`` loads. A checkpoint ``step K`` holds the weights after K optimizer updates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from errorentropy.errors import UserError

if TYPE_CHECKING:  # torch is imported where a model is trained: `errorentropy --help` stays quick
    import torch
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class ModelShape:
    """One rung of the ladder: hidden width and depth (heads follow: head size 32, at least one)."""

    hidden: int
    layers: int

    @property
    def heads(self) -> int:
        """Attention heads: one per 32 hidden units, at least one."""
        return max(1, self.hidden // 32)

    @property
    def name(self) -> str:
        """The model's name in the demo, ``neox-HIDDENxLAYERS``."""
        return f"neox-{self.hidden}x{self.layers}"


def parse_shapes(text: str) -> list[ModelShape]:
    """``"16x1,64x2,256x4"`` (HIDDENxLAYERS, comma-separated) as model shapes, smallest first."""
    shapes = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        parts = item.lower().split("x")
        try:
            hidden, layers = (int(p) for p in parts)
        except ValueError:
            raise UserError(f"--sizes entry {item!r} is not HIDDENxLAYERS (e.g. 64x2)") from None
        if hidden < 4 or layers < 1:
            raise UserError(f"--sizes entry {item!r}: hidden must be >= 4 and layers >= 1")
        shape = ModelShape(hidden, layers)
        if shape.hidden % shape.heads:
            raise UserError(
                f"--sizes entry {item!r}: hidden {hidden} does not split into "
                f"{shape.heads} heads; use a multiple of 32 (the head size) or at most 32"
            )
        shapes.append(shape)
    if not shapes:
        raise UserError("--sizes is empty; pass e.g. 16x1,64x2,256x4")
    if len({s.name for s in shapes}) != len(shapes):
        raise UserError(f"--sizes {text!r} names a shape twice")
    return shapes


def neox_config(shape: ModelShape, vocab_size: int, context: int, *, bos_eos_id: int = 0) -> Any:
    """A Pythia-style ``GPTNeoXConfig``: rotary on a quarter of each head, parallel residual,
    untied input and output embeddings, MLP 4x wide, no dropout."""
    from transformers import GPTNeoXConfig

    # transformers 5 still reads the legacy rotary_pct (into rope_parameters) from **kwargs; its
    # signature no longer lists it.
    return GPTNeoXConfig(  # type: ignore[call-arg]
        vocab_size=vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=4 * shape.hidden,
        max_position_embeddings=context,
        rotary_pct=0.25,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        bos_token_id=bos_eos_id,
        eos_token_id=bos_eos_id,
        pad_token_id=bos_eos_id,
    )


def checkpoint_steps(total_steps: int, n_log: int = 5) -> list[int]:
    """Step 0 and ``n_log`` log-spaced steps ending at ``total_steps`` (duplicates dropped)."""
    if total_steps < 1:
        raise UserError(f"--steps must be at least 1 (got {total_steps})")
    points = {0, total_steps}
    for k in range(1, n_log + 1):
        points.add(max(1, int(round(total_steps ** (k / n_log)))))
    return sorted(points)


def dense_steps(total_steps: int, n_points: int, checkpoints: Sequence[int]) -> list[int]:
    """The steps scored during training: ``checkpoints`` and about ``n_points`` log-spaced steps
    from 1 to ``total_steps`` (with step 0; duplicates dropped); none when ``n_points`` is 0."""
    if n_points < 1:
        return []
    points = {0, total_steps, *checkpoints}
    for k in range(n_points):
        points.add(max(1, int(round(total_steps ** (k / max(1, n_points - 1))))))
    return sorted(p for p in points if 0 <= p <= total_steps)


def pack_tokens(token_lists: Sequence[Sequence[int]], eos_id: int) -> np.ndarray:
    """Documents joined into one stream, each followed by EOS (as GPT-style pretraining packs
    text)."""
    total = sum(len(t) + 1 for t in token_lists)
    stream = np.empty(total, dtype=np.int64)
    at = 0
    for tokens in token_lists:
        stream[at : at + len(tokens)] = tokens
        stream[at + len(tokens)] = eos_id
        at += len(tokens) + 1
    return stream


def token_blocks(stream: np.ndarray, block: int, n_blocks: int, seed: int) -> np.ndarray:
    """``n_blocks`` rows of ``block`` tokens cut from ``stream`` and shuffled by ``seed``; when more
    rows are asked for than the stream holds, further epochs follow, each reshuffled."""
    available = len(stream) // block
    if available < 1:
        raise UserError(
            f"the training stream has {len(stream)} tokens, fewer than one block of {block}"
        )
    rows = stream[: available * block].reshape(available, block)
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(available) for _ in range(math.ceil(n_blocks / available))]
    )[:n_blocks]
    return rows[order]


class BatchLoss(Protocol):
    """A training loss on one batch: causal-LM ``logits`` [B, T, V] and Hugging Face ``labels``
    [B, T] give the differentiable loss and the terms to log beside it (plain floats by name)."""

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        """The batch's loss and its terms."""
        ...


@dataclass(frozen=True)
class TrainSettings:
    """How every model of a ladder is trained (the cache key, with the data and tokenizer)."""

    steps: int
    batch_size: int
    block: int
    lr: float
    warmup: int
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The settings by name, as the demo records them."""
        return asdict(self)


def learning_rate(step: int, settings: TrainSettings) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    span = max(1, settings.steps - settings.warmup)
    progress = min(1.0, (step - settings.warmup) / span)
    floor = settings.lr * settings.min_lr_ratio
    return floor + 0.5 * (settings.lr - floor) * (1 + math.cos(math.pi * progress))


def train_model(
    config: Any,
    blocks: np.ndarray,
    settings: TrainSettings,
    save_checkpoint: Callable[[int, PreTrainedModel], None],
    *,
    checkpoints: Sequence[int],
    device: str = "cpu",
    progress: bool = True,
    label: str = "",
    on_step: Callable[[int], None] | None = None,
    on_eval: Callable[[int, PreTrainedModel], None] | None = None,
    eval_steps: Sequence[int] = (),
    loss_fn: BatchLoss | None = None,
    on_terms: Callable[[int, Mapping[str, float]], None] | None = None,
) -> tuple[PreTrainedModel, list[float]]:
    """Train ``GPTNeoXForCausalLM(config)`` from a ``settings.seed`` initialisation on ``blocks``
    (``steps * batch_size`` rows, consumed in order), calling ``save_checkpoint(step, model)`` at
    each step in ``checkpoints``, ``on_eval(step, model)`` at each step in ``eval_steps`` (after
    the checkpoint; it must leave the model's weights, modes and the RNG as they were) and
    ``on_step(steps_done)`` every 8 steps. ``loss_fn`` (None: the model's own cross-entropy) is
    trained on, its terms sent to ``on_terms(steps_done, terms)``. Returns the model and losses."""
    import torch
    from tqdm.auto import tqdm
    from transformers import GPTNeoXForCausalLM

    need = settings.steps * settings.batch_size
    if len(blocks) < need:
        raise ValueError(f"{len(blocks)} blocks given, {need} needed")
    torch.manual_seed(settings.seed)
    # transformers types the wrapped .to() as taking the model, not a device.
    model = GPTNeoXForCausalLM(config).to(device)  # type: ignore[arg-type]
    optimizer = _optimizer(model, settings)
    wanted, scored = set(checkpoints), set(eval_steps) if on_eval is not None else set()
    losses: list[float] = []
    _at_step(0, model, save_checkpoint, wanted, on_eval, scored)
    data = torch.from_numpy(blocks[:need]).view(settings.steps, settings.batch_size, settings.block)
    bar = tqdm(
        range(settings.steps),
        desc=f"train {label}".strip(),
        unit="step",
        disable=not progress,
        leave=False,
        dynamic_ncols=True,
    )
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, settings)
        batch = data[step].to(device)
        loss = _batch_loss(model, batch, loss_fn, on_terms, step + 1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress and (step % 8 == 0 or step == settings.steps - 1):
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        _at_step(step + 1, model, save_checkpoint, wanted, on_eval, scored)
        if on_step is not None and ((step + 1) % 8 == 0 or step + 1 == settings.steps):
            on_step(step + 1)
    bar.close()
    return model.eval(), losses


def _batch_loss(
    model: PreTrainedModel,
    batch: torch.Tensor,
    loss_fn: BatchLoss | None,
    on_terms: Callable[[int, Mapping[str, float]], None] | None,
    step: int,
) -> torch.Tensor:
    """The loss of one batch: the model's own cross-entropy, or ``loss_fn``'s (its terms sent to
    ``on_terms(step, terms)``)."""
    if loss_fn is None:
        return model(input_ids=batch, labels=batch).loss
    loss, terms = loss_fn(model(input_ids=batch).logits, batch)
    if on_terms is not None:
        on_terms(step, terms)
    return loss


def _at_step(
    step: int,
    model: PreTrainedModel,
    save_checkpoint: Callable[[int, PreTrainedModel], None],
    wanted: set[int],
    on_eval: Callable[[int, PreTrainedModel], None] | None,
    scored: set[int],
) -> None:
    """After ``step`` updates: the checkpoint (if ``step`` is ``wanted``), then the scoring (if
    ``scored``); leaves the model in train mode."""
    if step in wanted:
        save_checkpoint(step, model.eval())
    model.train()
    if step in scored and on_eval is not None:
        on_eval(step, model)


def _optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices only (not on biases and norms)."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": settings.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=settings.lr,
        betas=settings.betas,
    )


def save_pretrained_atomic(model: PreTrainedModel, directory: Path) -> None:
    """``save_pretrained`` into a temporary sibling, then rename: a killed run leaves no half
    checkpoint."""
    import shutil

    directory = Path(directory)
    tmp = directory.with_name(f".{directory.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)
