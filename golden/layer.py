"""A DiT layer or whole block as the accelerator runs it, with a pluggable GEMM (spec §4, §6).

Every GEMM of a block (the four linear layers ``attn.qkv``, ``attn.proj``, ``mlp.fc1``,
``mlp.fc2``, and per head QK^T and softmax(.)V) goes through one callable, the *backend*,

    backend(a: MXTensor [M, G], w: MXTensor [N, G]) -> (float32 [M, N], info: dict)

:func:`golden_backend` is the bit-exact golden model (:func:`golden.gemm.mx_matmul`); the RTL
backend of :mod:`sim.layer` runs the same operands on the array's Verilog. Everything else is host
FP32 NumPy shared by both runs (spec §4: layer norm, adaLN modulation, softmax, GELU, residual
adds, and the ``nn.Linear`` biases, which are added in FP32 after the GEMM), so a block whose GEMMs
agree bit for bit gives the same output bit for bit.

The MixDiT plan of a layer at a timestep (channel order and MX6/MX9 map of A, spec §4; head
formats of attention) is calibrated on the FP32 activations captured for that layer and timestep,
then applied to whatever activations reach the layer (in a block run, the quantized run's own).

Schemes (:data:`SCHEMES`): ``"mixdit"`` (the plan), ``"mx6"`` and ``"mx9"`` (every A group in that
format, no reordering; W always MX6; attention operands all in that format) and ``"fp32"`` (the
reference: float64 products rounded to float32, no quantization).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .formats import GROUP_SIZE, MX6
from .gemm import mx_matmul
from .mixdit import LinearPlan, head_formats, head_scores, plan_linear, softmax
from .mx import MXTensor, quantize

__all__ = [
    "LINEAR_KINDS", "ATTN_KIND", "SCHEMES", "Backend", "golden_backend", "LayerName",
    "parse_layer", "layer_names", "GemmRecord", "Runner", "BlockParams", "block_params",
    "BlockPlans", "calibrate_block", "Executor", "layernorm", "gelu_tanh", "silu", "run_block",
    "consumer_plan", "split_heads",
]

#: The linear layers of a block (suffixes of ``blocks.{b}.``), in the order a block runs them.
LINEAR_KINDS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
#: The attention layer: QK^T and softmax(.)V per head.
ATTN_KIND = "attn"
#: Quantization schemes an :class:`Executor` runs.
SCHEMES: tuple[str, ...] = ("mixdit", "mx6", "mx9", "fp32")

Backend = Callable[[MXTensor, MXTensor], "tuple[np.ndarray, dict]"]


def golden_backend(a: MXTensor, w: MXTensor) -> tuple[np.ndarray, dict]:
    """The golden GEMM (spec §2.1, §1.3) in the backend signature; ``info`` is empty."""
    return mx_matmul(a, w), {}


@dataclass(frozen=True)
class LayerName:
    """A GEMM layer of the DiT: ``blocks.{block}.{kind}``, kind in :data:`LINEAR_KINDS` or
    ``"attn"``."""

    block: int
    kind: str

    def __str__(self) -> str:
        return f"blocks.{self.block}.{self.kind}"

    @property
    def is_attention(self) -> bool:
        return self.kind == ATTN_KIND


def layer_names(blocks) -> list[str]:
    """Every layer name of the given blocks, in block order."""
    return [f"blocks.{b}.{k}" for b in blocks for k in (*LINEAR_KINDS, ATTN_KIND)]


def parse_layer(name: str, blocks) -> LayerName:
    """Parse ``blocks.3.mlp.fc1`` (or ``blocks.3.attn``) against the available ``blocks``.

    Raises
    ------
    ValueError
        With the valid names in the message when ``name`` is not one of them.
    """
    found = re.fullmatch(r"blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2|attn)", name)
    if found is None or int(found.group(1)) not in set(blocks):
        valid = layer_names(blocks)
        shown = ", ".join(valid[:10]) + (f", ... ({len(valid)} in all)" if len(valid) > 10 else "")
        raise ValueError(f"no layer {name!r}; valid layers: {shown}")
    return LayerName(int(found.group(1)), found.group(2))


@dataclass
class GemmRecord:
    """One GEMM a :class:`Runner` ran: its name, shape, formats, result and the backend's info."""

    name: str
    a: MXTensor
    w: MXTensor
    c: np.ndarray
    info: dict

    @property
    def mnk(self) -> tuple[int, int, int]:
        return self.a.shape[0], self.w.shape[0], self.a.length


@dataclass
class Runner:
    """Runs named GEMMs through a backend and keeps a record of each (for reports and checks)."""

    backend: Backend = golden_backend
    records: list[GemmRecord] = field(default_factory=list)
    keep: bool = True

    def gemm(self, name: str, a: MXTensor, w: MXTensor) -> np.ndarray:
        c, info = self.backend(a, w)
        if self.keep:
            self.records.append(GemmRecord(name, a, w, c, info))
        return c


