"""Quick Amaranth-simulator tests of hw/mx_convert.py against golden.mx, bit for bit (spec §6).

The regression testbenches on the emitted Verilog are in test_cocotb_mx_convert.py; these run the
same stimulus (sim/mx_stimulus.py) in Amaranth's simulator, which is faster for small cases.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golden import mx
from golden.formats import GROUP_SIZE, MX6, MX9
from golden.synthetic import outlier_activations
from hw.layouts import check_layout
from hw.mx_convert import CONVERT_LATENCY, MX9ToMX6, MXConverter
from sim.mx_stimulus import (
    golden_words, lanes_word, random_groups, special_groups, tie_groups,
)

ROUNDINGS = ("trunc", "rne")
_WORD_BITS = MX9.group_bits


def rtl_convert(groups: np.ndarray, fmts, rounding: str, *, stall: float = 0.0,
                idle: float = 0.0, seed: int = 0) -> tuple[list[int], int]:
    """Run ``groups`` ``[N, 16]`` (uint32) through :class:`MXConverter` in Amaranth's simulator.

    ``stall`` and ``idle`` are the probabilities that the sink is not ready and the source holds
    back in a cycle. Returns the output words with the fmt tag above bit 143 (as golden words of
    the tag's format) and the number of clock cycles taken.
    """
    dut = MXConverter(rounding)
    rng = np.random.default_rng(seed)
    payloads = [lanes_word(g, f) for g, f in zip(groups, fmts)]
    out: list[int] = []
    cycles = 0

    async def bench(ctx):
        nonlocal cycles
        sent = 0
        while len(out) < len(payloads):
            offer = sent < len(payloads) and rng.random() >= idle
            ready = rng.random() >= stall
            ctx.set(dut.i.valid, offer)
            if offer:
                ctx.set(dut.i.payload.as_value(), payloads[sent])
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, o_valid, o_word = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload.as_value())
            cycles += 1
            if offer and i_ready:
                sent += 1
            if o_valid and ready:
                out.append(o_word)
            assert cycles < 20 * len(payloads) + 100, "converter stopped making progress"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out, cycles


def ref_convert(groups: np.ndarray, fmts, rounding: str) -> list[int]:
    """The same words from golden.mx, tag above bit 143 (the TaggedGroup layout)."""
    return [w | (int(f) << _WORD_BITS) for w, f in zip(golden_words(groups, fmts, rounding), fmts)]


def _assert_same(got: list[int], want: list[int], groups: np.ndarray) -> None:
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        assert g == w, (f"group {n}: lanes {[hex(v) for v in groups[n]]}\n"
                        f"  rtl    {g:#039x}\n  golden {w:#039x}")


def test_layouts_match_golden():
    check_layout(MX6)
    check_layout(MX9)


def test_rejects_unknown_rounding():
    with pytest.raises(ValueError, match="'nearest'"):
        MXConverter("nearest")


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_special_values(rounding):
    rng = np.random.default_rng(1)
    groups = special_groups(rng, 68)
    fmts = rng.integers(0, 2, len(groups))
    got, _ = rtl_convert(groups, fmts, rounding)
    _assert_same(got, ref_convert(groups, fmts, rounding), groups)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_rounding_ties_and_saturation(rounding):
    rng = np.random.default_rng(2)
    groups = tie_groups(rng)
    # Each tie group was built for one width; convert it in both so every boundary is crossed.
    groups = np.concatenate([groups, groups])
    fmts = np.repeat([MX9.code, MX6.code], len(groups) // 2)
    got, _ = rtl_convert(groups, fmts, rounding)
    _assert_same(got, ref_convert(groups, fmts, rounding), groups)


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_outlier_channels_under_stalls(rounding):
    rng = np.random.default_rng(3)
    acts, _ = outlier_activations(tokens=4, channels=128, outlier_share=0.03, seed=3)
    groups = acts.view(np.uint32).reshape(-1, GROUP_SIZE)
    fmts = rng.integers(0, 2, len(groups))
    got, _ = rtl_convert(groups, fmts, rounding, stall=0.4, idle=0.3, seed=4)
    _assert_same(got, ref_convert(groups, fmts, rounding), groups)


def test_one_group_per_cycle():
    rng = np.random.default_rng(5)
    groups = random_groups(rng, 64)
    fmts = rng.integers(0, 2, len(groups))
    got, cycles = rtl_convert(groups, fmts, "rne")
    _assert_same(got, ref_convert(groups, fmts, "rne"), groups)
    assert cycles == len(groups) + CONVERT_LATENCY


_lane = st.one_of(
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x00000001]),
    st.builds(lambda s, e, f: (s << 31) | (e << 23) | f,
              st.integers(0, 1), st.integers(118, 130), st.integers(0, 2**23 - 1)),
)
_group = st.tuples(st.lists(_lane, min_size=GROUP_SIZE, max_size=GROUP_SIZE), st.integers(0, 1))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_group, min_size=1, max_size=24), st.sampled_from(ROUNDINGS),
       st.floats(0, 0.7), st.integers(0, 2**16))
def test_random_groups(batch, rounding, stall, seed):
    groups = np.array([g for g, _ in batch], dtype=np.uint32)
    fmts = [f for _, f in batch]
    got, _ = rtl_convert(groups, fmts, rounding, stall=stall, seed=seed)
    _assert_same(got, ref_convert(groups, fmts, rounding), groups)


def test_mx9_to_mx6_is_the_truncated_mx6():
    rng = np.random.default_rng(6)
    groups = np.concatenate([special_groups(rng, 16), random_groups(rng, 48)])
    fmts = rng.integers(0, 2, len(groups))
    names = [MX9.name if f else MX6.name for f in fmts]
    t = mx.quantize(groups.reshape(-1).view(np.float32), names)
    words = [int(w) for w in mx.pack(t)]
    want = [int(w) for w in mx.pack(mx.mx9_to_mx6(t))]
    dut = MX9ToMX6()
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for w, f in zip(words, fmts):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.as_value(), w | (int(f) << _WORD_BITS))
            await ctx.delay(1e-6)
            word, tag, ready = ctx.get(dut.o.payload.as_value()), ctx.get(dut.o.payload.fmt), \
                ctx.get(dut.i.ready)
            assert ready and tag == MX6.code
            got.append(word)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert got == want
