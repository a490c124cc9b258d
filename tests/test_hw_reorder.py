"""Quick Amaranth-simulator tests of hw/reorder.py against golden.mx, bit for bit (spec §4-§6).

Orders come from the golden calibration (golden.mixdit) of activations with outlier channels, and
from adversarial, identity and random permutations; every output word is compared as an integer
with the golden quantization of the permuted activations. The cocotb regression on the emitted
Verilog is test_cocotb_reorder.py.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.formats import GROUP_SIZE, MX9
from golden.synthetic import outlier_activations
from hw.reorder import PIPELINE_CYCLES, Reorder, ReorderConfig, group_cycles
from sim.mx_stimulus import (
    adversarial_order, calibrated_plan, golden_reorder, pack_fields, random_order,
)

SMALL = ReorderConfig(banks=4, max_channels=64, max_tokens=4, entries=2)


def rtl_reorder(config: ReorderConfig, layers, *, stall: float = 0.0, seed: int = 0):
    """Run ``layers`` through :class:`Reorder` in Amaranth's simulator.

    Each layer is ``(acts [tokens, K] float32, order [K], mx9 [K/16] bool, entry)``: its
    activations are written into the buffer, its table rows into ``entry``, then one command runs
    it. Returns, per layer, the output words (tag above bit 143) and the cycles from the command's
    acceptance to its last group leaving the converter.
    """
    dut = Reorder(config)
    rng = np.random.default_rng(seed)
    w_layout, c_layout, k_layout = (config.write_layout(), config.config_layout(),
                                    config.command_layout())
    results = []

    async def bench(ctx):
        for acts, order, mx9, entry in layers:
            tokens, k = acts.shape
            bits = np.ascontiguousarray(acts, dtype=np.float32).view(np.uint32)
            ctx.set(dut.w.valid, 1)
            for t in range(tokens):
                for col in range(k // config.banks):
                    lanes = bits[t, col * config.banks:(col + 1) * config.banks]
                    ctx.set(dut.w.payload.as_value(),
                            pack_fields(w_layout, token=t, col=col, data=list(lanes)))
                    await ctx.tick()
            ctx.set(dut.w.valid, 0)
            ctx.set(dut.cfg.valid, 1)
            for g in range(k // GROUP_SIZE):
                row = {"chans": list(order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE]),
                       "mx9": int(mx9[g])}
                ctx.set(dut.cfg.payload.as_value(),
                        pack_fields(c_layout, addr=entry * config.max_groups + g, row=row))
                await ctx.tick()
            ctx.set(dut.cfg.valid, 0)
            ctx.set(dut.cmd.payload.as_value(),
                    pack_fields(k_layout, entry=entry, groups=k // GROUP_SIZE, tokens=tokens))
            ctx.set(dut.cmd.valid, 1)
            for _ in range(40 * config.max_groups * config.max_tokens + 50):
                _, _, taken = await ctx.tick().sample(dut.cmd.ready)
                if taken:
                    break
            assert taken, "the previous command never ended: the controller took no command"
            ctx.set(dut.cmd.valid, 0)
            words, cycles = [], 0
            want = tokens * (k // GROUP_SIZE)
            while len(words) < want:
                ready = rng.random() >= stall
                ctx.set(dut.o.ready, ready)
                _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
                cycles += 1
                if valid and ready:
                    words.append(word)
                assert cycles < 40 * want + 50, "controller stopped making progress"
            ctx.set(dut.o.ready, 1)
            for _ in range(PIPELINE_CYCLES + 4):
                _, _, valid = await ctx.tick().sample(dut.o.valid)
                assert not valid, "controller emitted an extra group"
            results.append((words, cycles))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def ref_reorder(config: ReorderConfig, layers) -> list[list[int]]:
    """The same words from golden.mx, tag above bit 143 (TaggedGroup)."""
    out = []
    for acts, order, mx9, _ in layers:
        words = golden_reorder(acts, order, mx9, config.rounding)
        tags = np.tile(np.asarray(mx9, dtype=int), acts.shape[0])
        out.append([w | (int(f) << MX9.group_bits) for w, f in zip(words, tags)])
    return out


def _check(config, layers, **kw):
    got = rtl_reorder(config, layers, **kw)
    want = ref_reorder(config, layers)
    for n, ((words, _), ref) in enumerate(zip(got, want)):
        assert len(words) == len(ref)
        for j, (g, r) in enumerate(zip(words, ref)):
            assert g == r, f"layer {n} group {j}: rtl {g:#x} golden {r:#x}"
    return got


@pytest.mark.parametrize("bad, match", [
    ({"banks": 3}, "power of two, not 3"),
    ({"max_channels": 40}, "not 40"),
    ({"banks": 32, "max_channels": 48}, "not 48"),
    ({"max_tokens": 0}, "not 0"),
    ({"entries": 0}, "not 0"),
    ({"rounding": "up"}, "'up'"),
])
def test_config_validation(bad, match):
    with pytest.raises(ValueError, match=match):
        ReorderConfig(**bad)


def test_calibrated_order_and_reload():
    """Two layers, the second's table in the other entry, then the first entry reloaded."""
    acts, order, mx9 = calibrated_plan(tokens=3, channels=64, p1=0.25, seed=1)
    acts2, order2, mx92 = calibrated_plan(tokens=4, channels=48, p1=0.4, seed=2)
    rng = np.random.default_rng(3)
    acts3 = outlier_activations(tokens=2, channels=64, seed=4)[0]
    order3 = random_order(rng, 64)
    mx93 = rng.random(4) < 0.5
    _check(SMALL, [(acts, order, mx9, 0), (acts2, order2, mx92, 1), (acts3, order3, mx93, 0)],
           stall=0.3, seed=5)


