"""cocotb testbench of the GEMM array (hw/sequencer.py) on its emitted Verilog (spec §3, §6).

Parameters arrive in the environment: ``ARRAY_ROWS``, ``ARRAY_COLS`` (the emitted size),
``ARRAY_SEED``, ``ARRAY_GEMMS`` (random GEMMs per test) and ``ARRAY_DIT`` (real tiles per DiT
layer: slices of a captured layer's GEMM of qkv, fc1, fc2 and Q K^T of an attention head,
:func:`sim.dit_stimulus.layer_tile`; the capture is ``$MIXDIT_CAPTURE`` or the shipped fixture).
Every GEMM is compared with
:func:`golden.gemm.mx_matmul` as FP32 bit patterns; every result must arrive exactly once.

Structure: :class:`OperandDriver` sends the K steps in the documented tile order, with random
gaps (valid low) between them; :class:`OutputMonitor` takes result rows under random
back-pressure (ready low) and records each result's position; :class:`ArrayTB` owns clock, reset,
driver, monitor and the checker.
"""

import json
import os
import random
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from golden.mx import pack
from hw.cycles import gemm_cycles
from sim.array_stimulus import MIXES, expected_bits, random_gemm, step_words

ROWS = int(os.environ.get("ARRAY_ROWS", "4"))
COLS = int(os.environ.get("ARRAY_COLS", "4"))
SEED = int(os.environ.get("ARRAY_SEED", "1"))
GEMMS = int(os.environ.get("ARRAY_GEMMS", "6"))
DIT = int(os.environ.get("ARRAY_DIT", "1"))
#: A JSON file the ``measure_speed`` test writes its cycles and wall time into (bench reads it).
STATS = os.environ.get("ARRAY_STATS", "")
M_BITS = int(os.environ["ARRAY_M_BITS"])
N_BITS = int(os.environ["ARRAY_N_BITS"])


class OperandDriver:
    """Drives ``a``/``w``: each K step stays valid until taken; ``gap`` is the chance of an idle
    cycle before offering the next step."""

    def __init__(self, dut, rng: random.Random) -> None:
        self.dut, self.rng = dut, rng

    async def send(self, a, w, gap: float) -> None:
        dut = self.dut
        aw, ww = pack(a), pack(w)
        m, kg = a.shape
        n = w.shape[0]
        for m0 in range(0, m, ROWS):
            for n0 in range(0, n, COLS):
                for k in range(kg):
                    while self.rng.random() < gap:
                        dut.a__valid.value = 0
                        dut.w__valid.value = 0
                        await RisingEdge(dut.clk)
                        await FallingEdge(dut.clk)
                    dut.a__payload.value = step_words(a, m0, ROWS, k, aw)
                    dut.w__payload.value = step_words(w, n0, COLS, k, ww)
                    dut.a__valid.value = 1
                    dut.w__valid.value = 1
                    while True:
                        await RisingEdge(dut.clk)
                        if dut.a__ready.value:
                            break
                    await FallingEdge(dut.clk)
        dut.a__valid.value = 0
        dut.w__valid.value = 0


