"""One peak-memory measurement in a fresh process: score ``batch`` windows of ``max_length`` tokens
(or, with --load-only, just import and load the model; with --cli, the whole ``errorentropy score``
command over those documents, written to a file) and print the peak RSS."""

import argparse
import json
import resource
import time

parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--batch", type=int, default=8)
parser.add_argument("--max-length", type=int, default=2048)
parser.add_argument("--vocab-chunk", type=int, default=8192)
parser.add_argument("--head", default="chunked")
parser.add_argument("--load-only", action="store_true")
parser.add_argument("--cli", action="store_true", help="run `errorentropy score` in this process")
args = parser.parse_args()


def peak_mib() -> float:
    """The peak of this process's own address space (VmHWM), MiB. getrusage's ru_maxrss survives
    fork + exec on Linux (a child of a large parent reports the parent's peak)."""
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
    if hwm:
        return int(hwm[0].split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


if args.cli:
    import tempfile
    from pathlib import Path

    from common import load_tokenizer, long_documents
    from errorentropy.cli import main

    folder = Path(tempfile.mkdtemp(prefix="probe-memory-"))
    docs = long_documents(args.batch, args.max_length, load_tokenizer())
    with open(folder / "docs.jsonl", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"text": d}) + "\n" for d in docs)
    del docs
    started = time.perf_counter()
    code = main(
        ["score", "--model", args.model, "--data", str(folder / "docs.jsonl"), "--quiet"]
        + ["--max-length", str(args.max_length), "--batch-size", str(args.batch)]
        + ["--head", args.head, "--vocab-chunk", str(args.vocab_chunk), "--device", "cpu"]
        + ["--dtype", "float32", "--out", str(folder / "result")]
    )
    summary = json.loads((folder / "result" / "summary.json").read_text())
    row = {
        "what": "errorentropy score",
        "batch": args.batch,
        "max_length": args.max_length,
        "vocab_chunk": args.vocab_chunk,
        "head": args.head,
        "elapsed_s": time.perf_counter() - started,
        "tokens": summary["n_tokens"],
        "head_path": summary["head_path"],
        "exit_code": code,
        "peak_rss_mib": peak_mib(),
    }
    print(json.dumps(row))
    raise SystemExit(0)

from common import load_tokenizer, long_documents  # noqa: E402
from errorentropy.models.loading import load_model  # noqa: E402
from errorentropy.options import ScoreOptions  # noqa: E402
from errorentropy.scoring.engine import score_documents  # noqa: E402

model, _ = load_model(args.model, device="cpu", dtype="float32")
tokenizer = load_tokenizer()
docs = long_documents(args.batch, args.max_length, tokenizer)
row = {
    "batch": args.batch,
    "max_length": args.max_length,
    "vocab_size": model.config.vocab_size,
    "vocab_chunk": args.vocab_chunk,
    "head": args.head,
}
if not args.load_only:
    started = time.perf_counter()
    options = ScoreOptions(
        max_length=args.max_length,
        batch_size=args.batch,
        head=args.head,
        vocab_chunk=args.vocab_chunk,
    )
    result = score_documents(model, tokenizer, docs, options)
    row.update(
        elapsed_s=time.perf_counter() - started,
        tokens=result.histogram.n_tokens,
        head_path=result.head_path,
    )
row["ru_maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
row["peak_rss_mib"] = peak_mib()
print(json.dumps(row))