@dataclass(frozen=True)
class BlockParams:
    """The weights of one DiT block as float32 NumPy (``nn.Linear`` layout ``[N, K]``, bias ``[N]``)."""

    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    num_heads: int


def block_params(model, block: int) -> BlockParams:
    """Read block ``block`` of a :class:`golden.dit.model.DiT` (its four GEMM layers and adaLN)."""
    blk = model.blocks[block]
    mods = {k: blk.get_submodule(k) for k in LINEAR_KINDS}
    mods["adaLN"] = blk.adaLN_modulation[1]
    weights = {k: m.weight.detach().float().numpy().copy() for k, m in mods.items()}
    biases = {k: m.bias.detach().float().numpy().copy() for k, m in mods.items()}
    return BlockParams(weights, biases, model.cfg.num_heads)


@dataclass(frozen=True)
class BlockPlans:
    """The MixDiT plans of one block at one timestep (spec §4): one per linear layer and the
    per-head formats of attention."""

    linear: dict[str, LinearPlan]
    heads: tuple[str, ...]


def calibrate_block(acts: dict[str, np.ndarray], block: int, timestep: int, p1: float,
                    p2: float, banks: "int | None" = None) -> BlockPlans:
    """Calibrate every plan of ``block`` at ``timestep`` from captured activations (npz keys of
    :mod:`golden.dit.capture`); ``banks`` as for :func:`golden.mixdit.plan_linear` (the
    bank-conflict-free orders the top reads at full rate)."""
    key = lambda layer: f"blocks.{block}.{layer}/t{timestep}"
    linear = {k: plan_linear(acts[key(k)], p1, banks) for k in LINEAR_KINDS}
    heads = head_formats(head_scores(acts[key("attn.q")], acts[key("attn.k")]), p2)
    return BlockPlans(linear, tuple(heads))


