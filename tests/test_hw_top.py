"""The accelerator top (hw/top.py) in Amaranth's simulator, bit for bit against golden (spec §3-§6).

A small top (2 x 2 array, 2 banks) runs one linear layer: A and W enter through the memory-side
streams, the FP32 results leave on ``c`` and the next layer's packed A groups on ``o``. The results
are compared as FP32 bit patterns with :func:`golden.gemm.mx_matmul`, the groups as integers with
the golden quantization of the results in the table's order; and the first group must leave before
the array's last result row (the controller hides behind the array, paper §III-C).
"""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import gemm, mixdit, mx
from golden.formats import GROUP_SIZE, MAX_GROUP_BITS, MX9
from hw.config import ArrayConfig
from hw.emit import BLOCKS
from hw.reorder import ReorderConfig
from hw.top import MixDiTTop, TopConfig, command_layout
from sim.mx_stimulus import golden_reorder, pack_fields

TAG_BITS = MAX_GROUP_BITS + 1


def _tagged(words: np.ndarray, fmts: np.ndarray) -> np.ndarray:
    """Per group: the 144-bit word with its MX9 tag above it (hw.layouts.TaggedGroup)."""
    out = np.empty(words.shape, dtype=object)
    for idx in np.ndindex(words.shape):
        out[idx] = int(words[idx]) | (int(fmts[idx[-1]] == MX9.code) << MAX_GROUP_BITS)
    return out


def run_top(config: TopConfig, a: mx.MXTensor, w: mx.MXTensor, order: np.ndarray,
            mx9: np.ndarray, *, o_stall: float = 0.0, seed: int = 0):
    """One layer through :class:`MixDiTTop`: returns (C float32, words, cycle of the first word,
    cycle of the last result row)."""
    acfg = config.array
    R, C = acfg.rows, acfg.cols
    (m, kg), n = a.shape, w.shape[0]
    ta, tw = _tagged(mx.pack(a), a.fmt), _tagged(mx.pack(w), w.fmt)
    dut = MixDiTTop(config)
    rng = np.random.default_rng(seed)
    c = np.zeros((m, n), dtype=np.uint32)
    words: list[int] = []
    marks = {"first_o": None, "last_c": None}
    steps = []
    for m0 in range(0, m, R):
        for n0 in range(0, n, C):
            for k in range(kg):
                arow = sum((int(ta[m0 + r, k]) if m0 + r < m else 0) << (r * TAG_BITS)
                           for r in range(R))
                wrow = sum((int(tw[n0 + j, k]) if n0 + j < n else 0) << (j * TAG_BITS)
                           for j in range(C))
                steps.append((arow, wrow))

    async def feed(ctx):
        for g in range(len(order) // GROUP_SIZE):
            row = {"chans": list(order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE]), "mx9": int(mx9[g])}
            ctx.set(dut.cfg.payload.as_value(), pack_fields(
                config.reorder.config_layout(), addr=g, row=row))
            ctx.set(dut.cfg.valid, 1)
            await ctx.tick()
        ctx.set(dut.cfg.valid, 0)
        ctx.set(dut.cmd.payload.as_value(), command_layout(config).const(
            {"gemm": {"m": m, "n": n, "kg": kg}, "entry": 0, "col": 0, "store": 1,
             "groups": n // GROUP_SIZE}).as_value().value)
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        for arow, wrow in steps:
            ctx.set(dut.a.payload.as_value(), arow)
            ctx.set(dut.w.payload.as_value(), wrow)
            ctx.set(dut.a.valid, 1)
            ctx.set(dut.w.valid, 1)
            await ctx.tick().until(dut.a.ready & dut.w.ready)
        ctx.set(dut.a.valid, 0)
        ctx.set(dut.w.valid, 0)

    async def drain(ctx):
        cycle = 0
        ctx.set(dut.c.ready, 1)
        while len(words) < m * n // GROUP_SIZE:
            ready = rng.random() >= o_stall
            ctx.set(dut.o.ready, ready)
            _, _, cv, cp, ov, op = await ctx.tick().sample(
                dut.c.valid, dut.c.payload.as_value(), dut.o.valid, dut.o.payload.as_value())
            cycle += 1
            if cv:
                cp = int(cp)
                row = (cp >> (32 * C + C)) & ((1 << acfg.m_bits) - 1)
                col = cp >> (32 * C + C + acfg.m_bits)
                for j in range(C):
                    if col * C + j < n:
                        c[row, col * C + j] = (cp >> (32 * j)) & 0xFFFFFFFF
                marks["last_c"] = cycle
            if ov and ready:
                words.append(int(op))
                if marks["first_o"] is None:
                    marks["first_o"] = cycle
            assert cycle < 100_000, "the top stopped making progress"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    return c.view(np.float32), words, marks["first_o"], marks["last_c"]


SMALL = TopConfig(dataclasses.replace(ArrayConfig(), rows=2, cols=2, max_m=64, max_n=64,
                                      max_groups=8),
                  ReorderConfig(banks=2, max_channels=32, max_tokens=16, entries=1,
                                gated=True))


@pytest.mark.parametrize("o_stall", [pytest.param(0.0, marks=pytest.mark.slow), 0.4])
def test_top_layer_bit_exact_and_overlapped(o_stall):
    rng = np.random.default_rng(7)
    m, k, n = 12, 32, 32
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[:, 5] *= 40.0
    wt = rng.standard_normal((n, k)).astype(np.float32)
    plan = mixdit.plan_linear(x, 0.5)
    a, wq = mixdit.quantize_linear(x, wt, plan)
    # The next layer's order and map: calibrated on the golden output of this one.
    ref = gemm.mx_matmul(a, wq)
    nxt = mixdit.plan_linear(ref, 0.5)
    mx9 = np.array([f == MX9.name for f in nxt.a_formats])
    c, words, first_o, last_c = run_top(SMALL, a, wq, nxt.perm, mx9, o_stall=o_stall)
    assert np.array_equal(c.view(np.uint32), ref.view(np.uint32))
    want = golden_reorder(ref, nxt.perm, mx9, "trunc")
    tags = [int(f) << MAX_GROUP_BITS for f in np.tile(mx9, m)]
    assert words == [w | t for w, t in zip(want, tags)]
    assert first_o < last_c, "the controller did not start before the array's last result"


def test_top_config_validation():
    with pytest.raises(ValueError, match="one bank per array column"):
        TopConfig(ArrayConfig(), ReorderConfig(banks=8, max_channels=64, gated=True))
    with pytest.raises(ValueError, match="gated"):
        TopConfig(ArrayConfig(), ReorderConfig())


def test_top_is_an_emitted_block():
    assert BLOCKS["top"] == "hw.top:make_top"
