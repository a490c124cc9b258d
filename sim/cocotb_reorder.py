"""cocotb testbench of the reordering controller (hw/reorder.py) on its emitted Verilog (spec §6).

The build parameters arrive in the environment (``RO_BANKS``, ``RO_CHANNELS``, ``RO_TOKENS``,
``RO_ENTRIES``, ``RO_ROUNDING``, ``RO_SEED``) and rebuild the same :class:`ReorderConfig`, whose
layouts give the port payloads. Besides synthetic orders, it runs real DiT layers
(:func:`sim.dit_stimulus.controller_layer`: a captured layer's input activations with its
calibrated order table and MX6/MX9 map, from ``$MIXDIT_CAPTURE`` or the shipped fixture). Every
output word is compared as an integer with golden.mx applied
to the permuted activations (spec §4).
"""

import os
from typing import Iterator

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from golden.formats import GROUP_SIZE, MX9
from golden.synthetic import outlier_activations
from hw.reorder import PIPELINE_CYCLES, ReorderConfig, group_cycles
from sim.drivers import always, bursts, coin, collect
from sim.mx_stimulus import (
    adversarial_order, calibrated_plan, golden_reorder, pack_fields, random_order,
)

CONFIG = ReorderConfig(
    banks=int(os.environ.get("RO_BANKS", "4")),
    max_channels=int(os.environ.get("RO_CHANNELS", "64")),
    max_tokens=int(os.environ.get("RO_TOKENS", "4")),
    entries=int(os.environ.get("RO_ENTRIES", "2")),
    rounding=os.environ.get("RO_ROUNDING", "trunc"),
)
SEED = int(os.environ.get("RO_SEED", "1"))


#: Sink back-pressure patterns: (name, ready generator factory).
BACKPRESSURE = [("full-rate", always), ("random-stall", coin(0.5, SEED)),
                ("burst-stall", bursts(2, 7))]


