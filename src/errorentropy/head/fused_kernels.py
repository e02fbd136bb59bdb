"""Triton kernels of the fused head (imported only when the fused head runs; see fused_head.py).

``target_kernel`` computes each token's target logit; ``head_kernel`` folds [token, vocabulary]
tiles into a running maximum, a float64 sum of exponentials and the greater/equal counts. Both
build tiles with :func:`_tile`, so a target logit and its column of a tile have the same bits.
"""

import triton
import triton.language as tl
from triton.language.extra import libdevice


@triton.jit
def _tanh(x, INTERPRET: tl.constexpr):
    # CUDA's libdevice tanh (~1 ulp); the CPU interpreter has no libdevice, so there tanh comes
    # from exp: sign(x) (1 - e) / (1 + e), e = exp(-2|x|), ~1e-7 absolute near 0.
    if not INTERPRET:
        return libdevice.tanh(x)
    e = tl.exp(-2.0 * tl.abs(x))
    y = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -y, y)


@triton.jit
def _tile(
    h_ptr,
    w_ptr,
    b_ptr,
    rows,
    cols,
    row_ok,
    col_ok,
    dim,
    stride_h,
    stride_w,
    softcap,
    HAS_BIAS: tl.constexpr,
    HAS_CAP: tl.constexpr,
    INTERPRET: tl.constexpr,
    BT: tl.constexpr,
    BV: tl.constexpr,
    BD: tl.constexpr,
):
    # One [BT, BV] float32 tile of logits: hidden rows times head rows ``cols``.
    acc = tl.zeros((BT, BV), dtype=tl.float32)
    rows = rows.to(tl.int64)  # offsets past 2**31 elements: a 128k x 16k head has 2.1e9
    cols = cols.to(tl.int64)
    for d0 in range(0, dim, BD):
        ds = d0 + tl.arange(0, BD)
        d_ok = ds < dim
        h = tl.load(
            h_ptr + rows[:, None] * stride_h + ds[None, :],
            mask=row_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        w = tl.load(
            w_ptr + cols[:, None] * stride_w + ds[None, :],
            mask=col_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        # The CPU interpreter multiplies bfloat16 as raw integers: widen first (exact).
        if INTERPRET:
            h = h.to(tl.float32)
            w = w.to(tl.float32)
        acc = tl.dot(h, tl.trans(w), acc, input_precision="ieee")
    if HAS_BIAS:
        acc += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if HAS_CAP:
        acc = softcap * _tanh(acc / softcap, INTERPRET)
    return acc


@triton.jit
def target_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    tgt_ptr,
    out_ptr,
    n_tokens,
    dim,
    stride_h,
    stride_w,
    softcap,
    HAS_BIAS: tl.constexpr,
    HAS_CAP: tl.constexpr,
    INTERPRET: tl.constexpr,
    BT: tl.constexpr,
    BV: tl.constexpr,
    BD: tl.constexpr,
):
    # Target logits with the main kernel's tile shape: token i's head row sits in column i.
    G: tl.constexpr = BT if BT < BV else BV
    start = tl.program_id(0) * G
    rows = start + tl.arange(0, BT)
    row_ok = (tl.arange(0, BT) < G) & (rows < n_tokens)
    slots = start + tl.arange(0, BV)
    slot_ok = (tl.arange(0, BV) < G) & (slots < n_tokens)
    cols = tl.load(tgt_ptr + slots, mask=slot_ok, other=0)
    z = _tile(
        h_ptr,
        w_ptr,
        b_ptr,
        rows,
        cols,
        row_ok,
        slot_ok,
        dim,
        stride_h,
        stride_w,
        softcap,
        HAS_BIAS,
        HAS_CAP,
        INTERPRET,
        BT,
        BV,
        BD,
    )
    diagonal = tl.arange(0, BT)[:, None] == tl.arange(0, BV)[None, :]
    t = tl.sum(tl.where(diagonal, z, 0.0), axis=1)
    tl.store(out_ptr + rows, t, mask=row_ok)


@triton.jit
def head_kernel(
    h_ptr,
    w_ptr,
    b_ptr,
    tgt_ptr,
    t_ptr,
    max_ptr,
    sum_ptr,
    gt_ptr,
    eq_ptr,
    seen_ptr,
    n_tokens,
    vocab,
    dim,
    per_split,
    stride_h,
    stride_w,
    softcap,
    HAS_BIAS: tl.constexpr,
    HAS_CAP: tl.constexpr,
    INTERPRET: tl.constexpr,
    BT: tl.constexpr,
    BV: tl.constexpr,
    BD: tl.constexpr,
):
    # Program (token block, vocabulary slice): running max, float64 sum of exps, counts.
    block, split = tl.program_id(0), tl.program_id(1)
    rows = block * BT + tl.arange(0, BT)
    row_ok = rows < n_tokens
    t = tl.load(t_ptr + rows, mask=row_ok, other=0.0)
    tgt = tl.load(tgt_ptr + rows, mask=row_ok, other=-1)
    running_max = tl.full((BT,), float("-inf"), dtype=tl.float32)
    running_sum = tl.zeros((BT,), dtype=tl.float64)
    greater = tl.zeros((BT,), dtype=tl.int32)
    equal = tl.zeros((BT,), dtype=tl.int32)
    seen = tl.zeros((BT,), dtype=tl.int32)
    v_start = split * per_split
    v_end = tl.minimum(v_start + per_split, vocab)
    for v0 in range(v_start, v_end, BV):
        cols = v0 + tl.arange(0, BV)
        col_ok = cols < v_end
        z = _tile(
            h_ptr,
            w_ptr,
            b_ptr,
            rows,
            cols,
            row_ok,
            col_ok,
            dim,
            stride_h,
            stride_w,
            softcap,
            HAS_BIAS,
            HAS_CAP,
            INTERPRET,
            BT,
            BV,
            BD,
        )
        z = tl.where(col_ok[None, :], z, float("-inf"))
        own = cols[None, :] == tgt[:, None]
        rival = col_ok[None, :] & (cols[None, :] != tgt[:, None])
        seen += tl.sum((own & (z == t[:, None])).to(tl.int32), axis=1)
        greater += tl.sum((rival & (z > t[:, None])).to(tl.int32), axis=1)
        equal += tl.sum((rival & (z == t[:, None])).to(tl.int32), axis=1)
        new_max = tl.maximum(running_max, tl.max(z, axis=1))
        # A row of -inf so far (a -inf bias) keeps max -inf: shift by 0 there, not by -inf (NaN).
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        tile_sum = tl.sum(tl.exp(z - shift[:, None]), axis=1)
        running_sum = running_sum * tl.exp(
            running_max.to(tl.float64) - shift.to(tl.float64)
        ) + tile_sum.to(tl.float64)
        running_max = new_max
    out = split * n_tokens + rows
    tl.store(max_ptr + out, running_max, mask=row_ok)
    tl.store(sum_ptr + out, running_sum, mask=row_ok)
    tl.store(gt_ptr + out, greater, mask=row_ok)
    tl.store(eq_ptr + out, equal, mask=row_ok)
    tl.store(seen_ptr + out, seen, mask=row_ok)
