"""Bit-exact simulation of a DiT layer or block on the accelerator top's RTL (spec §3-§7).

What runs where
---------------
* The layer runs once on the golden model (:mod:`golden.layer`: calibration, quantization, every
  GEMM on :func:`golden.gemm.mx_matmul`, host FP32 ops), which records each GEMM's operands and
  result.
* The accelerator top (:class:`hw.top.MixDiTTop`, its Verilog under Verilator or Icarus through
  :mod:`sim.harness.top`) then runs the layer's GEMMs as one program: a linear layer is one
  command; attention is Q K^T and P V per image and head, the P V results stored side by side in
  the output buffer. The array's FP32 results and the next layer's packed A groups, which the
  top's reordering controller and MX converter make from the output buffer with the consumer
  layer's channel order and MX6/MX9 map (:func:`golden.layer.consumer_plan`, calibrated
  bank-conflict-free for the array's columns, :func:`golden.mixdit.conflict_free_order`), come
  out of the same netlist. Every result is compared bit for bit (uint32 patterns) with the golden
  GEMM's and every packed word as an integer with ``golden.mx.pack(golden.mx.quantize(out[:,
  perm], formats, rounding))``; the first difference raises :class:`~sim.errors.CheckFailed`
  naming the GEMM and the element or word. A GEMM whose results all equal golden gives the host
  the same values, so the next GEMM's operands are the ones the golden run recorded.
* The cycles are the netlist's, the whole layer's: the array's and the reorder and conversion
  tail, beside the array's exact cycle model (:mod:`hw.cycles`).

Test hooks: the environment variable ``MIXDIT_TEST_FLIP_RTL="gemm_index,row,col,bit"`` flips one
bit of one RTL result before the check, ``MIXDIT_TEST_FLIP_GROUP="index,bit"`` one bit of one
next-layer word, so a test can see the checks bite.
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
from golden.formats import MAX_GROUP_BITS, MX9
from golden.layer import (
    ATTN_KIND, LINEAR_KINDS, BlockPlans, Executor, LayerName, Runner, block_params, calibrate_block,
    consumer_plan, run_block,
)
from golden.mx import pack_tagged, quantize

from .errors import CheckFailed, UsageError

__all__ = [
    "CLASSES", "SEEDS", "Source", "load_source", "LayerProgram", "run_on_top", "top_config_for",
    "simulate_layer", "simulate_block", "progress", "array_config", "check_capture_block",
    "FLIP_ENVS", "shard_program", "top_config_for_shape",
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


def _flips() -> tuple:
    """The test hooks' values (:data:`FLIP_ENVS`), checked: a malformed one is a UsageError."""
    from .inputs import env_ints

    return tuple(env_ints(name, count, fields) for name, count, fields in FLIP_ENVS)


@dataclass
class LayerProgram:
    """A layer as the top runs it: its GEMMs (golden records, in order), the FP32 output the
    controller converts (``[tokens, channels]``) and the consumer's order and map, if any."""

    name: str
    records: list
    out: "np.ndarray | None"
    consumer: "tuple[str, np.ndarray, tuple[str, ...]] | None"


