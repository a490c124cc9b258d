"""Reset in the middle of work, for the PE, the array, the MX converter, the reordering controller
and the top (spec §2-§5), in Amaranth's simulator.

Each block is wrapped in :class:`amaranth.hdl.ResetInserter`, driven partway into one job (a dot
product, a GEMM tile or its drain, a converter pipeline held by back-pressure, a controller command,
a layer of the top), reset for two cycles, and then given a second, different job. What comes out
after the reset must be exactly the second job's results, bit for bit against golden, in order,
with nothing of the first job leaking out (not one stale result, row or group, not one extra).
Memories (the controller's buffer and table) keep their contents over a reset, as RAM does; the
second job writes what it reads. Seeds are fixed and printed.
"""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from golden import gemm, mixdit, mx
from golden.formats import GROUP_SIZE, MAX_GROUP_BITS, MX9
from golden.synthetic import outlier_activations
from hw.config import ArrayConfig
from hw.mx_convert import MXConverter
from hw.pe import PE
from hw.reorder import Reorder, ReorderConfig
from hw.sequencer import GemmArray, cmd_layout
from hw.top import MixDiTTop, TopConfig, command_layout
from sim.array_stimulus import random_gemm
from sim.mx_stimulus import golden_reorder, lanes_word, pack_fields, random_groups, random_order
from sim.pe_stimulus import operand_words, random_dot

TAG_BITS = MAX_GROUP_BITS + 1
_MASK = (1 << MAX_GROUP_BITS) - 1


def wrapped(dut):
    """``dut`` under a test-driven synchronous reset: (top module, reset signal)."""
    rst = Signal(name="test_reset")
    m = Module()
    m.submodules.dut = ResetInserter(rst)(dut)
    return m, rst


class Pump:
    """Drives valid/ready streams cycle by cycle from one testbench: each source offers its
    items in order and advances on its own transfer; each sink takes what is valid when its
    ready (drawn with probability ``1 - stall``) is high."""

    def __init__(self, ctx, rng, stall=0.0):
        self.ctx, self.rng, self.stall, self.cycle = ctx, rng, stall, 0

    async def run(self, sources, sinks, until=lambda n: True, finish=True, limit=20_000):
        """Pump until ``until(cycles)`` holds and (with ``finish``) every source is consumed;
        returns how many items each source gave."""
        ctx = self.ctx
        idx = [0] * len(sources)
        start = self.cycle
        consumed = lambda: all(i >= len(items) for i, (_, items) in zip(idx, sources))
        while not (until(self.cycle - start) and (consumed() or not finish)):
            for (s, items), i in zip(sources, idx):
                ctx.set(s.valid, i < len(items))
                if i < len(items):
                    ctx.set(s.payload.as_value(), items[i])
            readys = [self.rng.random() >= self.stall for _ in sinks]
            for (s, _), r in zip(sinks, readys):
                ctx.set(s.ready, r)
            probes = [s.ready for s, _ in sources]
            for s, _ in sinks:
                probes += [s.valid, s.payload.as_value()]
            got = (await ctx.tick().sample(*probes))[2:]
            for j in range(len(sources)):
                if idx[j] < len(sources[j][1]) and got[j]:
                    idx[j] += 1
            for k, (s, out) in enumerate(sinks):
                valid, word = got[len(sources) + 2 * k], got[len(sources) + 2 * k + 1]
                if valid and readys[k]:
                    out.append(int(word))
            self.cycle += 1
            assert self.cycle - start < limit, "the block stopped making progress"
        for s, _ in sources:
            ctx.set(s.valid, 0)
        return idx

    async def reset(self, rst, streams):
        for s in streams:
            self.ctx.set(s.valid, 0)
        self.ctx.set(rst, 1)
        await self.ctx.tick().repeat(2)
        self.ctx.set(rst, 0)


def simulate(top, bench):
    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# ---- PE -----------------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["mid_group", "before_result"])
