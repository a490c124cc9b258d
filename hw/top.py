"""The MixDiT accelerator top: buffers, array, output buffer, reorder and MX converter (paper Fig. 9).

:class:`MixDiTTop` chains, for one linear layer at a time (spec §3-§5):

    memory -> a/w streams -> A, W buffers (FIFOs of K steps) -> GemmArray (R x C PEs)
           -> banked output buffer (C banks) -> reordering controller -> MX converter -> o

The A and W buffers take the operands from a memory-side stream in the array's operand order
(:mod:`hw.sequencer`: tiles row-major, K steps inner) and decouple memory hiccups from the array.
The array's result rows land in the :class:`hw.reorder.Reorder`'s C-bank output buffer (channel n
of token t in bank ``n mod C``, word ``t * K_max / C + n // C``) and leave on ``c`` as well, so a
testbench sees the FP32 results; the controller then reads every token's channels in the table's
order (the next layer's, spec §4) and the converter packs them, MX6 or MX9 per group, into the
next layer's A operand on ``o``.

Pipelining: the array produces tokens tile row by tile row (``R`` tokens complete after the last
column tile of their row, one per cycle). The controller (gated, :class:`hw.reorder.Reorder`) reads
token ``t`` as soon as it is complete, so it never reads a bank word before the array has written
it, and converts the tokens while the array computes the later tile rows: with a bank-conflict-free
order (:func:`golden.mixdit.conflict_free_order`, ``ceil(16 / C)`` cycles per group) the reorder
and the conversion hide behind the array (paper §III-C) whenever a tile row's groups take the
controller no longer than the array takes for the next tile row. What follows the array's last
result row is the tail (:func:`tail_cycles`): the last tile row's ``rows_L * N / 16`` groups, less
the ``rows_L - 1`` cycles in which its rows land, plus the controller's latency.

Interfaces (``amaranth.lib.stream``)
------------------------------------
``cmd`` : In(stream.Signature(command_layout))
    One GEMM: its ``m``, ``n``, ``kg`` (:func:`hw.sequencer.cmd_layout`); ``store``, whether its
    results go into the output buffer, at column tile ``col`` on (channel ``col * C + j`` for
    result column ``j``); and ``groups``, the next-layer groups per token to convert once the
    GEMM is done (0: none), with the order of table ``entry``. A linear layer is one command
    (``store = 1``, ``col = 0``, ``groups = n / 16``); attention is one command per head and
    GEMM, the P V results stored side by side (``col = h * d / C``) and converted after the last
    head, the Q K^T results (for the host's softmax) not stored. ``m`` is at most the buffer's
    ``max_tokens``. Taken when the previous command has fully left on ``c`` and ``o``.
``a``, ``w`` : In
    One K step of A (R tagged groups) and of W (C tagged groups), as for :class:`GemmArray`.
``cfg`` : In
    Order-table rows (:meth:`hw.reorder.ReorderConfig.config_layout`).
``c`` : Out
    The array's result rows (:func:`hw.sequencer.out_layout`); back-pressure here holds the array.
``o`` : Out(stream.Signature(TaggedGroup))
    The next layer's A operand: ``m * n / 16`` packed groups, token-major, in table order.
``busy`` : Out(1)
"""

from dataclasses import dataclass, field

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .array import verilog_modules
from .config import ArrayConfig
from .layouts import TaggedGroup
from .reorder import PIPELINE_CYCLES, Reorder, ReorderConfig
from .sequencer import GemmArray, a_layout, cmd_layout, out_layout, w_layout

__all__ = ["TopConfig", "MixDiTTop", "make_top", "command_layout", "tail_cycles",
           "TAIL_LATENCY", "ARRAY_LATENCY"]

#: Cycles a GEMM takes longer through the top than on the array alone
#: (:func:`hw.cycles.gemm_cycles`, from the array's command to its last result row): the top's
#: command register (1) and the A and W buffers between the memory-side streams and the array (1).
ARRAY_LATENCY = 2

#: Cycles from the last result row's transfer on ``c`` to the transfer on ``o`` of the last group
#: it completes, beyond that group's read schedule: the token count register, then the
#: controller's pipeline (:data:`hw.reorder.PIPELINE_CYCLES`, which includes the converter's).
TAIL_LATENCY = 1 + PIPELINE_CYCLES


