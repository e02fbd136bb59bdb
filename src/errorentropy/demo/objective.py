"""The training objective of a ladder, as the demo's training loop takes it.

``"ce"`` is the model's own next-token cross-entropy, exactly today's demo (same weights bit for
bit); any other name (``"ce+conf"``, ``"ce+0.5conf"``, ``"soft-ee"``, ``"ce+soft-ee"``) is an
:class:`errorentropy.objectives.Objective` whose batch terms (the exact decomposition of the
batch and the relaxed terms it trains on) are logged beside the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from errorentropy.errors import UserError
from errorentropy.sweep.cells import slug

if TYPE_CHECKING:
    import torch

    from errorentropy.demo.training import BatchLoss

PLAIN_CE = "ce"
OBJECTIVES_DIR = "objectives"  # DIR/objectives/<objective>/models/: the other objectives' ladders


def models_dir(out: Path, objective: str) -> Path:
    """Where the ladder trained with ``objective`` lives: ``DIR/models`` for plain CE (the demo's
    own models), ``DIR/objectives/<objective>/models`` for the others."""
    if objective == PLAIN_CE:
        return out / "models"
    return out / OBJECTIVES_DIR / slug(objective) / "models"


def objective_names(text: str) -> list[str]:
    """The canonical names of a comma-separated objective list (``"ce, ce+1conf"`` gives
    ``["ce", "ce+conf"]``), each once."""
    from errorentropy.objectives import parse_objectives

    names = [objective.name for objective in parse_objectives(text)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"--objectives {text!r} names {', '.join(repeated)} twice; list each once")
    return names


def batch_loss(name: str) -> BatchLoss | None:
    """The loss the training loop applies for objective ``name``: None for plain ``"ce"`` (the
    model's own loss, so the default demo is unchanged), else the objective with its terms."""
    if name == PLAIN_CE:
        return None
    from errorentropy.objectives import parse_objective

    objective = parse_objective(name)

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        value, terms = objective(logits, labels, return_terms=True)
        return value, terms.as_dict()

    return loss


class TermsLog:
    """The objective's terms per training step, as columns (``on_terms`` of the training loop)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.columns: dict[str, list[float]] = {}

    def __call__(self, step: int, terms: Mapping[str, float]) -> None:
        """Log the ``terms`` of the update that made ``step``."""
        self.steps.append(step)
        for name, value in terms.items():
            self.columns.setdefault(name, []).append(float(value))

    def record(self) -> dict[str, Any]:
        """The log for the model record: each term per step, and its mean over the last 5% of
        steps (as ``final_train_loss`` averages the loss); {} when nothing was logged."""
        if not self.steps:
            return {}
        return {
            "terms": {k: [round(x, 5) for x in v] for k, v in self.columns.items()},
            "final_terms": {k: _tail_mean(v) for k, v in self.columns.items()},
        }


def _tail_mean(values: Sequence[float]) -> float:
    """The mean of the last 5% of ``values`` (at least one)."""
    return float(np.mean(values[-max(1, len(values) // 20) :]))
