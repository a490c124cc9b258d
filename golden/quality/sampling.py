"""Sampling a DiT with every accelerator GEMM quantized, and scoring the images.

Paper §V, Table I and Table III, on the project's own DiTs (spec §7). Every GEMM the accelerator
runs (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``, Q K^T and P V of every head; spec
§4) is replaced through :func:`golden.dit.replace_linears` and
:func:`golden.dit.set_attention_matmuls`; biases, softmax, norms, GELU and adaLN stay FP32 on the
host. The adaLN and embedding linears stay FP32 here, as in :data:`golden.dit.GEMM_LAYERS`.

Schemes (:class:`Scheme`, registered in :data:`SCHEMES` in the order ``mixdit evaluate`` prints
them):

- MX (``kind="mx"``): A and W quantized by :func:`golden.mx.quantize` (truncation, spec §1.1) and
  multiplied by the golden GEMM, bit-exact (:func:`golden.gemm.mx_matmul` for linears,
  :func:`mx_matmul_batched` for the per-head products, equal to it slice by slice). MixDiT
  (spec §4): a channel order and the MX9 group count per (layer, timestep), calibrated on FP32
  samples of separate seeds; the top ``ceil(p2 * heads)`` heads by Q/K magnitude in MX9.
- Fake-quantized baselines (``kind="fake"``): a :class:`FakeQuant` from :data:`QUANTIZERS`
  rounds weights and activations, then a float32 matmul multiplies them. Registered here:
  INT8 and INT6 (Q-DiT / ViDiT-Q style, :mod:`golden.quality.baselines`: per-output-channel
  weights, per-token activations, both attention operands per token; their extra machinery is
  not reproduced, only the number format and granularity), FP4 E2M1 with one scale per tensor
  (HQ-DiT style), and the OCP MX formats of GPUs (:mod:`golden.quality.ocp_mx`, blocks of 32
  along K for both operands).
- The published methods with their own machinery (:mod:`golden.quality.methods`): ViDiT-Q
  (smoothing, Hadamard, dynamic per-token ranges; W8A8, W6A6, W4A8, and W4A8 with its
  metric-decoupled mixed precision), Q-DiT (group-size search, dynamic activations; W6A6) and
  HQ-DiT (FP4 format selection, clipping search, Hadamard; W4A4).

Adding a scheme (the extension point)::

    from golden.quality import sampling
    sampling.register_scheme(
        "my-w8a8",
        sampling.Scheme("My W8A8", "fake", quant="my-w8a8"),
        sampling.FakeQuant(weight=my_weight_fn, act=my_act_fn),
    )

It then appears as a row of ``mixdit evaluate`` (after the rows registered before it); the
module defining it must be imported by :func:`load_extensions` (add it to :data:`EXTENSIONS`).

Quality: :mod:`golden.quality.fidelity` (PSNR, SSIM, FD vs FP32, FD vs real, label agreement,
accuracy), in the feature space of the model's metric classifier (:mod:`golden.dit.metric`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import ocp_mx
from .baselines import fp4_e2m1, int_activation, int_weight
from ..formats import EXP_BIAS
from ..fp32 import CANONICAL_NAN, fp32_add, scale_exact
from ..gemm import mx_matmul, signed_operand
from ..layer import LINEAR_KINDS, BlockPlans
from ..mixdit import LinearPlan, channel_order, head_formats, linear_formats
from ..mx import MXTensor, quantize

__all__ = ["Scheme", "FakeQuant", "QUANTIZERS", "SCHEMES", "TABLE_I", "MIXDIT",
           "register_scheme", "evaluate_keys", "load_extensions", "EXTENSIONS", "mixdit_scheme",
           "mx_matmul_batched", "Calibration", "calibrate", "QuantizedDiT", "sample", "evaluate",
           "EvalResult", "eval_labels", "cache_key", "EMULATIONS", "METHOD_KINDS", "GemmHook"]


@dataclass(frozen=True)
class Scheme:
    """How every accelerator GEMM of the DiT is quantized.

    Attributes
    ----------
    name : str
        Label for tables.
    kind : str
        ``"fp32"``, ``"mx"`` (the accelerator's formats), ``"fake"`` (a :class:`FakeQuant`) or
        one of :data:`METHOD_KINDS` (a published method, :mod:`golden.quality.methods`).
    w, a : str
        For ``"mx"``: weight and activation formats (``"mx6"``/``"mx9"``); attention operands are
        both in ``a``, except under MixDiT. For a method: ``"int8"``, ``"fp4"``, ...
    p1, p2 : float or None
        MixDiT's MX9 shares; None for a uniform scheme.
    quant : str
        For ``"fake"``: the key of its :class:`FakeQuant` in :data:`QUANTIZERS`.
    """

    name: str
    kind: str = "fp32"
    w: str = ""
    a: str = ""
    p1: "float | None" = None
    p2: "float | None" = None
    quant: str = ""

    @property
    def is_mixdit(self) -> bool:
        return self.p1 is not None


@dataclass(frozen=True)
class FakeQuant:
    """A baseline quantizer: functions that return the rounded (dequantized) float32 values.

    Attributes
    ----------
    weight : callable
        ``weight(w [N, K]) -> [N, K]``: a linear layer's weight (K is the reduction axis).
    act : callable
        ``act(x [..., K]) -> [..., K]``: a linear layer's input, tokens on the leading axes.
    attn : callable, optional
        ``attn(x [B, H, rows, K]) -> same``: each attention operand, Q and K for Q K^T, P and V^T
        for P V, always with the reduction axis last. Defaults to ``act``.
    """

    weight: Callable[[np.ndarray], np.ndarray]
    act: Callable[[np.ndarray], np.ndarray]
    attn: "Callable[[np.ndarray], np.ndarray] | None" = None


def _ocp(fmt: str) -> FakeQuant:
    fn = lambda x: ocp_mx.fake_quantize(x, fmt)
    return FakeQuant(weight=fn, act=fn)


#: Baseline quantizers by key (``Scheme.quant``).
QUANTIZERS: dict[str, FakeQuant] = {
    "int8": FakeQuant(lambda w: int_weight(w, 8), lambda x: int_activation(x, 8)),
    "int6": FakeQuant(lambda w: int_weight(w, 6), lambda x: int_activation(x, 6)),
    "fp4": FakeQuant(fp4_e2m1, fp4_e2m1),
    **{fmt: _ocp(fmt) for fmt in ocp_mx.FORMATS},
}

#: The key under which :func:`evaluate_keys` lists MixDiT, whose (p1, p2) is chosen at run time.
MIXDIT = "mixdit"

#: The paper's Table I grid, W / A in {MX9, MX6}^2.
TABLE_I = {f"{w}w-{a}a": Scheme(f"MX{w[2]} W / MX{a[2]} A", "mx", w, a)
           for w in ("mx9", "mx6") for a in ("mx9", "mx6")}

_OCP_NAMES = {
    "mxfp8_e4m3": "MXFP8 E4M3 (OCP)", "mxfp8_e5m2": "MXFP8 E5M2 (OCP)",
    "mxfp6_e2m3": "MXFP6 E2M3 (OCP)", "mxfp6_e3m2": "MXFP6 E3M2 (OCP)",
    "mxfp4_e2m1": "MXFP4 E2M1 (OCP)", "mxint8": "MXINT8 (OCP)",
}

#: Every scheme by key, in table order: the rows of the paper's Tables I and III, then the
#: baselines. ``"mx9"`` and ``"mx6"`` are Table I's diagonal.
SCHEMES: dict[str, Scheme] = {
    "fp32": Scheme("FP32"),
    "mx9": Scheme("MX9 / MX9", "mx", "mx9", "mx9"),
    "mx9w-mx6a": TABLE_I["mx9w-mx6a"],
    "mx6w-mx9a": TABLE_I["mx6w-mx9a"],
    "mx6": Scheme("MX6 / MX6", "mx", "mx6", "mx6"),
    "int8": Scheme("INT8 / INT8", "fake", quant="int8"),
    "int6": Scheme("INT6 / INT6 (Q-DiT, ViDiT-Q style)", "fake", quant="int6"),
    "fp4": Scheme("FP4 E2M1 (HQ-DiT style)", "fake", quant="fp4"),
    **{fmt: Scheme(_OCP_NAMES[fmt], "fake", quant=fmt) for fmt in ocp_mx.FORMATS},
    # The published methods (golden/quality/methods.py; w / a name the formats).
    "vidit-q-w8a8": Scheme("ViDiT-Q W8A8", "vidit-q", "int8", "int8"),
    "vidit-q-w6a6": Scheme("ViDiT-Q W6A6", "vidit-q", "int6", "int6"),
    "vidit-q-w4a8": Scheme("ViDiT-Q W4A8", "vidit-q", "int4", "int8"),
    "vidit-q-mp-w4a8": Scheme("ViDiT-Q-MP W4A8", "vidit-q-mp", "int4", "int8"),
    "q-dit-w6a6": Scheme("Q-DiT W6A6", "q-dit", "int6", "int6"),
    "hq-dit-w4a4": Scheme("HQ-DiT W4A4 (FP4)", "hq-dit", "fp4", "fp4"),
}

#: Scheme kinds built by :func:`golden.quality.methods.install` (their ``calib`` is a
#: :class:`golden.quality.methods.MethodCalibration`).
METHOD_KINDS = ("vidit-q", "vidit-q-mp", "q-dit", "hq-dit")

#: Modules that register further schemes when imported (see :func:`load_extensions`).
EXTENSIONS: list[str] = []


def register_scheme(key: str, scheme: Scheme, quantizer: "FakeQuant | None" = None) -> None:
    """Add ``scheme`` under ``key`` (and its ``quantizer`` under ``scheme.quant``).

    Raises
    ------
    ValueError
        When ``key`` (or the quantizer's key) is taken by a different entry, or a ``"fake"``
        scheme has no quantizer.
    """
    if key in SCHEMES and SCHEMES[key] != scheme or key == MIXDIT:
        raise ValueError(f"scheme key {key!r} is taken")
    if scheme.kind == "fake":
        if quantizer is not None:
            if QUANTIZERS.get(scheme.quant, quantizer) is not quantizer:
                raise ValueError(f"quantizer key {scheme.quant!r} is taken")
            QUANTIZERS[scheme.quant] = quantizer
        if scheme.quant not in QUANTIZERS:
            raise ValueError(f"scheme {key!r} names no registered quantizer {scheme.quant!r}")
    elif scheme.kind not in ("fp32", "mx") + METHOD_KINDS:
        raise ValueError(f"unknown scheme kind {scheme.kind!r}")
    SCHEMES[key] = scheme


def load_extensions() -> None:
    """Import every module of :data:`EXTENSIONS` (each registers its schemes on import)."""
    for name in EXTENSIONS:
        importlib.import_module(name)


def evaluate_keys() -> list[str]:
    """The rows of ``mixdit evaluate``: every scheme, MixDiT after the uniform MX rows."""
    keys = list(SCHEMES)
    at = keys.index("mx6") + 1
    return keys[:at] + [MIXDIT] + keys[at:]


def mixdit_scheme(p1: float, p2: float) -> Scheme:
    """MixDiT at ``(p1, p2)``: W MX6, A MX6 with the top ``p1`` channels MX9 (spec §4)."""
    for p, what in ((p1, "p1"), (p2, "p2")):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{what} must lie in [0, 1], not {p!r}")
    return Scheme(f"MixDiT ({p1:.0%}, {p2:.0%})", "mx", "mx6", "mx6", float(p1), float(p2))


def mx_matmul_batched(a: MXTensor, w: MXTensor) -> np.ndarray:
    """``a @ w^T`` over leading batch axes, bit for bit as :func:`golden.gemm.mx_matmul` per slice.

    Parameters
    ----------
    a : MXTensor, shape ``[..., M, G]``
    w : MXTensor, shape ``[..., N, G]`` (the same leading shape)

    Returns
    -------
    numpy.ndarray of float32, shape ``[..., M, N]``
        One FP32 add per group in increasing K order (spec §2.1, §1.3). Each group sum is an
        integer below 2^21, exact in a float32 batched matmul whatever its summation order.
    """
    if a.shape[:-2] != w.shape[:-2] or a.groups != w.groups:
        raise ValueError(f"Operands [..., M, G] and [..., N, G] must share leading axes and G, "
                         f"got {a.shape} and {w.shape}")
    sa = signed_operand(a)
    sw = signed_operand(w)
    ma, mb = a.mant_bits, w.mant_bits
    acc = np.zeros(a.shape[:-1] + (w.shape[-2],), dtype=np.float32)
    for g in range(a.groups):
        s = np.matmul(sa[..., g, :], np.swapaxes(sw[..., g, :], -1, -2))
        e = (a.exp[..., g].astype(np.int32)[..., :, None]
             + w.exp[..., g].astype(np.int32)[..., None, :]
             - 2 * EXP_BIAS - (int(ma[g]) - 1) - (int(mb[g]) - 1) - 2)
        p = scale_exact(s, e)
        nan = a.nan_groups[..., g][..., :, None] | w.nan_groups[..., g][..., None, :]
        if nan.any():
            p = np.where(nan, CANONICAL_NAN.view(np.float32), p)
        acc = fp32_add(acc, p)
    return acc


@dataclass
class Calibration:
    """Per (layer, step) channel magnitudes and per (attention, step) head scores (spec §4).

    Attributes
    ----------
    channels : dict
        ``"blocks.3.mlp.fc1"`` -> float64 ``[steps, K]``: mean |x| of every input channel at each
        sampler step.
    heads : dict
        ``"blocks.3.attn"`` -> float64 ``[steps, H]``: mean |Q| and |K| of every head.
    """

    channels: dict[str, np.ndarray] = field(default_factory=dict)
    heads: dict[str, np.ndarray] = field(default_factory=dict)

    def perm(self, layer: str, step: int) -> np.ndarray:
        """The channel order of the reordering table for ``layer`` at ``step``."""
        return channel_order(self.channels[layer][step])

    def head_formats(self, attn: str, step: int, p2: float) -> list[str]:
        """MX9 or MX6 for every head of ``attn`` at ``step``."""
        return head_formats(self.heads[attn][step], p2)

    def linear_plan(self, layer: str, step: int, p1: float) -> LinearPlan:
        """The MixDiT plan of ``layer`` at ``step``: its order and the formats of A's groups."""
        perm = self.perm(layer, step)
        return LinearPlan(perm, tuple(linear_formats(perm.size, p1)))

    def block_plans(self, block: int, step: int, p1: float, p2: float) -> BlockPlans:
        """Every plan of ``block`` at ``step``, as :func:`golden.layer.calibrate_block` gives
        them from a capture (what :func:`golden.layer.consumer_plan` reads)."""
        return BlockPlans({k: self.linear_plan(f"blocks.{block}.{k}", step, p1)
                           for k in LINEAR_KINDS},
                          tuple(self.head_formats(f"blocks.{block}.attn", step, p2)))

    def save(self, path: Path) -> None:
        np.savez(path, **{f"ch/{k}": v for k, v in self.channels.items()},
                 **{f"hd/{k}": v for k, v in self.heads.items()})

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        f = np.load(path)
        return cls({k[3:]: f[k] for k in f.files if k.startswith("ch/")},
                   {k[3:]: f[k] for k in f.files if k.startswith("hd/")})


#: How MX GEMMs are emulated (see :class:`QuantizedDiT`).
EMULATIONS = ("fake", "exact")


class _Step:
    """The sampler step the model is at, shared by every replaced GEMM."""

    index = 0


def calibrate(model, labels: Sequence[int], seeds: Sequence[int], guidance: float,
              num_steps: int) -> Calibration:
    """Sample in FP32 and record the calibration statistics of every accelerator GEMM input."""
    import torch

    from ..dit import ddim_sample
    from ..dit.model import GEMM_LAYERS, SplitHeads

    step = _Step()
    sums: dict[str, np.ndarray] = {}
    heads: dict[str, np.ndarray] = {}
    hooks = []

    def lin_hook(name):
        def hook(_mod, inp, _out):
            x = inp[0].detach().double().abs().reshape(-1, inp[0].shape[-1]).mean(0).numpy()
            sums.setdefault(name, np.zeros((num_steps, x.size)))[step.index] += x
        return hook

    def head_hook(name):
        def hook(_mod, _inp, out):
            q, k, _ = (t.detach().double() for t in out)
            sc = (q.abs().mean(dim=(0, 2, 3)) + k.abs().mean(dim=(0, 2, 3))).numpy() / 2
            heads.setdefault(name, np.zeros((num_steps, sc.size)))[step.index] += sc
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and any(name.endswith("." + s) for s in GEMM_LAYERS):
            hooks.append(mod.register_forward_hook(lin_hook(name)))
        if isinstance(mod, SplitHeads):
            hooks.append(mod.register_forward_hook(head_hook(name.rpartition(".")[0])))
    try:
        def on_step(i, _t):
            step.index = i
        ddim_sample(model, labels, seeds, guidance, num_steps, on_step=on_step)
    finally:
        for h in hooks:
            h.remove()
    return Calibration(sums, heads)


#: The signature of a GEMM hook (:class:`QuantizedDiT`'s ``gemm``): ``gemm(name, step, a, w)``
#: gets the quantized operands of one accelerator GEMM, ``a`` ``[..., M, G]`` and ``w``
#: ``[..., N, G]`` with the same leading axes (none for a linear layer; the images for one
#: head's ``"blocks.3.attn.head1.qk"`` and ``"blocks.3.attn.head1.pv"``), and returns
#: ``[..., M, N]`` float32, which the model then uses instead of the golden GEMM's result.
GemmHook = Callable[[str, int, MXTensor, MXTensor], np.ndarray]


class _MXLinear:
    """``x @ W^T + b`` with A and W in MX and the golden GEMM (bias added on the host in FP32)."""

    def __init__(self, name: str, weight: np.ndarray, bias: np.ndarray, scheme: Scheme,
                 calib: "Calibration | None", step: _Step, emulation: str,
                 gemm: "GemmHook | None" = None) -> None:
        self.name, self.w, self.b, self.scheme, self.calib, self.step = (
            name, weight, bias, scheme, calib, step)
        self.exact = emulation == "exact" or gemm is not None
        self.gemm = gemm
        self._wq: dict = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        k = self.w.shape[1]
        flat = x.reshape(-1, k)
        sc = self.scheme
        if sc.is_mixdit:
            plan = self.calib.linear_plan(self.name, self.step.index, sc.p1)
            perm, a_fmts = plan.perm, list(plan.a_formats)
            key = perm.tobytes()
        else:
            perm, a_fmts, key = None, sc.a, None
        if key not in self._wq:
            w = self.w if perm is None else self.w[:, perm]
            wq = quantize(w, sc.w)
            self._wq[key] = wq if self.exact else np.ascontiguousarray(wq.dequantize().T)
        a = quantize(flat if perm is None else flat[:, perm], a_fmts)
        if self.gemm is not None:
            y = self.gemm(self.name, self.step.index, a, self._wq[key]) + self.b
        elif self.exact:
            y = mx_matmul(a, self._wq[key]) + self.b
        else:
            y = a.dequantize() @ self._wq[key] + self.b
        return y.reshape(x.shape[:-1] + (self.w.shape[0],)).astype(np.float32)


def _fake_linear(weight: np.ndarray, bias: np.ndarray, scheme: Scheme) -> Callable:
    fq = QUANTIZERS[scheme.quant]
    wq = np.ascontiguousarray(np.asarray(fq.weight(weight), dtype=np.float32).T)
    return lambda x: (np.asarray(fq.act(x), dtype=np.float32) @ wq + bias).astype(np.float32)


def _attention_pair(name: str, scheme: Scheme, calib: "Calibration | None", step: _Step,
                    emulation: str, gemm: "GemmHook | None" = None):
    """The Q K^T and P V callables of one attention layer, on torch tensors ``[B, H, m, k]``
    and ``[B, H, k, n]``."""
    import torch

    def mx(a: np.ndarray, bt: np.ndarray, heads_fmt: list[str], product: str) -> np.ndarray:
        # a [B, H, M, K]; bt [B, H, K, N] -> B operand [B, H, N, K] grouped along K.
        b = np.ascontiguousarray(np.swapaxes(bt, -1, -2))
        out = np.empty(a.shape[:-1] + (b.shape[-2],), dtype=np.float32)
        for fmt in sorted(set(heads_fmt)):
            idx = [h for h, f in enumerate(heads_fmt) if f == fmt]
            qa, qb = quantize(a[:, idx], fmt), quantize(b[:, idx], fmt)
            if gemm is not None:
                for j, h in enumerate(idx):
                    out[:, h] = gemm(f"{name}.head{h}.{product}", step.index, qa[:, j], qb[:, j])
            elif emulation == "exact":
                out[:, idx] = mx_matmul_batched(qa, qb)
            else:
                out[:, idx] = np.matmul(qa.dequantize(), np.swapaxes(qb.dequantize(), -1, -2))
        return out

    def fake(a: np.ndarray, bt: np.ndarray) -> np.ndarray:
        fq = QUANTIZERS[scheme.quant]
        op = fq.attn or fq.act
        qa = op(a)
        qb = op(np.ascontiguousarray(np.swapaxes(bt, -1, -2)))
        return np.matmul(qa, np.swapaxes(qb, -1, -2)).astype(np.float32)

    def wrap(product: str):
        def matmul(a: "torch.Tensor", bt: "torch.Tensor") -> "torch.Tensor":
            an = a.detach().float().numpy()
            bn = bt.detach().float().numpy()
            if scheme.kind == "mx":
                h = an.shape[1]
                if scheme.is_mixdit:
                    fmts = calib.head_formats(name, step.index, scheme.p2)
                else:
                    fmts = [scheme.a] * h
                out = mx(an, bn, fmts, product)
            else:
                out = fake(an, bn)
            return torch.from_numpy(out)
        return matmul

    return wrap("qk"), wrap("pv")


def _torch_module(fn: Callable):
    """An ``nn.Module`` calling the NumPy function ``fn`` on its input (float32 in and out)."""
    import torch

    class NumpyLinear(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(fn(x.detach().float().numpy()))

    return NumpyLinear()


class QuantizedDiT:
    """A copy of a DiT whose accelerator GEMMs run under ``scheme`` (context manager free).

    Parameters
    ----------
    model : golden.dit.DiT
        The FP32 model (not modified: a deep copy is changed).
    scheme : Scheme
    calib : Calibration, optional
        Needed by MixDiT schemes.
    emulation : str
        ``"exact"``: MX GEMMs through the bit-exact golden model; ``"fake"``: the same quantized
        operands dequantized (exactly, spec §1.1) and multiplied by a float32 BLAS matmul, which
        differs from the accelerator only in the FP32 accumulation order (about 40x faster;
        ``tests/test_quality.py`` bounds the difference).
    gemm : GemmHook, optional
        MX schemes: called for every accelerator GEMM instead of the golden GEMM (whatever the
        emulation); :mod:`sim.model` runs them on the RTL through it.
    """

    def __init__(self, model, scheme: Scheme, calib: "Calibration | None" = None,
                 emulation: str = "fake", gemm: "GemmHook | None" = None) -> None:
        import copy

        from ..dit import replace_linears, set_attention_matmuls

        if emulation not in EMULATIONS:
            raise ValueError(f"emulation must be one of {EMULATIONS}, not {emulation!r}")
        if gemm is not None and scheme.kind != "mx":
            raise ValueError(f"a GEMM hook needs an MX scheme, not {scheme.kind!r}")
        if scheme.is_mixdit and calib is None:
            raise ValueError("MixDiT needs a calibration (channel orders and head scores)")
        self.step = _Step()
        self.model = copy.deepcopy(model)
        self.scheme = scheme
        if scheme.kind == "fp32":
            return
        if scheme.kind in METHOD_KINDS:
            from .methods import install

            install(self.model, scheme, calib)
            return

        def linear(name, lin):
            w = lin.weight.detach().float().numpy().copy()
            b = lin.bias.detach().float().numpy().copy()
            if scheme.kind == "mx":
                return _torch_module(_MXLinear(name, w, b, scheme, calib, self.step, emulation,
                                               gemm))
            return _torch_module(_fake_linear(w, b, scheme))

        replace_linears(self.model, linear)
        set_attention_matmuls(self.model, lambda name: _attention_pair(name, scheme, calib,
                                                                       self.step, emulation, gemm))

    def on_step(self, index: int, _t: int) -> None:
        """The sampler's ``on_step`` callback: the reordering tables are per timestep."""
        self.step.index = index


def sample(model, scheme: Scheme, labels: Sequence[int], seeds: Sequence[int],
           calib: "Calibration | None" = None, guidance: float = 2.0, num_steps: int = 25,
           batch: int = 100, progress: "Callable[[int], None] | None" = None,
           emulation: str = "fake", gemm: "GemmHook | None" = None) -> np.ndarray:
    """Class-conditional samples ``[n, C, H, W]`` of ``model`` under ``scheme`` (DDIM, CFG).

    ``gemm`` replaces every accelerator GEMM (see :class:`QuantizedDiT`).

    NumPy's BLAS runs on one thread here: its small matmuls spent most of their time spinning at
    thread barriers on a loaded two-core machine (8.4 ms of CPU against 0.66 ms single-threaded
    for a 640 x 128 x 384 product, measured).
    """
    from threadpoolctl import threadpool_limits

    from ..dit import ddim_sample

    q = QuantizedDiT(model, scheme, calib, emulation, gemm)
    out = []
    with threadpool_limits(1):
        for start in range(0, len(labels), batch):
            lab, sd = labels[start:start + batch], seeds[start:start + batch]
            out.append(ddim_sample(q.model, lab, sd, guidance, num_steps,
                                   on_step=q.on_step).numpy())
            if progress is not None:
                progress(len(lab))
    return np.concatenate(out)


@dataclass(frozen=True)
class EvalResult:
    """One scheme's figures (:class:`golden.quality.fidelity.Fidelity`) under its label."""

    scheme: str
    fidelity: "object"

    def as_dict(self) -> dict:
        return {"scheme": self.scheme, **self.fidelity.as_dict()}


def cache_key(**parts) -> str:
    """A short stable hash of ``parts`` (JSON-serialisable) for cache file names."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def eval_labels(n: int, num_classes: int) -> tuple[list[int], list[int]]:
    """The labels (``i % classes``) and seeds (``i``) of an evaluation of ``n`` samples."""
    return [i % num_classes for i in range(n)], list(range(n))


def evaluate(model, scheme: Scheme, n: int, calib: "Calibration | None", guidance: float,
             num_steps: int, reference: np.ndarray, judge, batch: int = 100,
             progress: "Callable[[int], None] | None" = None,
             emulation: str = "fake") -> tuple[EvalResult, np.ndarray]:
    """Sample ``n`` images (label ``i % 10``, seed ``i``) under ``scheme`` and score them.

    ``reference`` holds the FP32 images of the same labels and seeds (pass the FP32 run's own
    images for the FP32 row); ``judge`` is a :class:`golden.quality.fidelity.Judge`.
    """
    labels, seeds = eval_labels(n, model.cfg.num_classes)
    imgs = sample(model, scheme, labels, seeds, calib, guidance, num_steps, batch, progress,
                  emulation)
    return EvalResult(scheme.name, judge.score(imgs, labels, reference)), imgs
