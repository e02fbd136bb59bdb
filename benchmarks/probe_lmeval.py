"""A whole lm-evaluation-harness run: HFLM.loglikelihood_rolling over every document."""

import json
import sys

from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

model_dir, data, max_length, batch_size = (
    sys.argv[1],
    sys.argv[2],
    int(sys.argv[3]),
    int(sys.argv[4]),
)
docs = [json.loads(line)["text"] for line in open(data)]
lm = HFLM(
    pretrained=model_dir,
    device="cpu",
    batch_size=batch_size,
    max_length=max_length,
    dtype="float32",
)
requests = [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(docs)]
loglik = lm.loglikelihood_rolling(requests, disable_tqdm=True)
print(json.dumps({"documents": len(docs), "total_loglikelihood": float(sum(loglik))}))
