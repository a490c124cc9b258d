"""The array's stream corners in Amaranth's simulator (spec §3), bit for bit against golden.

``a`` and ``w`` are driven by separate sources whose valid signals come and go independently;
each source advances only on its own transfer (valid and ready both high), so an array that took
one stream without the other would misalign the K steps and fail the bit-exact check. ``cmd``
has gaps, and the next GEMM's command is offered while the previous GEMM's rows are still
leaving under back-pressure on ``o``: the array must take it then (spec §3: the command waits
for the capture, not for the drain), and both GEMMs must come out whole and in order.
"""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import gemm
from golden.formats import MAX_GROUP_BITS
from hw.config import ArrayConfig
from hw.sequencer import GemmArray, cmd_layout
from sim.array_stimulus import random_gemm

TAG_BITS = MAX_GROUP_BITS + 1
SMALL = dataclasses.replace(ArrayConfig(), rows=2, cols=2, max_m=16, max_n=16, max_groups=8)


def steps(a, w, config):
    """The K steps of a GEMM in the array's operand order: (A step, W step) integers."""
    R, C = config.rows, config.cols
    (m, kg), n = a.shape, w.shape[0]
    from golden import mx

    pa, pw = mx.pack(a), mx.pack(w)
    tag = lambda t, k: int(t.fmt[k]) << MAX_GROUP_BITS
    out = []
    for m0 in range(0, m, R):
        for n0 in range(0, n, C):
            for k in range(kg):
                arow = sum((int(pa[m0 + r, k]) | tag(a, k) if m0 + r < m else 0)
                           << (r * TAG_BITS) for r in range(R))
                wrow = sum((int(pw[n0 + c, k]) | tag(w, k) if n0 + c < n else 0)
                           << (c * TAG_BITS) for c in range(C))
                out.append((arow, wrow))
    return out


