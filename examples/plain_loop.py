"""A plain training loop, nanoGPT style, that splits its held-out cross-entropy as it trains.

Everything is local: a byte-level BPE tokenizer trained on the Python standard library's prose,
a small randomly initialised gpt2, AdamW on random 64-token blocks. Every few steps the held-out
blocks go through the model once and ``RankHistogram.update`` turns their logits into
CE = EE + SA - Conf (``evaluate`` below: that is all the integration there is). It takes
about 30 CPU-seconds (a third of them loading the text and training the tokenizer)::

    python examples/plain_loop.py --steps 30 --eval-every 10
"""

from __future__ import annotations

import argparse
import time

import torch

from errorentropy.data.corpus import builtin_documents
from errorentropy.demo.tokenizer import train_bpe_tokenizer
from errorentropy.stats.histogram import RankHistogram
from errorentropy.testing import tiny_model

BLOCK = 64  # tokens per training / held-out row
BATCH = 8


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """The documents' token ids end to end, each followed by end-of-text (GPT-style packing)."""
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    return torch.tensor(ids)


@torch.no_grad()
def evaluate(model: torch.nn.Module, held_out: torch.Tensor) -> RankHistogram:
    """The rank histogram of the held-out rows under the current weights (``decompose()`` splits
    it). The rows are unpadded; padded ones would pass ``attention_mask=``. A model in bfloat16
    would pass ``errorentropy.integrations.common.float32_logits(model, hidden)`` instead of its
    16-bit logits, whose ties ``n_tied`` counts."""
    model.eval()
    hist = RankHistogram()
    for rows in held_out.split(BATCH):
        logits = model(input_ids=rows).logits  # [B, T, V]
        hist.update(logits, rows)  # labels = inputs; the causal shift happens inside
    model.train()
    return hist


def main() -> None:
    """Train for ``--steps`` steps, printing the held-out decomposition every few."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps (default 30)")
    parser.add_argument("--eval-every", type=int, default=10, help="steps between evaluations")
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order")
    args = parser.parse_args()
    start = time.perf_counter()

    docs = builtin_documents("builtin:prose")  # pydoc topics, then stdlib docstrings
    tokenizer = train_bpe_tokenizer(docs[:150], vocab_size=512)
    train = token_stream(tokenizer, docs[:200])
    held_out = token_stream(tokenizer, docs[400:430])[: 16 * BLOCK].view(-1, BLOCK)
    model = tiny_model("gpt2", len(tokenizer), hidden=48, layers=2, heads=4, context=BLOCK)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"{len(train):,} training tokens, {held_out.numel():,} held out, vocab {len(tokenizer)}")

    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            hist = evaluate(model, held_out)
            d = hist.decompose()
            print(
                f"step {step:4d}  CE {d.cross_entropy:.6f} = EE {d.error_entropy:.6f}"
                f" + SA {d.self_alignment:.6f} - Conf {d.confidence:.6f}"
                f"  top-1 {d.top1_accuracy:.3f}  ({d.n_tokens} tokens, {hist.n_tied} tied)"
            )
        if step == args.steps:
            break
        starts = torch.randint(len(train) - BLOCK, (BATCH,), generator=generator)
        rows = torch.stack([train[s : s + BLOCK] for s in starts.tolist()])
        loss = model(input_ids=rows, labels=rows).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
