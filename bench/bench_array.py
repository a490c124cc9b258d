"""The systolic array (issue: 16x16 array, overlapped drain, fast harness, ``mixdit gemm``).

Prints, for the default 16 x 16 array:
- utilization of DiT-XL/2's GEMMs under the exact cycle model (hw/cycles.py, checked against the
  RTL by the tests) beside spec §3's no-overlap anchor ``c*Kg + R + C - 2`` per tile;
- the harness's Verilator build, flat and with a PE row as a hierarchical block (one C++ model for
  the 16 rows): generated C++, build wall and CPU seconds, and the speed of one 64 x 1152 x 64
  GEMM in cycles per wall second and per CPU second (builds are cached: a cached build reports
  the figures recorded when it was made);
- the harness's per-run overhead (process start, memory images, result image) on a tiny GEMM;
- simulation speed in array cycles per second: the fast harness under Verilator and Icarus, and
  the cocotb testbench under Verilator beside Icarus (with cocotb's build time);
- wall time of the whole DiT-XL/2 QKV projection (256 x 1152 times 3456 x 1152, 5% of A's groups
  in MX9) through ``mixdit gemm --sim verilator``, bit-exact against the golden model.

``BENCH_ARRAY_QUICK=1`` skips the QKV run, the flat build and the cocotb measurement.
Builds run under ``nice -n 10`` priority (this process lowers its own).
"""

import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim.tables import print_table

ROOT = Path(__file__).resolve().parent.parent

#: DiT-XL/2 GEMMs (M tokens x K x N) at 256 tokens; QK^T is per head (72 = head dim).
SHAPES = [("qkv", 256, 1152, 3456), ("proj", 256, 1152, 1152), ("fc1", 256, 1152, 4608),
          ("fc2", 256, 4608, 1152), ("QK^T/head", 256, 72, 256)]


