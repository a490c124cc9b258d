"""A whole sampling run of a DiT with every accelerator GEMM on the RTL, on a Dask cluster
(spec §4-§7).

The sampler (:func:`golden.quality.sampling.sample`: DDIM, classifier-free guidance, the MixDiT
scheme with its per-step channel orders and head formats) runs on the host, and its GEMM hook
sends every accelerator GEMM of the chosen blocks to the cluster, each task a run of the
accelerator top's Verilog (:mod:`sim.harness.top`, :class:`sim.shard.TopShard`): a linear layer
as shards of whole row tiles (tokens) of one GEMM, one head's Q K^T or P V as one GEMM per image
(the CFG batch's conditional and unconditional halves included), all of a call's shards at once.
The RTL results come back, are compared bit for bit (uint32 patterns) with the golden GEMM of the
same operands, and are what the model computes on: the softmax, norms, GELU, adaLN, residuals
and the sampler's update are host FP32 operations on the RTL's numbers. So each step depends on
the RTL results of the step before, and the final image is the RTL's. It must equal, bit for
bit, the image of a separate golden run (every GEMM on :func:`golden.gemm.mx_matmul`).

Next-layer groups: as in ``simulate-layer``, the top converts each layer's FP32 results into the
MX groups of its consumer (the pairs of :func:`golden.layer.consumer_plan`, with the sampler's
calibrated order and MX6/MX9 map of that step), and every group word is compared with
:func:`golden.mx.quantize` of the golden results. A linear layer's shard converts its own tokens
(each group is one token's, so the shards' words in order are the layer's). An attention layer's
groups need every head's P V in the top's buffer at once, while the sampler asks for the heads
one at a time; so once the last head's P V is back, one more top run per image repeats the
layer's P V products (stored at their heads' columns) and converts them for ``attn.proj``; its
results are checked again and its cycles are counted apart (``groups_cycles``).

The golden run goes first: it gives the golden image and the number of tasks (the progress
line's total). A killed run, started again, reuses every finished shard from the task cache.

Test hooks: ``MIXDIT_TEST_FLIP_RTL="gemm_index,row,col,bit"`` flips one bit of the RTL result of
the ``gemm_index``-th GEMM run on the RTL (counting from 0 in the order the sampler calls them;
for a per-image GEMM the row counts across the images' stacked rows) before the check;
``MIXDIT_TEST_FLIP_GROUP="index,bit"`` flips one bit of the run's ``index``-th next-layer group
word (counting from 0 across the run, in the order they are checked).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.formats import MAX_GROUP_BITS, MX9
from golden.gemm import mx_matmul
from golden.mx import MXTensor

from .errors import CheckFailed, UsageError
from .shard import TopShard, row_ranges, top_key, top_row_shards

#: The rounding of the top's converter: the sampler quantizes with golden.mx.quantize's default.
ROUNDING = "trunc"

__all__ = ["ROUNDING", "Run", "layer_of", "block_of", "consumer", "simulate_model",
           "save_grid"]


def layer_of(name: str) -> str:
    """The layer a GEMM belongs to: ``blocks.1.attn.head2.qk`` -> ``blocks.1.attn``."""
    parts = name.split(".")
    return ".".join(parts[:3]) if len(parts) > 4 and parts[2] == "attn" else name


def block_of(name: str) -> int:
    """The block index of a GEMM name (``blocks.N....``)."""
    return int(name.split(".")[1])


@dataclass
class Run:
    """What a whole-model run found, layer by layer (the report's source)."""

    layers: dict = field(default_factory=lambda: defaultdict(
        lambda: {"gemms": 0, "shards": 0, "cycles": 0, "busy_cycles": 0, "model_cycles": 0,
                 "results": 0, "groups": 0, "groups_cycles": 0, "wall_s": 0.0}))
    gemms: int = 0
    golden_gemms: int = 0
    groups: int = 0


def _golden(a: MXTensor, w: MXTensor) -> np.ndarray:
    from golden.quality.sampling import mx_matmul_batched

    return mx_matmul(a, w) if a.exp.ndim == 2 else mx_matmul_batched(a, w)


def consumer(name: str, step: int, calib, p1: float, p2: float, nblocks: int,
             head_dim: int) -> "tuple[str, np.ndarray, tuple[str, ...]] | None":
    """What the top converts layer ``name``'s results into at ``step``: the consumer's name,
    channel order and per-group formats (:func:`golden.layer.consumer_plan`, on the sampler's
    calibration, :meth:`golden.quality.sampling.Calibration.block_plans`); None for the last
    block's fc2 (the final layer runs on the host). ``name`` is a linear layer
    (``blocks.2.mlp.fc1``) or an attention layer (``blocks.2.attn``)."""
    from golden.layer import consumer_plan

    b = block_of(name)
    nxt = calib.block_plans(b + 1, step, p1, p2) if b + 1 < nblocks else None
    return consumer_plan(name.split(".", 2)[2], calib.block_plans(b, step, p1, p2), nxt,
                         head_dim)


def _slices(a: MXTensor, w: MXTensor) -> list:
    """The 2-D GEMMs of one call: itself, or one per image of the leading axis."""
    if a.exp.ndim == 2:
        return [(a, w)]
    return [(a[i], w[i]) for i in range(a.shape[0])]


def _check(name: str, step: int, got: np.ndarray, want: np.ndarray) -> None:
    diff = got.view(np.uint32) != want.view(np.uint32)
    if diff.any():
        idx = tuple(int(i) for i in np.argwhere(diff)[0])
        where = ", ".join(map(str, idx))
        image = f" (image {idx[0]})" if len(idx) == 3 else ""
        raise CheckFailed(
            f"step {step}, {name}{image}: RTL and golden differ in {int(diff.sum())} of "
            f"{diff.size} FP32 results; first C[{where}]: RTL 0x{int(got.view(np.uint32)[idx]):08x}"
            f", golden 0x{int(want.view(np.uint32)[idx]):08x}")


def save_grid(path: "str | Path", images: np.ndarray) -> Path:
    """``images`` ``[n, 1, s, s]`` in ``[-1, 1]`` side by side as a grayscale PNG, each image
    scaled to at least 64 pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, _, s, _ = images.shape
    row = np.concatenate([np.pad(images[i, 0], 1, constant_values=-1) for i in range(n)], axis=1)
    scale = max(4, 64 // s)
    row = np.kron(row, np.ones((scale, scale)))
    plt.imsave(path, row, cmap="gray", vmin=-1.0, vmax=1.0)
    return Path(path)


def _mx9_map(fmts) -> np.ndarray:
    return np.array([f == MX9.name for f in fmts], dtype=bool)


def simulate_model(model, calib, *, labels: list, seeds: list, steps: int, guidance: float,
                   p1: float, p2: float, blocks: "list[int]", config, sim: str, runner,
                   parts: int, build, flips: tuple = (None, None)) -> dict:
    """Sample ``model`` with every GEMM of ``blocks`` on the accelerator top's RTL through
    ``runner`` (:class:`sim.cluster.ShardRunner`), check every result and next-layer group bit
    for bit, and report.

    Parameters
    ----------
    model : golden.dit.DiT
    calib : golden.quality.sampling.Calibration
        MixDiT's channel orders and head scores for ``steps`` steps.
    labels, seeds : list of int
        One class label and one noise seed per image.
    blocks : list of int
        Blocks whose GEMMs run on the RTL (the others on the golden model).
    config : hw.config.ArrayConfig
        The top's array.
    parts : int
        Row shards per linear GEMM (at most one per row tile).
    build : callable
        ``build(top_config) -> str``: builds the top's harness (once, before the RTL run, so
        that the workers find it) and returns the build's identity, part of every task's key.
    flips : tuple
        The test hooks' values (module docstring): ``(gemm, row, col, bit)`` and
        ``(index, bit)``, or None each.

    Returns
    -------
    dict
        ``images`` (``rtl``, ``golden``, ``fp32``: float32 arrays), ``bit_exact``,
        ``image_bit_exact``, ``gemms``, ``cycles``, ``next_layer_groups``, ``layers`` and the
        timings.

    Raises
    ------
    CheckFailed
        At the first GEMM result or next-layer group that differs (naming the step, GEMM and
        element or word), a shard whose run failed, or a final image that differs.
    UsageError
        For a model the top cannot run (a head dimension that is no multiple of the array's
        columns).
    """
    from golden.quality.sampling import SCHEMES, mixdit_scheme, sample
    from hw.cycles import gemm_cycles, tile_cycles, tiles
    from sim.harness.top import TopCommand, netlist_name

    from .layer import _check_groups, top_config_for_shape

    scheme = mixdit_scheme(p1, p2)
    on_rtl = set(blocks)
    nblocks = len(model.blocks)
    head_dim = model.cfg.hidden_size // model.cfg.num_heads
    run = Run()
    flip, flip_group = flips
    need = {"tasks": 0, "tokens": 0, "chans": 0}
    heads_seen: dict = defaultdict(dict)

    def heads_of(name: str) -> int:
        return int(calib.heads[f"blocks.{block_of(name)}.attn"].shape[1])

    def count(name: str, step: int, a: MXTensor, w: MXTensor) -> np.ndarray:
        if block_of(name) in on_rtl:
            m, n = a.shape[-2], w.shape[-2]
            need["tokens"] = max(need["tokens"], m)
            if a.exp.ndim == 2:
                need["tasks"] += len(row_ranges(m, config.rows, parts))
                need["chans"] = max(need["chans"], n)
            else:
                need["tasks"] += a.shape[0]
            if name.endswith(".pv"):
                h, heads = int(name.rsplit(".", 2)[1][4:]), heads_of(name)
                if n % config.cols:
                    raise UsageError(f"{name}: the top stores each head's P V at a column tile, "
                                     f"so the head dimension {n} must be a multiple of the "
                                     f"{config.cols} array columns")
                need["chans"] = max(need["chans"], heads * n)
                seen = heads_seen[(layer_of(name), step)]
                seen[h] = True
                if len(seen) == heads:
                    need["tasks"] += a.shape[0]
        return _golden(a, w)

    t0 = time.perf_counter()
    golden_img = sample(model, scheme, labels, seeds, calib, guidance, steps, gemm=count)
    fp32_img = sample(model, SCHEMES["fp32"], labels, seeds, None, guidance, steps)
    golden_s = time.perf_counter() - t0
    top = top_config_for_shape(config, need["tokens"], need["chans"], ROUNDING)
    build_id = build(top)
    runner.top = top
    runner.progress.add_total(need["tasks"])
    pending: dict = defaultdict(dict)

    def task(commands: tuple, cons, what: str) -> TopShard:
        perm, fmts = (np.arange(0), ()) if cons is None else (cons[1], cons[2])
        mx9 = _mx9_map(fmts)
        return TopShard(commands, perm, mx9, what, top_key(commands, perm, mx9, build_id))

    def check_words(step: int, name: str, words: list, want: np.ndarray, cons,
                    layer: "str | None" = None) -> None:
        if flip_group is not None and 0 <= flip_group[0] - run.groups < len(words):
            idx, bit = flip_group
            if bit > MAX_GROUP_BITS:
                raise UsageError(f"MIXDIT_TEST_FLIP_GROUP: a group word has "
                                 f"{MAX_GROUP_BITS + 1} bits (tag included); bit {bit} is out "
                                 "of range")
            words = list(words)
            words[idx - run.groups] ^= 1 << bit
        try:
            _check_groups(name, words, want, cons[1], cons[2], ROUNDING)
        except CheckFailed as exc:
            raise CheckFailed(f"step {step}, {exc}") from None
        run.groups += len(words)
        run.layers[layer or layer_of(name)]["groups"] += len(words)

    def linear(name: str, step: int, a: MXTensor, w: MXTensor, want: np.ndarray):
        cons = consumer(name, step, calib, p1, p2, nblocks, head_dim)
        perm, fmts = (np.arange(0), ()) if cons is None else (cons[1], cons[2])
        pieces = top_row_shards(a, w, perm, _mx9_map(fmts), config.rows, parts, build_id)
        done = [r[0] for r in runner.run([[p] for p in pieces], f"step {step}, {name}")]
        c = np.concatenate([r.c[0] for r in done])
        words = [x for r in done for x in r.words]
        return c, done, (lambda: check_words(step, name, words, want, cons)
                         if cons is not None else None)

    def per_image(name: str, step: int, a: MXTensor, w: MXTensor):
        pieces = [task((TopCommand(ai, wi, False, 0, 0),), None, f"image {i}")
                  for i, (ai, wi) in enumerate(_slices(a, w))]
        n = min(parts, len(pieces))
        batches = [pieces[i::n] for i in range(n)]
        res = runner.run(batches, f"step {step}, {name}")
        by_key = {p.key: r for batch, rs in zip(batches, res) for p, r in zip(batch, rs)}
        done = [by_key[p.key] for p in pieces]
        return np.stack([r.c[0] for r in done]), done

    def attention_groups(layer: str, step: int, heads: dict) -> None:
        """The layer's P V products again, all heads in the top's buffer, converted for
        attn.proj (module docstring)."""
        cons = consumer(layer, step, calib, p1, p2, nblocks, head_dim)
        order = sorted(heads)
        d = heads[order[0]][1].shape[-2]
        images = heads[order[0]][0].shape[0]
        pieces = []
        for i in range(images):
            cmds = tuple(TopCommand(heads[h][0][i], heads[h][1][i], True, h * d // config.cols,
                                    len(cons[2]) if h == order[-1] else 0) for h in order)
            pieces.append(task(cmds, cons, f"image {i}, every head's P V"))
        n = min(parts, len(pieces))
        batches = [pieces[i::n] for i in range(n)]
        res = runner.run(batches, f"step {step}, {layer} (next-layer groups)")
        by_key = {p.key: r for batch, rs in zip(batches, res) for p, r in zip(batch, rs)}
        rep = run.layers[layer]
        for i, p in enumerate(pieces):
            r = by_key[p.key]
            for h, c in zip(order, r.c):
                _check(f"{layer}.head{h}.pv (next-layer groups run)", step, c, heads[h][2][i])
            want = np.concatenate([heads[h][2][i] for h in order], axis=1)
            check_words(step, f"{layer} (image {i})", r.words, want, cons, layer)
            rep["groups_cycles"] += r.cycles
            rep["shards"] += 1

    def on_accelerator(name: str, step: int, a: MXTensor, w: MXTensor) -> np.ndarray:
        want = _golden(a, w)
        if block_of(name) not in on_rtl:
            run.golden_gemms += 1
            return want
        t1 = time.perf_counter()
        words_check = None
        if a.exp.ndim == 2:
            c, done, words_check = linear(name, step, a, w, want)
        else:
            c, done = per_image(name, step, a, w)
        if flip is not None and flip[0] == run.gemms:
            _, r, col, bit = flip
            flat_c = c.reshape(-1, c.shape[-1])
            if r >= flat_c.shape[0] or col >= flat_c.shape[1] or bit > 31:
                raise UsageError(f"MIXDIT_TEST_FLIP_RTL: GEMM {flip[0]} ({name}) has "
                                 f"{flat_c.shape[0]} x {flat_c.shape[1]} results; row, col or "
                                 "bit (0..31) out of range")
            flat_c.view(np.uint32)[r, col] ^= np.uint32(1 << bit)
        _check(name, step, c, want)
        if words_check is not None:
            words_check()
        rep = run.layers[layer_of(name)]
        slices = _slices(a, w)
        rep["gemms"] += len(slices)
        rep["shards"] += len(done)
        rep["cycles"] += sum(r.cycles for r in done)
        rep["results"] += int(c.size)
        for ai, wi in slices:
            m, kg, n = ai.shape[0], ai.groups, wi.shape[0]
            af, wf = list(ai.formats), list(wi.formats)
            rep["model_cycles"] += gemm_cycles(m, 16 * kg, n, af, wf, config)
            rep["busy_cycles"] += tiles(m, n, config) * tile_cycles(16 * kg, af, wf, config)
        run.gemms += 1
        if name.endswith(".pv"):
            layer = layer_of(name)
            seen = pending[(layer, step)]
            seen[int(name.rsplit(".", 2)[1][4:])] = (a, w, want)
            if len(seen) == heads_of(name):
                attention_groups(layer, step, pending.pop((layer, step)))
        rep["wall_s"] += time.perf_counter() - t1
        return c

    t1 = time.perf_counter()
    rtl_img = sample(model, scheme, labels, seeds, calib, guidance, steps, gemm=on_accelerator)
    rtl_s = time.perf_counter() - t1
    image_ok = bool(np.array_equal(rtl_img.view(np.uint32), golden_img.view(np.uint32)))
    if not image_ok:
        diff = rtl_img.view(np.uint32) != golden_img.view(np.uint32)
        raise CheckFailed(f"every GEMM matched, yet the final images differ in {int(diff.sum())} "
                          "pixels: the host operations are not deterministic here")
    layers = {}
    for name, r in run.layers.items():
        layers[name] = {**r, "utilization": r["busy_cycles"] / r["cycles"] if r["cycles"] else 0}
    return {
        "images": {"rtl": rtl_img, "golden": golden_img, "fp32": fp32_img},
        "bit_exact": True, "image_bit_exact": image_ok,
        "netlist": netlist_name(top),
        "gemms": run.gemms, "golden_gemms": run.golden_gemms,
        "results_checked": sum(r["results"] for r in layers.values()),
        "next_layer_groups": {"count": run.groups, "source": "rtl", "bit_exact": True},
        "cycles": sum(r["cycles"] for r in layers.values()),
        "groups_cycles": sum(r["groups_cycles"] for r in layers.values()),
        "model_cycles": sum(r["model_cycles"] for r in layers.values()),
        "tasks": runner.tasks, "tasks_cached": runner.reused,
        "layers": layers, "golden_s": golden_s, "rtl_s": rtl_s,
        "cycles_per_s": runner.progress.rate(),
    }