class ReorderTB:
    """Clock, reset, drivers for the buffer write, table and command ports, a sink on ``o``
    with back-pressure, and the golden checker. Signals change on the falling edge; handshakes
    are sampled a moment later, as the rising edge will see them."""

    def __init__(self, dut, config: ReorderConfig) -> None:
        self.dut = dut
        self.config = config

    async def start(self) -> None:
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        for port in (dut.w__valid, dut.cfg__valid, dut.cmd__valid, dut.o__ready):
            port.value = 0
        for _ in range(3):
            await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def write_acts(self, acts: np.ndarray) -> None:
        """The array side: C results of one token per cycle (the buffer is always ready)."""
        dut, c = self.dut, self.config.banks
        bits = np.ascontiguousarray(acts, dtype=np.float32).view(np.uint32)
        layout = self.config.write_layout()
        for t in range(bits.shape[0]):
            for col in range(bits.shape[1] // c):
                await FallingEdge(dut.clk)
                dut.w__valid.value = 1
                dut.w__payload.value = pack_fields(
                    layout, token=t, col=col, data=list(bits[t, col * c:(col + 1) * c]))
        await FallingEdge(dut.clk)
        dut.w__valid.value = 0

    async def load_table(self, entry: int, order: np.ndarray, mx9: np.ndarray) -> None:
        """Write one table entry, a row (16 channels and the MX9 flag) per cycle."""
        dut, layout = self.dut, self.config.config_layout()
        for g in range(len(order) // GROUP_SIZE):
            await FallingEdge(dut.clk)
            dut.cfg__valid.value = 1
            dut.cfg__payload.value = pack_fields(
                layout, addr=entry * self.config.max_groups + g,
                row={"chans": list(order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE]),
                     "mx9": int(mx9[g])})
        await FallingEdge(dut.clk)
        dut.cfg__valid.value = 0

    async def command(self, entry: int, groups: int, tokens: int) -> None:
        """Offer one command until the controller takes it."""
        dut = self.dut
        await FallingEdge(dut.clk)
        dut.cmd__payload.value = pack_fields(self.config.command_layout(), entry=entry,
                                             groups=groups, tokens=tokens)
        dut.cmd__valid.value = 1
        while True:
            await Timer(1, unit="ps")
            taken = dut.cmd__ready.value == 1
            await FallingEdge(dut.clk)
            if taken:
                break
        dut.cmd__valid.value = 0

    async def layer(self, acts: np.ndarray, order: np.ndarray, mx9: np.ndarray, entry: int,
                    ready: Iterator[bool], next_table=None) -> int:
        """Run one layer whose table entry is loaded, optionally loading ``next_table``
        (entry, order, mx9) into another entry meanwhile; check it; return its cycles."""
        tokens, k = acts.shape
        groups = k // GROUP_SIZE
        await self.write_acts(acts)
        await self.command(entry, groups, tokens)
        loader = cocotb.start_soon(self.load_table(*next_table)) if next_table else None
        words, cycles = await collect(self.dut, tokens * groups, ready, what="controller",
                                      limit=40 * tokens * groups + 100)
        if loader is not None:
            await loader
        want = golden_reorder(acts, order, mx9, self.config.rounding)
        tags = np.tile(np.asarray(mx9, dtype=int), tokens)
        for j, (got, w, f) in enumerate(zip(words, want, tags)):
            exp = w | (int(f) << MX9.group_bits)
            assert got == exp, (f"token {j // groups} group {j % groups}: "
                                f"rtl {got:#039x} golden {exp:#039x}")
        return cycles


def _orders(rng: np.random.Generator, k: int, banks: int) -> dict[str, np.ndarray]:
    return {"identity": np.arange(k), "adversarial": adversarial_order(k, banks),
            "random": random_order(rng, k)}


@cocotb.test()
async def calibrated_orders_with_reloads(dut):
    """Golden-calibrated orders of outlier activations, layer after layer, each next table
    loaded into the other entry while the current layer runs (spec §4, §5)."""
    cfg = CONFIG
    tb = ReorderTB(dut, cfg)
    await tb.start()
    k = cfg.max_channels
    plans = [calibrated_plan(cfg.max_tokens, k - GROUP_SIZE * (n % 2), p1, SEED + n)
             for n, p1 in enumerate([0.1, 0.3, 0.05, 0.5])]
    entries = [n % cfg.entries for n in range(len(plans))]
    await tb.load_table(entries[0], plans[0][1], plans[0][2])
    for n, (acts, order, mx9) in enumerate(plans):
        nxt = None
        if n + 1 < len(plans) and entries[n + 1] != entries[n]:
            nxt = (entries[n + 1], plans[n + 1][1], plans[n + 1][2])
        name, ready = BACKPRESSURE[n % len(BACKPRESSURE)]
        cycles = await tb.layer(acts, order, mx9, entries[n], ready(), next_table=nxt)
        dut._log.info("layer %d (K=%d, %s): %d cycles", n, acts.shape[1], name, cycles)
        if nxt is None and n + 1 < len(plans):
            await tb.load_table(entries[n + 1], plans[n + 1][1], plans[n + 1][2])


@cocotb.test()
async def permutation_kinds_under_backpressure(dut):
    """Identity, adversarial (every group from as few banks as possible) and random orders,
    each under every back-pressure pattern; at full rate the cycle count is the schedule's."""
    cfg = CONFIG
    tb = ReorderTB(dut, cfg)
    await tb.start()
    rng = np.random.default_rng(SEED)
    k, tokens = cfg.max_channels, cfg.max_tokens
    acts = outlier_activations(tokens=tokens, channels=k, seed=SEED)[0]
    groups = k // GROUP_SIZE
    for kind, order in _orders(rng, k, cfg.banks).items():
        mx9 = rng.random(groups) < 0.5
        await tb.load_table(1 % cfg.entries, order, mx9)
        for name, ready in BACKPRESSURE:
            cycles = await tb.layer(acts, order, mx9, 1 % cfg.entries, ready())
            sched = tokens * sum(group_cycles(order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE],
                                              cfg.banks) for g in range(groups))
            dut._log.info("%s order, %s: %d cycles, schedule %d, %.2f channels/cycle",
                          kind, name, cycles, sched, tokens * k / cycles)
            if name == "full-rate":
                # Command -> table row -> grant -> address register -> land -> read data
                # register -> gather register -> converter (6 stages): 12 cycles more.
                assert cycles == sched + 12 == sched + PIPELINE_CYCLES, (kind, cycles, sched)


@cocotb.test()
async def dit_calibrated_layers(dut):
    """Real DiT layers: each layer's captured input activations with the order table and MX6/MX9
    map its calibration gives at that timestep (a controller narrower than the layer takes the
    layer's first channels, calibrated alike), layer after layer, under back-pressure; at full
    rate the cycle count is the schedule's."""
    from sim.dit_stimulus import controller_layer

    cfg = CONFIG
    tb = ReorderTB(dut, cfg)
    await tb.start()
    for n, kind in enumerate(("attn.qkv", "mlp.fc2", "attn.proj")):
        acts, order, mx9, what = controller_layer(kind, cfg.max_channels, cfg.max_tokens)
        entry = n % cfg.entries
        await tb.load_table(entry, order, mx9)
        name, ready = BACKPRESSURE[n % len(BACKPRESSURE)]
        cycles = await tb.layer(acts, order, mx9, entry, ready())
        groups = acts.shape[1] // GROUP_SIZE
        sched = acts.shape[0] * sum(group_cycles(order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE],
                                                 cfg.banks) for g in range(groups))
        dut._log.info("real layer %s (%d MX9 groups), %s: %d cycles, schedule %d", what,
                      int(mx9.sum()), name, cycles, sched)
        if name == "full-rate":
            assert cycles == sched + PIPELINE_CYCLES, (what, cycles, sched)
