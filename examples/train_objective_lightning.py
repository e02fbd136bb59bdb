"""Lightning trained on an objective of errorentropy.objectives: the LightningModule's
``training_step`` returns the objective and logs its terms with ``self.log_dict``, beside the
held-out decomposition that ``DecompositionMonitor`` logs after each validation.

Everything is local (stdlib docstrings, a tiny random gpt2) and runs in seconds on a CPU::

    python examples/train_objective_lightning.py --objective ce+0.5conf --steps 12
"""

from __future__ import annotations

import argparse
import warnings

import lightning as L
import torch
from objective_data import BLOCK, setup
from torch.utils.data import DataLoader

from errorentropy.data.windows import tokenize
from errorentropy.integrations.lightning import DecompositionMonitor
from errorentropy.objectives import Objective, parse_objective

TERMS = ("loss", "cross_entropy", "error_entropy", "self_alignment", "confidence")


class ObjectiveLM(L.LightningModule):
    """A causal LM trained on ``objective``; logs ``train_objective_{term}`` every step."""

    def __init__(self, model: torch.nn.Module, objective: Objective) -> None:
        super().__init__()
        self.model, self.objective = model, objective

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """The objective of the batch; its terms logged and printed."""
        logits = self.model(input_ids=batch).logits
        loss, terms = self.objective(logits, batch, return_terms=True)
        self.log_dict({f"train_objective_{k}": v for k, v in terms.as_dict().items()})
        print(
            f"step {self.global_step + 1:4d}  loss {terms.loss:.6f}  CE {terms.cross_entropy:.6f}"
            f" = EE {terms.error_entropy:.6f} + SA {terms.self_alignment:.6f} - Conf "
            f"{terms.confidence:.6f}"
        )
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        """What DecompositionMonitor reads: logits and causal-LM labels (shifted inside)."""
        return {"logits": self.model(input_ids=batch).logits, "labels": batch}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """AdamW."""
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def main() -> None:
    """Train for ``--steps`` steps, validating every ``--val-every``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="ce+0.5conf", help="e.g. ce, ce+conf, ce+soft-ee")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps (default 12)")
    parser.add_argument("--val-every", type=int, default=6, help="steps between validations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")

    L.seed_everything(args.seed, verbose=False)
    tokenizer, model, rows, held_out = setup(args.seed)
    held = torch.tensor([ids[:BLOCK] for ids in tokenize(tokenizer, held_out, "auto")])
    module = ObjectiveLM(model, parse_objective(args.objective))
    trainer = L.Trainer(
        max_steps=args.steps,
        val_check_interval=args.val_every,
        num_sanity_val_steps=0,
        callbacks=[DecompositionMonitor()],
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    generator = torch.Generator().manual_seed(args.seed)
    trainer.fit(
        module,
        DataLoader(rows, batch_size=8, shuffle=True, generator=generator),
        DataLoader(held, batch_size=12),
    )
    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    print(f"objective {module.objective.name}")
    print(
        f"held-out at step {trainer.global_step}  CE {m['val/cross_entropy']:.6f} = EE "
        f"{m['val/error_entropy']:.6f} + SA {m['val/self_alignment']:.6f} - Conf "
        f"{m['val/confidence']:.6f}"
    )
    print("last logged terms  " + "  ".join(f"{k} {m[f'train_objective_{k}']:.6f}" for k in TERMS))


if __name__ == "__main__":
    main()
