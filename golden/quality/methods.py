"""The published baselines as schemes of quantized sampling: ViDiT-Q, ViDiT-Q-MP, Q-DiT, HQ-DiT.

:mod:`golden.quality.sampling` lists the schemes (``kind`` one of :data:`KINDS`, ``w`` / ``a``
the weight and activation formats, ``"int8"`` or ``"fp4"``) and calls :func:`install` on its copy
of the model; this module builds each method's layers (:mod:`~golden.quality.vidit_q`,
:mod:`~golden.quality.q_dit`, :mod:`~golden.quality.hq_dit`) from a :class:`MethodCalibration`:
the FP32 GEMM operands of calibration samples (:mod:`~golden.quality.operands`), and for
ViDiT-Q-MP the layer sensitivity table and the layers it keeps at 8 bits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import hq_dit, q_dit, vidit_q
from .operands import Operands, record

__all__ = ["KINDS", "VERSION", "MethodCalibration", "calibrate", "load_or_calibrate",
           "install", "report", "numpy_module", "bits_of"]

#: Scheme kinds this module implements.
KINDS = ("vidit-q", "vidit-q-mp", "q-dit", "hq-dit")
#: Bump when a change here changes what a cached calibration or result means.
VERSION = 1
#: Rows kept per GEMM operand and timestep for the error-driven searches.
ROWS_PER_STEP = 16
#: Samples (labels i % 10, seeds 200000 + i) of ViDiT-Q-MP's sensitivity analysis.
SENSITIVITY_SAMPLES = 20


@dataclass
class MethodCalibration:
    """What a method needs beyond the weights.

    Attributes
    ----------
    operands : Operands
        FP32 GEMM operands of the calibration samples.
    sensitivity : list of dict, optional
        ViDiT-Q-MP: one row per linear layer (see :func:`golden.quality.vidit_q.sensitivity`).
    high : list of str, optional
        ViDiT-Q-MP: the linear layers kept at 8-bit weights.
    plans : dict
        Per-scheme choices made at :func:`install` (group sizes, FP4 formats), for :func:`report`.
    """

    operands: Operands
    sensitivity: "list[dict] | None" = None
    high: "list[str] | None" = None
    plans: dict = field(default_factory=dict)


def bits_of(fmt: str) -> int:
    """The bit width of ``"int8"``, ``"int4"``, ``"fp4"``, ..."""
    digits = fmt.lstrip("intfp")
    if not digits.isdigit():
        raise ValueError(f"Not a format with a bit width: {fmt!r}")
    return int(digits)


def calibrate(model, scheme, n: int, guidance: float, num_steps: int,
              sensitivity_samples: int = SENSITIVITY_SAMPLES,
              classifier: "Path | str | None" = None) -> MethodCalibration:
    """Record the operands on ``n`` FP32 samples (seeds 100000 + i, as MixDiT's calibration)
    and, for ViDiT-Q-MP, run the sensitivity analysis on ``sensitivity_samples`` others, in the
    feature space of ``classifier`` (the model's metric classifier; default the digits')."""
    labels = [i % model.cfg.num_classes for i in range(n)]
    ops = record(model, labels, [100000 + i for i in range(n)], guidance, num_steps,
                 ROWS_PER_STEP)
    cal = MethodCalibration(ops)
    if scheme.kind == "vidit-q-mp":
        _sensitivity(model, scheme, cal, guidance, num_steps, sensitivity_samples, classifier)
    return cal


def _sensitivity(model, scheme, cal: MethodCalibration, guidance: float, num_steps: int,
                 n: int = SENSITIVITY_SAMPLES, classifier: "Path | str | None" = None) -> None:
    labels = [i % model.cfg.num_classes for i in range(n)]
    cal.sensitivity = vidit_q.sensitivity(model, cal.operands, bits_of(scheme.w),
                                          bits_of(scheme.a), labels,
                                          [200000 + i for i in range(n)], guidance, num_steps,
                                          classifier)
    cal.high = vidit_q.select_high(cal.sensitivity)


def load_or_calibrate(model, scheme, n: int, guidance: float, num_steps: int, cache_dir: Path,
                      ckpt: str, classifier: "Path | str | None" = None,
                      clf: str = "") -> MethodCalibration:
    """:func:`calibrate` through a cache in ``cache_dir`` keyed by everything that changes it
    (``clf`` identifies the ``classifier``'s content)."""
    from .sampling import cache_key

    cache_dir = Path(cache_dir)
    key = cache_key(v=VERSION, ckpt=ckpt, n=n, steps=num_steps, guidance=guidance,
                    rows=ROWS_PER_STEP)
    f = cache_dir / f"operands-{key}.npz"
    if f.is_file():
        cal = MethodCalibration(Operands.load(f))
    else:
        labels = [i % model.cfg.num_classes for i in range(n)]
        cal = MethodCalibration(record(model, labels, [100000 + i for i in range(n)], guidance,
                                       num_steps, ROWS_PER_STEP))
        tmp = cache_dir / f"operands-{key}.tmp.npz"
        cal.operands.save(tmp)
        tmp.replace(f)
    if scheme.kind == "vidit-q-mp":
        skey = cache_key(v=VERSION, ops=key, w=scheme.w, a=scheme.a, n=SENSITIVITY_SAMPLES,
                         high=vidit_q.HIGH_PER_METRIC, alpha=vidit_q.ALPHA,
                         **({"clf": clf} if clf else {}))
        s = cache_dir / f"sensitivity-{skey}.json"
        if s.is_file():
            cal.sensitivity = json.loads(s.read_text())
            cal.high = vidit_q.select_high(cal.sensitivity)
        else:
            _sensitivity(model, scheme, cal, guidance, num_steps, classifier=classifier)
            s.write_text(json.dumps(cal.sensitivity, indent=1))
    return cal


def numpy_module(fn: Callable[[np.ndarray], np.ndarray]):
    """An ``nn.Module`` calling the NumPy function ``fn`` on its input (float32 in and out)."""
    import torch

    class NumpyLayer(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(fn(x.detach().float().numpy()))

    return NumpyLayer()


def _numpy_matmul(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    import torch

    def mm(a, bt):
        return torch.from_numpy(fn(a.detach().float().numpy(), bt.detach().float().numpy()))
    return mm


def install(model, scheme, calib: MethodCalibration) -> None:
    """Replace the accelerator GEMMs of ``model`` (in place) by ``scheme``'s quantized ones."""
    from ..dit import replace_linears, set_attention_matmuls

    if scheme.kind not in KINDS:
        raise ValueError(f"Not a method scheme: {scheme.kind!r} (one of {KINDS})")
    if calib is None:
        raise ValueError(f"{scheme.name} needs a calibration (golden.quality.methods.calibrate)")
    ops = calib.operands
    plan: dict = {}
    lins = {}

    def grab(name, lin):
        lins[name] = (lin.weight.detach().float().numpy().copy(),
                      lin.bias.detach().float().numpy().copy())
        return lin

    replace_linears(model, grab)
    kind = scheme.kind
    if kind in ("vidit-q", "vidit-q-mp", "q-dit"):
        wb, ab = bits_of(scheme.w), bits_of(scheme.a)
        if kind == "q-dit":
            groups, errors = q_dit.plan({n: w for n, (w, _) in lins.items()}, ops, wb, ab)
            plan = {"groups": groups, "errors": errors}
            fns = {n: q_dit.linear(w, b, groups[n], wb, ab) for n, (w, b) in lins.items()}
        else:
            high = set(calib.high or []) if kind == "vidit-q-mp" else set()
            if kind == "vidit-q-mp" and calib.high is None:
                raise ValueError("ViDiT-Q-MP needs the sensitivity analysis in its calibration")
            plan = {"high": sorted(high)}
            fns = {n: vidit_q.linear(n, w, b, ops, 8 if n in high else wb, ab)
                   for n, (w, b) in lins.items()}
        pair = vidit_q.attention(ab)
        attn = lambda name: pair
    else:
        fns, plan = {}, {"linear": {}, "attention": {}}
        for n, (w, b) in lins.items():
            fns[n], plan["linear"][n] = hq_dit.linear(n, w, b, ops)
        pairs = {}

        def attn(name):
            pairs[name], plan["attention"][name] = hq_dit.attention(name, ops)
            return pairs[name]

    replace_linears(model, lambda name, lin: numpy_module(fns[name]))
    set_attention_matmuls(model, lambda name: tuple(_numpy_matmul(f) for f in attn(name)))
    calib.plans[scheme.name] = plan


def report(scheme, calib: MethodCalibration) -> list[tuple[str, list[str], list[list]]]:
    """Printable tables of a method's calibration: ``(title, headers, rows)`` each."""
    out = []
    plan = calib.plans.get(scheme.name, {})
    if scheme.kind == "vidit-q-mp" and calib.sensitivity:
        high = set(calib.high or [])
        rows = [[r["layer"]] + [f"{r[m]:.4g}" for m in vidit_q.SENSITIVITY_METRICS]
                + ["W8A8" if r["layer"] in high else f"W{bits_of(scheme.w)}A{bits_of(scheme.a)}"]
                for r in calib.sensitivity]
        out.append((f"{scheme.name}: sensitivity of each linear layer quantized alone to "
                    f"W{bits_of(scheme.w)}A{bits_of(scheme.a)} ({SENSITIVITY_SAMPLES} samples; "
                    f"top {vidit_q.HIGH_PER_METRIC} per metric stay at 8 bits)",
                    ["layer", *vidit_q.SENSITIVITY_METRICS, "precision"], rows))
    if scheme.kind == "q-dit" and plan:
        rows = [[n, plan["groups"][n]] + [f"{e:.2e}" for _, e in sorted(plan["errors"][n].items())]
                for n in plan["groups"]]
        cands = sorted(next(iter(plan["errors"].values())))
        out.append((f"{scheme.name}: group size per layer (mean >= {q_dit.BUDGET}), relative "
                    f"output error on calibration rows per candidate",
                    ["layer", "group", *[f"g={g}" for g in cands]], rows))
    if scheme.kind == "hq-dit" and plan:
        rows = [[n, f"{v['w'][0]} x{v['w'][1]:.2f}", f"{v['a'][0]} x{v['a'][1]:.2f}"]
                for n, v in plan["linear"].items()]
        rows += [[f"{n}.{p}", f"{v[p]['a'][0]} x{v[p]['a'][1]:.2f}",
                  f"{v[p]['b'][0]} x{v[p]['b'][1]:.2f}"]
                 for n, v in plan["attention"].items() for p in ("qk", "pv")]
        out.append((f"{scheme.name}: FP4 format and clipping ratio per GEMM operand",
                    ["GEMM", "W (or A of Q K^T / P V)", "A (or B)"], rows))
    return out