@dataclass(frozen=True)
class TopConfig:
    """Parameters of the top; variants use :func:`dataclasses.replace`.

    Parameters
    ----------
    array : ArrayConfig
    reorder : ReorderConfig
        Its ``banks`` must equal the array's columns, and it must be ``gated``.
    buffer_depth : int
        K steps each of the A and W buffers holds.
    """

    array: ArrayConfig = field(default_factory=ArrayConfig)
    reorder: ReorderConfig = field(default_factory=lambda: ReorderConfig(gated=True))
    buffer_depth: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.array, ArrayConfig):
            raise TypeError(f"Expected an ArrayConfig, not {self.array!r}")
        if not isinstance(self.reorder, ReorderConfig):
            raise TypeError(f"Expected a ReorderConfig, not {self.reorder!r}")
        if not self.reorder.gated:
            raise ValueError("The top's controller must be gated (ReorderConfig(gated=True))")
        if self.reorder.banks != self.array.cols:
            raise ValueError(f"The output buffer needs one bank per array column: banks "
                             f"{self.reorder.banks} != cols {self.array.cols}")
        if self.reorder.max_tokens > self.array.max_m:
            raise ValueError(f"Buffer tokens {self.reorder.max_tokens} exceed the array's max_m "
                             f"{self.array.max_m}")
        if not isinstance(self.buffer_depth, int) or self.buffer_depth < 2:
            raise ValueError(f"Buffer depth must be an integer of at least 2, not "
                             f"{self.buffer_depth!r}")


def command_layout(config: TopConfig) -> data.StructLayout:
    """One command: the GEMM (``m``, ``n``, ``kg``), the order-table ``entry``, the buffer column
    tile ``col`` and ``store`` flag, and the next-layer ``groups`` per token (module docstring)."""
    gemm = cmd_layout(config.array)
    reo = config.reorder
    return data.StructLayout({"gemm": gemm,
                              "entry": reo.command_layout()["entry"].shape,
                              "col": reo.write_layout()["col"].shape,
                              "store": unsigned(1),
                              "groups": reo.command_layout()["groups"].shape})


