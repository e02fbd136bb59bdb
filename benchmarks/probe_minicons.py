"""A whole minicons run: per-token log-prob and rank of every document (IncrementalLMScorer)."""

import json
import sys

from minicons import scorer

model_dir, data, out, batch_size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
docs = [json.loads(line)["text"] for line in open(data)]
lm = scorer.IncrementalLMScorer(model_dir, "cpu")
rows = []
for start in range(0, len(docs), batch_size):
    batch = docs[start : start + batch_size]
    scores, ranks = lm.compute_stats(lm.prepare_text(batch), rank=True)
    rows.extend({"logprob": s, "rank": r} for s, r in zip(scores, ranks))
json.dump(rows, open(out, "w"))
