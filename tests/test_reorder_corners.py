"""Corners of the reordering controller's input streams (spec §5), in Amaranth's simulator.

- gaps on the buffer-write stream ``w`` and the table-load stream ``cfg`` (valid low for random
  cycles) change nothing;
- a table row loaded twice back to back (a wrong row, then the right one) holds the second;
- loading another entry while a command reads one leaves the running command intact, and the
  next command on the new entry is exact;
- loading the entry that is being read is not refused by the RTL (spec §5 says so); it is safe
  row by row: every group leaves in the old or the new order of its row, never a mixture,
  and once a token used the new row every later token does. Rewriting it with the rows it holds
  changes nothing.

Every word is compared as an integer with golden.mx; seeds are fixed and printed.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.formats import GROUP_SIZE, MX9
from golden.synthetic import outlier_activations
from hw.reorder import Reorder, ReorderConfig
from sim.mx_stimulus import golden_reorder, pack_fields, random_order

CONFIG = ReorderConfig(banks=4, max_channels=64, max_tokens=8, entries=2)


def tagged(acts, order, mx9, rounding="trunc"):
    words = golden_reorder(acts, order, mx9, rounding)
    tags = np.tile(np.asarray(mx9, dtype=int), acts.shape[0])
    return [w | (int(f) << MX9.group_bits) for w, f in zip(words, tags)]


def rows_of(order, mx9):
    return [{"chans": [int(c) for c in order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE]],
             "mx9": int(mx9[g])} for g in range(len(order) // GROUP_SIZE)]


def run(acts, loads, commands, *, during=(), during_at=0, w_idle=0.0, cfg_idle=0.0,
        o_stall=0.0, seed=0):
    """Write ``acts`` [tokens, K] into the buffer, load ``loads`` (a list of (entry, group,
    row)) into the table, then run ``commands`` (a list of entries, each over every token and
    group); ``during`` rows are loaded ``during_at`` cycles after the first command is taken.
    Returns the words of each command."""
    dut = Reorder(CONFIG)
    rng = np.random.default_rng(seed)
    wl, cl, kl = CONFIG.write_layout(), CONFIG.config_layout(), CONFIG.command_layout()
    tokens, k = acts.shape
    groups = k // GROUP_SIZE
    bits = np.ascontiguousarray(acts, dtype=np.float32).view(np.uint32)
    state = {"started": False}
    out = [[] for _ in commands]

    async def put(ctx, stream, payload, idle):
        while rng.random() < idle:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.payload.as_value(), payload)
        ctx.set(stream.valid, 1)
        _, _, ready = await ctx.tick().sample(stream.ready)
        assert ready, "a stream documented as always ready was not"
        ctx.set(stream.valid, 0)

    async def setup(ctx):
        for t in range(tokens):
            for col in range(k // CONFIG.banks):
                lanes = bits[t, col * CONFIG.banks:(col + 1) * CONFIG.banks]
                await put(ctx, dut.w, pack_fields(wl, token=t, col=col, data=list(lanes)), w_idle)
        for entry, g, row in loads:
            await put(ctx, dut.cfg, pack_fields(cl, addr=entry * CONFIG.max_groups + g, row=row),
                      cfg_idle)
        for n, entry in enumerate(commands):
            ctx.set(dut.cmd.payload.as_value(),
                    pack_fields(kl, entry=entry, groups=groups, tokens=tokens))
            ctx.set(dut.cmd.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.cmd.ready)
                if ready:
                    break
            ctx.set(dut.cmd.valid, 0)
            state["started"] = True
            while len(out[n]) < tokens * groups:
                await ctx.tick()

    async def midway(ctx):
        while not state["started"]:
            await ctx.tick()
        for _ in range(during_at):
            await ctx.tick()
        for entry, g, row in during:
            await put(ctx, dut.cfg, pack_fields(cl, addr=entry * CONFIG.max_groups + g, row=row),
                      0.0)

    async def sink(ctx):
        cycles = 0
        for n in range(len(commands)):
            while len(out[n]) < tokens * groups:
                ready = rng.random() >= o_stall
                ctx.set(dut.o.ready, ready)
                _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload.as_value())
                if valid and ready:
                    out[n].append(int(word))
                cycles += 1
                assert cycles < 50_000, "the controller stopped making progress"
        ctx.set(dut.o.ready, 1)
        for _ in range(6):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "the controller emitted an extra group"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(setup)
    sim.add_testbench(midway)
    sim.add_testbench(sink)
    sim.run()
    return out


def _plan(seed, tokens=6, k=64):
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    acts = outlier_activations(tokens=tokens, channels=k, seed=seed)[0]
    order, order2 = random_order(rng, k), random_order(rng, k)
    mx9, mx9b = rng.random(k // 16) < 0.5, rng.random(k // 16) < 0.5
    return acts, (order, mx9), (order2, mx9b)


@pytest.mark.parametrize("seed", [21, 22])
def test_gaps_on_buffer_and_table_streams(seed):
    acts, (order, mx9), _ = _plan(seed)
    loads = [(1, g, r) for g, r in enumerate(rows_of(order, mx9))]
    (got,) = run(acts, loads, [1], w_idle=0.6, cfg_idle=0.6, o_stall=0.3, seed=seed)
    assert got == tagged(acts, order, mx9)


def test_same_row_loaded_twice_back_to_back_keeps_the_second():
    acts, (order, mx9), (wrong, wrong9) = _plan(23)
    loads = []
    for g, (bad, good) in enumerate(zip(rows_of(wrong, wrong9), rows_of(order, mx9))):
        loads += [(0, g, bad), (0, g, good)]
    (got,) = run(acts, loads, [0], seed=23)
    assert got == tagged(acts, order, mx9)
    assert got != tagged(acts, wrong, wrong9)


def test_loading_the_other_entry_during_a_command():
    acts, (order, mx9), (order2, mx92) = _plan(24)
    loads = [(0, g, r) for g, r in enumerate(rows_of(order, mx9))]
    during = [(1, g, r) for g, r in enumerate(rows_of(order2, mx92))]
    first, second = run(acts, loads, [0, 1], during=during, during_at=3, o_stall=0.5, seed=24)
    assert first == tagged(acts, order, mx9)
    assert second == tagged(acts, order2, mx92)


def test_rewriting_the_running_entry_with_its_rows_is_harmless():
    acts, (order, mx9), _ = _plan(25)
    rows = rows_of(order, mx9)
    (got,) = run(acts, [(0, g, r) for g, r in enumerate(rows)], [0],
                 during=[(0, g, r) for g, r in enumerate(rows)] * 3, during_at=2, o_stall=0.4,
                 seed=25)
    assert got == tagged(acts, order, mx9)


def test_changing_the_running_entry_takes_effect_row_by_row():
    acts, (order, mx9), (order2, mx92) = _plan(26, tokens=8)
    groups = len(mx9)
    old, new = tagged(acts, order, mx9), tagged(acts, order2, mx92)
    during = [(0, g, r) for g, r in enumerate(rows_of(order2, mx92))]
    (got,) = run(acts, [(0, g, r) for g, r in enumerate(rows_of(order, mx9))], [0],
                 during=during, during_at=12, o_stall=0.5, seed=26)
    switched = 0
    for g in range(groups):
        seq = []
        for t in range(acts.shape[0]):
            i = t * groups + g
            assert got[i] in (old[i], new[i]), f"token {t} group {g}: neither order (torn row)"
            seq.append(got[i] == new[i] and got[i] != old[i])
        # old ... old new ... new: a row, once new, stays new.
        first = seq.index(True) if True in seq else len(seq)
        assert not any(not s and got[t * groups + g] != new[t * groups + g]
                       for t, s in enumerate(seq) if t > first), f"group {g} went back"
        switched += first < len(seq)
    assert got[:groups] == old[:groups], "the write landed before the first token was read"
    assert switched == groups and got[-groups:] == new[-groups:]
