"""The fast, file-driven harness for layer-sized GEMMs on the array (spec §3, §6).

:func:`run_gemm` writes A, W and the per-group formats as ``$readmemh`` images in the §1.2 layout,
builds the SystemVerilog testbench ``gemm_tb.sv`` around the array's emitted Verilog (once per
configuration and simulator, cached under ``build/harness/``), runs it, and reads the
``$writememh`` image of C back, with the cycle count the testbench measured.

``verilator --binary`` (the project's Verilator 5.048, :mod:`sim.verilator`) is the fast path,
with a row of PEs verilated as a hierarchical block so that one C++ model serves every row; Icarus
Verilog runs the same testbench for small GEMMs, and both give the same bits
(tests/test_harness.py). The generic build and run machinery, which the top's harness shares, is
:mod:`sim.harness.builder`.

Examples
--------
>>> from golden import mx
>>> res = run_gemm(mx.quantize(a, "mx6"), mx.quantize(w, "mx6"), sim="verilator")
>>> res.c.shape, res.cycles           # float32 [M, N] and the measured cycles
"""

import os
import re
import shutil  # noqa: F401  (tests patch sim.harness.shutil.which)
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.formats import MAX_GROUP_BITS, MX6, MX9
from golden.mx import MXTensor, pack_bytes, read_memh, write_memh
from hw.array import row_module_name
from hw.config import ArrayConfig
from hw.emit import emit
from hw.sequencer import GemmArray

from . import builder as _build
from .builder import (SIMULATORS, Build, Design, HarnessError, SimulatorMissing, simulator_missing,
                    waves_format)

__all__ = ["SIMULATORS", "HarnessResult", "HarnessError", "SimulatorMissing", "run_gemm", "build",
           "gemm_design", "simulator_missing", "waves_format", "write_images", "ROOT", "BUILD",
           "Design", "Build"]

ROOT = _build.ROOT
BUILD = _build.BUILD
TB = Path(__file__).resolve().parent / "gemm_tb.sv"
# Memory depths of the Verilator build (one build serves every GEMM up to these sizes): A and W
# words, groups along K, C words. DiT-XL/2's largest operand is fc2's W (1152 x 288 groups) and
# its largest result fc1's C (256 x 4608).
_VERILATOR_DEPTHS = (1 << 20, 1 << 20, 1 << 12, 1 << 21)


@dataclass(frozen=True)
class HarnessResult:
    """What one harness run returns.

    Attributes
    ----------
    c : numpy.ndarray of float32, shape ``[M, N]``
        The RTL's result, ``A @ W.T`` (compare its bits, ``c.view(np.uint32)``).
    cycles : int
        Clock cycles from the command's transfer to the last result row's, both included.
    sim : str
        The simulator that ran.
    sim_s : float
        Wall time of the simulation run alone (images written, build done).
    build_s : float
        Wall time spent building in this call (0 when the cached build was used).
    version : str
        The simulator's version (as the build cache keys it).
    """

    c: np.ndarray
    cycles: int
    sim: str
    sim_s: float
    build_s: float
    version: str = ""


def _pow2(n: int, floor: int = 1024) -> int:
    return max(floor, 1 << max(0, (n - 1).bit_length()))


def _depths(sim: str, m: int, n: int, kg: int) -> tuple[int, int, int, int]:
    if sim == "verilator":
        return _VERILATOR_DEPTHS
    # Icarus compiles in seconds: size its memories to the GEMM (big ones are slow to allocate).
    return (_pow2(m * kg), _pow2(n * kg), _pow2(kg, 16), _pow2(m * n))


#: The sources the array's Verilog depends on: a change to any of them invalidates cached builds.
_RTL_SOURCES = ("hw/config.py", "hw/skew.py", "hw/array.py", "hw/sequencer.py", "hw/pe.py",
                "hw/fp32.py", "hw/layouts.py", "hw/emit.py", "golden/formats.py")


