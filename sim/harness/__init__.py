"""The fast, file-driven harness for layer-sized GEMMs on the array (spec §3, §6).

:func:`run_gemm` writes A, W and the per-group formats as ``$readmemh`` images in the §1.2 layout,
builds the SystemVerilog testbench ``gemm_tb.sv`` around the array's emitted Verilog (once per
configuration and simulator, cached under ``build/harness/``), runs it, and reads the
``$writememh`` image of C back, with the cycle count the testbench measured.

``verilator --binary`` (Debian's 5.006 is enough) is the fast path; Icarus Verilog runs the same
testbench for small GEMMs, and both give the same bits (tests/test_harness.py).

Examples
--------
>>> from golden import mx
>>> res = run_gemm(mx.quantize(a, "mx6"), mx.quantize(w, "mx6"), sim="verilator")
>>> res.c.shape, res.cycles           # float32 [M, N] and the measured cycles
"""

import fcntl
import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.formats import MAX_GROUP_BITS, MX6, MX9
from golden.mx import MXTensor, pack_bytes, read_memh, write_memh
from hw.config import ArrayConfig
from hw.emit import emit
from hw.sequencer import GemmArray

__all__ = ["SIMULATORS", "HarnessResult", "HarnessError", "SimulatorMissing", "run_gemm", "build",
           "simulator_missing", "ROOT", "BUILD"]

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "build" / "harness"
TB = Path(__file__).resolve().parent / "gemm_tb.sv"
SIMULATORS = ("verilator", "icarus")
# Memory depths of the Verilator build (one build serves every GEMM up to these sizes): A and W
# words, groups along K, C words. DiT-XL/2's largest operand is fc2's W (1152 x 288 groups) and
# its largest result fc1's C (256 x 4608).
_VERILATOR_DEPTHS = (1 << 20, 1 << 20, 1 << 12, 1 << 21)
_EXE = {"verilator": "verilator", "icarus": "iverilog"}
#: Part of the cache key: a change of the C++ optimisation level means a new build.
_VERILATOR_FLAGS = ("OPT_FAST=-O1",)


class HarnessError(RuntimeError):
    """The build or the simulation failed (the message carries the simulator's output)."""


