"""4-bit floating-point grids (E3M0, E2M1, E1M2) and fake quantization onto them.

HQ-DiT (Liu and Zhang, 2024, arXiv:2405.19751) quantizes DiT weights and activations to 4-bit
floating point and chooses, per layer, how the three non-sign bits split between exponent and
mantissa according to the data's distribution: more exponent bits for a heavy-tailed tensor,
more mantissa bits for a flat one. The candidates here are every split with at least one
exponent bit: E3M0, E2M1 (the OCP MX element format, :data:`golden.quality.baselines.
FP4_E2M1_GRID`) and E1M2. Each has subnormals and no infinities or NaNs; the exponent bias only
sets the grid's scale, which the per-tensor or per-row scale replaces, so every grid is
normalised to a largest value of its own and scaled by ``amax / grid max``.
"""

from __future__ import annotations

import numpy as np

from .baselines import FP4_E2M1_GRID

__all__ = ["FP4_FORMATS", "fp_grid", "fp_quantize"]

#: The FP4 exponent/mantissa splits HQ-DiT chooses between (1 sign bit each).
FP4_FORMATS = ("e3m0", "e2m1", "e1m2")


def fp_grid(fmt: str) -> np.ndarray:
    """The non-negative values of a 4-bit ``"eXmY"`` format, ascending (float32, bias
    ``2^(X-1) - 1``, subnormals at exponent field 0)."""
    if fmt not in FP4_FORMATS:
        raise ValueError(f"FP4 format must be one of {FP4_FORMATS}, not {fmt!r}")
    e, m = int(fmt[1]), int(fmt[3])
    bias = 2 ** (e - 1) - 1
    vals = set()
    for ef in range(2 ** e):
        for mf in range(2 ** m):
            frac = mf / 2 ** m
            vals.add(frac * 2.0 ** (1 - bias) if ef == 0 else (1 + frac) * 2.0 ** (ef - bias))
    return np.array(sorted(vals), dtype=np.float32)


def fp_quantize(x: np.ndarray, fmt: str, amax) -> np.ndarray:
    """Fake-quantize ``x`` onto ``fmt`` with the scale mapping ``amax`` to the grid's maximum.

    ``amax`` broadcasts against ``x`` (a scalar per tensor, ``[N, 1]`` per row). Magnitudes above
    ``amax`` saturate to it (clipping); the rest round to the nearest grid value, ties to the
    even grid index (round half to even on the mantissa). With ``fmt = "e2m1"`` and
    ``amax = max|x|`` this is :func:`golden.quality.baselines.fp4_e2m1`.
    """
    grid = FP4_E2M1_GRID if fmt == "e2m1" else fp_grid(fmt)
    x = np.asarray(x, dtype=np.float32)
    amax = np.asarray(amax, dtype=np.float32)
    scale = np.where(amax > 0, amax / grid[-1], np.float32(1.0)).astype(np.float32)
    mag = np.abs(x) / scale
    idx = np.searchsorted(grid, mag).clip(1, len(grid) - 1)
    lo, hi = grid[idx - 1], grid[idx]
    up = (mag - lo > hi - mag) | ((mag - lo == hi - mag) & ((idx - 1) % 2 == 1))
    q = np.where(mag >= grid[-1], grid[-1], np.where(up, hi, lo))
    return (np.sign(x) * q * scale).astype(np.float32)