def gemm_design(config: ArrayConfig = ArrayConfig(),
                depths: "tuple[int, int, int, int] | None" = None, *,
                hierarchical: bool = True) -> Design:
    """The array's harness as a :class:`~sim.harness.builder.Design`: ``gemm_tb.sv`` around
    :class:`hw.sequencer.GemmArray` with its PE emitted as a module of its own, verilated as a
    hierarchical block (one C++ model for all R rows of PEs) unless ``hierarchical`` is False."""
    depths = depths or _VERILATOR_DEPTHS
    top = f"gemm_{config.name.replace('-', '_')}"
    pe = f"{top}_pe"

    def emit_array(directory: Path) -> list[Path]:
        return [emit(GemmArray(config, pe_module=pe), top, directory)]

    defines = {
        "ROWS": config.rows, "COLS": config.cols, "M_BITS": config.m_bits,
        "N_BITS": config.n_bits, "KG_BITS": config.kg_bits, "COL_BITS": config.col_bits,
        "TOP": top, "A_DEPTH": depths[0], "W_DEPTH": depths[1], "KG_DEPTH": depths[2],
        "C_DEPTH": depths[3],
    }
    return Design(name=config.name + ("" if hierarchical else "-flat"), testbench=TB,
                  top="gemm_tb", emit=emit_array, sources=[ROOT / p for p in _RTL_SOURCES],
                  defines=defines, hier_blocks=(row_module_name(pe),) if hierarchical else (),
                  params=repr(config))


def build(config: ArrayConfig = ArrayConfig(), sim: str = "verilator", *,
          waves: "str | None" = None, depths: "tuple[int, int, int, int] | None" = None,
          jobs: int = 2, hierarchical: bool = True, announce=None) -> Build:
    """Build the array's harness for ``config`` under ``sim`` unless a matching build is cached
    (:func:`sim.harness.builder.build`: content-keyed, simulator version included, renamed into
    place when complete).

    Parameters
    ----------
    config : ArrayConfig
    sim : {"verilator", "icarus"}
    waves : {"fst", "vcd"} or None
        Verilator only: a separate build with tracing on, so ``+VCD=`` dumps waves.
    depths : tuple of 4 ints, optional
        Words of the A, W, format and C memories; the default serves DiT-XL/2's layers.
    jobs : int
        Parallel C++ compile jobs of the Verilator build.
    hierarchical : bool
        Verilate a PE row as a hierarchical block (the default; False gives the flat build, kept
        for the benchmark's before/after).
    """
    return _build.build(gemm_design(config, depths, hierarchical=hierarchical), sim,
                        waves=waves, jobs=jobs, announce=announce)


def _check_operands(a: MXTensor, w: MXTensor) -> tuple[int, int, int]:
    if a.exp.ndim != 2 or w.exp.ndim != 2:
        raise ValueError(f"run_gemm needs 2-D operands [M, G] and [N, G], got {a.shape} and "
                         f"{w.shape}")
    if a.groups != w.groups:
        raise ValueError(f"K groups differ: A has {a.groups}, W has {w.groups}")
    for name, t in (("A", a), ("W", w)):
        bad = set(np.unique(t.fmt).tolist()) - {MX6.code, MX9.code}
        if bad:
            raise ValueError(f"{name} has groups the PE does not compute (codes {sorted(bad)}); "
                             "only MX6 and MX9")
    m, kg = a.shape
    n = w.shape[0]
    if m == 0 or n == 0 or kg == 0:
        raise ValueError(f"Empty GEMM: M={m}, N={n}, Kg={kg}")
    return m, n, kg


def write_images(a: MXTensor, w: MXTensor, directory: "str | Path") -> dict[str, Path]:
    """Write the testbench's input images (``A.hex``, ``W.hex``, ``F.hex``) into ``directory``.

    Returns
    -------
    dict
        ``{"A": path, "W": path, "F": path}``.
    """
    d = Path(directory)
    nbytes = MAX_GROUP_BITS // 8
    paths = {"A": d / "A.hex", "W": d / "W.hex", "F": d / "F.hex"}
    write_memh(paths["A"], pack_bytes(a, MAX_GROUP_BITS).reshape(-1, nbytes))
    write_memh(paths["W"], pack_bytes(w, MAX_GROUP_BITS).reshape(-1, nbytes))
    codes = (a.fmt == MX9.code).astype(np.uint8) | ((w.fmt == MX9.code).astype(np.uint8) << 1)
    paths["F"].write_text("".join(f"{int(x):x}\n" for x in codes))
    return paths


