"""Bit-exact simulation of a DiT layer or block on the accelerator's RTL (spec §4-§7).

What runs where
---------------
* GEMMs: every GEMM of the layer (or block) runs on the systolic array's Verilog through the
  file-driven harness (:func:`sim.harness.run_gemm`, Verilator or Icarus), and each FP32 result is
  compared bit for bit (as uint32 patterns) with the golden GEMM (:func:`golden.gemm.mx_matmul`);
  the first difference raises :class:`~sim.errors.CheckFailed` naming the GEMM and the element.
* Next-layer groups: the reorder-and-convert stage of the top (:class:`hw.reorder.Reorder`, the
  banked output buffer, the order table and the :class:`hw.mx_convert.MXConverter`, the same
  blocks :class:`hw.top.MixDiTTop` chains behind the array) runs in Amaranth's simulator on the
  RTL's FP32 output of the layer, with the consumer layer's channel order and MX6/MX9 map
  (:func:`golden.layer.consumer_plan`); every packed word is compared as an integer with
  ``golden.mx.pack(golden.mx.quantize(out[:, perm], formats, rounding))``. This stage is run
  separately, after the GEMM, not inside the harness's Verilog: the array and the converter are
  checked on the same data, each on its own RTL.
* Host: calibration, quantization of the operands, biases, softmax, layer norm, adaLN, GELU and
  residuals in FP32 NumPy (:mod:`golden.layer`), the same code for the golden and the RTL run.

Test hooks: ``flip=(gemm_index, row, col, bit)`` of :class:`RTLBackend`, or the environment
variable ``MIXDIT_TEST_FLIP_RTL="gemm_index,row,col,bit"``, flips one bit of one RTL result
before the check, so a test can see the check bite. ``MIXDIT_TEST_FLIP_GROUP="index,bit"`` does
the same to one packed next-layer word.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.quality import metrics
from golden.formats import GROUP_SIZE, MX9
from golden.gemm import mx_matmul
from golden.layer import (
    ATTN_KIND, LINEAR_KINDS, BlockPlans, Executor, LayerName, Runner, block_params, calibrate_block,
    consumer_plan, run_block,
)
from golden.mx import MXTensor, pack, quantize

from .errors import CheckFailed, UsageError

__all__ = [
    "CLASSES", "SEEDS", "Source", "load_source", "RTLBackend", "CheckedRunner",
    "reorder_stage", "simulate_layer", "simulate_block", "progress", "array_config",
    "check_capture_block", "check_flip_used", "FLIP_ENVS",
]

#: Classes and seeds of an on-the-fly capture (those of the fixture, golden.dit.capture).
CLASSES = (3, 7)
SEEDS = (0,)
_FLIP_ENV = "MIXDIT_TEST_FLIP_RTL"
_FLIP_GROUP_ENV = "MIXDIT_TEST_FLIP_GROUP"
#: The test hooks: (variable, count of integers, their names).
FLIP_ENVS = ((_FLIP_ENV, 4, "gemm_index,row,col,bit"), (_FLIP_GROUP_ENV, 2, "index,bit"))


def progress(msg: str) -> None:
    """A progress line on stderr (reports go to stdout)."""
    print(f"... {msg}", file=sys.stderr, flush=True)


@dataclass
class Source:
    """Activations and weights of the layers to simulate.

    Attributes
    ----------
    acts : dict
        Capture arrays keyed as in :mod:`golden.dit.capture`, plus ``blocks.{b}.input/t{T}`` and
        ``blocks.{b}.cond/t{T}`` (block input and conditioning) when captured here.
    model : golden.dit.model.DiT
        The model the weights come from.
    blocks : list of int
        Blocks whose activations are available.
    timesteps : list of int
        Timesteps available.
    origin : str
        Where the activations came from.
    """

    acts: dict
    model: object
    blocks: list
    timesteps: list
    origin: str


def _capture(model, blocks: list, timestep: int) -> dict:
    """Capture ``blocks`` at ``timestep`` with the fixture's classes and seeds, adding each
    block's input and conditioning (its forward pre-hook sees ``(x, c)``)."""
    import torch

    from golden.dit.capture import capture_hooks
    from golden.dit.diffusion import ddim_sample

    store: dict = {}
    state: dict = {"t": None}
    rows = len(CLASSES) * len(SEEDS)

    def block_hook(b):
        def hook(module, args):
            if state["t"] is not None:
                store[f"blocks.{b}.input/t{state['t']}"] = args[0][:rows].detach().float().numpy()
                store[f"blocks.{b}.cond/t{state['t']}"] = args[1][:rows].detach().float().numpy()
        return hook

    def on_step(_: int, t: int) -> None:
        state["t"] = t if t == timestep else None

    labels = [c for c in CLASSES for _ in SEEDS]
    seeds = [s for _ in CLASSES for s in SEEDS]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    handles = [model.blocks[b].register_forward_pre_hook(block_hook(b)) for b in blocks]
    try:
        with capture_hooks(model, blocks, rows, store, state), torch.no_grad():
            ddim_sample(model, labels, seeds, on_step=on_step)
    finally:
        for h in handles:
            h.remove()
        torch.set_num_threads(threads)
    return store


