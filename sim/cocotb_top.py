"""cocotb testbench of the accelerator top (hw/top.py) on its emitted Verilog (spec §3-§6).

The DUT is :class:`hw.top.MixDiTTop` itself, driven through its six streams as
``sim/harness/top_tb.sv`` drives it: the order table and MX6/MX9 map go in on ``cfg`` (one row a
cycle, before the layer), the layer's command on ``cmd``, its A and W K steps on ``a`` and ``w``
in the array's operand order (:mod:`hw.sequencer`: tiles row-major, K steps inner); the array's
FP32 result rows leave on ``c`` and the next layer's packed groups on ``o``.

Parameters arrive in the environment and rebuild the same :class:`hw.top.TopConfig`
(:func:`sim.harness.top.top_config`): ``TOP_ROWS``, ``TOP_COLS``, ``TOP_TOKENS``,
``TOP_CHANNELS`` (the output buffer), ``TOP_ROUNDING``; ``TOP_LAYERS`` (comma-separated real
linear layers, :func:`sim.dit_stimulus.top_layer`: the capture's layer, A and W as
``simulate-layer`` quantizes them, with its consumer's order table and MX6/MX9 map calibrated
bank-conflict-free for the top's columns; the capture is ``$MIXDIT_CAPTURE`` or the shipped
fixture), ``TOP_DIT_TOKENS`` (their first tokens; 0: all), ``TOP_SEED`` and ``TOP_RANDOM``
(random layers; the seed is logged, and the same ``TOP_SEED`` replays them).

Checks, as ``simulate-layer`` does (sim/layer.py): every FP32 result as a uint32 bit pattern
against :func:`golden.gemm.mx_matmul`, each exactly once; every next-layer word, its MX9 tag
included, as an integer against ``golden.mx.pack(golden.mx.quantize(c[:, order], formats,
rounding))`` of the golden ``c``; at full rate the array's cycles are the exact cycle model's
plus :data:`hw.top.ARRAY_LATENCY` and the tail at most :func:`hw.top.tail_cycles`; after the last
group ``busy`` drops and neither output offers another word.

Structure: :class:`StreamSource` drives one input stream with random gaps (valid low),
:class:`StreamSink` takes one output stream under random back-pressure (ready low), and
:class:`TopTB` owns clock, reset, the sources and sinks, and the checker.
"""

import os
import random
from dataclasses import replace

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from golden.formats import GROUP_SIZE, MX6, MX9
from golden.fp32 import to_bits
from golden.gemm import mx_matmul
from golden.mx import pack, pack_tagged, quantize
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from hw.reorder import group_cycles
from hw.sequencer import out_layout
from hw.top import ARRAY_LATENCY, command_layout, tail_cycles
from sim.array_stimulus import random_gemm, step_words
from sim.harness.top import top_config
from sim.mx_stimulus import pack_fields

ROWS = int(os.environ.get("TOP_ROWS", "4"))
COLS = int(os.environ.get("TOP_COLS", "4"))
CONFIG = top_config(replace(ArrayConfig(), rows=ROWS, cols=COLS),
                    max_tokens=int(os.environ.get("TOP_TOKENS", "32")),
                    max_channels=int(os.environ.get("TOP_CHANNELS", "512")),
                    rounding=os.environ.get("TOP_ROUNDING", "trunc"))
LAYERS = [k for k in os.environ.get("TOP_LAYERS", "attn.proj").split(",") if k]
DIT_TOKENS = int(os.environ.get("TOP_DIT_TOKENS", "0")) or None
SEED = int(os.environ.get("TOP_SEED", "1"))
RANDOM = int(os.environ.get("TOP_RANDOM", "2"))
PERIOD_NS = 10
_OUT = out_layout(CONFIG.array)


def _cycle() -> int:
    """The current rising edge's index (the clock starts at time 0)."""
    return int(get_sim_time(unit="ns")) // PERIOD_NS


