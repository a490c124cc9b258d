"""The MixDiT mixed-precision MX scheme (spec §4; paper §III-A).

Linear layers: channels are sorted by ascending mean |x| over calibration activations, so the
outlier channels sit at the end of K; the last ``ceil(p1 * K / 16)`` groups of A are MX9, the rest
MX6; W's K axis is permuted the same way and is always MX6. The permutation leaves the exact GEMM
unchanged (it reorders the terms of each dot product) and is what the reordering controller's table
holds for each (layer, timestep).

Bank-conflict-free orders (spec §5): the controller reads the previous layer's output from ``C``
banks, channel ``n`` in bank ``n mod C``, one word per bank and cycle, so a group costs as many
cycles as its most-loaded bank. The sorted order lets a group take several channels from one bank
(about 3 cycles per group on the shipped DiT's K = 128 layers), too slow to hide behind the array.
With ``banks`` given, :func:`channel_order` returns :func:`conflict_free_order` instead: every group
takes exactly ``16 / B`` channels from each of the ``B = min(C, 16)`` bank classes (``n mod B``),
the ones ranked ``16/B * g .. 16/B * (g + 1) - 1`` by mean |x| within their class, so every group
costs the controller the least it can, ``ceil(16 / C)`` cycles, and the last (MX9) groups still
hold the largest channels of every class. The price is group membership: the MX9 groups hold the
top channels of each class rather than the top channels overall, so two outliers in one class
split between an MX9 and an MX6 group (``bench/bench_order.py`` measures the error on the shipped
DiT's captured activations).

Attention: heads are ranked by the mean |x| of their Q and K; the top ``ceil(p2 * heads)`` heads
run QK^T and softmax(.)V with MX9 operands, the others with MX6.
"""

import math
from dataclasses import dataclass

import numpy as np

from .formats import GROUP_SIZE, MX6, MX9
from .gemm import mx_matmul
from .mx import MXTensor, quantize

__all__ = [
    "calibrate", "channel_order", "conflict_free_order", "mx9_group_count", "linear_formats", "LinearPlan",
    "plan_linear", "quantize_linear", "mixdit_linear", "head_scores", "head_formats",
    "softmax", "attention_head",
]


def _check_fraction(p: float, name: str) -> float:
    p = float(p)
    if not 0.0 <= p <= 1.0 or math.isnan(p):
        raise ValueError(f"{name} must lie in [0, 1], not {p!r}")
    return p


def calibrate(acts: np.ndarray) -> np.ndarray:
    """Mean |x| of every input channel (the last axis) over all other axes, float64 ``[K]``.

    Calibration is host arithmetic, not on the bit-exact path, so it may use float64.
    """
    a = np.asarray(acts)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"Calibration needs activations with channels on the last axis, got "
                         f"shape {a.shape}")
    return np.abs(a.reshape(-1, a.shape[-1]).astype(np.float64)).mean(axis=0)


def channel_order(mean_abs: np.ndarray, banks: "int | None" = None) -> np.ndarray:
    """Permutation sorting channels by ascending mean |x| (ties keep channel order), int64 [K].

    ``x[..., perm]`` puts the largest channels at the end of K. With ``banks`` (the array columns
    that wrote the channels into the controller's output buffer), the bank-conflict-free order of
    :func:`conflict_free_order` instead.
    """
    if banks is not None:
        return conflict_free_order(mean_abs, banks)
    return np.argsort(np.asarray(mean_abs), kind="stable")