def test_pe_reset(when):
    seed = 31
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    first = random_dot(rng, 3, [1, 1, 1], [1, 0, 1], "normal")
    second = random_dot(rng, 2, [0, 1], [0, 0], "normal")
    dut = PE()
    top, rst = wrapped(dut)
    results = []

    async def feed(ctx, case, groups, every):
        for wa, wb in list(zip(operand_words(case.a), operand_words(case.b)))[:groups]:
            ctx.set(dut.a_i.payload.as_value(), wa)
            ctx.set(dut.b_i.payload.as_value(), wb)
            ctx.set(dut.a_i.valid, 1)
            ctx.set(dut.b_i.valid, 1)
            for _ in range(every):
                _, _, v, p = await ctx.tick().sample(dut.result.valid, dut.result.payload)
                ctx.set(dut.a_i.valid, 0)
                ctx.set(dut.b_i.valid, 0)
                if v:
                    results.append(int(p))

    async def bench(ctx):
        # MX9 x MX9 groups take 16 cycles: reset 5 cycles into group 1, or after the last
        # group's multiply steps but before its result lands.
        if when == "mid_group":
            await feed(ctx, first, 1, 16)
            await feed(ctx, first, 1, 5)
        else:
            await feed(ctx, first, 3, 16)
            await ctx.tick().repeat(1)
        assert results == [], "the first dot product finished before the reset"
        ctx.set(rst, 1)
        await ctx.tick().repeat(2)
        ctx.set(rst, 0)
        await feed(ctx, second, 2, 8)
        for _ in range(40):
            _, _, v, p = await ctx.tick().sample(dut.result.valid, dut.result.payload)
            if v:
                results.append(int(p))

    simulate(top, bench)
    assert results == [second.expected], [hex(r) for r in results]


# ---- array --------------------------------------------------------------------------------

ARRAY = dataclasses.replace(ArrayConfig(), rows=2, cols=2, max_m=16, max_n=16, max_groups=8)


def array_steps(a, w, config):
    R, C = config.rows, config.cols
    (m, kg), n = a.shape, w.shape[0]
    pa, pw = mx.pack(a), mx.pack(w)
    sa, sw = [], []
    for m0 in range(0, m, R):
        for n0 in range(0, n, C):
            for k in range(kg):
                sa.append(sum((int(pa[m0 + r, k]) | int(a.fmt[k]) << MAX_GROUP_BITS
                               if m0 + r < m else 0) << (r * TAG_BITS) for r in range(R)))
                sw.append(sum((int(pw[n0 + c, k]) | int(w.fmt[k]) << MAX_GROUP_BITS
                               if n0 + c < n else 0) << (c * TAG_BITS) for c in range(C)))
    return sa, sw


def array_result(rows, m, n, config):
    C = config.cols
    c = np.zeros((m, n), np.uint32)
    seen = set()
    for word in rows:
        row = (word >> (32 * C + C)) & ((1 << config.m_bits) - 1)
        col = word >> (32 * C + C + config.m_bits)
        assert (row, col) not in seen, f"row {row} of column tile {col} came twice"
        seen.add((row, col))
        for j in range(C):
            if col * C + j < n:
                c[row, col * C + j] = (word >> (32 * j)) & 0xFFFFFFFF
    return c


