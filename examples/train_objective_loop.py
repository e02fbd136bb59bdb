"""A plain PyTorch loop trained on an objective of errorentropy.objectives, printing the
objective's terms at every step and the held-out decomposition before and after.

The loss is ``objective(logits, labels)`` on the model's own logits (Hugging Face causal-LM
labels: the input ids, shifted inside); ``return_terms=True`` also gives the batch's exact
CE = EE + SA - Conf (and the relaxed terms the objective computes) as floats to log. Everything
is local (stdlib docstrings, a tiny random gpt2) and runs in seconds on a CPU::

    python examples/train_objective_loop.py --objective ce+0.5conf --steps 20
"""

from __future__ import annotations

import argparse

import torch
from objective_data import BLOCK, setup

from errorentropy.data.windows import tokenize
from errorentropy.objectives import parse_objective
from errorentropy.stats.histogram import RankHistogram


@torch.no_grad()
def held_out_line(model: torch.nn.Module, rows: torch.Tensor) -> str:
    """The held-out decomposition under the current weights, as one line."""
    model.eval()
    hist = RankHistogram()
    hist.update(model(input_ids=rows).logits, rows)
    model.train()
    d = hist.decompose()
    return (
        f"held-out  CE {d.cross_entropy:.6f} = EE {d.error_entropy:.6f} + SA "
        f"{d.self_alignment:.6f} - Conf {d.confidence:.6f}"
    )


def main() -> None:
    """Train for ``--steps`` steps on ``--objective``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="ce+0.5conf", help="e.g. ce, ce+conf, ce+soft-ee")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps (default 20)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    objective = parse_objective(args.objective)
    tokenizer, model, rows, held_out = setup(args.seed)
    held = torch.tensor([ids[:BLOCK] for ids in tokenize(tokenizer, held_out, "auto")])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"objective {objective.name}")
    print(f"step    0  {held_out_line(model, held)}")
    for step in range(1, args.steps + 1):
        batch = rows[torch.randint(len(rows), (args.batch_size,), generator=generator)]
        logits = model(input_ids=batch).logits
        loss, terms = objective(logits, batch, return_terms=True)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t = terms.as_dict()
        extra = "".join(
            f"  {k} {t[k]:.6f}" for k in ("soft_error_entropy", "error_entropy_binned") if k in t
        )
        print(
            f"step {step:4d}  loss {terms.loss:.6f}  CE {terms.cross_entropy:.6f} = EE "
            f"{terms.error_entropy:.6f} + SA {terms.self_alignment:.6f} - Conf "
            f"{terms.confidence:.6f}{extra}"
        )
    print(f"step {args.steps:4d}  {held_out_line(model, held)}")


if __name__ == "__main__":
    main()