def test_single_group_and_single_token_commands():
    """Commands of one group, of one token and of both, back to back: each ends after its own
    groups (the fetch's last-group and last-token flags at their smallest values)."""
    rng = np.random.default_rng(21)
    layers = []
    for n, (tokens, k) in enumerate([(1, 16), (3, 16), (1, 64), (1, 16), (2, 32), (4, 64)]):
        acts = outlier_activations(tokens=tokens, channels=k, seed=30 + n)[0]
        layers.append((acts, random_order(rng, k), rng.random(k // 16) < 0.5, n % 2))
    _check(SMALL, layers, stall=0.2, seed=22)


@pytest.mark.parametrize("kind", ["identity", "adversarial", "random"])
def test_orders_under_stalls(kind):
    rng = np.random.default_rng(7)
    acts = outlier_activations(tokens=3, channels=64, seed=8)[0]
    order = {"identity": np.arange(64), "adversarial": adversarial_order(64, SMALL.banks),
             "random": random_order(rng, 64)}[kind]
    mx9 = rng.random(4) < 0.5
    _check(SMALL, [(acts, order, mx9, 1)], stall=0.4, seed=9)


@pytest.mark.parametrize("kind", ["identity", "adversarial", "random"])
def test_read_schedule_cycles(kind):
    """Without back-pressure a layer takes the schedule's cycles plus the pipeline latency."""
    config = ReorderConfig(banks=16, max_channels=64, max_tokens=2, rounding="rne")
    rng = np.random.default_rng(11)
    acts = outlier_activations(tokens=2, channels=64, seed=12)[0]
    order = {"identity": np.arange(64), "adversarial": adversarial_order(64, 16),
             "random": random_order(rng, 64)}[kind]
    mx9 = np.array([0, 0, 1, 1], dtype=bool)
    ((_, cycles),) = _check(config, [(acts, order, mx9, 0)])
    schedule = 2 * sum(group_cycles(order[g * 16:(g + 1) * 16], 16) for g in range(4))
    # cmd accepted -> row fetched (1) -> first grant (1) -> address register (1) -> data lands
    # (1) -> read data register (1) -> gather register (1) -> converter (6): 12 cycles, the
    # documented PIPELINE_CYCLES.
    assert cycles == schedule + 12 == schedule + PIPELINE_CYCLES, (cycles, schedule)


def test_gated_reads_wait_for_the_limit():
    """A gated controller (the top's) reads no word of token t until ``limit`` > t: with limit 1
    only token 0's groups leave; raising it lets the rest follow, bit for bit."""
    config = ReorderConfig(banks=4, max_channels=32, max_tokens=3, entries=1, gated=True)
    acts, order, mx9 = calibrated_plan(tokens=3, channels=32, p1=0.5, seed=4)
    dut = Reorder(config)
    w_layout, c_layout, k_layout = (config.write_layout(), config.config_layout(),
                                    config.command_layout())
    words, seen_at_limit1 = [], []

    async def bench(ctx):
        bits = np.ascontiguousarray(acts, dtype=np.float32).view(np.uint32)
        ctx.set(dut.w.valid, 1)
        for t in range(3):
            for col in range(32 // 4):
                ctx.set(dut.w.payload.as_value(), pack_fields(
                    w_layout, token=t, col=col, data=list(bits[t, col * 4:(col + 1) * 4])))
                await ctx.tick()
        ctx.set(dut.w.valid, 0)
        ctx.set(dut.cfg.valid, 1)
        for g in range(2):
            ctx.set(dut.cfg.payload.as_value(), pack_fields(
                c_layout, addr=g, row={"chans": list(order[16 * g:16 * (g + 1)]),
                                       "mx9": int(mx9[g])}))
            await ctx.tick()
        ctx.set(dut.cfg.valid, 0)
        ctx.set(dut.limit, 1)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.cmd.payload.as_value(), pack_fields(k_layout, entry=0, groups=2, tokens=3))
        ctx.set(dut.cmd.valid, 1)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        for cycle in range(200):
            if cycle == 100:
                seen_at_limit1.append(len(words))
                ctx.set(dut.limit, 3)
            _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
            if valid:
                words.append(int(word))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen_at_limit1 == [2]
    assert words == ref_reorder(config, [(acts, order, mx9, 0)])[0]
