"""Every ``python`` block of README.md runs as written, in order, in one fresh interpreter.

Nothing can be downloaded here, so four things are stood in, and only these:

* the hub model ``EleutherAI/pythia-160m`` at revision ``step1000``: a randomly initialised
  one-layer gpt_neox (context 512) with a byte-level BPE tokenizer trained on local text, saved
  into a temporary Hugging Face hub cache (``HF_HUB_CACHE``) as ``models--EleutherAI--pythia-160m``
  whose ``refs/step1000`` names the snapshot's commit; with ``HF_HUB_OFFLINE=1`` transformers' own
  hub code resolves the name and the revision from that cache;
* the ``wikipedia`` preset: ``errorentropy.data.corpus.PRESETS["wikipedia"]`` points at a local
folder
  laid out as the hub dataset (``20231101.en/train-00000-of-00001.parquet``, 1200 short
  articles), loaded by the same ``datasets.load_dataset`` call and sampled as the preset is
  (1000 documents, seed 42);
* ``loader``, the accumulator's "your own evaluation loop": batches of 4 of those articles,
  tokenized with padding, with labels = the input ids and -100 on the padding;
* ``eval_dataset``, the Trainer's evaluation set: 16 more articles as rows of ``input_ids``,
  ``attention_mask`` and ``labels`` (padded to 32 tokens, -100 on the padding).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from errorentropy.testing import save_model, tiny_model, train_bpe_tokenizer

README = Path(__file__).resolve().parents[1] / "README.md"
COMMIT = "5e1f3c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"  # the stand-in snapshot's commit hash


def python_blocks(text: str) -> list[str]:
    """The README's fenced ``python`` code blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def articles() -> list[str]:
    """1200 short stand-in articles of varied length."""
    words = "the model ranks every token of the vocabulary and the truth lands somewhere".split()
    return [
        f"Article {i}. " + " ".join(words[(i + j) % len(words)] for j in range(5 + i % 23)) + "."
        for i in range(1200)
    ]


def fake_hub_cache(root: Path, texts: list[str]) -> Path:
    """A hub cache holding EleutherAI/pythia-160m@step1000 (a tiny random gpt_neox)."""
    tokenizer = train_bpe_tokenizer(texts[:200], vocab_size=320)
    model = tiny_model("gpt_neox", len(tokenizer), hidden=32, layers=1, heads=2, context=512)
    repo = root / "models--EleutherAI--pythia-160m"
    save_model(model, tokenizer, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "step1000").write_text(COMMIT)
    return root


def wikipedia_stand_in(root: Path, texts: list[str]) -> Path:
    """The wikipedia dataset's file layout, with the stand-in articles."""
    rows = [
        {"id": str(i), "url": f"u{i}", "title": f"T{i}", "text": t} for i, t in enumerate(texts)
    ]
    path = root / "20231101.en" / "train-00000-of-00001.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return root


# Runs in the child: put the stand-ins in place, run each block, report what the blocks made.
CHILD = r"""
import json, sys
from errorentropy.data import corpus

blocks, wiki, texts = json.loads(sys.stdin.read())
corpus.PRESETS["wikipedia"] = corpus.Preset(
    wiki, None, "train", data_files={"train": "20231101.en/*.parquet"}
)
names = {"__name__": "__readme__"}
for number, block in enumerate(blocks, 1):
    if "loader" in block and "loader" not in names:
        tok = names["tokenizer"]
        def batch(part):
            enc = tok(part, return_tensors="pt", padding=True)
            labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
            return {**enc, "labels": labels}
        names["loader"] = [batch(texts[i : i + 4]) for i in range(0, 16, 4)]
    if "eval_dataset" in block and "eval_dataset" not in names:
        tok = names["tokenizer"]
        enc = tok(texts[16:32], padding="max_length", truncation=True, max_length=32)
        names["eval_dataset"] = [
            {"input_ids": ids, "attention_mask": m, "labels": [
                i if k else -100 for i, k in zip(ids, m)
            ]}
            for ids, m in zip(enc["input_ids"], enc["attention_mask"])
        ]
    exec(compile(block, f"README.md python block {number}", "exec"), names)
    print(f"--- block {number} ran", flush=True)
summary = names["result"].summary
hist = names["hist"]
print(json.dumps({
    "summary": summary,
    "hist_tokens": hist.n_tokens,
    "hist_ee": hist.decompose().error_entropy,
    "metric_ee": float(names["metric"].compute()["error_entropy"]),
    "trainer_ee": names["trainer"].state.log_history[-1]["eval_error_entropy"],
    "vocab": names["model"].config.vocab_size,
    "terms": names["terms"].as_dict(),
    "terms_loss": float(names["loss"]),
}))
"""


def test_every_python_block_of_the_readme_runs(tmp_path):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 2 and "ee.score(" in blocks[0] and "hist.update(" in blocks[1]
    texts = articles()
    hub = fake_hub_cache(tmp_path / "hub", texts)
    wiki = wikipedia_stand_in(tmp_path / "wiki", texts)
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf-home"),  # datasets' cache too: nothing outside tmp_path
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        input=json.dumps([blocks, str(wiki), texts]),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert [line for line in lines if line.startswith("--- block")] == [
        f"--- block {n} ran" for n in range(1, len(blocks) + 1)
    ]
    assert sum("cross_entropy" in line for line in lines[:-1]) >= 2  # both decompositions printed
    report = json.loads(lines[-1])
    summary = report["summary"]
    assert (summary["model"], summary["revision"]) == ("EleutherAI/pythia-160m", "step1000")
    assert (summary["data"], summary["samples"], summary["seed"]) == ("wikipedia", 1000, 42)
    assert summary["n_documents"] == 1000 and summary["max_length"] == 512
    assert report["hist_tokens"] > 0
    # The torchmetrics block saw the accumulator's batches: the same histogram, the same EE.
    assert report["metric_ee"] == report["hist_ee"]
    assert 0 < report["trainer_ee"] < math.log(report["vocab"])
    # The objectives block: the last batch's terms, the loss CE + 0.5 Conf, the identity exact.
    t = report["terms"]
    ce, ee_, sa, conf = (
        t[k] for k in ("cross_entropy", "error_entropy", "self_alignment", "confidence")
    )
    assert abs(ce - (ee_ + sa - conf)) < 1e-9
    assert abs(report["terms_loss"] - (ce + 0.5 * conf)) < 1e-5