@pytest.mark.parametrize("when", ["mid_tile", "mid_drain"])
def test_array_reset(when):
    seed = 32
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    a1, w1 = random_gemm(rng, 4, 3, 4, "mx9xmx9")
    a2, w2 = random_gemm(rng, 3, 2, 3, "mixdit")
    dut = GemmArray(ARRAY)
    top, rst = wrapped(dut)
    lay = cmd_layout(ARRAY)
    cmd = lambda a, w: [(a.shape[0] << lay["m"].offset) | (w.shape[0] << lay["n"].offset)
                        | (a.shape[1] << lay["kg"].offset)]
    rows = []

    async def bench(ctx):
        pump = Pump(ctx, np.random.default_rng(seed))
        sa, sw = array_steps(a1, w1, ARRAY)
        await pump.run([(dut.cmd, cmd(a1, w1))], [], lambda c: True)
        if when == "mid_tile":
            # Half of the K steps in, a couple of rows already out.
            await pump.run([(dut.a, sa[:7]), (dut.w, sw[:7])], [(dut.o, [])], lambda c: c >= 90)
            assert ctx.get(dut.busy), "the first GEMM ended before the reset"
        else:
            # Every K step in, the output held back: rows wait in the output buffer.
            pump.stall = 1.0
            await pump.run([(dut.a, sa), (dut.w, sw)], [(dut.o, [])], lambda c: c >= 260,
                           finish=False)
            assert ctx.get(dut.o.valid), "no rows were waiting at the reset"
        await pump.reset(rst, [dut.cmd, dut.a, dut.w])
        assert not ctx.get(dut.busy), "busy survived the reset"
        pump.stall = 0.3
        sa, sw = array_steps(a2, w2, ARRAY)
        await pump.run([(dut.cmd, cmd(a2, w2))], [(dut.o, rows)], lambda c: True)
        want = a2.shape[0] * -(-w2.shape[0] // ARRAY.cols)
        await pump.run([(dut.a, sa), (dut.w, sw)], [(dut.o, rows)],
                       lambda c: len(rows) >= want and c > len(sa) * 8 + 60)

    simulate(top, bench)
    assert len(rows) == a2.shape[0] * 2, "rows of the first GEMM leaked, or some went missing"
    got = array_result(rows, a2.shape[0], w2.shape[0], ARRAY)
    assert np.array_equal(got, gemm.mx_matmul(a2, w2).view(np.uint32))


# ---- MX converter -------------------------------------------------------------------------

@pytest.mark.parametrize("rounding", ["trunc", "rne"])
def test_converter_reset_with_a_full_pipeline(rounding):
    seed = 33
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    first, second = random_groups(rng, 6), random_groups(rng, 9)
    fmts = rng.integers(0, 2, size=9)
    dut = MXConverter(rounding)
    top, rst = wrapped(dut)
    out = []

    async def bench(ctx):
        pump = Pump(ctx, rng)
        pump.stall = 1.0
        taken = await pump.run([(dut.i, [lanes_word(g, 1) for g in first])], [(dut.o, [])],
                               lambda c: c >= 10, finish=False)
        assert taken[0] >= 2, "the pipeline did not fill before the reset"
        await pump.reset(rst, [dut.i])
        pump.stall = 0.4
        await pump.run([(dut.i, [lanes_word(g, f) for g, f in zip(second, fmts)])],
                       [(dut.o, out)], lambda c: c >= 80)

    simulate(top, bench)
    x = second.reshape(-1).view(np.float32)
    t = mx.quantize(x, ["mx9" if f else "mx6" for f in fmts], rounding)
    want = [int(w) | (int(f) << MAX_GROUP_BITS) for w, f in zip(mx.pack(t), fmts)]
    assert out == want


# ---- reordering controller ----------------------------------------------------------------

REORDER = ReorderConfig(banks=4, max_channels=64, max_tokens=4, entries=2)


def reorder_items(acts, order, mx9, entry, config):
    wl, cl, kl = config.write_layout(), config.config_layout(), config.command_layout()
    bits = np.ascontiguousarray(acts, dtype=np.float32).view(np.uint32)
    tokens, k = acts.shape
    writes = [pack_fields(wl, token=t, col=col,
                          data=list(bits[t, col * config.banks:(col + 1) * config.banks]))
              for t in range(tokens) for col in range(k // config.banks)]
    rows = [pack_fields(cl, addr=entry * config.max_groups + g,
                        row={"chans": [int(c) for c in order[g * 16:(g + 1) * 16]],
                             "mx9": int(mx9[g])}) for g in range(k // 16)]
    cmd = [pack_fields(kl, entry=entry, groups=k // 16, tokens=tokens)]
    return writes, rows, cmd


@pytest.mark.parametrize("entry2", [0, 1])
def test_controller_reset_mid_command(entry2):
    seed = 34
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    acts1 = outlier_activations(tokens=4, channels=64, seed=seed)[0]
    acts2 = outlier_activations(tokens=3, channels=48, seed=seed + 1)[0]
    o1, o2 = random_order(rng, 64), random_order(rng, 48)
    m1, m2 = rng.random(4) < 0.5, rng.random(3) < 0.5
    dut = Reorder(REORDER)
    top, rst = wrapped(dut)
    out = []

    async def bench(ctx):
        pump = Pump(ctx, rng, stall=0.5)
        w, r, c = reorder_items(acts1, o1, m1, 0, REORDER)
        await pump.run([(dut.w, w)], [], lambda n: n >= len(w))
        await pump.run([(dut.cfg, r)], [], lambda n: n >= len(r))
        first = []
        await pump.run([(dut.cmd, c)], [(dut.o, first)], lambda n: len(first) >= 5)
        assert ctx.get(dut.busy), "the command ended before the reset"
        await pump.reset(rst, [dut.w, dut.cfg, dut.cmd])
        assert not ctx.get(dut.busy) and not ctx.get(dut.o.valid), "state survived the reset"
        w, r, c = reorder_items(acts2, o2, m2, entry2, REORDER)
        await pump.run([(dut.w, w)], [(dut.o, out)], lambda n: n >= len(w))
        await pump.run([(dut.cfg, r)], [(dut.o, out)], lambda n: n >= len(r))
        await pump.run([(dut.cmd, c)], [(dut.o, out)], lambda n: n >= 400)

    simulate(top, bench)
    words = golden_reorder(acts2, o2, m2, "trunc")
    want = [wd | (int(f) << MX9.group_bits) for wd, f in zip(words, np.tile(m2, 3))]
    assert out == want


# ---- top ----------------------------------------------------------------------------------

TOP = TopConfig(dataclasses.replace(ArrayConfig(), rows=2, cols=2, max_m=64, max_n=64,
                                    max_groups=8),
                ReorderConfig(banks=2, max_channels=32, max_tokens=16, entries=1, gated=True))


def top_layer(seed, m, k, n):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    x[:, 3] *= 30.0
    wt = rng.standard_normal((n, k)).astype(np.float32)
    plan = mixdit.plan_linear(x, 0.5)
    a, wq = mixdit.quantize_linear(x, wt, plan)
    ref = gemm.mx_matmul(a, wq)
    nxt = mixdit.plan_linear(ref, 0.5)
    mx9 = np.array([f == MX9.name for f in nxt.a_formats])
    return a, wq, ref, nxt.perm, mx9


def top_items(a, w, order, mx9):
    acfg = TOP.array
    sa, sw = array_steps(a, w, acfg)
    rows = [pack_fields(TOP.reorder.config_layout(), addr=g,
                        row={"chans": [int(c) for c in order[g * 16:(g + 1) * 16]],
                             "mx9": int(mx9[g])}) for g in range(len(order) // GROUP_SIZE)]
    (m, kg), n = a.shape, w.shape[0]
    cmd = [command_layout(TOP).const(
        {"gemm": {"m": m, "n": n, "kg": kg}, "entry": 0, "col": 0, "store": 1,
         "groups": n // GROUP_SIZE}).as_value().value]
    return sa, sw, rows, cmd


def test_top_reset_mid_layer():
    a1, w1, _, p1, m1 = top_layer(41, 8, 32, 32)
    a2, w2, ref2, p2, m2 = top_layer(42, 6, 32, 16)
    dut = MixDiTTop(TOP)
    top, rst = wrapped(dut)
    c_rows, words = [], []

    async def bench(ctx):
        pump = Pump(ctx, np.random.default_rng(43), stall=0.3)
        sa, sw, rows, cmd = top_items(a1, w1, p1, m1)
        await pump.run([(dut.cfg, rows)], [], lambda n: n >= len(rows))
        await pump.run([(dut.cmd, cmd)], [], lambda n: True)
        first = []
        await pump.run([(dut.a, sa), (dut.w, sw)], [(dut.c, []), (dut.o, first)],
                       lambda n: len(first) >= 3, finish=False)
        assert ctx.get(dut.busy), "the first layer ended before the reset"
        await pump.reset(rst, [dut.cfg, dut.cmd, dut.a, dut.w])
        assert not ctx.get(dut.busy), "busy survived the reset"
        sa, sw, rows, cmd = top_items(a2, w2, p2, m2)
        await pump.run([(dut.cfg, rows)], [(dut.c, c_rows), (dut.o, words)],
                       lambda n: n >= len(rows))
        await pump.run([(dut.cmd, cmd)], [(dut.c, c_rows), (dut.o, words)], lambda n: True)
        want = a2.shape[0] * w2.shape[0] // GROUP_SIZE
        await pump.run([(dut.a, sa), (dut.w, sw)], [(dut.c, c_rows), (dut.o, words)],
                       lambda n: len(words) >= want and n > 400)

    simulate(top, bench)
    got = array_result(c_rows, a2.shape[0], w2.shape[0], TOP.array)
    assert np.array_equal(got, ref2.view(np.uint32))
    want = golden_reorder(ref2, p2, m2, "trunc")
    tags = [int(f) << MAX_GROUP_BITS for f in np.tile(m2, a2.shape[0])]
    assert words == [w | t for w, t in zip(want, tags)]
