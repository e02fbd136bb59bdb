"""The fused head's kernels compile for an H100 (sm_90) on this CPU-only machine.

The interpreter tests (test_fused_head.py) check what the kernels compute; this checks that
Triton's real compiler accepts them for Hopper, with bf16 products on tensor cores (wgmma) and
the same MMA instruction in the target-logit kernel as in the tile kernel, which is what lets a
target logit have exactly the bits of its column in a tile. It runs in a subprocess because the
rest of the suite imports Triton in interpreter mode.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

SCRIPT = r"""
import inspect, json, re
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from errorentropy.head import fused as fused_head
from errorentropy.head import fused_kernels as k

def compile_ptx(fn, dtype):
    params = list(inspect.signature(fn.fn).parameters)
    const = dict(HAS_BIAS=True, HAS_CAP=True, INTERPRET=False,
                 BT=fused_head.BLOCK_T, BV=fused_head.BLOCK_V, BD=fused_head.BLOCK_D)
    kinds = {"h_ptr": "*" + dtype, "w_ptr": "*" + dtype, "b_ptr": "*" + dtype, "tgt_ptr": "*i64",
             "out_ptr": "*fp32", "t_ptr": "*fp32", "max_ptr": "*fp32", "sum_ptr": "*fp64",
             "softcap": "fp32"}
    sig = {p: "constexpr" if p in const else kinds.get(p, "*i32" if p.endswith("_ptr") else "i32")
           for p in params}
    constexprs = {(params.index(n),): v for n, v in const.items()}
    src = ASTSource(fn=fn, signature=sig, constexprs=constexprs)
    options = {"num_warps": 4, "enable_fp_fusion": True}
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]

out = {}
for dtype in ("bf16", "fp32"):
    for fn in (k.target_kernel, k.head_kernel):
        ptx = compile_ptx(fn, dtype)
        out[f"{fn.fn.__name__}/{dtype}"] = sorted(set(re.findall(r"wgmma\.mma_async\S*", ptx)))
print(json.dumps(out))
"""


def test_kernels_compile_for_hopper():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    mma = json.loads(done.stdout.strip().splitlines()[-1])
    assert mma["target_kernel/bf16"] and mma["target_kernel/bf16"] == mma["head_kernel/bf16"], mma
    assert any("bf16" in op for op in mma["head_kernel/bf16"]), mma
    assert (
        mma["head_kernel/fp32"] == mma["target_kernel/fp32"]
    )  # fp32 (no tensor cores): the same FMA loop in both
