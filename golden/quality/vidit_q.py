"""ViDiT-Q (Zhao et al., ICLR 2025, arXiv:2406.02540), accuracy only, on the host.

What is reproduced (fake quantization, float32 matmuls):

- **Granularity**: weights per output channel, activations per token with *dynamic* ranges, the
  range of every token computed at run time at every timestep (the paper's fine-grained,
  dynamic quantization; its public configs: weight ``per_group: channel``, activation
  ``per_group: token`` with ``dynamic: True``, ``min_max`` asymmetric ranges). Both through
  :func:`golden.quality.uniform.quantize_asym`.
- **Channel balancing**, the paper's *static-dynamic* variant: a static, calibrated
  SmoothQuant scale moved from the activation into the weight (:mod:`golden.quality.smoothing`),
  for the channel imbalance that is the same at every timestep, followed by the online Hadamard
  rotation (:mod:`golden.quality.hadamard`) for the imbalance that moves between timesteps.
  Applied to every linear layer: ``y = Q_a(rot(x / s)) Q_w(rot(W * s))^T + b``.
- **Metric-decoupled mixed precision** (the paper's ViDiT-Q-MP, used for W4A8): each linear
  layer is quantized alone and the change of each quality metric measured separately;
  the layers most harmful to *any one* metric keep 8-bit weights (W8A8), the rest W4A8
  (:func:`sensitivity`, :func:`select_high`). The metrics here are the mean distance of the
  digit classifier's penultimate features from those of the FP32 image of the same seed (what
  the image shows; the analogue of the paper's semantic metrics such as CLIP score) and the RMS
  pixel distance from that image (how it is drawn; the analogue of its fidelity metrics).

Not reproduced: ViDiT-Q's GPU kernels, its timestep-wise mixed precision, and the per-metric
weighting of the paper's video metrics. The attention products (Q K^T, P V) are quantized here
like every other accelerator GEMM (whatever precision ViDiT-Q itself gives them): per row along
the reduction axis, dynamically, at the activation bit width.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .hadamard import rotate
from .operands import Operands
from .smoothing import smooth_scales
from .uniform import quantize_asym

__all__ = ["ALPHA", "linear", "attention", "sensitivity", "select_high", "HIGH_PER_METRIC",
           "SENSITIVITY_METRICS"]

#: SmoothQuant migration strength (SmoothQuant's default).
ALPHA = 0.5
#: Layers kept at 8 bits per metric by the mixed precision.
HIGH_PER_METRIC = 3
#: The decoupled metrics of the sensitivity analysis (each: larger = worse): the distance of the
#: digit classifier's features from those of the FP32 image of the same seed (content), and the
#: RMS pixel difference from it (detail).
SENSITIVITY_METRICS = ("feature dist.", "RMS vs FP32")


def linear(name: str, weight: np.ndarray, bias: np.ndarray, operands: Operands, w_bits: int,
           a_bits: int, alpha: float = ALPHA) -> Callable[[np.ndarray], np.ndarray]:
    """The ViDiT-Q linear layer ``x -> Q_a(rot(x / s)) Q_w(rot(W * s))^T + b``."""
    s = smooth_scales(operands.absmax[name], weight, alpha)
    wq = quantize_asym(rotate(weight * s), w_bits)
    wt = np.ascontiguousarray(wq.T)
    b = np.asarray(bias, dtype=np.float32)

    def fn(x: np.ndarray) -> np.ndarray:
        k = weight.shape[1]
        xr = rotate(x.reshape(-1, k) / s)
        y = quantize_asym(xr, a_bits) @ wt + b
        return y.reshape(x.shape[:-1] + (weight.shape[0],)).astype(np.float32)

    return fn


def attention(a_bits: int) -> tuple[Callable, Callable]:
    """Q K^T and P V with both operands dynamically quantized per row along the reduction axis:
    ``a [..., M, K]``, ``bt [..., K, N]`` -> ``[..., M, N]``."""
    def mm(a: np.ndarray, bt: np.ndarray) -> np.ndarray:
        qa = quantize_asym(a, a_bits)
        qb = quantize_asym(np.swapaxes(bt, -1, -2), a_bits)
        return np.matmul(qa, np.swapaxes(qb, -1, -2)).astype(np.float32)
    return mm, mm


def sensitivity(model, operands: Operands, w_bits: int, a_bits: int, labels: Sequence[int],
                seeds: Sequence[int], guidance: float, num_steps: int,
                classifier=None) -> list[dict]:
    """Quantize each linear layer alone to ``W{w_bits}A{a_bits}`` and measure each metric.

    ``classifier`` is the path of the model's metric classifier (default: the digits DiT's);
    its features give the semantic metric.

    Returns one dict per layer: ``layer`` and the metrics of :data:`SENSITIVITY_METRICS` (each
    the change from FP32 on the same labels and seeds, larger = worse).
    """
    import copy

    from ..dit import ddim_sample, replace_linears
    from ..dit.metric import features, load_classifier
    from .methods import numpy_module

    clf = load_classifier() if classifier is None else load_classifier(classifier)
    ref = ddim_sample(model, labels, seeds, guidance, num_steps).numpy()
    ref_f = features(clf, ref)
    names = _linear_names(model)
    out = []
    for target in names:
        m = copy.deepcopy(model)

        def factory(name, lin, target=target):
            if name != target:
                return lin
            w = lin.weight.detach().float().numpy().copy()
            b = lin.bias.detach().float().numpy().copy()
            return numpy_module(linear(name, w, b, operands, w_bits, a_bits))

        replace_linears(m, factory)
        imgs = ddim_sample(m, labels, seeds, guidance, num_steps).numpy()
        out.append({"layer": target,
                    SENSITIVITY_METRICS[0]: float(np.mean(np.linalg.norm(
                        features(clf, imgs) - ref_f, axis=1))),
                    SENSITIVITY_METRICS[1]: float(np.sqrt(np.mean((imgs - ref) ** 2)))})
    return out


def _linear_names(model) -> list[str]:
    import torch

    from ..dit.model import GEMM_LAYERS

    return [n for n, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear) and any(n.endswith("." + s) for s in GEMM_LAYERS)]


def select_high(table: Sequence[dict], per_metric: int = HIGH_PER_METRIC) -> list[str]:
    """The layers kept at 8 bits: the union over metrics of the ``per_metric`` most sensitive
    layers by that metric (ties broken by layer order), in layer order."""
    order = [r["layer"] for r in table]
    high = set()
    for metric in SENSITIVITY_METRICS:
        ranked = sorted(range(len(table)), key=lambda i: (-table[i][metric], i))
        high.update(order[i] for i in ranked[:per_metric])
    return [n for n in order if n in high]
