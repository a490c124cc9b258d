"""The smoothing transform: a static per-channel scale moved from the activation into the weight.

``x W^T = (x / s) (W * s)^T`` for any positive ``s`` over the input channels; SmoothQuant (Xiao et
al., ICML 2023, arXiv:2211.10438) picks ``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` from
calibration activations so that an outlier channel of ``x`` shrinks and the weight's matching
column grows, balancing the two operands' quantization difficulty (``alpha`` the migration
strength, 0.5 in SmoothQuant). ViDiT-Q uses this scaling as the static half of its channel
balancing (arXiv:2406.02540; its public PixArt configs set ``alpha`` between 0.3 and 0.5, with a
momentum-averaged activation maximum; here the plain maximum over the calibration run).
"""

from __future__ import annotations

import numpy as np

__all__ = ["smooth_scales", "smooth"]


def smooth_scales(act_absmax: np.ndarray, weight: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The per-input-channel scale ``s`` (float32 ``[K]``) of SmoothQuant.

    Parameters
    ----------
    act_absmax : ``[K]``, the calibration maximum of ``|x|`` per input channel.
    weight : ``[N, K]``.
    alpha : the migration strength in [0, 1].

    A channel with a zero activation or weight maximum keeps ``s = 1``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], not {alpha!r}")
    a = np.asarray(act_absmax, dtype=np.float64)
    w = np.abs(np.asarray(weight, dtype=np.float64)).max(axis=0)
    if a.shape != w.shape:
        raise ValueError(f"{a.shape[0] if a.ndim else a} activation channels but weight has "
                         f"{w.shape[0]} input channels")
    ok = (a > 0) & (w > 0)
    s = np.where(ok, np.power(np.where(ok, a, 1.0), alpha)
                 / np.power(np.where(ok, w, 1.0), 1.0 - alpha), 1.0)
    return s.astype(np.float32)


def smooth(x: np.ndarray, weight: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(x / s, weight * s)`` in float32: the same GEMM up to rounding."""
    s = np.asarray(s, dtype=np.float32)
    return (np.asarray(x, dtype=np.float32) / s).astype(np.float32), \
        (np.asarray(weight, dtype=np.float32) * s).astype(np.float32)
