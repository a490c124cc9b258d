"""The PE (:mod:`hw.pe`) in Amaranth's simulator against :func:`golden.gemm.mx_dot` (spec §2).

Quick block tests: dot products of every mode and of mixed modes, fed back to back; each result
is compared as an FP32 bit pattern and its arrival cycle with the documented latency. The
cocotb regression on the emitted Verilog is ``tests/test_cocotb_pe.py``.
"""

from fractions import Fraction

import numpy as np
import pytest
from amaranth.sim import Simulator

import oracle

from golden.formats import MX6, MX9
from hw.pe import PE, RESULT_LATENCY, cycles_per_group
from golden.mx import MXTensor
from sim.pe_stimulus import (
    KINDS, MODES, DotCase, cycles_per_group_list, expected_bits, operand_words, random_dot,
)


def run_pe(cases: list[DotCase], multiplier: str = "4x4", gap: int = 0,
           clear_at: "dict[int, int] | None" = None):
    """Feed ``cases`` to a PE back to back (``gap`` idle cycles after each group) and return
    ``[(result bits, cycle)]`` and the cycle each dot product's last group was valid.

    ``clear_at`` maps a case index to a group index: ``clear`` is pulsed in that group's cycle,
    after the case's earlier groups went in (the case's expected value must account for it).
    """
    dut = PE(multiplier)
    results: list[tuple[int, int]] = []
    last_cycle: list[int] = []
    schedule = []
    for n, case in enumerate(cases):
        cpg = [cycles_per_group(int(x), int(y), multiplier) for x, y in zip(case.a.fmt, case.b.fmt)]
        for g, (wa, wb) in enumerate(zip(operand_words(case.a), operand_words(case.b))):
            schedule.append((wa, wb, cpg[g] + gap, n, g))
    total = sum(s[2] for s in schedule) + RESULT_LATENCY + 20

    async def bench(ctx):
        cycle = 0
        pending = list(schedule)
        wait = 0
        while cycle < total:
            ctx.set(dut.a_i.valid, 0)
            ctx.set(dut.b_i.valid, 0)
            ctx.set(dut.clear, 0)
            if wait == 0 and pending:
                wa, wb, wait, n, g = pending.pop(0)
                ctx.set(dut.a_i.payload.as_value(), wa)
                ctx.set(dut.b_i.payload.as_value(), wb)
                ctx.set(dut.a_i.valid, 1)
                ctx.set(dut.b_i.valid, 1)
                if clear_at and clear_at.get(n) == g:
                    ctx.set(dut.clear, 1)
                if g == cases[n].groups - 1:
                    last_cycle.append(cycle)
            if ctx.get(dut.result.valid):
                results.append((ctx.get(dut.result.payload), cycle))
            await ctx.tick()
            wait = max(wait - 1, 0)
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results, last_cycle


def check(cases: list[DotCase], multiplier: str = "4x4", gap: int = 0) -> None:
    """Every result bit-exact with the golden model and on time (module docstring of hw.pe)."""
    results, last_cycle = run_pe(cases, multiplier, gap)
    assert len(results) == len(cases), f"{len(results)} results for {len(cases)} dot products"
    for n, (case, (bits, cycle)) in enumerate(zip(cases, results)):
        assert bits == case.expected, (f"dot product {n} ({case.groups} groups, A {case.a.formats}"
                                       f", B {case.b.formats}): got {bits:#010x}, golden "
                                       f"{case.expected:#010x}")
        cpg_last = cycles_per_group_list(case)[-1] if multiplier == "4x4" else 16
        assert cycle == last_cycle[n] + cpg_last + RESULT_LATENCY, (
            f"dot product {n}: result in cycle {cycle}, expected "
            f"{last_cycle[n] + cpg_last + RESULT_LATENCY}")


@pytest.mark.parametrize("mode", list(MODES))
def test_modes(mode):
    """Each mode, every value regime, back to back without bubbles."""
    fa, fb = MODES[mode]
    rng = np.random.default_rng(sum(map(ord, mode)))
    cases = [random_dot(rng, int(rng.integers(1, 4)), fa.code, fb.code, kind)
             for kind in KINDS for _ in range(2)]
    check(cases)


def test_mixed_modes():
    """Per-group random mixes of MX6/MX9 on both sides, back to back, and with idle gaps."""
    rng = np.random.default_rng(5)
    cases = []
    for kind in KINDS:
        for _ in range(2):
            g = int(rng.integers(2, 6))
            cases.append(random_dot(rng, g, rng.integers(0, 2, g), rng.integers(0, 2, g), kind))
    check(cases)
    check(cases[:4], gap=3)


def test_clear():
    """A clear abandons the groups in flight; the dot product restarted in the clear's cycle is
    exact (the golden value of the groups from that one on)."""
    rng = np.random.default_rng(9)
    full = random_dot(rng, 5, MX6.code, MX9.code, "normal")
    results, _ = run_pe([full, full], clear_at={1: 2})
    tail = [MXTensor(t.exp[2:], t.micro[2:], t.sign[2:], t.mant[2:], t.fmt[2:], 48)
            for t in (full.a, full.b)]
    assert [r[0] for r in results] == [full.expected, expected_bits(*tail)]


