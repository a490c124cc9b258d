"""cocotb testbench of the PE (hw/pe.py) on its emitted Verilog (spec §2, §6).

Parameters arrive in the environment: ``PE_SEED`` (random seed), ``PE_DOTS`` (dot products of the
random regression), ``PE_LONG`` (dot products at K = 4608), ``PE_DIT`` (real DiT dot products
per layer, :func:`sim.dit_stimulus.pe_dots`: rows of a captured layer's reordered A against rows
of its W, for qkv, fc1, fc2 and Q K^T of a head; the capture is ``$MIXDIT_CAPTURE`` or the shipped
fixture) and ``PE_STATS`` (a JSON file the testbench writes its measured cycles per group and
simulation speed into). Every result is
compared with :func:`golden.gemm.mx_dot` as an FP32 bit pattern, and its arrival cycle with the
latency that hw/pe.py documents.

Structure: :class:`OperandDriver` feeds group pairs at the PE's own rate (a pair every
``cycles_per_group`` cycles, no bubbles), :class:`ResultMonitor` timestamps every result,
:class:`PETB` owns clock, reset, driver, monitor and the golden model, and :meth:`PETB.check` is
the checker.
"""

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from golden.formats import MX6, MX9
from golden.mx import MXTensor
from hw.pe import RESULT_LATENCY
from sim.pe_stimulus import (
    KINDS, MODES, DotCase, cycles_per_group_list, expected_bits, operand_words, random_dot,
)

SEED = int(os.environ.get("PE_SEED", "1"))
DOTS = int(os.environ.get("PE_DOTS", "200"))
LONG = int(os.environ.get("PE_LONG", "2"))
DIT = int(os.environ.get("PE_DIT", "4"))
STATS = os.environ.get("PE_STATS", "")
PERIOD_NS = 10
#: K = 4608 elements, 288 groups: the longest reduction of DiT-XL (its FFN fc2).
LONG_GROUPS = 288


@dataclass
class Sent:
    """One dot product as driven: its case and the edge that sampled its last group pair."""

    case: DotCase
    last_edge: int = -1
    first_edge: int = -1
    expected: int = 0


@dataclass
class Stats:
    cycles: int = 0
    wall_s: float = 0.0
    cycles_per_group: dict = field(default_factory=dict)


def edge_index() -> int:
    """Index of the most recent rising edge (edges at 0, 10, 20, ... ns)."""
    return int(round(get_sim_time("ns") / PERIOD_NS))


class OperandDriver:
    """Drives ``a_i``/``b_i`` (and ``clear``): each group pair for one cycle, then idles for the
    rest of its ``cycles_per_group`` (plus ``gap``). Inputs change on the falling edge."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.a_valid, self.b_valid = dut.a_i__valid, dut.b_i__valid
        self.a_payload, self.b_payload = dut.a_i__payload, dut.b_i__payload
        self.clear = dut.clear

    async def send(self, sent: Sent, gap: int = 0, clear_first: bool = False) -> None:
        case = sent.case
        cpg = cycles_per_group_list(case)
        words = list(zip(operand_words(case.a), operand_words(case.b)))
        for g, ((wa, wb), c) in enumerate(zip(words, cpg)):
            self.a_payload.value = wa
            self.b_payload.value = wb
            self.a_valid.value = 1
            self.b_valid.value = 1
            self.clear.value = int(clear_first and g == 0)
            await RisingEdge(self.dut.clk)
            if g == 0:
                sent.first_edge = edge_index()
            if g == len(words) - 1:
                sent.last_edge = edge_index()
            await FallingEdge(self.dut.clk)
            self.a_valid.value = 0
            self.b_valid.value = 0
            self.clear.value = 0
            if c - 1 + gap:
                await ClockCycles(self.dut.clk, c - 1 + gap, rising=False)

    async def pulse_clear(self) -> None:
        self.clear.value = 1
        await FallingEdge(self.dut.clk)
        self.clear.value = 0


class ResultMonitor:
    """Records every ``result`` strobe as (bits, index of the edge after which it rose)."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.results: list[tuple[int, int]] = []
        cocotb.start_soon(self._run())

    async def _run(self) -> None:
        valid, payload = self.dut.result__valid, self.dut.result__payload
        while True:
            await RisingEdge(valid)
            # The payload register updates in the same time step; read it once all have settled.
            await ReadOnly()
            v = payload.value
            assert v.is_resolvable, f"X/Z in the result: {v}"
            self.results.append((v.to_unsigned(), edge_index()))


