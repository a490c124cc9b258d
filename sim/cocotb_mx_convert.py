"""cocotb testbench of the MX converter (hw/mx_convert.py) on its emitted Verilog (spec §6).

Parameters arrive in the environment: ``MXC_ROUNDING`` (``trunc`` or ``rne``, the build parameter
of the Verilog under test) and ``MXC_SEED``, and ``MXC_DIT_TOKENS`` (tokens of each real layer output, from
``$MIXDIT_CAPTURE`` or the shipped fixture, :func:`sim.dit_stimulus.converter_groups`). Every
output word is compared with golden.mx as an integer. Each data case runs under every back-pressure / idle pattern of :data:`PATTERNS`.
"""

import os
from collections import deque
from typing import Iterator

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from golden.formats import MX9
from hw.mx_convert import CONVERT_LATENCY
from sim.drivers import always, bursts, coin, collect
from sim.mx_stimulus import golden_words, lanes_word, random_groups, special_groups, tie_groups

ROUNDING = os.environ.get("MXC_ROUNDING", "trunc")
SEED = int(os.environ.get("MXC_SEED", "1"))
DIT_TOKENS = int(os.environ.get("MXC_DIT_TOKENS", "2"))
_WORD_BITS = MX9.group_bits


#: (name, source-willing generator, sink-ready generator).
PATTERNS = [
    ("full-rate", always, always),
    ("random-stall", always, coin(0.5, SEED)),
    ("random-both", coin(0.7, SEED + 1), coin(0.6, SEED + 2)),
    ("burst-stall", always, bursts(3, 5)),
]


class ConverterTB:
    """Clock, reset, a stream source driving ``i``, a stream sink on ``o``, and the checker.

    The source and the sink change their signals on the falling edge and sample the handshake a
    moment later, once the combinational ``ready`` has settled, so every transfer is the one the
    rising edge sees.
    """

    def __init__(self, dut) -> None:
        self.dut = dut
        self.sent = 0
        self.received: list[int] = []
        self.cycles = 0

    async def start(self) -> None:
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        for _ in range(3):
            await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def source(self, payloads: list[int], willing: Iterator[bool]) -> None:
        """Offer each payload until it is taken; hold back when ``willing`` says so."""
        dut = self.dut
        pending = deque(payloads)
        while pending:
            await FallingEdge(dut.clk)
            offer = next(willing)
            dut.i__valid.value = int(offer)
            if offer:
                dut.i__payload.value = pending[0]
            await Timer(1, unit="ps")
            if offer and dut.i__ready.value == 1:
                pending.popleft()
                self.sent += 1
        await FallingEdge(dut.clk)
        dut.i__valid.value = 0

    async def run(self, groups: np.ndarray, fmts, willing, ready) -> int:
        """Send ``groups`` and check every word against golden.mx; return the cycles taken."""
        self.received = []
        self.cycles = 0
        payloads = [lanes_word(g, f) for g, f in zip(groups, fmts)]
        want = [w | (int(f) << _WORD_BITS)
                for w, f in zip(golden_words(groups, fmts, ROUNDING), fmts)]
        src = cocotb.start_soon(self.source(payloads, willing()))
        self.received, self.cycles = await collect(self.dut, len(want), ready(),
                                                   what="converter", limit=30 * len(want) + 100)
        await src
        for n, (got, exp) in enumerate(zip(self.received, want)):
            assert got == exp, (f"group {n} ({ROUNDING}): lanes {[hex(v) for v in groups[n]]}\n"
                                f"  rtl    {got:#039x}\n  golden {exp:#039x}")
        assert len(self.received) == len(want)
        return self.cycles


async def _run_patterns(dut, groups: np.ndarray, fmts) -> None:
    tb = ConverterTB(dut)
    await tb.start()
    for name, willing, ready in PATTERNS:
        dut._log.info("pattern %s: %d groups", name, len(groups))
        cycles = await tb.run(groups, fmts, willing, ready)
        if name == "full-rate":
            # One group per cycle in steady state: N groups take N cycles plus the latency
            # and the one cycle the sink needs to see the first word.
            want = len(groups) + CONVERT_LATENCY + 1
            assert cycles == want, f"{len(groups)} groups took {cycles} cycles, not {want}"


@cocotb.test()
async def special_values(dut):
    """Zeros, -0, subnormals, Inf, NaN, ties and saturation (spec §1.1)."""
    rng = np.random.default_rng(SEED)
    groups = np.concatenate([special_groups(rng, 68), tie_groups(rng)])
    fmts = rng.integers(0, 2, len(groups))
    await _run_patterns(dut, groups, fmts)


@cocotb.test()
async def random_data(dut):
    """Random bit patterns and clustered exponents, random precision per group."""
    rng = np.random.default_rng(SEED + 10)
    groups = random_groups(rng, 200)
    fmts = rng.integers(0, 2, len(groups))
    await _run_patterns(dut, groups, fmts)


@cocotb.test()
async def dit_layer_outputs(dut):
    """A real DiT layer's FP32 outputs (the golden GEMM of captured, calibrated activations and
    the layer's weights) in the consumer's channel order, each group in the format the
    consumer's calibration gives it: fc1's output for fc2, qkv's for attention's heads."""
    from sim.dit_stimulus import converter_groups

    for kind in ("mlp.fc1", "attn.qkv"):
        groups, fmts, what = converter_groups(kind, tokens=DIT_TOKENS)
        dut._log.info("real groups: %s (%d groups, %d MX9)", what, len(groups), int(fmts.sum()))
        await _run_patterns(dut, groups, fmts)