def utilization_table() -> None:
    from hw.config import ArrayConfig
    from hw.cycles import gemm_cycles, no_overlap_cycles, tile_cycles, tiles

    cfg = ArrayConfig()
    rows = []
    for name, m, k, n in SHAPES:
        kg = -(-k // 16)
        mixes = ([("5% MX9 A", ["mx6"] * (kg - math.ceil(0.05 * kg)) + ["mx9"] * math.ceil(0.05 * kg),
                   "mx6")] if name != "QK^T/head" else
                 [("MX6 head", "mx6", "mx6"), ("MX9 head", "mx9", "mx9")])
        for label, fa, fw in mixes:
            s = tile_cycles(k, fa, fw, cfg)
            t = tiles(m, n, cfg)
            ours = gemm_cycles(m, k, n, fa, fw, cfg)
            anchor = no_overlap_cycles(m, k, n, fa, fw, cfg)
            busy = t * s
            rows.append([name, f"{m}x{k}x{n}", label, t, f"{s / kg:.2f}", f"{ours:,}",
                         f"{busy + cfg.rows + cfg.cols:,}", f"{anchor:,}", f"{busy / ours:.1%}",
                         f"{busy / anchor:.1%}"])
    print("DiT-XL/2 GEMMs on the 16 x 16 array: exact cycles (hw/cycles.py = RTL) vs the target "
          "T*S + R + C and the no-overlap anchor T*(S + R + C - 2)")
    print_table(["GEMM", "MxKxN", "precision", "tiles", "cbar", "cycles", "target", "no-overlap",
                 "util", "util no-ovl"], rows)


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _child_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def hierarchy_table(quick: bool) -> None:
    """Flat vs hierarchical Verilator build of the 16 x 16 harness: size, build, speed."""
    from golden import mx
    from hw.config import ArrayConfig
    from sim.array_stimulus import expected_bits
    from sim.harness import build, run_gemm, simulator_missing

    if simulator_missing("verilator"):
        print(f"\nHarness builds: skipped ({simulator_missing('verilator')})")
        return
    rng = np.random.default_rng(64)
    x = rng.standard_normal((64, 1152)).astype(np.float32)
    y = rng.standard_normal((64, 1152)).astype(np.float32)
    a, w = mx.quantize(x, ["mx6"] * 68 + ["mx9"] * 4), mx.quantize(y, "mx6")
    want = expected_bits(a, w)
    rows = []
    for hier in ((True,) if quick else (False, True)):
        label = "hierarchical PE row" if hier else "flat"
        b = build(ArrayConfig(), "verilator", hierarchical=hier,
                  announce=lambda line: print(f"... {line}", file=sys.stderr, flush=True))
        st = b.stats()
        c0 = _child_cpu()
        res = run_gemm(a, w, ArrayConfig(), sim="verilator", hierarchical=hier)
        cpu = _child_cpu() - c0
        exact = bool((res.c.view(np.uint32) == want).all())
        rows.append([label, f"{st.get('cpp_bytes', 0) / 1e6:.1f}", f"{st.get('wall_s', 0):.0f}",
                     f"{st.get('cpu_s', 0):.0f}", f"{res.cycles:,}", f"{res.sim_s:.2f}",
                     f"{cpu:.2f}", f"{res.cycles / res.sim_s:,.0f}",
                     f"{res.cycles / max(cpu, 1e-9):,.0f}", "yes" if exact else "NO"])
    print(f"\nThe 16 x 16 harness under Verilator ({os.cpu_count()} CPUs; gcc "
          f"{_opt()} on the generated code), one 64 x 1152 x 64 GEMM (5% MX9 A)")
    print_table(["build", "C++ MB", "build wall s", "build CPU s", "cycles", "run wall s",
                 "run CPU s", "cycles/s", "cycles/CPU-s", "bit-exact"], rows)


def _opt() -> str:
    from sim.harness.builder import VERILATOR_CFLAGS, VERILATOR_OPT
    return f"{VERILATOR_OPT} {VERILATOR_CFLAGS}"


def overhead_table() -> None:
    """Per-run overhead of the harness: a 1 x 16 x 1 GEMM (a few dozen cycles) end to end."""
    from hw.config import ArrayConfig
    from sim.array_stimulus import random_gemm
    from sim.harness import run_gemm, simulator_missing

    rng = np.random.default_rng(2)
    a, w = random_gemm(rng, 1, 1, 1, "mx6xmx6")
    rows = []
    for sim in ("verilator", "icarus"):
        if simulator_missing(sim):
            rows.append([sim, "-", "-", "-", simulator_missing(sim)])
            continue
        run_gemm(a, w, ArrayConfig(), sim=sim)          # build (cached) and warm the page cache
        walls, cpus = [], []
        for _ in range(5):
            t0, c0 = time.perf_counter(), _cpu()
            res = run_gemm(a, w, ArrayConfig(), sim=sim)
            walls.append(time.perf_counter() - t0)
            cpus.append(_cpu() - c0)
        rows.append([sim, f"{res.cycles}", f"{min(walls):.3f}", f"{min(cpus):.3f}",
                     f"{sorted(walls)[2]:.3f}"])
    print("\nHarness per-run overhead on the 16 x 16 array: run_gemm of a 1 x 16 x 1 GEMM "
          "(images written, process started, result read; best and median of 5)")
    print_table(["simulator", "cycles", "best wall s", "best CPU s", "median wall s"], rows)


def speed_table(quick: bool) -> None:
    from hw.config import ArrayConfig
    from sim.array_stimulus import random_gemm
    from sim.harness import run_gemm, simulator_missing

    rng = np.random.default_rng(0)
    rows = []
    runs = [("verilator", 256, 72, 512), ("icarus", 32, 10, 32)]
    for sim, m, kg, n in runs:
        if simulator_missing(sim):
            rows.append([f"harness, {sim}", "-", "-", "-", "-", "-", simulator_missing(sim)])
            continue
        a, w = random_gemm(rng, m, kg, n, "mixdit")
        c0 = _child_cpu()
        res = run_gemm(a, w, ArrayConfig(), sim=sim)
        cpu = _child_cpu() - c0
        rows.append([f"harness, {sim}", f"{m}x{16 * kg}x{n}", f"{res.cycles:,}",
                     f"{res.sim_s:.1f}", f"{cpu:.1f}", "-", f"{res.cycles / res.sim_s:,.0f}"])
    if not quick:
        rows += [cocotb_speed(sim) for sim in ("verilator", "icarus")]
    print("\nSimulation speed of the 16 x 16 array (run time of the simulator; builds cached)")
    print_table(["testbench", "GEMM", "cycles", "wall s", "CPU s", "build s", "cycles/s"], rows)


def cocotb_speed(sim: str) -> list:
    """The cocotb testbench's ``measure_speed`` test (one real fc2 tile, K = 512) on the
    16 x 16 array."""
    import json

    from hw.config import ArrayConfig
    from hw.sequencer import GemmArray
    from sim.runner import BUILD as SIM_BUILD, ROOT as SIM_ROOT, run_cocotb, skip_reason

    if skip_reason(sim):
        return [f"cocotb, {sim}", "-", "-", "-", "-", "-", skip_reason(sim)]
    cfg = ArrayConfig()
    case = "bench-array-16x16"
    stats = SIM_BUILD / f"{case}-{sim}" / "speed.json"
    c0 = _child_cpu()
    run_cocotb(GemmArray(cfg, pe_module="array16x16_pe"), name="array16x16", case=case,
               test_module="cocotb_array", test_dir=SIM_ROOT / "sim", sim=sim,
               testcase=["measure_speed"],
               extra_env={"ARRAY_ROWS": "16", "ARRAY_COLS": "16", "ARRAY_SEED": "1",
                          "ARRAY_GEMMS": "1", "ARRAY_M_BITS": str(cfg.m_bits),
                          "ARRAY_N_BITS": str(cfg.n_bits), "ARRAY_STATS": str(stats)})
    cpu = _child_cpu() - c0
    timing = json.loads((SIM_BUILD / f"{case}-{sim}" / "timing.json").read_text())
    st = json.loads(stats.read_text())
    return [f"cocotb, {sim}", st["gemm"].split(" rows")[0].split("/")[0] + " tile",
            f"{st['cycles']:,}", f"{st['wall_s']:.1f}", f"{cpu:.1f} (incl. build)",
            f"{timing['build_s']:.0f}" + (" (cached)" if timing["build_s"] == 0 else ""),
            f"{st['cycles'] / st['wall_s']:,.1f}"]


def qkv_wall_time() -> None:
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as d:
        a = rng.standard_normal((256, 1152)).astype(np.float32)
        w = (rng.standard_normal((3456, 1152)) / 34).astype(np.float32)
        np.save(f"{d}/A.npy", a)
        np.save(f"{d}/W.npy", w)
        cmd = [sys.executable, "-m", "sim.cli", "gemm", "--a", f"{d}/A.npy", "--w", f"{d}/W.npy",
               "--out", f"{d}/C.npy", "--a-mx9-groups", "4", "--sim", "verilator"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
    print("\nDiT-XL/2 QKV projection through `mixdit gemm --a-mx9-groups 4 --sim verilator` "
          f"(exit {proc.returncode}, {wall:.1f} s wall, {os.cpu_count()} CPUs):")
    print(proc.stdout.rstrip() or proc.stderr.rstrip())


def main() -> None:
    quick = os.environ.get("BENCH_ARRAY_QUICK") == "1"
    os.nice(10)
    utilization_table()
    hierarchy_table(quick)
    overhead_table()
    speed_table(quick)
    if not quick:
        qkv_wall_time()


if __name__ == "__main__":
    main()