def run_gemm(a: MXTensor, w: MXTensor, config: ArrayConfig = ArrayConfig(), *,
             sim: str = "verilator", waves: "str | Path | None" = None, gap: int = 0,
             stall: int = 0, seed: int = 1, timeout_s: "float | None" = None,
             workdir: "str | Path | None" = None, vcd: "str | Path | None" = None,
             announce=None, hierarchical: bool = True) -> HarnessResult:
    """Run ``a @ w.T`` on the array's RTL through the file-driven harness (spec §3, §6).

    Parameters
    ----------
    a : MXTensor, shape ``[M, G]``
        Activations (per-group MX6/MX9 formats, the same for every row).
    w : MXTensor, shape ``[N, G]``
        Weights, one row per output channel.
    config : ArrayConfig
        Array size; one build per configuration and simulator is cached.
    sim : {"verilator", "icarus"}
    waves : path, optional
        Write waves there, FST for ``.fst`` and VCD for ``.vcd`` (Verilator: a separate build
        with tracing on, cached like the other). ``vcd`` is the old name of this parameter.
    gap, stall : int
        Percent of cycles the operand streams are invalid / the output stream is not ready
        (random, from ``seed``); 0 runs at full speed and gives :func:`hw.cycles.gemm_cycles`.
    timeout_s : float, optional
        Kill the simulation after this many seconds.
    workdir : path, optional
        Where the images go (kept); by default a temporary directory, removed afterwards.
    announce : callable, optional
        Called with one line when a build that is not cached starts.
    hierarchical : bool
        Verilator: a PE row as a hierarchical block (default) or the flat build.

    Returns
    -------
    HarnessResult

    Raises
    ------
    ValueError
        For operands of the wrong rank, differing K, MX4 groups, an empty GEMM, or a waves file
        with another suffix or in a directory that cannot be written.
    SimulatorMissing
        If ``sim`` is unknown or not installed.
    HarnessError
        If the build or the run fails; the first line of the message says why.
    """
    m, n, kg = _check_operands(a, w)
    for what, v in (("gap", gap), ("stall", stall)):
        if not isinstance(v, int) or not 0 <= v <= 90:
            raise ValueError(f"{what} must be an integer percentage in [0, 90], not {v!r}")
    missing = simulator_missing(sim)
    if missing:
        raise SimulatorMissing(missing)
    depths = _depths(sim, m, n, kg)
    if m * kg > depths[0] or n * kg > depths[1] or kg > depths[2] or m * n > depths[3]:
        raise ValueError(f"GEMM {m}x{16 * kg}x{n} exceeds the harness memories {depths}")
    waves = waves if waves is not None else vcd
    fmt = None
    if waves is not None:
        fmt = waves_format(waves)
        waves = Path(waves).resolve()
        _check_writable(waves)
    b = build(config, sim, waves=fmt, depths=depths, announce=announce,
              hierarchical=hierarchical)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mixdit-harness-")
        workdir = tmp.name
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    try:
        paths = write_images(a, w, d)
        c_path = d / "C.hex"
        c_path.unlink(missing_ok=True)
        plus = [f"+M={m}", f"+N={n}", f"+KG={kg}", f"+A={paths['A']}", f"+W={paths['W']}",
                f"+F={paths['F']}", f"+C={c_path}", f"+GAP={gap}", f"+STALL={stall}",
                f"+SEED={seed}"]
        if waves is not None:
            plus.append(f"+VCD={waves}")
        out, sim_s = _build.run(b, plus, cwd=d, timeout_s=timeout_s)
        found = re.search(r"HARNESS cycles=(\d+)", out)
        if found is None or not c_path.is_file():
            why = _build.failure_reason(out) if found is None else "no result image was written"
            raise HarnessError(f"{sim} run failed: {why}\n{out[-4000:]}")
        if waves is not None and not waves.is_file():
            raise HarnessError(f"{sim} run wrote no waves to {waves}: "
                               f"{_build.failure_reason(out)}\n{out[-4000:]}")
        words = read_memh(c_path, 32)
        if words.shape[0] != m * n:
            raise HarnessError(f"{sim} wrote {words.shape[0]} results, expected {m * n}")
        c = words.view("<u4").reshape(m, n).view(np.float32).copy()
        return HarnessResult(c, int(found.group(1)), sim, sim_s, b.build_s, b.version)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _check_writable(path: Path) -> None:
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write waves to {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"cannot write waves to {path}: permission denied")