class PETB:
    """Clock, reset, driver, monitor, golden model and checker of one PE."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.driver = OperandDriver(dut)
        self.monitor = ResultMonitor(dut)
        self.sent: list[Sent] = []

    async def start(self) -> None:
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
        dut.rst.value = 1
        dut.clear.value = 0
        dut.a_i__valid.value = 0
        dut.b_i__valid.value = 0
        dut.a_i__payload.value = 0
        dut.b_i__payload.value = 0
        await ClockCycles(dut.clk, 3, rising=False)
        dut.rst.value = 0

    async def run(self, cases: list[DotCase], gap: int = 0) -> None:
        """Send ``cases`` back to back (``gap`` idle cycles after each group), wait for every
        result and check them."""
        batch = [Sent(c, expected=c.expected) for c in cases]
        for s in batch:
            await self.driver.send(s, gap)
        self.sent += batch
        await self.drain()
        self.check()

    async def drain(self) -> None:
        await ClockCycles(self.dut.clk, RESULT_LATENCY + 18, rising=False)

    def check(self) -> None:
        """Each result equals the golden bits and arrives ``c + RESULT_LATENCY`` cycles after its
        last group pair was sampled (hw/pe.py)."""
        got = self.monitor.results
        assert len(got) == len(self.sent), f"{len(got)} results for {len(self.sent)} dot products"
        for n, (s, (bits, edge)) in enumerate(zip(self.sent, got)):
            case = s.case
            assert bits == s.expected, (
                f"dot product {n} ({case.groups} groups, A {case.a.formats[:4]}..., B "
                f"{case.b.formats[:4]}...): got {bits:#010x}, golden {s.expected:#010x}")
            c = cycles_per_group_list(case)[-1]
            assert edge + 1 - s.last_edge == c + RESULT_LATENCY, (
                f"dot product {n}: result {edge + 1 - s.last_edge} cycles after its last group, "
                f"hw/pe.py documents {c + RESULT_LATENCY}")

    def record(self, name: str, cycles: int, wall_s: float, **extra) -> None:
        """Add a measurement to the ``PE_STATS`` JSON file (when one is named)."""
        if not STATS:
            return
        path = Path(STATS)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = {"cycles": cycles, "wall_s": wall_s, **extra}
        path.write_text(json.dumps(data, indent=1))


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng([SEED, sum(map(ord, name))])


@cocotb.test()
async def modes_random(dut):
    """Random groups of every mode and every value regime, back to back."""
    tb = PETB(dut)
    await tb.start()
    rng = rng_for("modes")
    cases = [random_dot(rng, int(rng.integers(1, 6)), fa.code, fb.code, kind)
             for fa, fb in MODES.values() for kind in KINDS for _ in range(2)]
    await tb.run(cases)


@cocotb.test()
async def mixed_sequences(dut):
    """Per-group random mixes of the four modes, back to back and with idle gaps."""
    tb = PETB(dut)
    await tb.start()
    rng = rng_for("mixed")
    cases = []
    for kind in KINDS:
        for _ in range(4):
            g = int(rng.integers(1, 9))
            cases.append(random_dot(rng, g, rng.integers(0, 2, g), rng.integers(0, 2, g), kind))
    await tb.run(cases)
    await tb.run(cases[:6], gap=2)


@cocotb.test()
async def special_values(dut):
    """NaN groups, products overflowing to Inf (and Inf - Inf), underflows flushed to signed
    zero, and exact cancellation to +0.0, in every mode."""
    tb = PETB(dut)
    await tb.start()
    rng = rng_for("special")
    cases = [random_dot(rng, int(rng.integers(1, 5)), fa.code, fb.code, kind)
             for kind in ("nan", "huge", "tiny", "cancel") for fa, fb in MODES.values()
             for _ in range(3)]
    want = {kind: False for kind in ("nan", "inf", "zero", "flushed")}
    for c in cases:
        want["nan"] |= c.expected == 0x7FC00000
        want["inf"] |= (c.expected & 0x7FFFFFFF) == 0x7F800000
        want["zero"] |= c.expected == 0
    assert want["nan"] and want["inf"] and want["zero"], f"stimulus misses a class: {want}"
    await tb.run(cases)


@cocotb.test()
async def long_k(dut):
    """K = 4608 (288 groups): mixed-precision activations (a few MX9 groups at the end, as
    spec §4 orders them) against MX6 weights, and all-MX9, back to back."""
    tb = PETB(dut)
    await tb.start()
    rng = rng_for("long")
    cases = []
    for n in range(LONG):
        fa = np.zeros(LONG_GROUPS, dtype=np.uint8)
        fa[-int(rng.integers(1, 40)):] = MX9.code
        fb = np.full(LONG_GROUPS, MX9.code if n % 2 else MX6.code, dtype=np.uint8)
        cases.append(random_dot(rng, LONG_GROUPS, fa, fb, "normal"))
    cases.append(random_dot(rng, LONG_GROUPS, rng.integers(0, 2, LONG_GROUPS),
                            rng.integers(0, 2, LONG_GROUPS), "wide"))
    await tb.run(cases)


@cocotb.test()
async def dit_dot_products(dut):
    """Real DiT dot products: captured activations, calibrated and reordered as simulate-layer
    does, against the layer's weights (K = 128 and 512) and a head's Q against K, back to back
    and with idle gaps."""
    from sim.dit_stimulus import capture_path, pe_dots

    tb = PETB(dut)
    await tb.start()
    cases = pe_dots(per_layer=DIT, seed=SEED)
    dut._log.info("%d real dot products from %s", len(cases), capture_path())
    await tb.run(cases)
    await tb.run(cases[:4], gap=1)


@cocotb.test()
async def clear_between(dut):
    """``clear`` abandons an unfinished dot product; the next one starts from +0.0. A clear
    between finished dot products changes nothing."""
    tb = PETB(dut)
    await tb.start()
    rng = rng_for("clear")
    first = random_dot(rng, 3, MX9.code, MX6.code, "normal")
    dropped = random_dot(rng, 4, MX6.code, MX6.code, "normal")
    after = random_dot(rng, 2, MX6.code, MX9.code, "normal")
    await tb.run([first])
    await tb.driver.pulse_clear()
    # Send `dropped` without its last group, then clear together with `after`'s first group.
    partial = DotCase(*(MXTensor(t.exp[:3], t.micro[:3], t.sign[:3], t.mant[:3], t.fmt[:3], 48)
                        for t in (dropped.a, dropped.b)), expected=0)
    driver = tb.driver
    cpg = cycles_per_group_list(partial)
    for (wa, wb), c in zip(zip(operand_words(partial.a), operand_words(partial.b)), cpg):
        wa &= ~(1 << 145)
        wb &= ~(1 << 145)
        driver.a_payload.value, driver.b_payload.value = wa, wb
        driver.a_valid.value = driver.b_valid.value = 1
        await FallingEdge(dut.clk)
        driver.a_valid.value = driver.b_valid.value = 0
        await ClockCycles(dut.clk, c - 1, rising=False)
    s = Sent(after, expected=expected_bits(after.a, after.b))
    await driver.send(s, clear_first=True)
    tb.sent.append(s)
    await tb.drain()
    tb.check()


@cocotb.test()
async def cycles_per_group(dut):
    """Measured throughput: 4 / 8 / 8 / 16 cycles per group (spec §2.2), with the PE's input
    sampled every cycles_per_group and every result exact and on time."""
    tb = PETB(dut)
    await tb.start()
    rng = rng_for("cpg")
    groups = 32
    measured = {}
    for name, (fa, fb) in MODES.items():
        cases = [random_dot(rng, groups, fa.code, fb.code, "normal") for _ in range(3)]
        first = len(tb.sent)
        await tb.run(cases)
        sent = tb.sent[first:]
        done = tb.monitor.results[first:]
        # From the first group pair sampled to the last result: sum(c) + latency.
        span = done[-1][1] + 1 - sent[0].first_edge - RESULT_LATENCY
        measured[name] = span / (groups * len(cases))
    expect = {"mx6xmx6": 4, "mx9xmx6": 8, "mx6xmx9": 8, "mx9xmx9": 16}
    assert measured == expect, f"cycles per group {measured}, spec §2.2 says {expect}"
    tb.record("cycles_per_group", 0, 0.0, per_mode=measured)


@cocotb.test()
async def regression(dut):
    """PE_DOTS seeded random dot products: random lengths, modes, mixes and value regimes;
    also measures the simulation speed (cycles per wall-clock second)."""
    tb = PETB(dut)
    await tb.start()
    rng = rng_for("regression")
    cases = []
    for _ in range(DOTS):
        g = int(rng.integers(1, 13))
        pick = rng.integers(0, 3)
        fa = rng.integers(0, 2, g) if pick == 0 else np.full(g, rng.integers(0, 2))
        fb = rng.integers(0, 2, g) if pick == 1 else np.full(g, rng.integers(0, 2))
        cases.append(random_dot(rng, g, fa, fb, KINDS[int(rng.integers(0, len(KINDS)))]))
    start_edge = edge_index()
    t0 = time.perf_counter()
    for i in range(0, len(cases), 500):
        await tb.run(cases[i:i + 500])
    wall = time.perf_counter() - t0
    cycles = edge_index() - start_edge
    tb.record("regression", cycles, wall, dots=len(cases), cycles_per_s=cycles / wall)
    dut._log.info(f"{len(cases)} dot products, {cycles} cycles in {wall:.2f} s: "
                  f"{cycles / wall:.0f} cycles/s")
