"""Q-DiT (Chen et al., CVPR 2025, arXiv:2406.17343), accuracy only, on the host.

What is reproduced (fake quantization, float32 matmuls):

- **Group quantization along the input channels** with a group size chosen per layer. Q-DiT's
  public code (Juanerx/Q-DiT on GitHub) gives the activation and the weight of a layer the same
  group size, quantizes both with asymmetric min-max ranges, and searches the sizes among
  ``[32, 64, 128, 192, 288]`` (for DiT-XL's 1152 channels) under the constraint that their mean
  be at least 128, by an evolutionary search scored by FID on 800 samples. Here the candidates
  are the powers of two from the MX group (16) to 128 that divide the layer's K, the constraint
  a mean of at least :data:`BUDGET`, and the score each layer's own output error on calibration
  rows (``||Q(x) Q(W)^T - x W^T||^2 / ||x W^T||^2``), summed over layers; with a per-layer score
  the constrained problem is separable and solved exactly by dynamic programming
  (:func:`search_group_sizes`) instead of evolution.
- **Sample-wise dynamic activation quantization**: activation ranges are computed at run time for
  every sample at every timestep, never calibrated; here per token and group, which is finer
  than per sample and as dynamic (Q-DiT's code quantizes activation rows per group on the fly).

Attention operands: per row along the reduction axis, dynamic, asymmetric, at the activation bit
width (Q-DiT's code quantizes Q, K, V per token over the head dimension).
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .operands import Operands
from .uniform import quantize_asym

__all__ = ["GROUP_CANDIDATES", "BUDGET", "candidates", "layer_error", "search_group_sizes",
           "plan", "linear", "attention"]

#: Candidate group sizes (channels), those dividing the layer's K apply.
GROUP_CANDIDATES = (16, 32, 64, 128)
#: The least mean group size over the model's linear layers (the efficiency constraint).
BUDGET = 64


def candidates(k: int) -> list[int]:
    """The group sizes of :data:`GROUP_CANDIDATES` that divide ``k``."""
    c = [g for g in GROUP_CANDIDATES if k % g == 0]
    if not c:
        raise ValueError(f"No candidate group size divides K = {k}")
    return c


def layer_error(x: np.ndarray, weight: np.ndarray, group: int, w_bits: int,
                a_bits: int) -> float:
    """Relative squared output error of the layer at ``group`` on calibration rows ``x [R, K]``."""
    ref = x.astype(np.float64) @ weight.astype(np.float64).T
    y = (quantize_asym(x, a_bits, group).astype(np.float64)
         @ quantize_asym(weight, w_bits, group).astype(np.float64).T)
    den = float(np.sum(ref ** 2))
    return float(np.sum((y - ref) ** 2) / den) if den > 0 else float(np.sum(y ** 2))


def search_group_sizes(errors: Mapping[str, Mapping[int, float]],
                       budget: float = BUDGET) -> dict[str, int]:
    """Per-layer group sizes minimising the summed error with a mean group size >= ``budget``.

    ``errors[layer][g]`` is the layer's error at group size ``g``. Exact: a dynamic programme
    over the total group size (group sizes are integers). Among equal totals of error the
    earlier (smaller) candidate wins. Raises ValueError if no choice meets the budget.
    """
    layers = list(errors)
    need = budget * len(layers)
    # best[t] = (error, choices) over the layers so far with total group size t.
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for layer in layers:
        nxt: dict[int, tuple[float, tuple[int, ...]]] = {}
        for t, (e, ch) in best.items():
            for g in sorted(errors[layer]):
                cand = (e + float(errors[layer][g]), ch + (g,))
                if t + g not in nxt or cand[0] < nxt[t + g][0]:
                    nxt[t + g] = cand
        best = nxt
    ok = [(e, ch) for t, (e, ch) in best.items() if t >= need]
    if not ok:
        raise ValueError(f"No group sizes reach a mean of {budget}")
    e, ch = min(ok, key=lambda v: v[0])
    return dict(zip(layers, ch))


def linear(weight: np.ndarray, bias: np.ndarray, group: int, w_bits: int,
           a_bits: int) -> Callable[[np.ndarray], np.ndarray]:
    """The Q-DiT linear layer: ``Q_a^g(x) Q_w^g(W)^T + b`` with group size ``g`` for both."""
    wt = np.ascontiguousarray(quantize_asym(weight, w_bits, group).T)
    b = np.asarray(bias, dtype=np.float32)

    def fn(x: np.ndarray) -> np.ndarray:
        k = weight.shape[1]
        y = quantize_asym(x.reshape(-1, k), a_bits, group) @ wt + b
        return y.reshape(x.shape[:-1] + (weight.shape[0],)).astype(np.float32)

    return fn


def plan(weights: Mapping[str, np.ndarray], operands: Operands, w_bits: int, a_bits: int,
         budget: float = BUDGET) -> tuple[dict[str, int], dict[str, dict[int, float]]]:
    """Errors of every candidate on the calibration rows, and the chosen group sizes."""
    errors = {name: {g: layer_error(operands.rows[name], w, g, w_bits, a_bits)
                     for g in candidates(w.shape[1])} for name, w in weights.items()}
    return search_group_sizes(errors, budget), errors


def attention(a_bits: int) -> tuple[Callable, Callable]:
    """Q K^T and P V, both operands per row along the reduction axis, dynamic."""
    from .vidit_q import attention as per_row

    return per_row(a_bits)
