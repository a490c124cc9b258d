"""HQ-DiT (Liu and Zhang, 2024, arXiv:2405.19751), FP4 weights and activations, accuracy only.

What is reproduced (fake quantization, float32 matmuls):

- **The Hadamard transform** (the paper's "universal identity transform") on the activations and
  the matching weights of every GEMM, along the reduction axis: ``x W^T = (x H)(W H)^T``, so an
  outlier channel is spread over all channels before quantization (:mod:`golden.quality.hadamard`).
  In the attention products both operands rotate along their shared axis: Q and K along the head
  dimension, P and V along the keys.
- **FP4 format selection per layer**: the exponent/mantissa split (E3M0, E2M1 or E1M2,
  :mod:`golden.quality.minifloat`) chosen separately for each layer's weight and each GEMM's
  activation operands according to their distribution, measured here as the least quantization
  MSE on the (rotated) calibration data, each format at its own best clipping range.
- **Clipping-range selection** minimising the quantization error on calibration data
  (:func:`golden.quality.clipping.search_clip`), one ratio per tensor role and layer.

Granularity (not confirmed from the paper): weights per output channel, activations per token
with a dynamic maximum times the calibrated clipping ratio, the same granularity as the INT rows,
so that the rows compare formats and mechanisms rather than scale granularity. Not reproduced:
HQ-DiT's GPTQ weight rounding (round to nearest here).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .clipping import search_clip
from .hadamard import rotate
from .minifloat import FP4_FORMATS, fp_quantize
from .operands import Operands

__all__ = ["rowmax", "choose_format", "linear", "attention"]


def rowmax(x: np.ndarray) -> np.ndarray:
    """``max |x|`` of every row (last axis), keeping the axis: the per-token / per-channel range."""
    return np.abs(np.asarray(x, dtype=np.float32)).max(axis=-1, keepdims=True)


def choose_format(x: np.ndarray) -> tuple[str, float, dict[str, float]]:
    """The FP4 format and clipping ratio with the least MSE on rows ``x`` (row-wise ranges).

    Returns ``(fmt, ratio, mse_by_format)``; the first format of :data:`FP4_FORMATS` wins a tie.
    """
    x = np.asarray(x, dtype=np.float32)
    amax = rowmax(x)
    best = None
    table = {}
    for fmt in FP4_FORMATS:
        r, mse, _ = search_clip(x, lambda v, r, fmt=fmt: fp_quantize(v, fmt, r * amax))
        table[fmt] = mse
        if best is None or mse < best[2]:
            best = (fmt, r, mse)
    return best[0], best[1], table


#: At most this many calibration rows (a fixed subset) enter an activation's format search.
SEARCH_ROWS = 256


def _act_quantizer(rows: np.ndarray) -> tuple[Callable[[np.ndarray], np.ndarray], str, float]:
    if rows.shape[0] > SEARCH_ROWS:
        rows = rows[np.random.default_rng(0).choice(rows.shape[0], SEARCH_ROWS, replace=False)]
    fmt, r, _ = choose_format(rotate(rows))
    return (lambda x: fp_quantize(x, fmt, r * rowmax(x))), fmt, r


def linear(name: str, weight: np.ndarray, bias: np.ndarray,
           operands: Operands) -> tuple[Callable[[np.ndarray], np.ndarray], dict]:
    """The HQ-DiT linear layer and its choices ``{"w": (fmt, ratio), "a": (fmt, ratio)}``."""
    wr = rotate(weight)
    wfmt, wr_ratio, _ = choose_format(wr)
    wt = np.ascontiguousarray(fp_quantize(wr, wfmt, wr_ratio * rowmax(wr)).T)
    qa, afmt, a_ratio = _act_quantizer(operands.rows[name])
    b = np.asarray(bias, dtype=np.float32)

    def fn(x: np.ndarray) -> np.ndarray:
        k = weight.shape[1]
        y = qa(rotate(x.reshape(-1, k))) @ wt + b
        return y.reshape(x.shape[:-1] + (weight.shape[0],)).astype(np.float32)

    return fn, {"w": (wfmt, wr_ratio), "a": (afmt, a_ratio)}


def attention(name: str, operands: Operands) -> tuple[tuple[Callable, Callable], dict]:
    """Q K^T and P V with both operands rotated along the reduction axis and in FP4, each
    operand's format and clipping calibrated; and the choices per product and operand."""
    fns, info = [], {}
    for prod in ("qk", "pv"):
        qa, fa, ra = _act_quantizer(operands.rows[f"{name}.{prod}.a"])
        qb, fb, rb = _act_quantizer(operands.rows[f"{name}.{prod}.b"])
        info[prod] = {"a": (fa, ra), "b": (fb, rb)}

        def mm(a: np.ndarray, bt: np.ndarray, qa=qa, qb=qb) -> np.ndarray:
            ar = qa(rotate(a))
            br = qb(rotate(np.swapaxes(bt, -1, -2)))
            return np.matmul(ar, np.swapaxes(br, -1, -2)).astype(np.float32)

        fns.append(mm)
    return (fns[0], fns[1]), info
