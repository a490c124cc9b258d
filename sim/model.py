"""A whole sampling run of a DiT with every accelerator GEMM on the RTL, on a Dask cluster
(spec §4-§7).

The sampler (:func:`golden.quality.sampling.sample`: DDIM, classifier-free guidance, the MixDiT
scheme with its per-step channel orders and head formats) runs on the host, and its GEMM hook
sends every accelerator GEMM of the chosen blocks to the cluster: a linear layer as column
shards of one GEMM (:mod:`sim.shard`), one head's Q K^T or P V as one GEMM per image (the CFG
batch's conditional and unconditional halves included), all of a call's shards at once. The RTL
results come back, are compared bit for bit (uint32 patterns) with the golden GEMM of the same
operands, and are what the model computes on with: the softmax, norms, GELU, adaLN, residuals
and the sampler's update are host FP32 operations on the RTL's numbers. So each step depends on
the RTL results of the step before, and the final image is the RTL's. It must equal, bit for
bit, the image of a separate golden run (every GEMM on :func:`golden.gemm.mx_matmul`).

The golden run goes first: it gives the golden image and the number of tasks (the progress
line's total). A killed run, started again, reuses every finished shard from the task cache.

Test hook: ``MIXDIT_TEST_FLIP_RTL="gemm_index,row,col,bit"`` flips one bit of the RTL result of
the ``gemm_index``-th GEMM run on the RTL (counting from 0 in the order the sampler calls them;
for a per-image GEMM the row counts across the images' stacked rows) before the check.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from golden.gemm import mx_matmul
from golden.mx import MXTensor

from .errors import CheckFailed, UsageError
from .shard import assemble, column_ranges, shards

__all__ = ["Run", "layer_of", "block_of", "simulate_model", "save_grid"]


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
                 "results": 0, "wall_s": 0.0}))
    gemms: int = 0
    golden_gemms: int = 0


def _golden(a: MXTensor, w: MXTensor) -> np.ndarray:
    from golden.quality.sampling import mx_matmul_batched

    return mx_matmul(a, w) if a.exp.ndim == 2 else mx_matmul_batched(a, w)


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


def simulate_model(model, calib, *, labels: list, seeds: list, steps: int, guidance: float,
                   p1: float, p2: float, blocks: "list[int]", config, sim: str, runner,
                   parts: int, build_id: str, flip: "tuple | None" = None) -> dict:
    """Sample ``model`` with every GEMM of ``blocks`` on the RTL through ``runner``
    (:class:`sim.cluster.ShardRunner`), check everything bit for bit, and report.

    Parameters
    ----------
    model : golden.dit.DiT
    calib : golden.quality.sampling.Calibration
        MixDiT's channel orders and head scores for ``steps`` steps.
    labels, seeds : list of int
        One class label and one noise seed per image.
    blocks : list of int
        Blocks whose GEMMs run on the RTL (the others on the golden model).
    parts : int
        Column shards per linear GEMM (at most one per column tile).
    build_id : str
        The harness build's identity (:attr:`sim.harness.builder.Build.directory` name), part of
        every task's cache key.

    Returns
    -------
    dict
        ``images`` (``rtl``, ``golden``, ``fp32``: float32 arrays), ``bit_exact``,
        ``image_bit_exact``, ``gemms``, ``cycles``, ``layers`` and the timings.

    Raises
    ------
    CheckFailed
        At the first GEMM whose RTL result differs (naming the step, GEMM and element), a shard
        whose run failed, or a final image that differs.
    """
    from golden.quality.sampling import SCHEMES, mixdit_scheme, sample
    from hw.cycles import gemm_cycles, tile_cycles, tiles

    scheme = mixdit_scheme(p1, p2)
    on_rtl = set(blocks)
    run = Run()
    tasks = [0]

    def cut(a: MXTensor, w: MXTensor) -> list:
        """Per 2-D GEMM of the call, its shards; and the batches (tasks) they go in."""
        if a.exp.ndim == 2:
            pieces = [shards(a, w, config, parts, build_id)]
            return pieces, [[s] for s in pieces[0]]
        pieces = [shards(ai, wi, config, 1, build_id) for ai, wi in _slices(a, w)]
        flat = [p[0] for p in pieces]
        n = min(parts, len(flat))
        return pieces, [flat[i::n] for i in range(n)]

    def count(name: str, step: int, a: MXTensor, w: MXTensor) -> np.ndarray:
        if block_of(name) in on_rtl:
            if a.exp.ndim == 2:
                tasks[0] += len(column_ranges(w.shape[0], config.cols, parts))
            else:
                tasks[0] += a.shape[0]
        return _golden(a, w)

    t0 = time.perf_counter()
    golden_img = sample(model, scheme, labels, seeds, calib, guidance, steps, gemm=count)
    fp32_img = sample(model, SCHEMES["fp32"], labels, seeds, None, guidance, steps)
    golden_s = time.perf_counter() - t0
    runner.progress.add_total(tasks[0])

    def on_accelerator(name: str, step: int, a: MXTensor, w: MXTensor) -> np.ndarray:
        want = _golden(a, w)
        if block_of(name) not in on_rtl:
            run.golden_gemms += 1
            return want
        t1 = time.perf_counter()
        pieces, batches = cut(a, w)
        done = runner.run(batches, f"step {step}, {name}")
        by_key = {s.key: r for batch, res in zip(batches, done) for s, r in zip(batch, res)}
        got = [assemble([(s, by_key[s.key]) for s in p], ai.shape[0], wi.shape[0])
               for (ai, wi), p in zip(_slices(a, w), pieces)]
        flat = [s for p in pieces for s in p]
        c = got[0] if a.exp.ndim == 2 else np.stack(got)
        if flip is not None and flip[0] == run.gemms:
            _, r, col, bit = flip
            flat_c = c.reshape(-1, c.shape[-1])
            if r >= flat_c.shape[0] or col >= flat_c.shape[1] or bit > 31:
                raise UsageError(f"MIXDIT_TEST_FLIP_RTL: GEMM {flip[0]} ({name}) has "
                                 f"{flat_c.shape[0]} x {flat_c.shape[1]} results; row, col or "
                                 "bit (0..31) out of range")
            flat_c.view(np.uint32)[r, col] ^= np.uint32(1 << bit)
        _check(name, step, c, want)
        rep = run.layers[layer_of(name)]
        rep["gemms"] += len(got)
        rep["shards"] += len(flat)
        rep["cycles"] += sum(by_key[s.key].cycles for s in flat)
        rep["results"] += int(c.size)
        rep["wall_s"] += time.perf_counter() - t1
        for ai, wi in _slices(a, w):
            m, kg, n = ai.shape[0], ai.groups, wi.shape[0]
            af, wf = list(ai.formats), list(wi.formats)
            rep["model_cycles"] += gemm_cycles(m, 16 * kg, n, af, wf, config)
            rep["busy_cycles"] += tiles(m, n, config) * tile_cycles(16 * kg, af, wf, config)
        run.gemms += 1
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
        "gemms": run.gemms, "golden_gemms": run.golden_gemms,
        "results_checked": sum(r["results"] for r in layers.values()),
        "cycles": sum(r["cycles"] for r in layers.values()),
        "model_cycles": sum(r["model_cycles"] for r in layers.values()),
        "tasks": runner.tasks, "tasks_cached": runner.reused,
        "layers": layers, "golden_s": golden_s, "rtl_s": rtl_s,
        "cycles_per_s": runner.progress.rate(),
    }
