"""The normalised Walsh-Hadamard rotation that ViDiT-Q and HQ-DiT apply before quantizing.

An orthogonal ``H`` (``H H^T = I``) inserted into a GEMM leaves it unchanged in exact arithmetic,
``x W^T = (x H) (W H)^T``, while spreading an outlier channel of ``x`` over every channel of
``x H``. QuaRot (Ashkboos et al., 2024, arXiv:2404.00456) introduced this for LLMs; ViDiT-Q
(Zhao et al., ICLR 2025, arXiv:2406.02540) rotates DiT activations online for the channel
imbalance that changes over timesteps; HQ-DiT (Liu and Zhang, 2024, arXiv:2405.19751) applies the
same identity to activations and the matching weights to spread outliers before FP4.

``H`` is Sylvester's construction divided by ``sqrt(n)``; for a length that is not a power of two
the rotation is block diagonal with the largest power-of-two block dividing the length (still
orthogonal). Accuracy only: NumPy float matmuls, not a hardware transform.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["hadamard_matrix", "block_size", "rotate"]


@lru_cache(maxsize=None)
def _sylvester(n: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.float64)
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def hadamard_matrix(n: int) -> np.ndarray:
    """The normalised Hadamard matrix ``[n, n]`` (float64) for ``n`` a power of two."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"Hadamard size must be a power of two, not {n!r}")
    return _sylvester(n) / np.sqrt(n)


def block_size(n: int) -> int:
    """The largest power of two dividing ``n``: the block of the rotation along an axis of ``n``."""
    if n < 1:
        raise ValueError(f"Axis length must be positive, not {n!r}")
    return n & -n


@lru_cache(maxsize=None)
def _h32(b: int) -> np.ndarray:
    return hadamard_matrix(b).astype(np.float32)


def rotate(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x`` times the block-diagonal normalised Hadamard along ``axis`` (float32 in and out).

    Apply it to the activations along the reduction axis and to the weight ``[N, K]`` along K:
    ``rotate(x) @ rotate(w).T`` equals ``x @ w.T`` up to float32 rounding.
    """
    x = np.asarray(x, dtype=np.float32)
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    b = block_size(n)
    y = (x.reshape(x.shape[:-1] + (n // b, b)) @ _h32(b)).reshape(x.shape)
    return np.ascontiguousarray(np.moveaxis(y, -1, axis))