class StreamSource:
    """Drives stream ``name`` of the DUT: each word stays valid until taken (stream rule);
    ``gap`` is the chance of an idle cycle before offering the next. Signals change after a
    falling edge; a word is taken at the rising edge that sees ``ready``."""

    def __init__(self, dut, name: str, rng: random.Random) -> None:
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.rng = rng
        self.taken: "int | None" = None

    async def send(self, words, gap: float = 0.0) -> None:
        """Offer ``words`` in order; :attr:`taken` is the edge that took the last one."""
        for word in words:
            while gap and self.rng.random() < gap:
                self.valid.value = 0
                await RisingEdge(self.clk)
                await FallingEdge(self.clk)
            self.payload.value = word
            self.valid.value = 1
            while True:
                await RisingEdge(self.clk)
                if self.ready.value:
                    break
            self.taken = _cycle()
            await FallingEdge(self.clk)
        self.valid.value = 0


class StreamSink:
    """Takes words from stream ``name`` of the DUT with ready low a ``stall`` share of cycles."""

    def __init__(self, dut, name: str, rng: random.Random) -> None:
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name = name
        self.rng = rng

    async def take(self, count: int, stall: float, limit: int) -> list[tuple[int, int]]:
        """``count`` words as ``(payload, edge)``; fails after ``limit`` cycles or on an X."""
        got: list[tuple[int, int]] = []
        cycles = 0
        while len(got) < count:
            ready = self.rng.random() >= stall
            self.ready.value = int(ready)
            await RisingEdge(self.clk)
            if ready and self.valid.value:
                v = self.payload.value
                assert v.is_resolvable, f"X in a word on {self.name}: {v}"
                got.append((v.to_unsigned(), _cycle()))
            await FallingEdge(self.clk)
            cycles += 1
            assert cycles < limit, (f"{self.name}: {len(got)} of {count} words after {cycles} "
                                    "cycles; the top stopped making progress")
        self.ready.value = 0
        return got


