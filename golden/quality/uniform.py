"""Uniform (INT-n) fake quantization with min-max ranges, per row and per group of channels.

The building block ViDiT-Q and Q-DiT share (their public code quantizes with an asymmetric
min-max range and a zero point by default: ViDiT-Q's ``min_max`` quantizers with ``sym`` off,
Q-DiT's ``quantize_tensor`` without ``--w_sym`` / ``--a_sym``; thu-nics/ViDiT-Q and Juanerx/Q-DiT
on GitHub). Every row of the last-but-one axes is a token (activations) or an output channel
(weights); its last axis is cut into groups of ``group`` channels (the whole row when None), and
each group gets the range ``[min, max]`` of its own values. Called at run time on the activations,
the range is dynamic: computed anew for every token at every timestep, never calibrated.

The symmetric INT-n of the plain stand-ins lives in :mod:`golden.quality.baselines`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["group_ranges", "quantize_asym"]


def _grouped(x: np.ndarray, group: "int | None") -> np.ndarray:
    k = x.shape[-1]
    g = k if group is None else int(group)
    if g < 1 or k % g:
        raise ValueError(f"Group size {group!r} does not divide the channel axis of {k}")
    return x.reshape(x.shape[:-1] + (k // g, g))


def group_ranges(x: np.ndarray, group: "int | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the min and max of every group of ``group`` channels of every row.

    Shapes ``[..., K // group, 1]`` (``[..., 1, 1]`` per row when ``group`` is None): exactly the
    values of ``x`` (float32), nothing estimated.
    """
    xg = _grouped(np.asarray(x, dtype=np.float32), group)
    return xg.min(axis=-1, keepdims=True), xg.max(axis=-1, keepdims=True)


def quantize_asym(x: np.ndarray, bits: int, group: "int | None" = None,
                  clip: float = 1.0) -> np.ndarray:
    """Asymmetric INT-``bits`` fake quantization with a min-max range per row and group.

    The range is the group's ``[min, max]`` widened to contain 0 (so that zero is exact and an
    all-positive row such as a softmax output keeps its levels), times ``clip``:
    ``scale = (hi - lo) / (2^bits - 1)``, ``zero = round(-lo / scale)``, ``q = clip(round(x /
    scale) + zero, 0, 2^bits - 1)``, and the result is ``(q - zero) * scale`` (float32). Rounding
    is to nearest, ties to even. An all-zero group is returned unchanged.
    """
    if not 2 <= int(bits) <= 16:
        raise ValueError(f"INT bit width must lie in [2, 16], not {bits!r}")
    x = np.asarray(x, dtype=np.float32)
    lo, hi = group_ranges(x, group)
    lo = np.minimum(lo, 0) * np.float32(clip)
    hi = np.maximum(hi, 0) * np.float32(clip)
    qmax = np.float32(2 ** bits - 1)
    span = hi - lo
    scale = np.where(span > 0, span / qmax, np.float32(1.0)).astype(np.float32)
    zero = np.clip(np.rint(-lo / scale), 0, qmax)
    xg = _grouped(x, group)
    q = np.clip(np.rint(xg / scale) + zero, 0, qmax)
    out = np.where(span > 0, (q - zero) * scale, xg).astype(np.float32)
    return out.reshape(x.shape)