def test_baseline_8x8():
    """The area baseline computes the same results in 16 cycles per group."""
    rng = np.random.default_rng(3)
    cases = [random_dot(rng, 2, rng.integers(0, 2, 2), rng.integers(0, 2, 2), kind)
             for kind in ("normal", "wide", "nan")]
    check(cases, multiplier="8x8")


def test_cycles_per_group_table():
    """spec §2.2's table."""
    assert [cycles_per_group(a, b) for a, b in MODES.values()] == [4, 8, 8, 16]
    assert cycles_per_group(MX6, MX6, "8x8") == 16
    with pytest.raises(ValueError, match="mx4"):
        cycles_per_group("mx4", "mx6")


def _group(fmt, exp: int, mant: list[int], sign: list[int], micro: "list[int] | None" = None):
    """A 1-group MX tensor with the given fields (elements past ``mant`` are zero)."""
    m = np.zeros((1, 16), np.uint8)
    s = np.zeros((1, 16), np.uint8)
    m[0, :len(mant)] = mant
    s[0, :len(sign)] = sign
    mu = np.zeros((1, 8), np.uint8) if micro is None else np.asarray([micro], np.uint8)
    return MXTensor(np.array([exp], np.uint8), mu, s, m, np.array([fmt.code], np.uint8), 16)


def _concat(*ts):
    return MXTensor(*(np.concatenate([getattr(t, f) for t in ts])
                      for f in ("exp", "micro", "sign", "mant", "fmt")), 16 * len(ts))


def _product(a, b) -> Fraction:
    """The exact value of a 1-group product, straight from spec §2.1's formula."""
    s = sum((-1) ** int(a.sign[0, i] ^ b.sign[0, i]) * int(a.mant[0, i]) * int(b.mant[0, i])
            * 2 ** (2 - int(a.micro[0, i // 2]) - int(b.micro[0, i // 2])) for i in range(16))
    e = int(a.exp[0]) + int(b.exp[0]) - 254 - (a.mant_bits[0] - 1) - (b.mant_bits[0] - 1) - 2
    return Fraction(s) * Fraction(2) ** int(e)


def test_flush_boundary():
    """The group product's FP32 conversion at the flush boundary (spec §2.1): a product exactly
    2^-126 stays the smallest normal; one in [2^-127, 2^-126) -- a biased exponent of exactly 0
    once normalised -- is flushed to signed zero, alone and as the second group after 2^-126
    (where a wrongly kept subnormal would pull the sum below 2^-126)."""
    lo, hi = Fraction(1, 2 ** 127), Fraction(1, 2 ** 126)
    # MX6 x MX6, one element 1 x 1: S = 4, P = 2^(Ea + Eb - 260).
    one6 = lambda e, s=0: _group(MX6, e, [1], [s])
    # MX9 x MX9, sixteen 127 x 127: S = 1032256 (just below 2^20), P = S * 2^(Ea + Eb - 268).
    full9 = lambda e, s=0: _group(MX9, e, [127] * 16, [s] * 16)
    pairs = [  # (A, B, where |P| lies)
        (one6(67), one6(67), "= 2^-126"), (one6(67, 1), one6(67), "= 2^-126"),
        (one6(66), one6(67), "in [2^-127, 2^-126)"), (one6(66), one6(67, 1), "in [2^-127, 2^-126)"),
        (full9(61), full9(61), "in [2^-127, 2^-126)"),
        (full9(61, 1), full9(61), "in [2^-127, 2^-126)"),
        (full9(62), full9(61), ">= 2^-126"),
    ]
    where = {"= 2^-126": lambda p: p == hi, "in [2^-127, 2^-126)": lambda p: lo <= p < hi,
             ">= 2^-126": lambda p: p >= hi}
    cases = []
    for n, (a, b, cls) in enumerate(pairs):
        p = _product(a, b)
        assert where[cls](abs(p)), f"case {n}: |P| = {float(abs(p))!r} is not {cls}"
        bits = expected_bits(a, b)
        # The golden model agrees with the oracle's exact rounding of P (+0 + P).
        assert bits == oracle.add_f32(0, oracle.round_f32_ftz(p)), f"case {n}"
        assert (bits & 0x7FFFFFFF == 0) == (cls == "in [2^-127, 2^-126)"), f"case {n}"
        cases.append(DotCase(a, b, bits))
    # Two groups: 2^-126, then -(0.98 * 2^-126), which must be flushed before the add.
    a2, b2 = _concat(one6(67), full9(61, 1)), _concat(one6(67), full9(61))
    cases.append(DotCase(a2, b2, expected_bits(a2, b2)))
    assert cases[-1].expected == 0x00800000
    check(cases)