class TopTB:
    """Clock, reset, the four sources (``cfg``, ``cmd``, ``a``, ``w``), the two sinks (``c``,
    ``o``) and the checker of the top."""

    def __init__(self, dut, seed: int) -> None:
        self.dut = dut
        self.nprng = np.random.default_rng(seed)
        rngs = [random.Random(seed * 8 + i) for i in range(6)]
        self.cfg, self.cmd, self.a, self.w = (StreamSource(dut, n, r)
                                              for n, r in zip(("cfg", "cmd", "a", "w"), rngs))
        self.c, self.o = StreamSink(dut, "c", rngs[4]), StreamSink(dut, "o", rngs[5])
        self.rng = rngs[0]
        assert len(dut.cmd__payload) == command_layout(CONFIG).size, (
            "the emitted top is not the one TOP_* describes: command width "
            f"{len(dut.cmd__payload)} != {command_layout(CONFIG).size}")
        cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())

    async def reset(self) -> None:
        dut = self.dut
        for port in (dut.cmd__valid, dut.a__valid, dut.w__valid, dut.cfg__valid, dut.c__ready,
                     dut.o__ready):
            port.value = 0
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        await FallingEdge(dut.clk)
        dut.rst.value = 0

    async def load_table(self, order: np.ndarray, mx9: np.ndarray, gap: float = 0.0) -> None:
        """Table entry 0: row ``g`` holds group ``g``'s 16 channels and its MX9 flag."""
        lay = CONFIG.reorder.config_layout()
        rows = [pack_fields(lay, addr=g, row={"chans": [int(x) for x in order[16 * g:16 * g + 16]],
                                              "mx9": int(mx9[g])})
                for g in range(len(mx9))]
        await self.cfg.send(rows, gap)

    def _steps(self, a, w) -> tuple[list[int], list[int]]:
        """The ``a`` and ``w`` K steps in the array's operand order."""
        aw, ww = pack(a), pack(w)
        (m, kg), n = a.shape, w.shape[0]
        sa, sw = [], []
        for m0 in range(0, m, ROWS):
            for n0 in range(0, n, COLS):
                for k in range(kg):
                    sa.append(step_words(a, m0, ROWS, k, aw))
                    sw.append(step_words(w, n0, COLS, k, ww))
        return sa, sw

    async def layer(self, a, w, order: np.ndarray, fmts, label: str, *, gap: float = 0.0,
                    stall: float = 0.0) -> tuple[int, int]:
        """Run the linear layer ``a @ w.T`` whose output the consumer reads in ``order`` with
        per-group ``fmts``; check every result, every group and, at full rate, the cycles.
        Returns the array's cycles and the layer's (command to last result row, and to the last
        result row or group, both ends included)."""
        dut = self.dut
        (m, kg), n = a.shape, w.shape[0]
        groups = len(fmts)
        mx9 = np.array([f == MX9.name for f in fmts], dtype=bool)
        await self.load_table(order, mx9, gap)
        rows = m * -(-n // COLS)
        limit = 40 * (rows * kg * 16 + m * groups * 16) + 1000
        c_task = cocotb.start_soon(self.c.take(rows, stall, limit))
        o_task = cocotb.start_soon(self.o.take(m * groups, stall, limit))
        word = command_layout(CONFIG).const({"gemm": {"m": m, "n": n, "kg": kg}, "entry": 0,
                                             "col": 0, "store": 1, "groups": groups}
                                            ).as_value().value
        await self.cmd.send([word], gap)
        start = self.cmd.taken
        # As top_tb.sv: the operands follow the command's transfer.
        sa, sw = self._steps(a, w)
        feeders = [cocotb.start_soon(self.a.send(sa, gap)), cocotb.start_soon(self.w.send(sw, gap))]
        c_words = await c_task
        o_words = await o_task
        for f in feeders:
            await f
        last_c = c_words[-1][1]
        last = max(last_c, o_words[-1][1] if o_words else 0)
        self._check_c(c_words, a, w, label)
        ref = mx_matmul(a, w)
        self._check_groups([p for p, _ in o_words], ref, order, fmts, label)
        await self._idle(label)
        array_cycles, cycles = last_c - start + 1, last - start + 1
        if gap == 0.0 and stall == 0.0:
            model = gemm_cycles(m, a.length, n, list(a.formats), list(w.formats), CONFIG.array)
            assert array_cycles == model + ARRAY_LATENCY, (
                f"{label}: {array_cycles} array cycles, the cycle model gives {model} + "
                f"{ARRAY_LATENCY}")
            # The bound holds for bank-conflict-free orders (ceil(16 / C) cycles a group), the
            # ones the calibration gives the top; a random order may take longer.
            per_group = -(-GROUP_SIZE // COLS)
            if all(group_cycles(order[g * GROUP_SIZE:(g + 1) * GROUP_SIZE], COLS) == per_group
                   for g in range(groups)):
                bound = tail_cycles(m, groups, CONFIG)
                assert 0 < cycles - array_cycles <= bound, (
                    f"{label}: tail of {cycles - array_cycles} cycles, bound {bound}")
        dut._log.info("%s (gap %.1f, stall %.1f): %d results and %d groups bit-exact; %d array "
                      "cycles, %d through the top", label, gap, stall, m * n, m * groups,
                      array_cycles, cycles)
        return array_cycles, cycles

    def _check_c(self, words, a, w, label: str) -> None:
        """Every FP32 result exactly once, as bits, against golden.gemm.mx_matmul."""
        m, n = a.shape[0], w.shape[0]
        got = np.zeros((m, n), np.uint32)
        seen = np.zeros((m, n), np.int32)
        mask_off, row_off, col_off = (_OUT[f].offset for f in ("mask", "row", "col"))
        for p, _ in words:
            mask = (p >> mask_off) & ((1 << COLS) - 1)
            row = (p >> row_off) & ((1 << CONFIG.array.m_bits) - 1)
            col = (p >> col_off) & ((1 << CONFIG.array.col_bits) - 1)
            assert row < m and col * COLS < n, f"{label}: result row {row}, column tile {col}"
            for lane in range(COLS):
                if mask >> lane & 1:
                    got[row, col * COLS + lane] = (p >> (32 * lane)) & 0xFFFFFFFF
                    seen[row, col * COLS + lane] += 1
        assert (seen == 1).all(), (f"{label}: results lost or repeated at "
                                   f"{np.argwhere(seen != 1)[:4].tolist()}")
        want = to_bits(mx_matmul(a, w))
        bad = np.argwhere(got != want)
        assert bad.size == 0, (f"{label}: {len(bad)} of {got.size} FP32 results differ, first "
                               f"C[{bad[0][0]}, {bad[0][1]}]: RTL 0x{got[tuple(bad[0])]:08x}, "
                               f"golden 0x{want[tuple(bad[0])]:08x}")

    def _check_groups(self, words: list[int], ref: np.ndarray, order, fmts, label: str) -> None:
        """The next-layer words (MX9 tag above the §1.2 word) against golden.mx of the golden
        results in the table's order, word by word (sim/layer.py's check)."""
        want = pack_tagged(quantize(ref[:, order], list(fmts), CONFIG.reorder.rounding))
        want = want.reshape(-1)
        assert len(words) == len(want), f"{label}: {len(words)} groups, golden {len(want)}"
        groups = len(fmts)
        for idx, (got, exp) in enumerate(zip(words, want)):
            fmt = fmts[idx % groups]
            assert got == exp, (f"{label}: next-layer word {idx} (token {idx // groups}, group "
                                f"{idx % groups}, {fmt}) differs: RTL 0x{got:x}, golden "
                                f"0x{exp:x}")

    async def _idle(self, label: str) -> None:
        """After the last group: busy low, the command port ready, no further word offered."""
        dut = self.dut
        dut.c__ready.value = 1
        dut.o__ready.value = 1
        for i in range(ROWS + COLS + 4):
            await RisingEdge(dut.clk)
            assert not dut.c__valid.value, f"{label}: an extra result row after the last"
            assert not dut.o__valid.value, f"{label}: an extra group after the last"
            if i >= 1:
                assert not dut.busy.value and dut.cmd__ready.value, (
                    f"{label}: still busy {i} cycles after the last word")
            await FallingEdge(dut.clk)
        dut.c__ready.value = 0
        dut.o__ready.value = 0


@cocotb.test()
async def dit_layers(dut):
    """Real DiT linear layers at full rate (bits, groups, exact cycles), then the first again
    under gaps on every input and back-pressure on both outputs; no reset between layers."""
    from sim.dit_stimulus import top_layer

    tb = TopTB(dut, SEED)
    await tb.reset()
    cases = [top_layer(kind, COLS, DIT_TOKENS) for kind in LAYERS]
    for a, w, order, fmts, what in cases:
        dut._log.info("real layer: %s", what)
        await tb.layer(a, w, order, fmts, what)
    a, w, order, fmts, what = cases[0]
    await tb.layer(a, w, order, fmts, what, gap=0.3, stall=0.5)


@cocotb.test()
async def random_layers(dut):
    """Random layers (edge tile rows, MX6/MX9 operands, a random order and map) under random
    gaps and back-pressure, back to back; the seed replays them (``TOP_SEED``)."""
    dut._log.info("random layers: seed %d (replay with TOP_SEED=%d)", SEED, SEED)
    tb = TopTB(dut, SEED + 1)
    await tb.reset()
    max_groups = min(4, CONFIG.reorder.max_groups)
    for i in range(RANDOM):
        rng = tb.rng
        m = rng.randint(1, min(3 * ROWS, CONFIG.reorder.max_tokens))
        groups = rng.randint(1, max_groups)
        n, kg = GROUP_SIZE * groups, rng.choice([1, 2, 3, 5])
        a, w = random_gemm(tb.nprng, m, kg, n, ("mixdit", "alt_x_mx9", "mx9xmx9")[i % 3])
        order = tb.nprng.permutation(n).astype(np.int64)
        fmts = tuple(MX9.name if f else MX6.name for f in tb.nprng.random(groups) < 0.4)
        gap, stall = rng.choice([0.0, 0.3, 0.6]), rng.choice([0.0, 0.5, 0.8])
        label = f"random layer {i} (seed {SEED}): {m} x {16 * kg} x {n}, {groups} groups"
        await tb.layer(a, w, order, fmts, label, gap=gap, stall=stall)