def consumer_plan(kind: str, plans: BlockPlans, next_plans: "BlockPlans | None",
                  head_dim: int) -> "tuple[str, np.ndarray, tuple[str, ...]] | None":
    """The GEMM that consumes ``kind``'s output and the order and map its A operand needs.

    ``attn.proj -> mlp.fc1``, ``mlp.fc1 -> mlp.fc2``, ``attn -> attn.proj`` within the block,
    ``mlp.fc2 -> attn.qkv`` of the next block (``next_plans``, None at the last block), and
    ``attn.qkv -> attn``: the Q, K and V heads in channel order, each group in its head's format.

    Returns
    -------
    (str, numpy.ndarray, tuple of str) or None
        Consumer's name, channel order (int64 ``[N]``) and per-group formats; None if unknown.
    """
    nxt = {"attn.proj": ("mlp.fc1", plans), "mlp.fc1": ("mlp.fc2", plans),
           "attn": ("attn.proj", plans), "mlp.fc2": ("next block's attn.qkv", next_plans)}
    if kind in nxt:
        name, src = nxt[kind]
        if src is None:
            return None
        plan = src.linear[name.rsplit(" ", 1)[-1]]
        return name, plan.perm, plan.a_formats
    groups_per_head = -(-head_dim // GROUP_SIZE)
    fmts = tuple(f for _ in range(3) for f in plans.heads for _ in range(groups_per_head))
    return "attn (Q, K, V heads)", np.arange(3 * len(plans.heads) * head_dim), fmts


def layernorm(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Layer norm over the last axis without affine parameters, FP32 on the host."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    var = np.square(x - mean).mean(axis=-1, keepdims=True, dtype=np.float32)
    return ((x - mean) / np.sqrt(var + np.float32(eps))).astype(np.float32)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (DiT's MLP), FP32 on the host."""
    x = np.asarray(x, dtype=np.float32)
    c = np.float32(math.sqrt(2.0 / math.pi))
    inner = c * (x + np.float32(0.044715) * x * x * x)
    return (np.float32(0.5) * x * (np.float32(1) + np.tanh(inner))).astype(np.float32)


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU, FP32 on the host."""
    x = np.asarray(x, dtype=np.float32)
    return (x / (np.float32(1) + np.exp(-x))).astype(np.float32)


def _fp32_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float64) @ np.asarray(w, np.float64).T).astype(np.float32)


@dataclass
class Executor:
    """Runs linear layers and attention under one scheme (spec §4), GEMMs through ``runner``.

    Parameters
    ----------
    scheme : {"mixdit", "mx6", "mx9", "fp32"}
    plans : BlockPlans
        Used by ``"mixdit"`` (channel orders, MX9 maps, head formats).
    rounding : {"trunc", "rne"}
    runner : Runner
        The GEMM backend and its records (unused by ``"fp32"``).
    """

    scheme: str
    plans: BlockPlans
    rounding: str = "trunc"
    runner: Runner = field(default_factory=Runner)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; expected one of {SCHEMES}")

    def linear(self, name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``x @ w.T + b`` for ``x`` ``[M, K]``: the GEMM on the backend, the bias in FP32."""
        kind = name.split(".", 2)[2]
        if self.scheme == "fp32":
            c = _fp32_matmul(x, w)
        else:
            if self.scheme == "mixdit":
                plan = self.plans.linear[kind]
                perm, fmts = plan.perm, list(plan.a_formats)
            else:
                perm, fmts = np.arange(x.shape[-1]), self.scheme
            a = quantize(np.asarray(x)[:, perm], fmts, self.rounding)
            wq = quantize(np.asarray(w)[:, perm], MX6.name, self.rounding)
            c = self.runner.gemm(name, a, wq)
        return (c + b.astype(np.float32)).astype(np.float32)

    def head_format(self, h: int) -> str:
        return self.plans.heads[h] if self.scheme == "mixdit" else self.scheme

    def attention(self, name: str, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Multi-head attention of ``q, k, v`` ``[B, H, N, d]`` -> ``[B, N, H * d]``.

        Per image and head: ``S = Q K^T`` and ``O = P V`` on the backend with both operands in
        the head's format (V enters as ``V^T``, grouped along tokens, spec §1.1), the scaling
        by ``1/sqrt(d)`` and the softmax on the host in FP32 (as :func:`golden.mixdit.attention_head`).
        """
        bsz, heads, tokens, d = q.shape
        out = np.empty((bsz, tokens, heads * d), dtype=np.float32)
        scale = np.float32(1.0 / math.sqrt(d))
        for i in range(bsz):
            for h in range(heads):
                qh, kh, vt = q[i, h], k[i, h], np.ascontiguousarray(v[i, h].T)
                if self.scheme == "fp32":
                    p = softmax(_fp32_matmul(qh, kh) * scale)
                    o = _fp32_matmul(p, vt)
                else:
                    fmt, r = self.head_format(h), self.rounding
                    tag = f"{name}.img{i}.head{h}"
                    s = self.runner.gemm(f"{tag}.qk", quantize(qh, fmt, r), quantize(kh, fmt, r))
                    p = softmax(s * scale)
                    o = self.runner.gemm(f"{tag}.pv", quantize(p, fmt, r), quantize(vt, fmt, r))
                out[i, :, h * d:(h + 1) * d] = o
        return out


def split_heads(qkv: np.ndarray, num_heads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[B, N, 3 * hidden]`` into Q, K, V ``[B, H, N, d]`` (:class:`golden.dit.model.SplitHeads`)."""
    b, n, c3 = qkv.shape
    heads = qkv.reshape(b, n, 3, num_heads, c3 // (3 * num_heads)).transpose(2, 0, 3, 1, 4)
    return (np.ascontiguousarray(heads[0]), np.ascontiguousarray(heads[1]),
            np.ascontiguousarray(heads[2]))


def run_block(x: np.ndarray, c: np.ndarray, params: BlockParams, ex: Executor,
              block: int) -> np.ndarray:
    """One DiT block (adaLN-Zero) on ``x`` ``[B, N, hidden]`` with conditioning ``c`` ``[B, hidden]``.

    The six GEMMs of the block go through ``ex``; adaLN modulation (``SiLU``, its linear layer, in
    FP32), layer norms, softmax, GELU, biases, gates and residual adds are host FP32 (spec §4).
    """
    x = np.asarray(x, dtype=np.float32)
    bsz, tokens, hidden = x.shape
    ada = (silu(c) @ params.weights["adaLN"].T + params.biases["adaLN"]).astype(np.float32)
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = np.split(ada, 6, axis=1)

    def modulate(h, shift, scale):
        return (h * (np.float32(1) + scale[:, None]) + shift[:, None]).astype(np.float32)

    def linear(kind, h):
        return ex.linear(f"blocks.{block}.{kind}", h, params.weights[kind], params.biases[kind])

    h = modulate(layernorm(x), shift_msa, scale_msa).reshape(-1, hidden)
    qkv = linear("attn.qkv", h).reshape(bsz, tokens, 3 * hidden)
    q, k, v = split_heads(qkv, params.num_heads)
    att = ex.attention(f"blocks.{block}.attn", q, k, v).reshape(-1, hidden)
    proj = linear("attn.proj", att).reshape(bsz, tokens, hidden)
    x = (x + gate_msa[:, None] * proj).astype(np.float32)
    h = modulate(layernorm(x), shift_mlp, scale_mlp).reshape(-1, hidden)
    mid = gelu_tanh(linear("mlp.fc1", h))
    out = linear("mlp.fc2", mid).reshape(bsz, tokens, hidden)
    return (x + gate_mlp[:, None] * out).astype(np.float32)