def _program(name: str, records: list, consumer, config) -> tuple[list, np.ndarray]:
    """The top's commands for a layer's GEMM records (one linear GEMM, or QK^T and P V per image
    and head) and the FP32 output its next-layer groups are made of."""
    from sim.harness.top import TopCommand

    groups = 0 if consumer is None else len(consumer[2])
    if len(records) == 1:
        r = records[0]
        return [TopCommand(r.a, r.w, True, 0, groups)], r.c
    pvs = [r for r in records if r.name.endswith(".pv")]
    heads = len({r.name.rsplit(".", 2)[1] for r in pvs})
    d = pvs[0].c.shape[1]
    if d % config.cols:
        raise UsageError(f"attention on the top stores each head's P V at a column tile: the head "
                         f"dimension {d} must be a multiple of the {config.cols} array columns")
    cmds, out = [], []
    for i in range(len(pvs) // heads):
        image = pvs[i * heads:(i + 1) * heads]
        for r in records:
            if r.name.startswith(image[0].name.rsplit(".", 2)[0] + "."):
                h = int(r.name.rsplit(".", 2)[1][4:])
                if r.name.endswith(".qk"):
                    cmds.append(TopCommand(r.a, r.w, False, 0, 0))
                else:
                    cmds.append(TopCommand(r.a, r.w, True, h * d // config.cols,
                                           groups if h == heads - 1 else 0))
        out.append(np.concatenate([r.c for r in image], axis=1))
    return cmds, np.concatenate(out)


def _check_c(name: str, got: np.ndarray, want: np.ndarray) -> None:
    diff = got.view(np.uint32) != want.view(np.uint32)
    if diff.any():
        i, j = map(int, np.argwhere(diff)[0])
        raise CheckFailed(
            f"{name}: RTL and golden differ in {int(diff.sum())} of {diff.size} FP32 results; "
            f"first C[{i}, {j}]: RTL 0x{int(got.view(np.uint32)[i, j]):08x}, golden "
            f"0x{int(want.view(np.uint32)[i, j]):08x}")


def _check_groups(name: str, words: list[int], c: np.ndarray, perm, fmts, rounding: str) -> None:
    """The top's next-layer groups (MX9 tag above the §1.2 word) against golden.mx, word by
    word."""
    ref = pack_tagged(quantize(c[:, perm], list(fmts), rounding)).reshape(-1)
    groups = len(fmts)
    for idx, (got, want) in enumerate(zip(words, ref)):
        fmt = fmts[idx % groups]
        if got != want:
            raise CheckFailed(
                f"next-layer groups for {name}: word {idx} (token {idx // groups}, group "
                f"{idx % groups}, {fmt}) differs: RTL 0x{got:x}, golden 0x{want:x}")
    if len(words) != len(ref):
        raise CheckFailed(f"next-layer groups for {name}: RTL gave {len(words)} words, golden "
                          f"{len(ref)}")


def _stored_channels(records: list) -> int:
    """Output-buffer channels a layer's results fill: a linear layer's N, attention's heads x d."""
    pvs = [r for r in records if r.name.endswith(".pv")]
    if not pvs:
        return records[0].c.shape[1] if records else 0
    return len({r.name.rsplit(".", 2)[1] for r in pvs}) * pvs[0].c.shape[1]


def top_config_for_shape(config, tokens: int, channels: int, rounding: str):
    """The top the harness builds for ``config``: a buffer of 32 tokens x 512 channels (every
    layer of the shipped DiT; one build serves them all), larger when ``tokens`` (A's rows) or
    ``channels`` (stored results, converted groups x 16) need it."""
    from sim.harness.top import top_config

    tokens, chans = max(32, tokens), max(512, channels)
    step = max(16, config.cols)
    return top_config(config, max_tokens=1 << (tokens - 1).bit_length(),
                      max_channels=-(-chans // step) * step, rounding=rounding)


def top_config_for(config, programs: list, rounding: str):
    """:func:`top_config_for_shape` for every layer of ``programs``."""
    tokens = max([0] + [r.a.shape[0] for p in programs for r in p.records])
    chans = max([0] + [_stored_channels(p.records) for p in programs]
                + [16 * len(p.consumer[2]) for p in programs if p.consumer])
    return top_config_for_shape(config, tokens, chans, rounding)


def run_on_top(program: LayerProgram, config, *, sim: str, rounding: str, top=None,
               vcd: "str | None" = None, flips: bool = True) -> dict:
    """Run one layer's program on the accelerator top's Verilog (sim/harness/top.py) and check
    every FP32 result and next-layer group against golden, bit for bit.

    Returns
    -------
    dict
        ``netlist``, ``simulator_version``, ``commands``, ``cycles`` (the whole layer through the
        top), ``array_cycles`` (per command from its transfer to its last result row, summed),
        ``command_cycles``, ``tail_cycles`` and its bound (:func:`hw.top.tail_cycles`),
        ``next_layer_groups`` and the wall times.

    Raises
    ------
    CheckFailed
        At the first RTL result or group that differs from golden, or if the run fails.
    UsageError
        If the simulator is missing or the layer does not fit the top.
    """
    from hw.top import tail_cycles
    from sim.harness import HarnessError, SimulatorMissing
    from sim.harness.top import run_top

    top = top or top_config_for(config, [program], rounding)
    cmds, out = _program(program.name, program.records, program.consumer, config)
    if program.consumer is not None:
        _, perm, fmts = program.consumer
        mx9 = np.array([f == MX9.name for f in fmts], dtype=bool)
    else:
        perm, mx9 = np.arange(0), np.zeros(0, dtype=bool)
    try:
        res = run_top(cmds, perm, mx9, top, sim=sim, vcd=vcd)
    except SimulatorMissing as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(f"{program.name} does not fit the top: {exc}") from None
    except HarnessError as exc:
        raise CheckFailed(f"the RTL run failed: {str(exc).splitlines()[0]}") from None
    cs = [c.copy() for c in res.c]
    words = list(res.groups)
    flip, flip_group = _flips() if flips else (None, None)
    if flip is not None and flip[0] < len(cs):
        _, i, j, bit = flip
        if i >= cs[flip[0]].shape[0] or j >= cs[flip[0]].shape[1] or bit > 31:
            raise UsageError(f"{_FLIP_ENV}={','.join(map(str, flip))}: GEMM {flip[0]} is "
                             f"{cs[flip[0]].shape[0]} x {cs[flip[0]].shape[1]} FP32 results; "
                             "row, col or bit (0..31) out of range")
        cs[flip[0]].view(np.uint32)[i, j] ^= np.uint32(1 << bit)
    if flip_group is not None:
        idx, bit = flip_group
        if idx >= len(words) or bit > MAX_GROUP_BITS:
            raise UsageError(f"{_FLIP_GROUP_ENV}={idx},{bit}: the layer gave {len(words)} words "
                             f"of {MAX_GROUP_BITS + 1} bits (tag included); index or bit out of "
                             "range")
        words[idx] ^= 1 << bit
    for r, c in zip(program.records, cs):
        _check_c(r.name, c, r.c)
    report = {
        "netlist": res.netlist, "simulator_version": res.simulator_version,
        "commands": len(cmds), "cycles": res.cycles, "array_cycles": sum(res.array_cycles),
        "command_cycles": res.command_cycles, "sim_s": res.sim_s, "build_s": res.build_s,
    }
    if program.consumer is not None:
        name, perm, fmts = program.consumer
        _check_groups(program.name, words, out, perm, fmts, rounding)
        m = cmds[-1].a.shape[0]
        report["tail_cycles"] = res.command_cycles[-1] - res.array_cycles[-1]
        report["tail_bound"] = tail_cycles(m, len(fmts), top)
        report["next_layer_groups"] = {
            "count": len(words), "source": "rtl", "bit_exact": True, "consumer": name,
            "mx9_share": sum(f == MX9.name for f in fmts) / len(fmts),
        }
    return report


def shard_program(program: LayerProgram, config, parts: int) -> list[LayerProgram]:
    """``program`` cut into at most ``parts`` independent programs for a cluster: a linear
    layer by ranges of whole row tiles (tokens) of A, attention by ranges of images. Every
    next-layer group is made of one token row of the output, so each shard's groups are
    complete, and the shards' results and words in order are the whole layer's."""
    from golden.layer import GemmRecord

    if parts < 1:
        raise ValueError(f"parts must be positive, not {parts}")
    recs = program.records
    if len(recs) == 1:
        r = recs[0]
        m = r.a.shape[0]
        tiles = -(-m // config.rows)
        n = min(parts, tiles)
        bounds = [round(i * tiles / n) * config.rows for i in range(n + 1)]
        bounds[-1] = m
        return [LayerProgram(program.name, [GemmRecord(r.name, r.a[a:b], r.w, r.c[a:b], r.info)],
                             None, program.consumer)
                for a, b in zip(bounds, bounds[1:]) if b > a]
    images = sorted({int(r.name.split(".img")[1].split(".")[0]) for r in recs})
    n = min(parts, len(images))
    groups = [images[round(i * len(images) / n):round((i + 1) * len(images) / n)]
              for i in range(n)]
    out = []
    for g in groups:
        keep = {f".img{i}." for i in g}
        out.append(LayerProgram(program.name, [r for r in recs if any(k in r.name for k in keep)],
                                None, program.consumer))
    return out


def _merge(reports: list[dict]) -> dict:
    """One layer's report from its shards' :func:`run_on_top` reports (in shard order)."""
    first = reports[0]
    out = {
        "netlist": first["netlist"], "simulator_version": first["simulator_version"],
        "commands": sum(r["commands"] for r in reports),
        "cycles": sum(r["cycles"] for r in reports),
        "array_cycles": sum(r["array_cycles"] for r in reports),
        "command_cycles": [c for r in reports for c in r["command_cycles"]],
        "sim_s": sum(r["sim_s"] for r in reports), "build_s": max(r["build_s"] for r in reports),
        "shards": len(reports),
    }
    if "next_layer_groups" in first:
        out["tail_cycles"] = max(r["tail_cycles"] for r in reports)
        out["tail_bound"] = max(r["tail_bound"] for r in reports)
        out["next_layer_groups"] = {**first["next_layer_groups"],
                                    "count": sum(r["next_layer_groups"]["count"]
                                                 for r in reports)}
    return out


def _run_layer(program: LayerProgram, config, *, sim: str, rounding: str, top=None,
               vcd: "str | None" = None, cluster=None) -> dict:
    """:func:`run_on_top`, or, with ``cluster = (client, parts)``, its shards
    (:func:`shard_program`) as tasks on a Dask cluster, each checked on its worker; the first
    shard that fails stops the layer with its own message."""
    if cluster is None:
        return run_on_top(program, config, sim=sim, rounding=rounding, top=top, vcd=vcd)
    from distributed import as_completed

    from sim.harness.top import build_top

    client, parts = cluster
    top = top or top_config_for(config, [program], rounding)
    try:
        built = build_top(top, sim)    # once here, so that the workers find it built
    except Exception as exc:  # a failed build is the RTL's problem, reported as run_on_top does
        raise CheckFailed(f"the RTL build failed: {str(exc).splitlines()[0]}") from None
    t0 = time.perf_counter()
    pieces = shard_program(program, config, parts)
    futures = {client.submit(run_on_top, p, config, sim=sim, rounding=rounding, top=top,
                             pure=False, retries=2): i for i, p in enumerate(pieces)}
    reports: dict = {}
    for fut in as_completed(list(futures)):
        try:
            reports[futures[fut]] = fut.result()
        except (CheckFailed, UsageError) as exc:
            raise type(exc)(f"shard {futures[fut] + 1} of {len(pieces)}: {exc}") from None
    rep = _merge([reports[i] for i in range(len(pieces))])
    rep["sim_s"] = time.perf_counter() - t0
    rep["build_s"] = max(rep["build_s"], built.build_s)
    return rep


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


def _errors(outputs: dict, ref: np.ndarray, cycles: dict) -> dict:
    return {s: {**metrics.error_report(o, ref), "model_cycles": cycles[s]}
            for s, o in outputs.items()}



def _gemm_report(records, config, top: dict) -> dict:
    cycles = top["cycles"]
    return {
        "gemms": len(records),
        "results_checked": int(sum(r.c.size for r in records)),
        "netlist": top["netlist"], "simulator_version": top["simulator_version"],
        "cycles": cycles, "array_cycles": top["array_cycles"],
        "model_cycles": _model_cycles(records, config),
        "utilization": _busy_cycles(records, config) / cycles if cycles else 0.0,
        "mx9_share": _mx9_share(records),
        "sim_s": top["sim_s"], "build_s": top["build_s"],
        **{k: top[k] for k in ("tail_cycles", "tail_bound", "next_layer_groups") if k in top},
    }


def _plans(src: Source, block: int, timestep: int, p1: float, p2: float,
           banks: "int | None" = None) -> tuple[BlockPlans, "BlockPlans | None"]:
    plans = calibrate_block(src.acts, block, timestep, p1, p2, banks)
    nxt = None
    if f"blocks.{block + 1}.attn.qkv/t{timestep}" in src.acts:
        nxt = calibrate_block(src.acts, block + 1, timestep, p1, p2, banks)
    return plans, nxt


def _consumer(src: Source, kind: str, block: int, plans, next_plans, params):
    """The consumer of ``kind``'s output and the order and map it needs, or a reason why none."""
    head_dim = params.weights["attn.qkv"].shape[1] // params.num_heads
    cons = consumer_plan(kind, plans, next_plans, head_dim)
    if cons is None and block + 1 >= len(src.model.blocks):
        return None, "the last block's fc2 feeds the final layer, which runs on the host"
    if cons is None:
        return None, (f"its consumer, blocks.{block + 1}.attn.qkv, has no activations to "
                      "calibrate on")
    return cons, None


def simulate_layer(src: Source, layer: LayerName, timestep: int, *, p1: float, p2: float,
                   rounding: str, config, sim: str, vcd: "str | None" = None,
                   tokens: "int | None" = None, images: "int | None" = None,
                   out_channels: "int | None" = None, convert: bool = True,
                   cluster=None) -> dict:
    """Run one layer on the accelerator top's RTL, check it bit for bit, and report (see the
    module docstring).

    Parameters
    ----------
    src, layer, timestep
        What to run.
    p1, p2, rounding
        MixDiT's hyperparameters (spec §4) and the quantizer's rounding (spec §1.1). Channel
        orders are calibrated bank-conflict-free for ``config.cols`` banks.
    config : hw.config.ArrayConfig
        The top's array.
    sim : {"verilator", "icarus"}
    vcd : path, optional
        Waves of the layer's run.
    tokens, images, out_channels : int, optional
        Slices for quick runs (the calibration still sees every activation): the first
        ``tokens`` rows of a linear layer's A, or query tokens of each attention head; the first
        ``images`` images of attention; the first ``out_channels`` rows of a linear layer's W
        (the next-layer groups are then skipped: the consumer needs every channel).
    convert : bool
        Also convert the layer's output into the next layer's groups in the same netlist.
    cluster : tuple, optional
        ``(client, parts)``: run the layer as at most ``parts`` shards (row tiles of a linear
        layer, images of attention) on that Dask client (:func:`shard_program`).

    Returns
    -------
    dict
        The report: cycles through the top and the array's, utilization, MX9 share, times, the
        next-layer groups, and ``errors`` (``mixdit``, ``mx6``, ``mx9`` against FP32).
    """
    t0 = time.perf_counter()
    plans, next_plans = _plans(src, layer.block, timestep, p1, p2, banks=config.cols)
    runner = Runner(keep=True)
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
        shape = f"{x.shape[0]} x {x.shape[1]} x {w.shape[0]} (M x K x N)"
    ref = outs.pop("fp32")
    cycles = {"mixdit": _model_cycles(runner.records, config)}
    for s in ("mx6", "mx9"):
        cycles[s] = _model_cycles(others[s].runner.records, config)
    cons, skipped = None, None
    if not convert:
        skipped = "--no-convert"
    elif sliced:
        skipped = "output channels sliced (--out-channels)"
    else:
        cons, skipped = _consumer(src, layer.kind, layer.block, plans, next_plans, params)
    progress(f"{layer}: {len(runner.records)} GEMM(s)"
             f"{'' if cons is None else ' and the next-layer groups'} on the accelerator top "
             f"({config.rows}x{config.cols}) under {sim}")
    flip = _flips()[0]
    if flip is not None and flip[0] >= len(runner.records):
        # A hook that silently does nothing would make its test pass for the wrong reason.
        raise UsageError(f"{_FLIP_ENV}={','.join(map(str, flip))}: GEMM index {flip[0]} never "
                         f"ran (the run had {len(runner.records)} GEMM(s))")
    top = _run_layer(LayerProgram(str(layer), runner.records, out, cons), config, sim=sim,
                     rounding=rounding, vcd=vcd, cluster=cluster)
    report = {
        "layer": str(layer), "timestep": timestep, "shape": shape, "source": src.origin,
        "array": f"{config.rows}x{config.cols}", "sim": sim, "p1": p1, "p2": p2,
        "rounding": rounding, "heads": list(plans.heads),
        **_gemm_report(runner.records, config, top),
        "errors": _errors({"mixdit": out, **outs}, ref, cycles),
    }
    if skipped:
        report["next_layer"] = {"skipped": skipped}
    if "shards" in top:
        report["shards"] = top["shards"]
    report["wall_s"] = time.perf_counter() - t0
    return report


def _check_slice(option: str, value: "int | None", available: int, what: str) -> None:
    """A :class:`UsageError` when a quick-run slice asks for more than there is (it would
    otherwise be clamped silently)."""
    if value is not None and value > available:
        raise UsageError(f"{option} {value} exceeds the {available} {what}; give 1..{available} "
                         "or leave it out")


def simulate_block(src: Source, block: int, timestep: int, *, p1: float, p2: float,
                   rounding: str, config, sim: str, cluster=None) -> dict:
    """Run every layer of a block on the accelerator top, each GEMM result and each layer's
    next-layer groups checked against golden bit for bit; report cycles per layer and the
    block's error against FP32.

    The block runs once on the golden model (host FP32 ops between the GEMMs); every layer's
    GEMMs then run on the top with those operands. A layer whose every result equals golden
    gives the next layer the same operands, so this checks what a run with the RTL's results
    fed back would, one layer at a time."""
    t0 = time.perf_counter()
    x = src.acts.get(f"blocks.{block}.input/t{timestep}")
    c = src.acts.get(f"blocks.{block}.cond/t{timestep}")
    if x is None or c is None:
        raise UsageError("--block needs the block's input and conditioning, which a capture file "
                         "does not hold; leave out --activations to capture them now")
    plans, next_plans = _plans(src, block, timestep, p1, p2, banks=config.cols)
    params = block_params(src.model, block)
    runner = Runner(keep=True)
    out = run_block(x, c, params, Executor("mixdit", plans, rounding, runner), block)
    outs, cycles = {}, {}
    for s in ("mx6", "mx9", "fp32"):
        r = Runner(keep=True)
        outs[s] = run_block(x, c, params, Executor(s, plans, rounding, r), block)
        cycles[s] = _model_cycles(r.records, config)
    cycles["mixdit"] = _model_cycles(runner.records, config)
    ref = outs.pop("fp32")
    programs = []
    for kind in ("attn.qkv", ATTN_KIND, "attn.proj", "mlp.fc1", "mlp.fc2"):
        recs = [r for r in runner.records
                if r.name == f"blocks.{block}.{kind}" or (kind == ATTN_KIND and r.name.startswith(
                    f"blocks.{block}.attn.img"))]
        cons, _ = _consumer(src, kind, block, plans, next_plans, params)
        programs.append((kind, LayerProgram(f"blocks.{block}.{kind}", recs, None, cons)))
    top_cfg = top_config_for(config, [p for _, p in programs], rounding)
    per_layer = {}
    for kind, prog in programs:
        progress(f"{prog.name}: {len(prog.records)} GEMM(s) on the accelerator top under {sim}")
        top = _run_layer(prog, config, sim=sim, rounding=rounding, top=top_cfg, cluster=cluster)
        per_layer[kind] = _gemm_report(prog.records, config, top)
    total = {k: sum(r[k] for r in per_layer.values())
             for k in ("cycles", "array_cycles", "sim_s", "build_s")}
    busy = _busy_cycles(runner.records, config)
    return {
        "block": block, "timestep": timestep, "source": src.origin,
        "array": f"{config.rows}x{config.cols}", "sim": sim, "p1": p1, "p2": p2,
        "rounding": rounding, "heads": list(plans.heads), "output_values": int(out.size),
        "gemms": len(runner.records),
        "results_checked": int(sum(r.c.size for r in runner.records)),
        "netlist": per_layer["attn.qkv"]["netlist"],
        "simulator_version": per_layer["attn.qkv"]["simulator_version"],
        **total, "model_cycles": cycles["mixdit"],
        "utilization": busy / total["cycles"] if total["cycles"] else 0.0,
        "mx9_share": _mx9_share(runner.records),
        "next_layer_groups": {"count": sum(r.get("next_layer_groups", {}).get("count", 0)
                                           for r in per_layer.values()),
                              "source": "rtl", "bit_exact": True},
        "layers": per_layer,
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

