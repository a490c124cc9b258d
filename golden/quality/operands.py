"""GEMM operands of the FP32 DiT recorded on calibration samples, for the baselines' calibration.

ViDiT-Q's smoothing needs each linear layer's per-channel activation maximum; Q-DiT's group-size
search and HQ-DiT's format and clipping selection need real input rows to measure quantization
error on. :func:`record` samples the FP32 model (separate seeds from the evaluation) and keeps,
for every accelerator GEMM (spec §4):

- ``absmax[layer]``: float64 ``[K]``, ``max |x|`` of every input channel over every token, image
  and timestep of the run (``layer`` is ``"blocks.3.mlp.fc1"``);
- ``rows[key]``: float32 ``[R, K]``, a fixed random subset of input rows at every timestep, for
  linear layers (``key`` = the layer) and for both operands of the attention products along
  their reduction axis (``"blocks.3.attn.qk.a"`` = rows of Q, ``.qk.b`` = rows of K,
  ``.pv.a`` = rows of P, ``.pv.b`` = rows of V^T, i.e. columns of V).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["Operands", "record"]


@dataclass
class Operands:
    """Calibration statistics and rows of every accelerator GEMM (see the module docstring)."""

    absmax: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        np.savez(path, **{f"mx/{k}": v for k, v in self.absmax.items()},
                 **{f"rw/{k}": v for k, v in self.rows.items()})

    @classmethod
    def load(cls, path: Path) -> "Operands":
        f = np.load(path)
        return cls({k[3:]: f[k] for k in f.files if k.startswith("mx/")},
                   {k[3:]: f[k] for k in f.files if k.startswith("rw/")})


def record(model, labels: Sequence[int], seeds: Sequence[int], guidance: float, num_steps: int,
           rows_per_step: int = 16, seed: int = 0) -> Operands:
    """Sample ``model`` in FP32 and record :class:`Operands` (``rows_per_step`` rows per GEMM
    operand and timestep, chosen by a generator seeded with ``seed``)."""
    import torch

    from ..dit import ddim_sample, set_attention_matmuls
    from ..dit.model import GEMM_LAYERS

    m = copy.deepcopy(model)
    rng = np.random.default_rng(seed)
    absmax: dict[str, np.ndarray] = {}
    rows: dict[str, list] = {}

    def keep(key: str, flat: np.ndarray) -> None:
        pick = rng.choice(flat.shape[0], size=min(rows_per_step, flat.shape[0]), replace=False)
        rows.setdefault(key, []).append(flat[np.sort(pick)].astype(np.float32))

    def lin_hook(name):
        def hook(_mod, inp, _out):
            x = inp[0].detach().float().numpy().reshape(-1, inp[0].shape[-1])
            mx = np.abs(x).max(axis=0).astype(np.float64)
            absmax[name] = np.maximum(absmax[name], mx) if name in absmax else mx
            keep(name, x)
        return hook

    def pair(name):
        def make(which):
            def mm(a, bt):
                an = a.detach().float().numpy()
                bn = np.swapaxes(bt.detach().float().numpy(), -1, -2)
                keep(f"{name}.{which}.a", an.reshape(-1, an.shape[-1]))
                keep(f"{name}.{which}.b", bn.reshape(-1, bn.shape[-1]))
                return torch.matmul(a, bt)
            return mm
        return make("qk"), make("pv")

    hooks = [mod.register_forward_hook(lin_hook(name)) for name, mod in m.named_modules()
             if isinstance(mod, torch.nn.Linear) and any(name.endswith("." + s)
                                                         for s in GEMM_LAYERS)]
    set_attention_matmuls(m, pair)
    try:
        ddim_sample(m, labels, seeds, guidance, num_steps)
    finally:
        for h in hooks:
            h.remove()
    return Operands(absmax, {k: np.concatenate(v) for k, v in rows.items()})
