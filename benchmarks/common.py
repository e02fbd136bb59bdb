"""Shared set-up for the benchmarks: a locally trained tokenizer, random-weight models saved as
ordinary model folders, documents, timing and machine description."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
WORK = Path(
    os.environ.get("ERRORENTROPY_BENCH_DIR", Path(tempfile.gettempdir()) / "errorentropy-bench")
)
TOKENIZER_VOCAB = 2048

# Real configurations with random weights: pythia-14m (gpt_neox) and a Qwen2-0.5B-like
# vocabulary of 151,936 entries on a small body.
MODELS: dict[str, dict[str, Any]] = {
    "pythia14m": dict(
        arch="gpt_neox", vocab_size=50304, hidden=128, layers=6, heads=4, context=2048
    ),
    "qwen2-tiny-151k": dict(
        arch="qwen2", vocab_size=151936, hidden=64, layers=2, heads=4, context=2048
    ),
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def documents(n: int, *, min_chars: int = 400, max_chars: int = 1500) -> list[str]:
    """``n`` local English documents (pydoc topics and docstrings), each cut to ``max_chars``."""
    from errorentropy.data.corpus import builtin_documents

    docs = [d[:max_chars] for d in builtin_documents("builtin:prose") if len(d) >= min_chars]
    if len(docs) < n:
        docs = docs * (n // len(docs) + 1)
    return docs[:n]


def long_documents(n: int, min_tokens: int, tokenizer: Any) -> list[str]:
    """``n`` documents of at least ``min_tokens`` tokens, made by joining local documents."""
    from errorentropy.data.corpus import builtin_documents

    pool = builtin_documents("builtin:prose")
    out, current, i = [], "", 0
    while len(out) < n:
        current += pool[i % len(pool)] + "\n\n"
        i += 1
        if len(current) > 4 * min_tokens and len(tokenizer(current)["input_ids"]) >= min_tokens:
            out.append(current)
            current = ""
    return out


def tokenizer_dir() -> Path:
    """A byte-level BPE tokenizer trained on local prose, saved once under WORK."""
    path = WORK / "tokenizer"
    if not (path / "tokenizer.json").exists():
        from errorentropy.data.corpus import builtin_documents
        from errorentropy.testing import train_bpe_tokenizer

        tok = train_bpe_tokenizer(
            builtin_documents("builtin:prose")[:300], vocab_size=TOKENIZER_VOCAB
        )
        tok.save_pretrained(path)
    return path


def load_tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir())


def model_dir(name: str, **overrides: Any) -> Path:
    """The folder of random-weight model ``name`` (``MODELS``), built and saved on first use."""
    spec = {**MODELS[name], **overrides}
    suffix = "-".join(f"{k}{v}" for k, v in sorted(overrides.items()))
    path = WORK / "models" / (name + (f"-{suffix}" if suffix else ""))
    if not (path / "config.json").exists():
        from errorentropy.testing import save_model, tiny_model

        log(f"building model {path.name}")
        model = tiny_model(spec.pop("arch"), spec.pop("vocab_size"), **spec)
        save_model(model, load_tokenizer(), path)
    return path


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``repeats`` runs (perf_counter), and every run's time."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def run_process(
    cmd: list[str], *, threads: int | None = None, timeout: float = 600
) -> tuple[float, str]:
    """Run a whole process (``threads`` intra-op threads); its wall time and stdout (raises with
    stderr on failure)."""
    env = {
        **os.environ,
        **({"OMP_NUM_THREADS": str(threads)} if threads else {}),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])} ... failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return elapsed, done.stdout


def machine() -> dict[str, Any]:
    """The machine and software the figures come from, and the load while they were taken."""
    import torch
    import transformers

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": mem,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def write_result(name: str, body: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(body, indent=1) + "\n")
    return path
