"""Baseline quantizers for quality comparisons: accuracy only, not bit-exact hardware.

- Symmetric INT-n with per-output-channel weight scales and per-token activation scales, as Q-DiT
  and ViDiT-Q use for W8A8, W4A8 and W6A6 (paper §IV, "Baselines").
- FP4 E2M1 with one per-tensor scale, the format HQ-DiT quantizes weights and activations to.

Each function returns the dequantized (fake-quantized) float32 tensor.
"""

import numpy as np

__all__ = ["int_quantize", "int_weight", "int_activation", "FP4_E2M1_GRID", "fp4_e2m1"]

#: Non-negative values of FP4 E2M1 (1 sign, 2 exponent, 1 mantissa bit; OCP MX spec §5.3.3).
FP4_E2M1_GRID = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)


def int_quantize(x: np.ndarray, bits: int, axis: "int | None") -> np.ndarray:
    """Symmetric INT-``bits`` fake quantization with one scale per slice along ``axis``.

    ``scale = max|x| / (2^(bits-1) - 1)`` over every axis but ``axis`` (the whole tensor when
    ``axis`` is None); values round to nearest (ties to even) and clip to ``±(2^(bits-1) - 1)``.
    """
    if not 2 <= int(bits) <= 16:
        raise ValueError(f"INT bit width must lie in [2, 16], not {bits!r}")
    x = np.asarray(x, dtype=np.float32)
    qmax = float(2 ** (bits - 1) - 1)
    if axis is None:
        amax = np.abs(x).max(initial=0.0)
    else:
        others = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        amax = np.abs(x).max(axis=others, keepdims=True, initial=0.0)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(x / scale), -qmax, qmax)
    return (q * scale).astype(np.float32)


def int_weight(w: np.ndarray, bits: int) -> np.ndarray:
    """Per-output-channel INT-n of a weight ``[N, K]`` (one scale per row)."""
    return int_quantize(w, bits, axis=0)


def int_activation(x: np.ndarray, bits: int) -> np.ndarray:
    """Per-token INT-n of activations ``[..., K]`` (one scale per token, i.e. per row)."""
    x = np.asarray(x, dtype=np.float32)
    flat = x.reshape(-1, x.shape[-1])
    return int_quantize(flat, bits, axis=0).reshape(x.shape)


def fp4_e2m1(x: np.ndarray) -> np.ndarray:
    """FP4 E2M1 fake quantization with one per-tensor scale mapping max|x| to 6 (HQ-DiT style).

    Each scaled magnitude rounds to the nearest grid value (ties to the even grid index).
    """
    x = np.asarray(x, dtype=np.float32)
    amax = float(np.abs(x).max(initial=0.0))
    scale = np.float32(amax / 6.0 if amax > 0 else 1.0)
    mag = np.abs(x) / scale
    # Nearest grid point; on a tie the lower index wins when it is even (round half to even).
    idx = np.searchsorted(FP4_E2M1_GRID, mag).clip(1, len(FP4_E2M1_GRID) - 1)
    lo, hi = FP4_E2M1_GRID[idx - 1], FP4_E2M1_GRID[idx]
    up = (mag - lo > hi - mag) | ((mag - lo == hi - mag) & ((idx - 1) % 2 == 1))
    q = np.where(up, hi, lo)
    return (np.sign(x) * q * scale).astype(np.float32)