class MixDiTTop(wiring.Component):
    """The accelerator of the paper's Fig. 9 for one array (see the module docstring).

    Parameters
    ----------
    config : TopConfig
    pe_module : str or None
        As for :class:`hw.sequencer.GemmArray`: None for Amaranth's simulator, a Verilog module
        name to instantiate the PEs (:attr:`verilog_dependencies`).
    """

    def __init__(self, config: TopConfig = TopConfig(), pe_module: "str | None" = None) -> None:
        if not isinstance(config, TopConfig):
            raise TypeError(f"Expected a TopConfig, not {config!r}")
        self.config = config
        self.pe_module = pe_module
        super().__init__({
            "cmd": In(stream.Signature(command_layout(config))),
            "a": In(stream.Signature(a_layout(config.array))),
            "w": In(stream.Signature(w_layout(config.array))),
            "cfg": In(stream.Signature(config.reorder.config_layout())),
            "c": Out(stream.Signature(out_layout(config.array))),
            "o": Out(stream.Signature(TaggedGroup)),
            "busy": Out(1),
        })

    @property
    def verilog_dependencies(self) -> "list[tuple[str, wiring.Component]]":
        """The PE module the array instantiates, when ``pe_module`` is set."""
        return verilog_modules(self.config.array, self.pe_module)

    def elaborate(self, platform) -> Module:
        cfg = self.config
        acfg = cfg.array
        m = Module()
        m.submodules.array = arr = GemmArray(acfg, self.pe_module)
        m.submodules.reorder = reo = Reorder(cfg.reorder)
        m.submodules.a_buf = a_buf = SyncFIFOBuffered(width=a_layout(acfg).size,
                                                      depth=cfg.buffer_depth)
        m.submodules.w_buf = w_buf = SyncFIFOBuffered(width=w_layout(acfg).size,
                                                      depth=cfg.buffer_depth)

        # --- A and W buffers: memory side in, array side out, one K step per entry ------------
        both = a_buf.r_rdy & w_buf.r_rdy
        m.d.comb += [
            a_buf.w_data.eq(self.a.payload), a_buf.w_en.eq(self.a.valid),
            self.a.ready.eq(a_buf.w_rdy),
            w_buf.w_data.eq(self.w.payload), w_buf.w_en.eq(self.w.valid),
            self.w.ready.eq(w_buf.w_rdy),
            arr.a.payload.eq(a_buf.r_data), arr.w.payload.eq(w_buf.r_data),
            arr.a.valid.eq(both), arr.w.valid.eq(both),
            a_buf.r_en.eq(arr.a.ready & both), w_buf.r_en.eq(arr.w.ready & both),
        ]

        # --- order table ------------------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.cfg), reo.cfg)

        # --- layer command: the GEMM goes to the array, the entry waits for the controller -----
        active = Signal()
        gemm_pending = Signal()
        conv_pending = Signal()
        lay = Signal(command_layout(cfg))
        groups = Signal.like(reo.cmd.payload.groups)
        last_col = Signal(acfg.col_bits)
        total = Signal(acfg.m_bits + groups.shape().width)
        complete_tokens = Signal(acfg.m_bits)
        sent = Signal.like(total)
        m.d.comb += [
            self.cmd.ready.eq(~active),
            arr.cmd.valid.eq(gemm_pending),
            arr.cmd.payload.eq(lay.gemm),
            self.busy.eq(active),
        ]
        with m.If(self.cmd.valid & ~active):
            p = self.cmd.payload
            m.d.sync += [
                lay.eq(p),
                active.eq(1),
                gemm_pending.eq(1),
                conv_pending.eq(1),
                groups.eq(p.groups),
                last_col.eq((p.gemm.n + acfg.cols - 1) // acfg.cols - 1),
                total.eq(p.gemm.m * p.groups),
                complete_tokens.eq(0),
                sent.eq(0),
            ]
        with m.If(arr.cmd.valid & arr.cmd.ready):
            m.d.sync += gemm_pending.eq(0)

        # --- results: to the c tap and into the output buffer's banks ---------------------------
        out = arr.o.payload
        take = arr.o.valid & self.c.ready
        m.d.comb += [
            self.c.valid.eq(arr.o.valid),
            self.c.payload.eq(out),
            arr.o.ready.eq(self.c.ready),
            reo.w.valid.eq(take & lay.store),
            reo.w.payload.token.eq(out.row),
            reo.w.payload.col.eq(lay.col + out.col),
        ]
        for b in range(acfg.cols):
            m.d.comb += reo.w.payload.data[b].eq(out.data[b])
        # Rows of a tile leave in order and the last column tile of a tile row comes last, so
        # after row r of the last column tile every token up to r is complete.
        with m.If(take & (out.col == last_col)):
            m.d.sync += complete_tokens.eq(out.row + 1)

        # --- controller: reads each token once it is complete -------------------------------------
        done_all = active & ~gemm_pending & (complete_tokens == lay.gemm.m)
        m.d.comb += [
            reo.cmd.valid.eq(conv_pending & ~gemm_pending),
            reo.cmd.payload.entry.eq(lay.entry),
            reo.cmd.payload.groups.eq(groups),
            reo.cmd.payload.tokens.eq(lay.gemm.m),
            reo.limit.eq(complete_tokens),
            self.o.valid.eq(reo.o.valid),
            self.o.payload.eq(reo.o.payload),
            reo.o.ready.eq(self.o.ready),
        ]
        with m.If(reo.cmd.valid & reo.cmd.ready):
            m.d.sync += conv_pending.eq(0)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += sent.eq(sent + 1)
        sent_now = Mux(self.o.valid & self.o.ready, sent + 1, sent)
        with m.If(done_all & ~conv_pending & (sent_now == total)):
            m.d.sync += active.eq(0)
        return m


def make_top(rows: int = 16, cols: int = 16) -> MixDiTTop:
    """The top ``mixdit verilog`` emits: a 16 x 16 array (or ``rows`` x ``cols``) with a
    ``cols``-bank buffer of 16 tokens at DiT-XL/2's 1152 channels (like
    :func:`hw.reorder.make_reorder`, whose buffer for whole layers is the same design with deeper
    memories)."""
    return MixDiTTop(TopConfig(ArrayConfig(rows=rows, cols=cols),
                               ReorderConfig(banks=cols, max_tokens=16, gated=True)),
                     pe_module="top_pe")


def tail_cycles(m: int, n_groups: int, config: TopConfig) -> int:
    """Cycles a layer's next-layer groups follow the array's last result row, at most, with a
    bank-conflict-free order and the controller keeping up with the array (module docstring):
    the last tile row's ``rows_L`` tokens of ``n_groups`` groups at ``ceil(16 / C)`` cycles each,
    less the ``rows_L - 1`` cycles in which those rows land, plus :data:`TAIL_LATENCY`; 0 when
    nothing is converted."""
    if n_groups == 0:
        return 0
    r = config.array.rows
    rows_last = m - r * (-(-m // r) - 1)
    per_group = -(-16 // config.array.cols)
    return max(rows_last * n_groups * per_group - (rows_last - 1), 1) + TAIL_LATENCY
