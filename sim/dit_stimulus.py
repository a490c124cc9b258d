"""Stimulus drawn from real DiT activations for every cocotb testbench (spec §6, §7).

The activations are a capture of :mod:`golden.dit.capture`: the shipped fixture
(``golden/dit/data/fixture_capture.npz``) unless the environment variable ``MIXDIT_CAPTURE``
names another capture file (``pytest --capture-file`` sets it, tests/conftest.py). The weights
are the shipped checkpoint's (or ``MIXDIT_CHECKPOINT``'s), read with safetensors' NumPy loader so
that a cocotb process does not import torch; their fp16 values convert to float32 exactly, as
:func:`golden.layer.block_params` gives them.

Each layer is calibrated as :mod:`sim.layer` does for ``simulate-layer``
(:func:`golden.layer.calibrate_block`, the command's default ``p1`` and ``p2``), so the stimulus
is what the accelerator meets: a linear layer's A reordered by its calibrated channel order with
the last groups in MX9, its W in MX6 in the same order; an attention head's Q and K in the head's
calibrated format. The references stay golden (:mod:`golden.gemm`, :mod:`golden.mx`).

What each testbench takes from here:

* the PE: :func:`pe_dots`, dot products of a layer's A rows with W rows (qkv, fc1, fc2 and
  ``Q K^T`` of a head);
* the array: :func:`layer_tile`, a tile-sized slice of a layer's real GEMM, or of a head's;
* the converter: :func:`converter_groups`, a real layer's FP32 outputs in its consumer's order,
  grouped, with the consumer's MX6/MX9 map;
* the controller: :func:`controller_layer`, a layer's real input activations with its calibrated
  order table and MX6/MX9 map;
* the accelerator top: :func:`top_layer`, a whole linear layer (or its first tokens) with its
  consumer's order table and MX6/MX9 map, calibrated bank-conflict-free for the top's columns as
  ``simulate-layer`` calibrates them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.formats import GROUP_SIZE, MX6, MX9
from golden.mx import MXTensor, quantize

__all__ = ["CAPTURE_ENV", "CHECKPOINT_ENV", "P1", "P2", "LAYERS", "capture_path", "Layer",
           "FIXTURE", "CHECKPOINT", "load_layer", "pe_dots", "layer_tile", "converter_groups", "controller_layer",
           "top_layer", "describe"]

#: Environment variables naming another capture / checkpoint.
CAPTURE_ENV = "MIXDIT_CAPTURE"
CHECKPOINT_ENV = "MIXDIT_CHECKPOINT"
#: ``simulate-layer``'s defaults: share of A's channels and of attention heads in MX9.
P1, P2 = 0.05, 0.2
#: The linear layers and attention, by their capture names.
LAYERS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "attn")


def _dit_dir() -> Path:
    # golden.dit's directory without running its __init__ (which imports torch).
    spec = importlib.util.find_spec("golden.dit")
    return Path(spec.submodule_search_locations[0])


#: The shipped fixture and checkpoint: golden.dit.capture.FIXTURE_PATH and
#: golden.dit.checkpoint.CHECKPOINT_PATH (tests/test_dit_stimulus.py checks they agree).
FIXTURE = _dit_dir() / "data" / "fixture_capture.npz"
CHECKPOINT = _dit_dir() / "weights" / "dit_digits.safetensors"


def capture_path() -> Path:
    """The capture the testbenches draw from: ``$MIXDIT_CAPTURE``, else the shipped fixture."""
    env = os.environ.get(CAPTURE_ENV)
    return Path(env) if env else FIXTURE


def _checkpoint_path() -> Path:
    env = os.environ.get(CHECKPOINT_ENV)
    return Path(env) if env else CHECKPOINT


@functools.lru_cache(maxsize=2)
def _capture(path: str) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no capture at {path} (${CAPTURE_ENV})")
    with np.load(path, allow_pickle=False) as data:   # as golden.dit.capture.load_capture
        acts = {k: data[k] for k in data.files}
    if "meta/blocks" not in acts or "meta/timesteps" not in acts:
        raise ValueError(f"{path} is not a capture (no meta/blocks, meta/timesteps)")
    return acts


@functools.lru_cache(maxsize=2)
def _weights(path: str) -> tuple[dict, int]:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    with safe_open(path, framework="numpy") as f:
        cfg = json.loads((f.metadata() or {})["config"])
    w = {k: v.astype(np.float32) for k, v in load_file(path).items()}
    return w, int(cfg["num_heads"])


@dataclass(frozen=True)
class Layer:
    """One captured layer at one timestep, calibrated.

    Attributes
    ----------
    name : str
        ``blocks.{b}.{kind}/t{T}``.
    a, w : MXTensor
        The GEMM's operands as the accelerator gets them (a linear layer: the reordered A, MX6
        W; attention: the first image's first calibrated head, Q against K).
    x : numpy.ndarray
        The FP32 input activations ``[M, K]`` (before the reorder).
    perm : numpy.ndarray
        The calibrated channel order (identity for attention).
    mx9 : numpy.ndarray of bool
        The calibrated MX9 map of A's groups.
    out : numpy.ndarray
        The layer's FP32 GEMM result ``[M, N]`` (golden, bit-exact to the RTL's; what the top's
        converter sees behind the array, as in :func:`sim.layer.run_on_top`).
    consumer : (str, numpy.ndarray, tuple of str) or None
        The GEMM that consumes ``out``, its channel order and its per-group formats.
    """

    name: str
    a: MXTensor
    w: MXTensor
    x: np.ndarray
    perm: np.ndarray
    mx9: np.ndarray
    out: np.ndarray
    consumer: "tuple[str, np.ndarray, tuple[str, ...]] | None"


def _pick(values, want):
    values = sorted(int(v) for v in values)
    return want if want in values else values[len(values) // 2]


def load_layer(kind: str = "mlp.fc1", block: "int | None" = None,
               timestep: "int | None" = None, head: "int | None" = None,
               banks: "int | None" = None) -> Layer:
    """Calibrate and quantize layer ``kind`` (one of :data:`LAYERS`) of ``block`` at
    ``timestep`` (by default the capture's first block and its middle timestep) of the capture
    :func:`capture_path` names; cached per capture. With ``banks``, every channel order is the
    bank-conflict-free one for that many output-buffer banks
    (:func:`golden.layer.calibrate_block`), as ``simulate-layer`` calibrates for the top."""
    return _load_layer(str(capture_path()), str(_checkpoint_path()), kind, block, timestep, head,
                       banks)


@functools.lru_cache(maxsize=16)
def _load_layer(capture: str, checkpoint: str, kind: str, block: "int | None",
                timestep: "int | None", head: "int | None", banks: "int | None") -> Layer:
    from golden.gemm import mx_matmul
    from golden.layer import calibrate_block, consumer_plan

    if kind not in LAYERS:
        raise ValueError(f"unknown layer {kind!r}; expected one of {LAYERS}")
    acts = _capture(capture)
    blocks = [int(b) for b in acts["meta/blocks"]]
    b = blocks[0] if block is None else block
    steps = [int(t) for t in acts["meta/timesteps"]]
    t = sorted(steps)[len(steps) // 2] if timestep is None else timestep
    if b not in blocks or t not in steps:
        raise ValueError(f"block {b} / timestep {t} not in the capture (blocks {blocks}, "
                         f"timesteps {steps})")
    weights, num_heads = _weights(checkpoint)
    plans = calibrate_block(acts, b, t, P1, P2, banks)
    nxt = calibrate_block(acts, b + 1, t, P1, P2, banks) if b + 1 in blocks else None
    key = f"blocks.{b}.{kind}/t{t}"
    if kind == "attn":
        q, k = acts[f"blocks.{b}.attn.q/t{t}"], acts[f"blocks.{b}.attn.k/t{t}"]
        h = head if head is not None else int(np.argmax([f == MX9.name for f in plans.heads]))
        fmt = plans.heads[h]
        x = np.ascontiguousarray(q[0, h])
        a, w = quantize(x, fmt), quantize(np.ascontiguousarray(k[0, h]), fmt)
        perm = np.arange(x.shape[1])
        out = mx_matmul(a, w)
        consumer = None
        name = f"blocks.{b}.attn.img0.head{h} ({fmt}) Q K^T/t{t}"
    else:
        x = acts[key].reshape(-1, acts[key].shape[-1])
        plan = plans.linear[kind]
        perm = np.asarray(plan.perm, dtype=np.int64)
        a = quantize(x[:, perm], list(plan.a_formats))
        w = quantize(weights[f"blocks.{b}.{kind}.weight"][:, perm], MX6.name)
        out = mx_matmul(a, w)
        head_dim = weights[f"blocks.{b}.attn.qkv.weight"].shape[1] // num_heads
        consumer = consumer_plan(kind, plans, nxt, head_dim)
        name = key
    mx9 = a.fmt == MX9.code
    return Layer(name, a, w, x, perm, mx9, out, consumer)


def describe(layer: Layer) -> str:
    """``"blocks.0.mlp.fc1/t480: A 32 x 128 (1 of 8 groups MX9), W 512 x 128"``."""
    return (f"{layer.name}: A {layer.a.shape[0]} x {layer.a.length} ({int(layer.mx9.sum())} of "
            f"{layer.a.groups} groups MX9), W {layer.w.shape[0]} x {layer.w.length}, from "
            f"{capture_path().name}")


def pe_dots(kinds=("attn.qkv", "mlp.fc1", "mlp.fc2", "attn"), per_layer: int = 4,
            seed: int = 0, timestep: "int | None" = None) -> list:
    """Real dot products (:class:`sim.pe_stimulus.DotCase`): ``per_layer`` (row of A, row of W)
    pairs of each layer in ``kinds``, drawn with ``seed``; the first pair of each layer is the
    largest |result| of the layer (the extremes matter for rounding)."""
    from sim.pe_stimulus import DotCase, expected_bits

    rng = np.random.default_rng(seed)
    cases = []
    for kind in kinds:
        lay = load_layer(kind, timestep=timestep)
        m, n = lay.a.shape[0], lay.w.shape[0]
        picks = [tuple(int(v) for v in np.unravel_index(np.argmax(np.abs(lay.out)), lay.out.shape))]
        picks += [(int(rng.integers(m)), int(rng.integers(n))) for _ in range(per_layer - 1)]
        for i, j in picks:
            a, b = lay.a[i], lay.w[j]
            cases.append(DotCase(a, b, expected_bits(a, b)))
    return cases


def layer_tile(kind: str, rows: int, cols: int, *, seed: int = 0,
               timestep: "int | None" = None) -> tuple[MXTensor, MXTensor, str]:
    """A slice of layer ``kind``'s real GEMM of ``rows`` A rows and ``cols`` W rows (at most the
    layer's), from a random offset drawn with ``seed``, and a description."""
    lay = load_layer(kind, timestep=timestep)
    rng = np.random.default_rng(seed)
    m, n = lay.a.shape[0], lay.w.shape[0]
    rows, cols = min(rows, m), min(cols, n)
    i0, j0 = int(rng.integers(0, m - rows + 1)), int(rng.integers(0, n - cols + 1))
    a, w = lay.a[i0:i0 + rows], lay.w[j0:j0 + cols]
    return a, w, f"{lay.name} rows {i0}:{i0 + rows} x W rows {j0}:{j0 + cols}"


def converter_groups(kind: str = "mlp.fc1", tokens: "int | None" = None,
                     timestep: "int | None" = None) -> tuple[np.ndarray, np.ndarray, str]:
    """A real layer's FP32 outputs as the converter sees them: ``[G, 16]`` uint32 groups in the
    consumer's channel order (first ``tokens`` tokens), and the consumer's format codes
    (0 MX6, 1 MX9) of each group."""
    lay = load_layer(kind, timestep=timestep)
    if lay.consumer is None:
        raise ValueError(f"{lay.name} has no consumer to convert for")
    name, perm, fmts = lay.consumer
    out = lay.out[:tokens] if tokens else lay.out
    reordered = np.ascontiguousarray(out[:, perm], dtype=np.float32)
    groups = reordered.view(np.uint32).reshape(-1, GROUP_SIZE)
    codes = np.array([MX9.code if f == MX9.name else MX6.code for f in fmts], dtype=np.int64)
    return groups, np.tile(codes, out.shape[0]), f"{lay.name} output for {name}"


def controller_layer(kind: str, channels: int, tokens: int, *,
                     timestep: "int | None" = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """A layer's real input activations and its calibrated table entry for a controller of
    ``channels`` channels: ``(acts [tokens, K], order [K], mx9 [K / 16] bool, description)``.

    When the layer has more channels than the controller, its first ``channels`` channels are
    taken and calibrated on the same captured activations, as the offline calibration would
    calibrate a layer of that width (golden.mixdit.plan_linear, p1 = :data:`P1`)."""
    from golden.mixdit import plan_linear

    lay = load_layer(kind, timestep=timestep)
    x = lay.x
    if x.shape[1] > channels:
        x = x[:, :channels]
        plan = plan_linear(x, P1)
        perm = np.asarray(plan.perm, dtype=np.int64)
        mx9 = np.array([f == MX9.name for f in plan.a_formats], dtype=bool)
        what = f"{lay.name} channels 0:{channels}"
    else:
        perm, mx9, what = lay.perm, lay.mx9, lay.name
    return np.ascontiguousarray(x[:tokens], dtype=np.float32), perm, mx9, what


def top_layer(kind: str, banks: int, tokens: "int | None" = None, *, block: "int | None" = None,
              timestep: "int | None" = None) -> tuple[MXTensor, MXTensor, np.ndarray, tuple, str]:
    """A real linear layer as the accelerator top runs it (spec §3-§5): ``(a, w, order, formats,
    description)``: its A (first ``tokens`` rows, all by default) and W operands, and its
    consumer's channel order (int64 ``[N]``) and per-group formats (``"mx6"``/``"mx9"``), every
    order calibrated bank-conflict-free for ``banks`` (the top's array columns), as
    ``simulate-layer`` runs it (sim/layer.py). Every output channel is kept: the consumer's
    order is a permutation of all of them.

    Raises
    ------
    ValueError
        For attention (several GEMMs, not one) or a layer with no consumer in the capture (the
        last captured block's ``mlp.fc2``).
    """
    if kind == "attn":
        raise ValueError("top_layer takes a linear layer; attention is several GEMMs")
    lay = load_layer(kind, block=block, timestep=timestep, banks=banks)
    if lay.consumer is None:
        raise ValueError(f"{lay.name} has no consumer in {capture_path().name}")
    name, perm, fmts = lay.consumer
    m = lay.a.shape[0] if tokens is None else min(tokens, lay.a.shape[0])
    what = (f"{lay.name} tokens 0:{m} of {lay.a.shape[0]}, {m} x {lay.a.length} x "
            f"{lay.w.shape[0]}, {int(lay.mx9.sum())} of {lay.a.groups} A groups MX9, into "
            f"{name} ({sum(f == MX9.name for f in fmts)} of {len(fmts)} groups MX9)")
    return lay.a[:m], lay.w, np.asarray(perm, dtype=np.int64), tuple(fmts), what