def run_array(config, gemms, *, a_idle=0.0, w_idle=0.0, cmd_idle=0.0, o_stall=0.0, seed=0,
              dut=None, o_block=0):
    """Run ``gemms`` (a list of (A, W) MXTensors) back to back; returns per GEMM the result
    bits uint32 [M, N] and the marks {'cmd': acceptance cycles, 'last_row': per GEMM the cycle
    of its last row's transfer, 'blocked_steps': the K steps taken while the output was
    blocked}. ``o_block``: cycles from the start during which the output is never ready."""
    dut = dut or GemmArray(config)
    rng = np.random.default_rng(seed)
    C = config.cols
    lay = cmd_layout(config)
    plan = [steps(a, w, config) for a, w in gemms]
    a_steps = [s[0] for p in plan for s in p]
    w_steps = [s[1] for p in plan for s in p]
    want_rows = [a.shape[0] * -(-w.shape[0] // C) for a, w in gemms]
    results = [np.zeros((a.shape[0], w.shape[0]), np.uint32) for a, w in gemms]
    marks = {"cmd": [], "last_row": [], "cycle": 0, "a": 0, "w": 0, "blocked_steps": 0}

    async def clock(ctx):
        while True:
            await ctx.tick()
            marks["cycle"] += 1

    async def cmd(ctx):
        for a, w in gemms:
            while rng.random() < cmd_idle:
                ctx.set(dut.cmd.valid, 0)
                await ctx.tick()
            m, kg, n = a.shape[0], a.shape[1], w.shape[0]
            ctx.set(dut.cmd.payload.as_value(), (m << lay["m"].offset) | (n << lay["n"].offset)
                    | (kg << lay["kg"].offset))
            ctx.set(dut.cmd.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.cmd.ready)
                if ready:
                    break
            marks["cmd"].append(marks["cycle"])
            ctx.set(dut.cmd.valid, 0)

    def source(stream, items, idle, name):
        async def bench(ctx):
            i = 0
            while i < len(items):
                offer = rng.random() >= idle
                ctx.set(stream.valid, offer)
                if offer:
                    ctx.set(stream.payload.as_value(), items[i])
                _, _, ready = await ctx.tick().sample(stream.ready)
                if offer and ready:
                    i += 1
                    marks[name] = i
            ctx.set(stream.valid, 0)
        return bench

    async def sink(ctx):
        g, got = 0, 0
        while g < len(gemms):
            if marks["cycle"] == o_block:
                marks["blocked_steps"] = marks["a"]
            ready = marks["cycle"] >= o_block and rng.random() >= o_stall
            ctx.set(dut.o.ready, ready)
            _, _, valid, word, a_ready, a_valid, w_ready, w_valid = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.as_value(), dut.a.ready, dut.a.valid, dut.w.ready,
                dut.w.valid)
            # A transfer on one operand stream is a transfer on the other.
            assert (a_ready and a_valid) == (w_ready and w_valid), \
                f"cycle {marks['cycle']}: a and w transfers differ"
            if valid and ready:
                word = int(word)
                row = (word >> (32 * C + C)) & ((1 << config.m_bits) - 1)
                col = word >> (32 * C + C + config.m_bits)
                n = results[g].shape[1]
                for j in range(C):
                    if col * C + j < n:
                        assert (word >> (32 * C + j)) & 1, "mask bit missing for a real column"
                        results[g][row, col * C + j] = (word >> (32 * j)) & 0xFFFFFFFF
                got += 1
                if got == want_rows[g]:
                    marks["last_row"].append(marks["cycle"])
                    g, got = g + 1, 0
            assert marks["cycle"] < 20_000, "the array stopped making progress"
        ctx.set(dut.o.ready, 1)
        for _ in range(8):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "the array sent an extra row"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_process(clock)
    sim.add_testbench(cmd)
    sim.add_testbench(source(dut.a, a_steps, a_idle, "a"))
    sim.add_testbench(source(dut.w, w_steps, w_idle, "w"))
    sim.add_testbench(sink)
    sim.run()
    return results, marks


def _check(gemms, results):
    for n, ((a, w), got) in enumerate(zip(gemms, results)):
        want = gemm.mx_matmul(a, w).view(np.uint32)
        assert np.array_equal(got, want), f"GEMM {n}: first difference at " \
            f"{np.argwhere(got != want)[0].tolist()}"


SEEDS = [1, 2]


@pytest.mark.parametrize("seed", SEEDS)
def test_independent_a_and_w_valids_with_cmd_gaps(seed):
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    gemms = [random_gemm(rng, 3, 3, 5, "alt_x_mx9"), random_gemm(rng, 4, 2, 3, "mixdit")]
    results, marks = run_array(SMALL, gemms, a_idle=0.5, w_idle=0.3, cmd_idle=0.5,
                               o_stall=0.3, seed=seed)
    _check(gemms, results)
    assert len(marks["cmd"]) == 2


def test_next_command_is_taken_while_rows_still_leave():
    seed = 4
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    gemms = [random_gemm(rng, 4, 2, 4, "mx6xmx6"), random_gemm(rng, 2, 1, 2, "mx9xmx9"),
             random_gemm(rng, 3, 2, 2, "mixdit")]
    results, marks = run_array(SMALL, gemms, o_stall=0.85, seed=seed)
    _check(gemms, results)
    # The second command went in before the first GEMM's last row had left, and so on.
    assert marks["cmd"][1] < marks["last_row"][0], marks
    assert marks["cmd"][2] < marks["last_row"][1], marks


def test_a_without_w_is_never_taken():
    """W held back entirely for a long stretch: not one A step may be taken meanwhile."""
    rng = np.random.default_rng(5)
    gemms = [random_gemm(rng, 2, 4, 2, "mx6xmx6")]
    results, marks = run_array(SMALL, gemms, a_idle=0.0, w_idle=0.9, seed=5)
    _check(gemms, results)


def test_output_buffer_fills_to_its_depth_and_no_further():
    """The output held back until the array has stopped issuing: it stops with exactly
    ``out_depth`` rows reserved in its buffer (a tile's last step is issued only when the tile's
    rows fit, and then as soon as they do), nothing is lost, and every result arrives once the
    output flows. One-row tiles with one K step each, so the steps taken count the rows."""
    seed = 6
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    depth = SMALL.out_depth
    gemms = [random_gemm(rng, 1, 1, 16, "mx6xmx6") for _ in range(depth // 8 + 2)]
    results, marks = run_array(SMALL, gemms, o_block=1500, seed=seed)
    _check(gemms, results)
    assert marks["blocked_steps"] == depth, (marks["blocked_steps"], depth)