def load_source(checkpoint: "str | None", activations: "str | None", block: int,
                timestep: "int | None") -> tuple[Source, int]:
    """Load the model and the activations of ``block`` (and the next block, for its plan).

    Returns the source and the timestep (the middle one available when ``timestep`` is None).

    Raises
    ------
    UsageError
        For a missing checkpoint or capture file, a block or timestep that is not available
        (the message lists those that are).
    """
    from golden.dit.checkpoint import CHECKPOINT_PATH
    from golden.dit.diffusion import ddim_timesteps

    from .inputs import load_capture, load_dit

    ckpt = Path(checkpoint) if checkpoint else CHECKPOINT_PATH
    if not ckpt.is_file():
        raise UsageError(f"no DiT checkpoint at {ckpt}; give --checkpoint PATH (the shipped one "
                         "is golden/dit/weights/dit_digits.safetensors)")
    # The capture first: its checks are cheap, loading the model is not.
    acts = load_capture(activations) if activations else None
    model = load_dit(ckpt)
    depth = len(model.blocks)
    if activations:
        blocks = [int(b) for b in acts["meta/blocks"]]
        steps = [int(t) for t in acts["meta/timesteps"]]
        origin = os.path.relpath(activations) if not os.path.relpath(activations).startswith(
            "..") else str(activations)
    else:
        blocks = list(range(depth))
        steps = ddim_timesteps(25)
        origin = f"captured now from {ckpt.name} (classes {list(CLASSES)}, seeds {list(SEEDS)})"
    if block not in blocks:
        raise UsageError(f"block {block} is not available; valid blocks: "
                         f"{', '.join(map(str, blocks))}")
    if timestep is None:
        timestep = sorted(steps)[len(steps) // 2]
    if timestep not in steps:
        where = "the capture" if activations else "the 25-step sampler"
        raise UsageError(f"timestep {timestep} is not in {where}; valid timesteps: "
                         f"{', '.join(map(str, steps))}")
    if activations:
        for b in (block, block + 1):
            if b in blocks and b < depth:
                check_capture_block(acts, model, b, timestep, str(activations))
    if not activations:
        progress(f"capturing blocks {block}{'' if block + 1 >= depth else f', {block + 1}'} at "
                 f"t={timestep} from {ckpt}")
        acts = _capture(model, [b for b in (block, block + 1) if b < depth], timestep)
    return Source(acts, model, blocks, steps, origin), timestep


def check_capture_block(acts: dict, model, block: int, timestep: int, path: str) -> None:
    """A :class:`UsageError` unless the capture holds every array of ``block`` at ``timestep``
    with the shapes ``model`` needs: ``[..., K]`` linear inputs with the layer's K, and
    ``[images, heads, tokens, head_dim]`` Q, K and V."""
    params = block_params(model, block)
    heads = params.num_heads
    head_dim = params.weights["attn.qkv"].shape[1] // heads
    for kind in LINEAR_KINDS:
        w = params.weights[kind]
        key = f"blocks.{block}.{kind}/t{timestep}"
        if key not in acts:
            raise UsageError(f"capture {path!r} lacks {key!r}")
        x = acts[key]
        if x.ndim < 2 or x.shape[-1] != w.shape[1]:
            raise UsageError(f"capture {path!r}: {key!r} has shape {list(x.shape)}; the model's "
                             f"{kind} needs [..., K] with K = {w.shape[1]}")
    for part in "qkv":
        key = f"blocks.{block}.attn.{part}/t{timestep}"
        if key not in acts:
            raise UsageError(f"capture {path!r} lacks {key!r}")
        x = acts[key]
        if x.ndim != 4 or x.shape[1] != heads or x.shape[3] != head_dim:
            raise UsageError(f"capture {path!r}: {key!r} has shape {list(x.shape)}; the model "
                             f"needs [images, {heads} heads, tokens, {head_dim}]")


@dataclass
class RTLBackend:
    """The array's RTL as a GEMM backend (:data:`golden.layer.Backend`).

    Parameters
    ----------
    config : hw.config.ArrayConfig
    sim : {"verilator", "icarus"}
    vcd : path, optional
        Waves of the first GEMM (later GEMMs would overwrite them).
    flip : (int, int, int, int), optional
        Test hook: ``(gemm_index, row, col, bit)`` flips that bit of that RTL result.
    """

    config: object
    sim: str = "verilator"
    vcd: "str | None" = None
    flip: "tuple[int, int, int, int] | None" = None
    calls: int = 0

    def __post_init__(self) -> None:
        from .inputs import env_ints

        if self.flip is None:
            self.flip = env_ints(_FLIP_ENV, 4, "gemm_index,row,col,bit")

    def __call__(self, a: MXTensor, w: MXTensor) -> tuple[np.ndarray, dict]:
        from sim.harness import HarnessError, SimulatorMissing, run_gemm

        vcd = self.vcd if self.calls == 0 else None
        try:
            res = run_gemm(a, w, self.config, sim=self.sim, vcd=vcd)
        except SimulatorMissing as exc:
            raise UsageError(str(exc)) from None
        except HarnessError as exc:
            raise CheckFailed(f"the RTL run failed: {str(exc).splitlines()[0]}") from None
        c = res.c.copy()
        if self.flip is not None and self.flip[0] == self.calls:
            _, i, j, bit = self.flip
            if i >= c.shape[0] or j >= c.shape[1] or bit > 31:
                raise UsageError(f"{_FLIP_ENV}={','.join(map(str, self.flip))}: GEMM "
                                 f"{self.calls} is {c.shape[0]} x {c.shape[1]} FP32 results; "
                                 "row, col or bit (0..31) out of range")
            c.view(np.uint32)[i, j] ^= np.uint32(1 << bit)
        self.calls += 1
        return c, {"cycles": res.cycles, "sim_s": res.sim_s, "build_s": res.build_s}


@dataclass
class CheckedRunner(Runner):
    """A :class:`golden.layer.Runner` that checks every backend result against the golden GEMM,
    bit for bit, and raises :class:`CheckFailed` at the first difference (spec §6)."""

    verbose: bool = True

    def gemm(self, name: str, a: MXTensor, w: MXTensor) -> np.ndarray:
        if self.verbose:
            progress(f"{name}: {a.shape[0]} x {a.length} x {w.shape[0]} GEMM on the RTL")
        c = super().gemm(name, a, w)
        ref = mx_matmul(a, w)
        diff = c.view(np.uint32) != ref.view(np.uint32)
        if diff.any():
            i, j = map(int, np.argwhere(diff)[0])
            raise CheckFailed(
                f"{name}: RTL and golden differ in {int(diff.sum())} of {diff.size} FP32 results; "
                f"first C[{i}, {j}]: RTL 0x{int(c.view(np.uint32)[i, j]):08x}, golden "
                f"0x{int(ref.view(np.uint32)[i, j]):08x}")
        return c


def reorder_stage(c: np.ndarray, perm: np.ndarray, fmts, banks: int,
                  rounding: str) -> tuple[list[int], int]:
    """Run the top's output buffer, reordering controller and MX converter on ``c``.

    :class:`hw.reorder.Reorder` in Amaranth's simulator: ``c`` ``[M, N]`` (FP32, the array's
    results) is written into the C-bank buffer one array output row (C channels) per cycle, the
    order table is loaded with ``perm`` and the MX9 map, and one command converts every token.

    Returns
    -------
    (list of int, int)
        The packed words (spec §1.2), token-major, and the cycles from the command's acceptance
        to the last word.
    """
    from amaranth.sim import Simulator

    from hw.reorder import Reorder, ReorderConfig
    from sim.mx_stimulus import pack_fields

    tokens, n = c.shape
    groups = n // GROUP_SIZE
    cfg = ReorderConfig(banks=banks, max_channels=n, max_tokens=tokens, entries=1,
                        rounding=rounding)
    dut = Reorder(cfg)
    w_layout, c_layout, k_layout = cfg.write_layout(), cfg.config_layout(), cfg.command_layout()
    bits = np.ascontiguousarray(c, dtype=np.float32).view(np.uint32)
    mx9 = [f == MX9.name for f in fmts]
    words: list[int] = []
    cycles = [0]

    async def bench(ctx):
        ctx.set(dut.w.valid, 1)
        for t in range(tokens):
            for col in range(n // banks):
                ctx.set(dut.w.payload.as_value(), pack_fields(
                    w_layout, token=t, col=col, data=list(bits[t, col * banks:(col + 1) * banks])))
                await ctx.tick()
        ctx.set(dut.w.valid, 0)
        ctx.set(dut.cfg.valid, 1)
        for g in range(groups):
            row = {"chans": list(perm[g * GROUP_SIZE:(g + 1) * GROUP_SIZE]), "mx9": int(mx9[g])}
            ctx.set(dut.cfg.payload.as_value(), pack_fields(c_layout, addr=g, row=row))
            await ctx.tick()
        ctx.set(dut.cfg.valid, 0)
        ctx.set(dut.cmd.payload.as_value(),
                pack_fields(k_layout, entry=0, groups=groups, tokens=tokens))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        ctx.set(dut.o.ready, 1)
        mask = (1 << 144) - 1
        while len(words) < tokens * groups:
            _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            cycles[0] += 1
            if valid:
                words.append(int(word) & mask)
            if cycles[0] > 40 * tokens * groups + 100:
                raise CheckFailed("the reordering controller stopped making progress")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return words, cycles[0]


def check_flip_used(backend: "RTLBackend") -> None:
    """A :class:`UsageError` when the ``MIXDIT_TEST_FLIP_RTL`` hook names a GEMM that never ran
    (a test hook that silently does nothing would make its test pass for the wrong reason)."""
    if backend.flip is not None and backend.flip[0] >= backend.calls:
        raise UsageError(f"{_FLIP_ENV}={','.join(map(str, backend.flip))}: GEMM index "
                         f"{backend.flip[0]} never ran (the run had {backend.calls} GEMM(s))")


def _check_groups(name: str, words: list[int], c: np.ndarray, perm, fmts, rounding: str) -> None:
    from golden.formats import MAX_GROUP_BITS

    from .inputs import env_ints

    flip = env_ints(_FLIP_GROUP_ENV, 2, "index,bit")
    if flip is not None:
        idx, bit = flip
        if idx >= len(words) or bit > MAX_GROUP_BITS:
            raise UsageError(f"{_FLIP_GROUP_ENV}={idx},{bit}: the layer gave {len(words)} words "
                             f"of {MAX_GROUP_BITS + 1} bits (tag included); index or bit out of "
                             "range")
        words[idx] ^= 1 << bit
    ref = pack(quantize(c[:, perm], list(fmts), rounding)).reshape(-1)
    groups = len(fmts)
    for idx, (got, want) in enumerate(zip(words, ref)):
        if got != int(want):
            raise CheckFailed(
                f"next-layer groups for {name}: word {idx} (token {idx // groups}, group "
                f"{idx % groups}, {fmts[idx % groups]}) differs: RTL 0x{got:x}, golden "
                f"0x{int(want):x}")
    if len(words) != len(ref):
        raise CheckFailed(f"next-layer groups for {name}: RTL gave {len(words)} words, golden "
                          f"{len(ref)}")


def _model_cycles(records, config, scheme_fmt: "str | None" = None) -> int:
    from hw.cycles import gemm_cycles

    total = 0
    for r in records:
        m, n, k = r.mnk
        a_f = [scheme_fmt] * r.a.groups if scheme_fmt else list(r.a.formats)
        w_f = list(r.w.formats)
        if scheme_fmt and "." in r.name and r.name.endswith((".qk", ".pv")):
            w_f = [scheme_fmt] * r.w.groups
        total += gemm_cycles(m, k, n, a_f, w_f, config)
    return total


def _busy_cycles(records, config) -> int:
    from hw.cycles import tile_cycles, tiles

    return sum(tiles(r.mnk[0], r.mnk[1], config)
               * tile_cycles(r.mnk[2], list(r.a.formats), list(r.w.formats), config)
               for r in records)


def _mx9_share(records) -> float:
    total = sum(r.a.shape[0] * r.a.groups for r in records)
    mx9 = sum(r.a.shape[0] * int((r.a.fmt == MX9.code).sum()) for r in records)
    return mx9 / total if total else 0.0


def _gemm_report(records, config, wall: float) -> dict:
    cycles = sum(int(r.info.get("cycles", 0)) for r in records)
    busy = _busy_cycles(records, config)
    return {
        "gemms": len(records),
        "results_checked": int(sum(r.c.size for r in records)),
        "cycles": cycles,
        "model_cycles": _model_cycles(records, config),
        "utilization": busy / cycles if cycles else 0.0,
        "mx9_share": _mx9_share(records),
        "sim_s": sum(float(r.info.get("sim_s", 0.0)) for r in records),
        "build_s": sum(float(r.info.get("build_s", 0.0)) for r in records),
        "wall_s": wall,
    }


def _errors(outputs: dict, ref: np.ndarray, cycles: dict) -> dict:
    return {s: {**metrics.error_report(o, ref), "model_cycles": cycles[s]}
            for s, o in outputs.items()}


def _plans(src: Source, block: int, timestep: int, p1: float,
           p2: float) -> tuple[BlockPlans, "BlockPlans | None"]:
    plans = calibrate_block(src.acts, block, timestep, p1, p2)
    nxt = None
    if f"blocks.{block + 1}.attn.qkv/t{timestep}" in src.acts:
        nxt = calibrate_block(src.acts, block + 1, timestep, p1, p2)
    return plans, nxt


def simulate_layer(src: Source, layer: LayerName, timestep: int, *, p1: float, p2: float,
                   rounding: str, config, sim: str, vcd: "str | None" = None,
                   tokens: "int | None" = None, images: "int | None" = None,
                   out_channels: "int | None" = None, convert: bool = True) -> dict:
    """Run one layer on the RTL, check it bit for bit, and report (see the module docstring).

    Parameters
    ----------
    src, layer, timestep
        What to run.
    p1, p2, rounding
        MixDiT's hyperparameters (spec §4) and the quantizer's rounding (spec §1.1).
    config : hw.config.ArrayConfig
    sim : {"verilator", "icarus"}
    vcd : path, optional
        Waves of the layer's first GEMM.
    tokens, images, out_channels : int, optional
        Slices for quick runs (the calibration still sees every activation): the first
        ``tokens`` rows of a linear layer's A, or query tokens of each attention head; the first
        ``images`` images of attention; the first ``out_channels`` rows of a linear layer's W
        (the next-layer groups are then skipped: the consumer needs every channel).
    convert : bool
        Also run the reorder/convert stage and check the next layer's packed groups.

    Returns
    -------
    dict
        The report: GEMM cycles, utilization, MX9 share, times, next-layer check, and ``errors``
        (``mixdit``, ``mx6``, ``mx9`` against FP32).
    """
    t0 = time.perf_counter()
    plans, next_plans = _plans(src, layer.block, timestep, p1, p2)
    runner = CheckedRunner(RTLBackend(config, sim, vcd))
    key = lambda k: f"blocks.{layer.block}.{k}/t{timestep}"
    params = block_params(src.model, layer.block)
    schemes = ("mixdit", "mx6", "mx9", "fp32")
    sliced = False
    if layer.is_attention:
        q, k, v = (src.acts[key(f"attn.{x}")] for x in "qkv")
        _check_slice("--images", images, q.shape[0], f"images of {layer} at t={timestep}")
        _check_slice("--tokens", tokens, q.shape[2], f"query tokens of {layer} at t={timestep}")
        q, k, v = q[:images], k[:images], v[:images]
        q = q[:, :, :tokens]
        ex = Executor("mixdit", plans, rounding, runner)
        out = ex.attention(str(layer), q, k, v)
        others = {s: Executor(s, plans, rounding, Runner(keep=True)) for s in schemes[1:]}
        outs = {s: e.attention(str(layer), q, k, v) for s, e in others.items()}
        flat = out.reshape(-1, out.shape[-1])
        shape = f"{q.shape[0]} image{'s' if q.shape[0] != 1 else ''} x {q.shape[1]} heads, QK^T {q.shape[2]}x{q.shape[3]}x" \
                f"{k.shape[2]} and PV {q.shape[2]}x{k.shape[2]}x{v.shape[3]} per head"
    else:
        x = src.acts[key(layer.kind)]
        x = x.reshape(-1, x.shape[-1])
        if images is not None:
            raise UsageError(f"--images applies to attention (blocks.N.attn), not to {layer}")
        _check_slice("--tokens", tokens, x.shape[0], f"rows of A of {layer} at t={timestep}")
        _check_slice("--out-channels", out_channels, params.weights[layer.kind].shape[0],
                     f"output channels of {layer}")
        if tokens is not None:
            x = x[:tokens]
        w = params.weights[layer.kind][:out_channels]
        b = params.biases[layer.kind][:out_channels]
        sliced = w.shape[0] != params.weights[layer.kind].shape[0]
        ex = Executor("mixdit", plans, rounding, runner)
        out = ex.linear(str(layer), x, w, b)
        others = {s: Executor(s, plans, rounding, Runner(keep=True)) for s in schemes[1:]}
        outs = {s: e.linear(str(layer), x, w, b) for s, e in others.items()}
        flat = runner.records[0].c
        shape = f"{x.shape[0]} x {x.shape[1]} x {w.shape[0]} (M x K x N)"
    check_flip_used(runner.backend)
    ref = outs.pop("fp32")
    cycles = {"mixdit": _model_cycles(runner.records, config)}
    for s in ("mx6", "mx9"):
        cycles[s] = _model_cycles(others[s].runner.records, config)
    report = {
        "layer": str(layer), "timestep": timestep, "shape": shape, "source": src.origin,
        "array": f"{config.rows}x{config.cols}", "sim": sim, "p1": p1, "p2": p2,
        "rounding": rounding, "heads": list(plans.heads),
        **_gemm_report(runner.records, config, 0.0),
        "errors": _errors({"mixdit": out, **outs}, ref, cycles),
    }
    if convert and not layer.is_attention and sliced:
        report["next_layer"] = {"skipped": "output channels sliced (--out-channels)"}
    elif convert:
        head_dim = params.weights["attn.qkv"].shape[1] // params.num_heads
        cons = consumer_plan(layer.kind, plans, next_plans, head_dim)
        if cons is None and layer.block + 1 >= len(src.model.blocks):
            report["next_layer"] = {"skipped": "the last block's fc2 feeds the final layer, which "
                                               "runs on the host"}
        elif cons is None:
            report["next_layer"] = {"skipped": f"its consumer, blocks.{layer.block + 1}.attn.qkv, "
                                               "has no activations to calibrate on"}
        else:
            name, perm, fmts = cons
            progress(f"{layer}: reorder + MX convert of {flat.shape[0]} x {flat.shape[1]} results "
                     f"for {name} (Amaranth simulation of hw.reorder.Reorder)")
            t1 = time.perf_counter()
            words, conv_cycles = reorder_stage(flat, perm, fmts, config.cols, rounding)
            _check_groups(str(layer), words, flat, perm, fmts, rounding)
            report["next_layer"] = {
                "consumer": name, "groups": len(words),
                "mx9_share": sum(f == MX9.name for f in fmts) / len(fmts),
                "convert_cycles": conv_cycles, "wall_s": time.perf_counter() - t1,
            }
    report["wall_s"] = time.perf_counter() - t0
    return report


def _check_slice(option: str, value: "int | None", available: int, what: str) -> None:
    """A :class:`UsageError` when a quick-run slice asks for more than there is (it would
    otherwise be clamped silently)."""
    if value is not None and value > available:
        raise UsageError(f"{option} {value} exceeds the {available} {what}; give 1..{available} "
                         "or leave it out")


def simulate_block(src: Source, block: int, timestep: int, *, p1: float, p2: float,
                   rounding: str, config, sim: str) -> dict:
    """Run a whole block with every GEMM on the RTL and check its output against the golden run
    bit for bit; report cycles per layer and the block's error against FP32."""
    t0 = time.perf_counter()
    x = src.acts.get(f"blocks.{block}.input/t{timestep}")
    c = src.acts.get(f"blocks.{block}.cond/t{timestep}")
    if x is None or c is None:
        raise UsageError("--block needs the block's input and conditioning, which a capture file "
                         "does not hold; leave out --activations to capture them now")
    plans, _ = _plans(src, block, timestep, p1, p2)
    params = block_params(src.model, block)
    runner = CheckedRunner(RTLBackend(config, sim))
    out = run_block(x, c, params, Executor("mixdit", plans, rounding, runner), block)
    check_flip_used(runner.backend)
    progress(f"blocks.{block}: golden run of the same block")
    gold = run_block(x, c, params, Executor("mixdit", plans, rounding, Runner(keep=False)), block)
    diff = out.view(np.uint32) != gold.view(np.uint32)
    if diff.any():
        i, j, k = map(int, np.argwhere(diff)[0])
        raise CheckFailed(f"blocks.{block} output differs from the golden run in "
                          f"{int(diff.sum())} of {diff.size} values; first [{i}, {j}, {k}]")
    outs, cycles = {}, {}
    for s in ("mx6", "mx9", "fp32"):
        r = Runner(keep=True)
        outs[s] = run_block(x, c, params, Executor(s, plans, rounding, r), block)
        cycles[s] = _model_cycles(r.records, config)
    cycles["mixdit"] = _model_cycles(runner.records, config)
    ref = outs.pop("fp32")
    per_layer = {}
    for kind in ("attn.qkv", ATTN_KIND, "attn.proj", "mlp.fc1", "mlp.fc2"):
        recs = [r for r in runner.records
                if r.name == f"blocks.{block}.{kind}" or (kind == ATTN_KIND and r.name.startswith(
                    f"blocks.{block}.attn.img"))]
        per_layer[kind] = _gemm_report(recs, config, 0.0)
    return {
        "block": block, "timestep": timestep, "source": src.origin,
        "array": f"{config.rows}x{config.cols}", "sim": sim, "p1": p1, "p2": p2,
        "rounding": rounding, "heads": list(plans.heads), "output_values": int(out.size),
        **_gemm_report(runner.records, config, 0.0), "layers": per_layer,
        "errors": _errors({"mixdit": out, **outs}, ref, cycles),
        "wall_s": time.perf_counter() - t0,
    }


def array_config(rows: int, cols: int):
    """The :class:`hw.config.ArrayConfig` of an R x C array, or a :class:`UsageError`."""
    from hw.config import ArrayConfig

    try:
        return dataclasses.replace(ArrayConfig(), rows=rows, cols=cols)
    except ValueError as exc:
        raise UsageError(str(exc)) from None