class OutputMonitor:
    """Takes rows from ``o`` with ready low a ``stall`` share of cycles; collects the results."""

    def __init__(self, dut, rng: random.Random) -> None:
        self.dut, self.rng = dut, rng

    async def collect(self, m: int, n: int, stall: float) -> tuple[np.ndarray, np.ndarray, int]:
        dut = self.dut
        got = np.zeros((m, n), np.uint32)
        seen = np.zeros((m, n), np.int32)
        rows = m * -(-n // COLS)
        cycles = 0
        while rows:
            dut.o__ready.value = int(self.rng.random() >= stall)
            await RisingEdge(dut.clk)
            cycles += 1
            if dut.o__valid.value and dut.o__ready.value:
                p = int(dut.o__payload.value)
                mask = (p >> (32 * COLS)) & ((1 << COLS) - 1)
                row = (p >> (33 * COLS)) & ((1 << M_BITS) - 1)
                col = p >> (33 * COLS + M_BITS)
                for lane in range(COLS):
                    if mask >> lane & 1:
                        got[row, col * COLS + lane] = (p >> (32 * lane)) & 0xFFFFFFFF
                        seen[row, col * COLS + lane] += 1
                rows -= 1
            await FallingEdge(dut.clk)
        dut.o__ready.value = 0
        return got, seen, cycles


class ArrayTB:
    """Clock, reset, driver, monitor and checker of the GEMM array."""

    def __init__(self, dut, seed: int) -> None:
        self.dut = dut
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        self.driver = OperandDriver(dut, self.rng)
        self.monitor = OutputMonitor(dut, self.rng)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def reset(self) -> None:
        dut = self.dut
        for port in (dut.cmd__valid, dut.a__valid, dut.w__valid, dut.o__ready):
            port.value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def gemm(self, m: int, kg: int, n: int, mix: str, kind: str = "normal",
                   gap: float = 0.0, stall: float = 0.0) -> int:
        """Run one random GEMM, check every bit and every position; return the cycles it took."""
        a, w = random_gemm(self.nprng, m, kg, n, mix, kind)
        return await self.run(a, w, f"{mix} {kind}", gap, stall)

    async def run(self, a, w, label: str, gap: float = 0.0, stall: float = 0.0) -> int:
        """Run ``a @ w.T``, check every bit and every position; return the cycles it took."""
        dut = self.dut
        m, kg = a.shape
        n = w.shape[0]
        dut.cmd__payload.value = m | (n << M_BITS) | (kg << (M_BITS + N_BITS))
        dut.cmd__valid.value = 1
        while True:
            await RisingEdge(dut.clk)
            if dut.cmd__ready.value:
                break
        await FallingEdge(dut.clk)
        dut.cmd__valid.value = 0
        feeder = cocotb.start_soon(self.driver.send(a, w, gap))
        got, seen, cycles = await self.monitor.collect(m, n, stall)
        await feeder
        assert (seen == 1).all(), (f"{m}x{16 * kg}x{n} {label}: results lost or repeated at "
                                   f"{np.argwhere(seen != 1)[:4].tolist()}")
        exp = expected_bits(a, w)
        bad = np.argwhere(got != exp)
        assert bad.size == 0, (f"{m}x{16 * kg}x{n} {label}: {len(bad)} results differ, first "
                               f"{bad[0].tolist()}: RTL 0x{got[tuple(bad[0])]:08x}, golden "
                               f"0x{exp[tuple(bad[0])]:08x}")
        # The drain of an edge tile's padding rows (past M, never sent) may still run after the
        # last row leaves; it takes at most one tile's drain, R + C cycles.
        for _ in range(ROWS + COLS + 2):
            await RisingEdge(dut.clk)
            if not dut.busy.value:
                break
        assert not dut.busy.value, f"busy {ROWS + COLS + 2} cycles after the last result row"
        return cycles + 1


@cocotb.test()
async def full_speed(dut):
    """No gaps or stalls: bits, positions and the exact cycle count of hw.cycles."""
    from dataclasses import replace

    from hw.config import ArrayConfig
    cfg = replace(ArrayConfig(), rows=ROWS, cols=COLS)
    tb = ArrayTB(dut, SEED)
    await tb.reset()
    for i, mix in enumerate(MIXES):
        m, kg, n = ROWS + 1 + i, 2 + i, COLS * 2 - i
        cycles = await tb.gemm(m, kg, n, mix)
        from sim.array_stimulus import mix_codes
        ca, cw = mix_codes(mix, kg)
        names = lambda codes: ["mx9" if c else "mx6" for c in codes]
        assert cycles == gemm_cycles(m, 16 * kg, n, names(ca), names(cw), cfg), (mix, cycles)


@cocotb.test()
async def stalls_and_gaps(dut):
    """Random shapes, mixes and value regimes under input gaps and output back-pressure, with a
    reset between GEMMs."""
    tb = ArrayTB(dut, SEED + 1)
    kinds = ("normal", "wide", "nan", "cancel", "huge", "tiny")
    for i in range(GEMMS):
        await tb.reset()
        m = tb.rng.randint(1, 3 * ROWS)
        n = tb.rng.randint(1, 3 * COLS)
        kg = tb.rng.choice([1, 2, 3, 5, 8])
        await tb.gemm(m, kg, n, MIXES[i % len(MIXES)], kinds[i % len(kinds)],
                      gap=tb.rng.choice([0.0, 0.3, 0.7]), stall=tb.rng.choice([0.0, 0.5, 0.8]))


@cocotb.test()
async def dit_tiles(dut):
    """Real DiT GEMM tiles: captured activations of qkv, fc1 and fc2, calibrated, reordered and
    quantized as simulate-layer does, against the layer's weights (K = 128 and 512, an edge tile
    on both sides), and Q K^T of a calibrated attention head; at full speed on the exact cycles
    of hw.cycles, then one under stalls and gaps."""
    from dataclasses import replace

    from hw.config import ArrayConfig
    from sim.dit_stimulus import layer_tile

    cfg = replace(ArrayConfig(), rows=ROWS, cols=COLS)
    tb = ArrayTB(dut, SEED + 3)
    await tb.reset()
    names = lambda t: ["mx9" if c else "mx6" for c in t.fmt]
    for kind in ("attn.qkv", "mlp.fc1", "mlp.fc2", "attn"):
        for i in range(DIT):
            a, w, what = layer_tile(kind, ROWS + 1, COLS + 1, seed=SEED + i)
            dut._log.info("real tile: %s", what)
            cycles = await tb.run(a, w, what)
            m, n = a.shape[0], w.shape[0]
            assert cycles == gemm_cycles(m, a.length, n, names(a), names(w), cfg), (what, cycles)
    a, w, what = layer_tile("attn.qkv", ROWS, COLS + 2, seed=SEED + 7)
    await tb.run(a, w, what, gap=0.3, stall=0.5)


@cocotb.test()
async def long_k(dut):
    """K = 1152 (72 groups), MixDiT's placement of MX9 groups at the end of K."""
    tb = ArrayTB(dut, SEED + 2)
    await tb.reset()
    await tb.gemm(ROWS + 2, 72, COLS + 3, "mixdit", stall=0.3)


@cocotb.test()
async def measure_speed(dut):
    """Simulation speed: one real fc2 tile (K = 512) at full speed, cycles per wall second into
    ``ARRAY_STATS`` (bench/bench_array.py), bit-exact and on the exact cycle count."""
    from dataclasses import replace

    from hw.config import ArrayConfig
    from sim.dit_stimulus import layer_tile

    cfg = replace(ArrayConfig(), rows=ROWS, cols=COLS)
    tb = ArrayTB(dut, SEED)
    await tb.reset()
    a, w, what = layer_tile("mlp.fc2", ROWS, COLS, seed=SEED)
    names = lambda t: ["mx9" if c else "mx6" for c in t.fmt]
    t0 = time.perf_counter()
    cycles = await tb.run(a, w, what)
    wall = time.perf_counter() - t0
    assert cycles == gemm_cycles(a.shape[0], a.length, w.shape[0], names(a), names(w), cfg)
    dut._log.info("%s: %d cycles in %.2f s, %.1f cycles/s", what, cycles, wall, cycles / wall)
    if STATS:
        with open(STATS, "w") as f:
            json.dump({"gemm": what, "cycles": cycles, "wall_s": wall}, f)
