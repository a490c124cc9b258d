"""Clipping-range search: the range that minimises the quantization error on calibration data.

A quantizer given a range ``r * amax`` with ``r < 1`` saturates the few largest values but
spends its levels on the many small ones; for heavy-tailed data the mean squared error falls
below that of the full range (``r = 1``). HQ-DiT (arXiv:2405.19751) selects the FP clipping range
this way; Q-DiT's ``--quant_method mse`` and ViDiT-Q's calibration search ranges likewise. The
candidates always include ``r = 1``, so the chosen range never has a larger error than no
clipping on the data it was chosen on.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["CLIP_RATIOS", "search_clip"]

#: Candidate ratios of the clipping range to the data's maximum (1.0 = no clipping).
CLIP_RATIOS = tuple(np.round(np.linspace(0.50, 1.00, 26), 2).tolist())


def search_clip(x: np.ndarray, quantize: Callable[[np.ndarray, float], np.ndarray],
                ratios=CLIP_RATIOS) -> tuple[float, float, float]:
    """The ratio of ``ratios`` (1.0 added if missing) with the least MSE of ``quantize(x, r)``.

    Parameters
    ----------
    x : calibration data.
    quantize : ``quantize(x, r)`` fake-quantizes ``x`` with its range scaled by ``r``.

    Returns
    -------
    (ratio, mse, mse_unclipped) : the chosen ratio, its MSE and the MSE at ``r = 1`` (float64
    means). The first ratio wins a tie, and 1.0 is tried first, so a flat tensor keeps it.
    """
    x = np.asarray(x, dtype=np.float32)
    cands = [1.0] + [float(r) for r in ratios if float(r) != 1.0]
    if any(not 0.0 < r <= 1.0 for r in cands):
        raise ValueError(f"Clipping ratios must lie in (0, 1], not {ratios!r}")
    x64 = x.astype(np.float64)
    errs = [float(np.mean((quantize(x, r).astype(np.float64) - x64) ** 2)) for r in cands]
    best = int(np.argmin(errs))
    return cands[best], errs[best], errs[0]