def conflict_free_order(mean_abs: np.ndarray, banks: int) -> np.ndarray:
    """A channel order in which every group of 16 reads each bank the fewest times, int64 [K].

    With ``B = min(banks, 16)`` bank classes (channel ``n`` in class ``n mod B``; for
    ``banks >= 16``, channels of distinct classes mod 16 are in distinct banks mod ``banks``), group
    ``g`` holds the channels ranked ``q * g .. q * g + q - 1`` (``q = 16 / B``) by ascending mean |x|
    within each class, its lanes in ascending mean |x| (ties keep channel order). Every group then
    costs :func:`hw.reorder.group_cycles` ``= ceil(16 / banks)``.

    Raises
    ------
    ValueError
        If ``banks`` is not a positive power of two or K is not a multiple of 16.
    """
    mean_abs = np.asarray(mean_abs)
    k = mean_abs.size
    if not isinstance(banks, (int, np.integer)) or banks < 1 or banks & (banks - 1):
        raise ValueError(f"Bank count must be a positive power of two, not {banks!r}")
    if k == 0 or k % GROUP_SIZE:
        raise ValueError(f"A conflict-free order needs K a positive multiple of {GROUP_SIZE}, "
                         f"not {k}")
    b = min(int(banks), GROUP_SIZE)
    q = GROUP_SIZE // b
    ranked = np.argsort(mean_abs, kind="stable")
    classes = [ranked[ranked % b == c] for c in range(b)]
    groups = []
    for g in range(k // GROUP_SIZE):
        chans = np.concatenate([c[q * g:q * (g + 1)] for c in classes])
        groups.append(chans[np.argsort(mean_abs[chans], kind="stable")])
    return np.concatenate(groups).astype(np.int64)


def mx9_group_count(k: int, p1: float) -> int:
    """``ceil(p1 * K / 16)``, the number of MX9 groups of A (spec §4), at most ``ceil(K/16)``."""
    p1 = _check_fraction(p1, "p1")
    groups = -(-k // GROUP_SIZE)
    # Round away float noise first (0.2 * 80 / 16 is 1.0000000000000002 in binary).
    return min(groups, math.ceil(round(p1 * k / GROUP_SIZE, 9)))


def linear_formats(k: int, p1: float) -> list[str]:
    """Per-group formats of A for a linear layer with K input channels: MX6, then MX9 at the end."""
    groups = -(-k // GROUP_SIZE)
    n9 = mx9_group_count(k, p1)
    return [MX6.name] * (groups - n9) + [MX9.name] * n9


@dataclass(frozen=True)
class LinearPlan:
    """What the reordering table holds for one linear layer at one timestep (spec §4, §5).

    Attributes
    ----------
    perm : numpy.ndarray of int64, shape ``[K]``
        Channel order: position j of the reordered A holds channel ``perm[j]``.
    a_formats : tuple of str
        Format of each group of the reordered A.
    """

    perm: np.ndarray
    a_formats: tuple[str, ...]

    @property
    def mx9_groups(self) -> int:
        return sum(f == MX9.name for f in self.a_formats)


def plan_linear(calib_acts: np.ndarray, p1: float, banks: "int | None" = None) -> LinearPlan:
    """Calibrate on ``calib_acts`` (``[..., K]``) and build the layer's plan for ``p1``; with
    ``banks``, the bank-conflict-free order (:func:`channel_order`)."""
    mean_abs = calibrate(calib_acts)
    return LinearPlan(channel_order(mean_abs, banks), tuple(linear_formats(mean_abs.size, p1)))


def quantize_linear(x: np.ndarray, w: np.ndarray, plan: LinearPlan,
                    rounding: str = "trunc") -> tuple[MXTensor, MXTensor]:
    """Reorder and quantize a linear layer's operands: A mixed MX6/MX9, W in MX6 (spec §4).

    Parameters
    ----------
    x : numpy.ndarray, shape ``[M, K]``
        Activations.
    w : numpy.ndarray, shape ``[N, K]``
        Weights (torch ``Linear.weight`` layout).
    """
    if x.shape[-1] != w.shape[-1] or x.shape[-1] != plan.perm.size:
        raise ValueError(f"K differs: x has {x.shape[-1]}, w has {w.shape[-1]}, the plan "
                         f"{plan.perm.size}")
    a = quantize(np.asarray(x)[..., plan.perm], list(plan.a_formats), rounding)
    wq = quantize(np.asarray(w)[..., plan.perm], MX6.name, rounding)
    return a, wq


def mixdit_linear(x: np.ndarray, w: np.ndarray, plan: LinearPlan,
                  rounding: str = "trunc") -> np.ndarray:
    """``x @ w.T`` under MixDiT, bit-exact as the accelerator computes it, float32 ``[M, N]``."""
    a, wq = quantize_linear(x, w, plan, rounding)
    return mx_matmul(a, wq)


def head_scores(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Mean |x| over each head's Q and K together, float64 ``[H]``.

    Parameters
    ----------
    q, k : numpy.ndarray, shape ``[..., H, T, D]``
        Per-head queries and keys (leading axes are calibration samples).
    """
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    if q.ndim < 3 or q.shape[-3] != k.shape[-3]:
        raise ValueError(f"Expected Q and K as [..., heads, tokens, dim], got {q.shape} and "
                         f"{k.shape}")
    h = q.shape[-3]
    qa = np.abs(np.moveaxis(q, -3, 0).reshape(h, -1))
    ka = np.abs(np.moveaxis(k, -3, 0).reshape(h, -1))
    return (qa.sum(axis=1) + ka.sum(axis=1)) / (qa.shape[1] + ka.shape[1])


def head_formats(scores: np.ndarray, p2: float) -> list[str]:
    """Format of each head: MX9 for the top ``ceil(p2 * H)`` heads by score, MX6 otherwise."""
    p2 = _check_fraction(p2, "p2")
    h = len(scores)
    n9 = min(h, math.ceil(round(p2 * h, 9)))
    order = np.argsort(-np.asarray(scores), kind="stable")
    fmts = [MX6.name] * h
    for i in order[:n9]:
        fmts[int(i)] = MX9.name
    return fmts


def softmax(s: np.ndarray) -> np.ndarray:
    """Row softmax in float32 on the host (spec §4: outside the accelerator), deterministic."""
    s = np.asarray(s, dtype=np.float32)
    e = np.exp(s - s.max(axis=-1, keepdims=True), dtype=np.float32)
    return (e / e.sum(axis=-1, keepdims=True, dtype=np.float32)).astype(np.float32)


def attention_head(q: np.ndarray, k: np.ndarray, v: np.ndarray, fmt: str,
                   rounding: str = "trunc", matmul=mx_matmul) -> np.ndarray:
    """One head of attention with both GEMMs in ``fmt`` (spec §4), float32 ``[T, D]``.

    ``softmax(q k^T / sqrt(D)) v``: QK^T and P V on the accelerator (``matmul``, the golden MX
    GEMM by default; operands ``[M, K]`` and ``[N, K]`` as in :func:`golden.gemm.mx_matmul`), the
    scaling and softmax on the host in FP32.
    """
    q = np.asarray(q, dtype=np.float32)
    k = np.asarray(k, dtype=np.float32)
    v = np.asarray(v, dtype=np.float32)
    scores = matmul(quantize(q, fmt, rounding), quantize(k, fmt, rounding))
    scale = np.float32(1.0 / math.sqrt(q.shape[-1]))
    p = softmax(scores * scale)
    return matmul(quantize(p, fmt, rounding), quantize(np.ascontiguousarray(v.T), fmt, rounding))
