"""The FP32 adder (:mod:`hw.fp32`) against :func:`golden.fp32.fp32_add`, bit for bit (spec §1.3).

Vectors stream through the adder one per cycle in Amaranth's simulator; every sum is compared as
a 32-bit integer with the golden NumPy float32 sum (flushed, canonical NaN).
"""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from golden.fp32 import fp32_add, from_bits, to_bits
from hw.fp32 import FP32Add, leading_zeros

SPECIALS = [
    0x00000000, 0x80000000,                      # +-0
    0x00000001, 0x80000001, 0x007FFFFF, 0x807FFFFF, 0x00400000,   # subnormals
    0x00800000, 0x80800000, 0x00800001, 0x00FFFFFF,               # smallest normals
    0x3F800000, 0xBF800000, 0x3F800001, 0x3FFFFFFF, 0x4B800000,   # around 1 and 2^24
    0x33800000, 0x33000000, 0xB3800000,                           # 2^-24, 2^-25: ulp(1) scale
    0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FFFFE, 0x7F000000,               # largest normals
    0x7F800000, 0xFF800000,                                       # +-Inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF, 0xFFFFFFFF,   # quiet/signalling NaNs
]


def golden_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference sums (uint32) of two arrays of bit patterns."""
    return to_bits(fp32_add(from_bits(a), from_bits(b)))


def rtl_bits(a: np.ndarray, b: np.ndarray, stages: int = 4) -> np.ndarray:
    """Sums (uint32) computed by :class:`FP32Add` in Amaranth's simulator, one pair per cycle."""
    dut = FP32Add(stages=stages)
    a = [int(v) for v in np.asarray(a, dtype=np.uint32)]
    b = [int(v) for v in np.asarray(b, dtype=np.uint32)]
    out: list[int] = []

    async def bench(ctx):
        for i in range(len(a) + stages):
            if i < len(a):
                ctx.set(dut.a, a[i])
                ctx.set(dut.b, b[i])
            if stages == 0:
                if i < len(a):
                    out.append(ctx.get(dut.o))
                continue
            await ctx.tick()
            if i >= stages - 1 and len(out) < len(a):
                out.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-6, if_exists=True)
    sim.add_testbench(bench)
    sim.run()
    return np.array(out, dtype=np.uint32)


def check(a, b, stages: int = 4) -> None:
    """Assert the RTL and golden sums agree bit for bit, naming the first mismatch."""
    a = np.asarray(a, dtype=np.uint32)
    b = np.asarray(b, dtype=np.uint32)
    got, want = rtl_bits(a, b, stages), golden_bits(a, b)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{bad.size} mismatches; first: {a[bad[0]]:#010x} + {b[bad[0]]:#010x}"
                           f" = {got[bad[0]]:#010x}, golden {want[bad[0]]:#010x}")


def random_normals(rng: np.random.Generator, n: int, exp_lo: int = 1, exp_hi: int = 254):
    """Bit patterns with random sign, exponent field in [exp_lo, exp_hi] and fraction."""
    sign = rng.integers(0, 2, n, dtype=np.uint32) << 31
    exp = rng.integers(exp_lo, exp_hi + 1, n, dtype=np.uint32) << 23
    frac = rng.integers(0, 1 << 23, n, dtype=np.uint32)
    return sign | exp | frac


@pytest.mark.parametrize("stages", [0, 1, 2, 3, 4])
def test_special_pairings(stages):
    """Every ordered pairing of zeros, subnormals, extreme normals, infinities and NaNs."""
    sp = np.array(SPECIALS, dtype=np.uint32)
    a, b = np.meshgrid(sp, sp)
    check(a.ravel(), b.ravel(), stages)


