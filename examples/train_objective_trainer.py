"""The Hugging Face Trainer trained on an objective of errorentropy.objectives, logging the
objective's terms beside the held-out decomposition of DecompositionCallback.

``objective_loss_func(name)`` is the Trainer's ``compute_loss_func``; ``loss.attach(trainer)``
logs ``train_objective_loss``, ``train_objective_cross_entropy``, ``..._error_entropy``,
``..._self_alignment``, ``..._confidence`` (averaged since the last log) whenever the Trainer
logs its loss. Everything is local (stdlib docstrings, a tiny random gpt2) and runs in seconds
on a CPU::

    python examples/train_objective_trainer.py --objective ce+0.5conf --steps 12
"""

from __future__ import annotations

import argparse
import tempfile

from objective_data import BLOCK, setup
from transformers import Trainer, TrainingArguments

from errorentropy.integrations.objectives import objective_loss_func
from errorentropy.integrations.transformers import DecompositionCallback

TERMS = ("loss", "cross_entropy", "error_entropy", "self_alignment", "confidence")


def main() -> None:
    """Train for ``--steps`` steps and print every log entry the Trainer kept."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="ce+0.5conf", help="e.g. ce, ce+conf, ce+soft-ee")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps (default 12)")
    parser.add_argument("--accumulation", type=int, default=2, help="gradient accumulation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tokenizer, model, rows, held_out = setup(args.seed)
    train = [{"input_ids": row, "labels": row} for row in rows]
    loss = objective_loss_func(args.objective)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=out,
                max_steps=args.steps,
                per_device_train_batch_size=4,
                gradient_accumulation_steps=args.accumulation,
                learning_rate=3e-3,
                logging_steps=3,
                save_strategy="no",
                report_to="none",
                use_cpu=True,
                disable_tqdm=True,
                seed=args.seed,
            ),
            train_dataset=train,
            processing_class=tokenizer,
            compute_loss_func=loss,
        )
        loss.attach(trainer)
        DecompositionCallback(held_out, every_n_steps=6, max_length=BLOCK).attach(trainer)
        trainer.train()
    print(f"objective {loss.objective.name}")
    for entry in trainer.state.log_history:
        step = entry["step"]
        if "train_objective_loss" in entry:
            t = {k: entry[f"train_objective_{k}"] for k in TERMS}
            print(
                f"step {step:4d}  objective {t['loss']:.6f}  CE {t['cross_entropy']:.6f} = EE "
                f"{t['error_entropy']:.6f} + SA {t['self_alignment']:.6f} - Conf "
                f"{t['confidence']:.6f}"
            )
        elif "loss" in entry:
            print(f"step {step:4d}  trainer loss {entry['loss']:.6f}")
        elif "eval_heldout_cross_entropy" in entry:
            print(
                f"step {step:4d}  held-out CE {entry['eval_heldout_cross_entropy']:.6f} = EE "
                f"{entry['eval_heldout_error_entropy']:.6f} + SA "
                f"{entry['eval_heldout_self_alignment']:.6f} - Conf "
                f"{entry['eval_heldout_confidence']:.6f}"
            )


if __name__ == "__main__":
    main()