class SimulatorMissing(HarnessError):
    """The requested simulator is not installed."""


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
    """

    c: np.ndarray
    cycles: int
    sim: str
    sim_s: float
    build_s: float


def simulator_missing(sim: str) -> "str | None":
    """Why ``sim`` cannot run here (unknown or not installed), or None when it can."""
    if sim not in SIMULATORS:
        return f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}"
    if shutil.which(_EXE[sim]) is None:
        return f"{sim} ({_EXE[sim]}) is not installed"
    return None


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


def _source_key(config, sim: str, depths, trace: bool, sources=_RTL_SOURCES, tb=TB) -> str:
    h = hashlib.sha256()
    for path in [ROOT / p for p in sources] + [tb]:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(repr((config, sim, depths, trace, _VERILATOR_FLAGS)).encode())
    return h.hexdigest()[:16]


def build(config: ArrayConfig = ArrayConfig(), sim: str = "verilator", *, trace: bool = False,
          depths: "tuple[int, int, int, int] | None" = None, jobs: int = 2) -> tuple[Path, float]:
    """Build the harness for ``config`` under ``sim`` unless a matching build is cached.

    The cache key covers the RTL sources (``hw/*.py``), the testbench, the configuration, the
    memory depths and ``trace``; a build directory is locked while it is built, so parallel test
    workers share it.

    Parameters
    ----------
    config : ArrayConfig
    sim : {"verilator", "icarus"}
    trace : bool
        Verilator only: build with ``--trace`` so ``+VCD=`` works (a separate build).
    depths : tuple of 4 ints, optional
        Words of the A, W, format and C memories; the default serves DiT-XL/2's layers.
    jobs : int
        Parallel C++ compile jobs of the Verilator build.

    Returns
    -------
    (pathlib.Path, float)
        The command to run (a Verilator binary or a vvp image) and the seconds spent building
        (0 when cached).

    Raises
    ------
    SimulatorMissing
        If ``sim`` is unknown or not installed.
    HarnessError
        If the build fails.
    """
    depths = depths or _VERILATOR_DEPTHS
    top = f"gemm_{config.name.replace('-', '_')}"
    defines = {
        "ROWS": config.rows, "COLS": config.cols, "M_BITS": config.m_bits,
        "N_BITS": config.n_bits, "KG_BITS": config.kg_bits, "COL_BITS": config.col_bits,
        "TOP": top, "A_DEPTH": depths[0], "W_DEPTH": depths[1], "KG_DEPTH": depths[2],
        "C_DEPTH": depths[3],
    }
    return build_testbench(
        config.name, lambda out: emit(GemmArray(config, pe_module=f"{top}_pe"), top, out),
        defines, _source_key(config, sim, depths, trace), sim, trace=trace, jobs=jobs)


def build_testbench(tag: str, emit_rtl, defines: dict, key: str, sim: str, *, tb: Path = TB,
                    trace: bool = False, jobs: int = 2) -> tuple[Path, float]:
    """Build testbench ``tb`` (its top module named like the file) around the Verilog that
    ``emit_rtl(directory)`` writes, with ``defines`` as macros, under ``sim``, unless the build
    cached under ``BUILD/<tag>-<sim>-<key>`` is complete (:func:`build` for the GEMM harness;
    :mod:`sim.harness.top` for the accelerator top). Returns the command and the build seconds."""
    missing = simulator_missing(sim)
    if missing:
        raise SimulatorMissing(missing)
    tb_top = tb.stem
    tag = tag + ("-trace" if trace and sim == "verilator" else "")
    out = BUILD / f"{tag}-{sim}-{key}"
    target = out / (f"obj_dir/V{tb_top}" if sim == "verilator" else f"{tb_top}.vvp")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (out / "done").is_file() and target.exists():
            return target, 0.0
        t0 = time.perf_counter()
        rtl = emit_rtl(out)
        defines = dict(defines)
        if sim == "verilator":
            if trace:
                defines["WAVES"] = 1
            cmd = ["verilator", "--binary", "-O3", "--x-assign", "0", "--x-initial", "0",
                   "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", tb_top,
                   "-Mdir", str(out / "obj_dir"), "-j", str(jobs),
                   # gcc -O1 instead of Verilator's default -Os on the generated code: about 3x
                   # faster to compile (the 16 x 16 build is ~270 large C++ files).
                   "-MAKEFLAGS", "OPT_FAST=-O1",
                   *(["--trace"] if trace else []),
                   *[f"-D{k}={v}" for k, v in defines.items()], str(tb), str(rtl)]
        else:
            defines["WAVES"] = 1
            cmd = ["iverilog", "-g2012", "-s", tb_top, "-o", str(target),
                   *[f"-D{k}={v}" for k, v in defines.items()], str(tb), str(rtl)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=out)
        if proc.returncode != 0 or not target.exists():
            raise HarnessError(f"{sim} build failed ({' '.join(cmd[:3])} ...):\n"
                               f"{(proc.stdout + proc.stderr)[-4000:]}")
        (out / "done").write_text(" ".join(cmd) + "\n")
        return target, time.perf_counter() - t0


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
             sim: str = "verilator", vcd: "str | Path | None" = None, gap: int = 0,
             stall: int = 0, seed: int = 1, timeout_s: "float | None" = None,
             workdir: "str | Path | None" = None) -> HarnessResult:
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
    vcd : path, optional
        Write waves there (Verilator: a separate ``--trace`` build).
    gap, stall : int
        Percent of cycles the operand streams are invalid / the output stream is not ready
        (random, from ``seed``); 0 runs at full speed and gives :func:`hw.cycles.gemm_cycles`.
    timeout_s : float, optional
        Kill the simulation after this many seconds.
    workdir : path, optional
        Where the images go (kept); by default a temporary directory, removed afterwards.

    Returns
    -------
    HarnessResult

    Raises
    ------
    ValueError
        For operands of the wrong rank, differing K, MX4 groups, or an empty GEMM.
    SimulatorMissing
        If ``sim`` is unknown or not installed.
    HarnessError
        If the build or the run fails.
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
    trace = vcd is not None
    exe, build_s = build(config, sim, trace=trace, depths=depths)
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
        if vcd is not None:
            plus.append(f"+VCD={Path(vcd).resolve()}")
        cmd = [str(exe), *plus] if sim == "verilator" else ["vvp", "-n", str(exe), *plus]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=d)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{sim} run exceeded {timeout_s} s") from None
        sim_s = time.perf_counter() - t0
        out = proc.stdout + proc.stderr
        found = re.search(r"HARNESS cycles=(\d+)", out)
        if proc.returncode != 0 or found is None or not c_path.is_file():
            raise HarnessError(f"{sim} run failed (exit {proc.returncode}):\n{out[-4000:]}")
        words = read_memh(c_path, 32)
        if words.shape[0] != m * n:
            raise HarnessError(f"{sim} wrote {words.shape[0]} results, expected {m * n}")
        c = words.view("<u4").reshape(m, n).view(np.float32).copy()
        return HarnessResult(c, int(found.group(1)), sim, sim_s, build_s)
    finally:
        if tmp is not None:
            tmp.cleanup()