@pytest.mark.parametrize("subtract", [False, True])
def test_alignment_distances(subtract):
    """Every alignment distance 0..30 (and a few beyond), both effective add and subtract,
    including exact ties (y's dropped bits exactly half an ulp) to exercise round-to-even."""
    rng = np.random.default_rng(1000 + subtract)
    a_list, b_list = [], []
    for d in list(range(31)) + [31, 32, 40, 100, 200]:
        n = 48
        ea = rng.integers(1 + d, 255, n) if d < 254 else np.full(n, 254)
        eb = ea - d
        fa = rng.integers(0, 1 << 23, n)
        fb = rng.integers(0, 1 << 23, n)
        if 1 <= d <= 24:
            # Ties: keep only the bit that lands exactly on the guard position.
            fb[: n // 4] = ((fb[: n // 4] >> d) << d) & 0x7FFFFF
            fb[: n // 8] |= (1 << (d - 1)) if d >= 1 else 0
        sa = rng.integers(0, 2, n)
        sb = sa ^ 1 if subtract else sa
        a_list.append((sa << 31) | (ea << 23) | fa)
        b_list.append((sb << 31) | (eb << 23) | fb)
    a = np.concatenate(a_list).astype(np.uint32)
    b = np.concatenate(b_list).astype(np.uint32)
    check(np.concatenate([a, b]), np.concatenate([b, a]))


def test_carry_out_and_overflow():
    """Same-sign sums that carry out of the significand, round up into a carry, or overflow."""
    rng = np.random.default_rng(7)
    n = 400
    exp = rng.integers(1, 255, n, dtype=np.uint32)
    fa = rng.integers(1 << 22, 1 << 23, n, dtype=np.uint32)
    fb = rng.integers(1 << 22, 1 << 23, n, dtype=np.uint32)
    sign = rng.integers(0, 2, n, dtype=np.uint32) << 31
    a = sign | (exp << 23) | fa
    b = sign | (exp << 23) | fb
    # All-ones significands that round up into the next binade, and sums reaching Inf.
    ones = np.array([0x3FFFFFFF, 0x7F7FFFFF, 0x4B7FFFFF], dtype=np.uint32)
    small = np.array([0x33000000, 0x7F7FFFFF, 0x3F000000], dtype=np.uint32)
    check(np.concatenate([a, ones, ones ^ 0x80000000]),
          np.concatenate([b, small, small ^ 0x80000000]))


def test_cancellation():
    """Effective subtraction of near-equal values: massive cancellation, exact zero (+0), and
    results that fall into the subnormal range (flushed to zero with the sign kept)."""
    rng = np.random.default_rng(11)
    n = 600
    a = random_normals(rng, n)
    delta = rng.integers(-64, 65, n).astype(np.int64)
    b = ((a.astype(np.int64) + delta) & 0x7FFFFFFF) | ((~a.astype(np.int64)) & 0x80000000)
    b = b.astype(np.uint32)
    tiny = random_normals(rng, n, 1, 3)
    tiny_b = (tiny + rng.integers(-4, 5, n).astype(np.uint32)) ^ np.uint32(0x80000000)
    subn = rng.integers(0, 1 << 23, n, dtype=np.uint32) | (rng.integers(0, 2, n, dtype=np.uint32) << 31)
    subn_b = rng.integers(0, 1 << 23, n, dtype=np.uint32) | (rng.integers(0, 2, n, dtype=np.uint32) << 31)
    check(np.concatenate([a, a, tiny, subn]),
          np.concatenate([b, a ^ np.uint32(0x80000000), tiny_b, subn_b]))


@pytest.mark.parametrize("seed", [0, 1])
def test_random(seed):
    """Random bit patterns (every class) and random normals with nearby exponents."""
    rng = np.random.default_rng(seed)
    n = 4000
    a = np.concatenate([rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32),
                        random_normals(rng, n)])
    shift = rng.integers(-26, 27, n).astype(np.int64)
    near_exp = np.clip(((a[n:] >> 23) & 0xFF).astype(np.int64) + shift, 0, 255).astype(np.uint32)
    near = (a[n:] & np.uint32(0x807FFFFF)) ^ (rng.integers(0, 1 << 23, n, dtype=np.uint32))
    near = near | (near_exp << 23) | (rng.integers(0, 2, n, dtype=np.uint32) << 31)
    b = np.concatenate([rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32), near])
    check(a, b)


@pytest.mark.slow
def test_random_large():
    """A larger random regression for ``make test-all``."""
    rng = np.random.default_rng(99)
    n = 100_000
    a = random_normals(rng, n)
    b = random_normals(rng, n)
    b = (b & np.uint32(0x807FFFFF)) | ((np.clip(((a >> 23) & 0xFF).astype(np.int64)
                                                + rng.integers(-30, 31, n), 0, 255)
                                        .astype(np.uint32)) << 23)
    check(a, b)


def test_rejects_bad_stages():
    with pytest.raises(ValueError, match="stages"):
        FP32Add(stages=5)


def test_hold_keeps_the_last_loaded_sum():
    """With ``hold`` the output register clears on ``restart``, else loads the sum when ``load``
    is high in its last stage's cycle, and keeps its value while other operands pass; ``sum``
    shows every sum in that cycle (the PE's accumulator, hw.pe)."""
    rng = np.random.default_rng(21)
    print("seed 21")
    n = 60
    a, b = random_normals(rng, n), random_normals(rng, n)
    want = golden_bits(a, b)
    load = rng.integers(0, 2, n)
    restart = rng.random(n) < 0.2
    dut = FP32Add(stages=4, hold=True)
    got, sums = [], []

    async def bench(ctx):
        # Pair i enters in cycle i; its sum is in the last stage in cycle i + 3, when `load`
        # and `restart` decide, and in `o` from cycle i + 4.
        for cycle in range(n + 3):
            if cycle < n:
                ctx.set(dut.a, int(a[cycle]))
                ctx.set(dut.b, int(b[cycle]))
            i = cycle - 3
            ctx.set(dut.load, int(load[i]) if i >= 0 else 0)
            ctx.set(dut.restart, int(restart[i]) if i >= 0 else 0)
            if i >= 0:
                sums.append(ctx.get(dut.sum))
            await ctx.tick()
            if i >= 0:
                got.append(ctx.get(dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert sums == [int(x) for x in want]
    held, expect = 0, []
    for i in range(n):
        if restart[i]:
            held = 0
        elif load[i]:
            held = int(want[i])
        expect.append(held)
    assert got == expect


def test_hold_needs_an_output_register():
    with pytest.raises(ValueError, match="hold"):
        FP32Add(stages=0, hold=True)


@pytest.mark.parametrize("width", [1, 2, 5, 24, 25, 32])
def test_leading_zeros(width):
    """hw.fp32.leading_zeros (the adder's near path and the PE's conversion count with it):
    the width for zero, the distance of the highest one from the MSB otherwise, on every
    single-bit value, all ones and random values."""
    m = Module()
    value = Signal(width)
    count = leading_zeros(m, value, "lz")
    rng = np.random.default_rng(width)
    print(f"seed {width}")
    vals = [0, (1 << width) - 1] + [1 << j for j in range(width)]
    vals += [int(rng.integers(0, 1 << int(rng.integers(1, width + 1)))) for _ in range(100)]
    got = []

    async def bench(ctx):
        for v in vals:
            ctx.set(value, v)
            got.append(ctx.get(count))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [width - v.bit_length() for v in vals]
