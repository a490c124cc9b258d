"""The systolic array (issue: 16x16 array, overlapped drain, fast harness, ``mixdit gemm``).

Prints, for the default 16 x 16 array:
- utilization of DiT-XL/2's GEMMs under the exact cycle model (hw/cycles.py, checked against the
  RTL by the tests) beside spec §3's no-overlap anchor ``c*Kg + R + C - 2`` per tile;
- simulation speed in array cycles per second: the fast harness under Verilator and Icarus, and
  the cocotb testbench (Icarus);
- wall time of the whole DiT-XL/2 QKV projection (256 x 1152 times 3456 x 1152, 5% of A's groups
  in MX9) through ``mixdit gemm --sim verilator``, bit-exact against the golden model.

``BENCH_ARRAY_QUICK=1`` skips the QKV run and the cocotb measurement.
"""

import math
import os
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


def speed_table(quick: bool) -> None:
    from hw.config import ArrayConfig
    from sim.array_stimulus import random_gemm
    from sim.harness import run_gemm, simulator_missing

    rng = np.random.default_rng(0)
    rows = []
    runs = [("verilator", 256, 72, 512), ("icarus", 32, 10, 32)]
    for sim, m, kg, n in runs:
        if simulator_missing(sim):
            rows.append([f"harness, {sim}", "-", "-", "-", simulator_missing(sim)])
            continue
        a, w = random_gemm(rng, m, kg, n, "mixdit")
        res = run_gemm(a, w, ArrayConfig(), sim=sim)
        rows.append([f"harness, {sim}", f"{m}x{16 * kg}x{n}", f"{res.cycles:,}",
                     f"{res.sim_s:.1f}", f"{res.cycles / res.sim_s:,.0f}"])
    if not quick:
        rows.append(cocotb_speed())
    print("\nSimulation speed of the 16 x 16 array (wall time of the simulator run; builds cached)")
    print_table(["testbench", "GEMM", "cycles", "seconds", "cycles/s"], rows)


def cocotb_speed() -> list:
    from hw.config import ArrayConfig
    from hw.sequencer import GemmArray
    from sim.runner import ROOT as SIM_ROOT, run_cocotb, skip_reason

    if skip_reason("icarus"):
        return ["cocotb, icarus", "-", "-", "-", skip_reason("icarus")]
    cfg = ArrayConfig()
    t0 = time.perf_counter()
    run_cocotb(GemmArray(cfg, pe_module="array16x16_pe"), name="array16x16",
               case="bench-array-16x16", test_module="cocotb_array", test_dir=SIM_ROOT / "sim",
               sim="icarus", testcase=["long_k"],
               extra_env={"ARRAY_ROWS": "16", "ARRAY_COLS": "16", "ARRAY_SEED": "1",
                          "ARRAY_GEMMS": "1", "ARRAY_M_BITS": str(cfg.m_bits),
                          "ARRAY_N_BITS": str(cfg.n_bits)})
    wall = time.perf_counter() - t0
    from hw.cycles import gemm_cycles
    cycles = gemm_cycles(18, 1152, 19, ["mx6"] * 54 + ["mx9"] * 18, "mx6", cfg)
    return ["cocotb, icarus (incl. build)", "18x1152x19", f"~{cycles:,}", f"{wall:.1f}",
            f"{cycles / wall:,.0f}"]


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
    utilization_table()
    speed_table(quick)
    if not quick:
        qkv_wall_time()


if __name__ == "__main__":
    main()
