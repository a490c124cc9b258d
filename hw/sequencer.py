"""The GEMM engine: tile sequencer, skewed PE mesh and double-buffered drain (spec §3).

:class:`GemmArray` runs one M x K x N GEMM per command, ``C = A @ W.T`` with A ``[M, Kg]`` and W
``[N, Kg]`` in packed groups (spec §1.2), as ``ceil(M/R) * ceil(N/C)`` output tiles of R x C.

Interfaces (``amaranth.lib.stream``, valid/ready)
-------------------------------------------------
``cmd`` : In(stream.Signature(cmd_layout))
    ``m``, ``n``, ``kg``: the GEMM's M, N and Kg = ceil(K / 16). Taken when the previous GEMM's
    results have all been captured into the output buffer (their rows may still be leaving on
    ``o``). A command with a zero field is taken and does nothing.
``a`` : In(stream.Signature(ArrayLayout(TaggedGroup, R)))
    One K step of the current tile's A rows: ``a.payload[r]`` is group k of A row ``m0 + r``
    (any word for rows ``m0 + r >= M``). The precision of every row is taken from row 0's tag
    (formats are per K group, spec §1.1, §4).
``w`` : In(stream.Signature(ArrayLayout(TaggedGroup, C)))
    The same K step of W rows ``n0 + c``; precision from column 0's tag. ``a`` and ``w`` are
    taken together (``a.ready == w.ready``), one K step every ``cycles_per_group`` cycles at most.
``o`` : Out(stream.Signature(out_layout))
    One row of one output tile per transfer: ``data[c]`` is the FP32 bit pattern of
    ``C[row, col * C + c]``, valid where ``mask`` bit c is set (the data of other lanes is
    unspecified). Rows past M are never sent.
``busy`` : Out(1)
    High while a command runs or results wait in the output buffer.

Operand order (what the feeder sends on ``a``/``w``): tiles in row-major order of the tile grid,
``m0 = 0, R, 2R, ...`` outer and ``n0 = 0, C, 2C, ...`` inner; for each tile the K steps
``k = 0 .. Kg - 1``. Output order: the same tile order, and rows ``m0 .. min(m0 + R, M) - 1``
within a tile. A real accelerator's operand buffers and address generators produce that order;
the harness (:mod:`sim.harness`) does it from its memory images.

Schedule
--------
A K step is issued in the cycle its ``a``/``w`` transfer happens and is registered into the
skewed mesh (:class:`hw.array.SkewedMesh`) the next cycle; the next step may be issued
``cycles_per_group`` cycles later (spec §2.2), also across tiles, so the PEs never idle while
operands are available. The last step of a tile carries ``last``: each PE's result lands in its
shadow register while its accumulator starts the next tile. Row r of tile t lands in cycle
``X_t + c_last + C + RESULT_LATENCY + r`` (``X_t`` the issue cycle of tile t's last step; PE (r, C-1) is the
last of the row), is registered in that cycle and written into the output buffer in the next.

Two rules keep every result: the last steps of two tiles are issued at least
``P_min = max(R, C)`` cycles apart (rows land one per cycle, and the next tile's results reach
column 0 no earlier than ``C`` cycles after this tile's reach column ``C - 1``), and a last step
reserves its tile's rows in the output buffer before it is issued (so back-pressure on ``o``
eventually holds the operands, and nothing is dropped). With ``o`` always ready the buffer
(:attr:`ArrayConfig.out_depth`) never holds the sequencer back; :func:`hw.cycles.gemm_cycles` gives
the exact cycle count.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .array import SkewedMesh, verilog_modules
from .config import ArrayConfig
from .layouts import TaggedGroup

__all__ = ["GemmArray", "cmd_layout", "a_layout", "w_layout", "out_layout", "make_array",
           "FP32_BITS"]

FP32_BITS = 32


def cmd_layout(config: ArrayConfig) -> data.StructLayout:
    """The command: ``m``, ``n``, ``kg``."""
    return data.StructLayout({"m": config.m_bits, "n": config.n_bits, "kg": config.kg_bits})


def a_layout(config: ArrayConfig) -> data.ArrayLayout:
    """One K step of A: R tagged groups (row r at bits ``[r * 145, (r + 1) * 145)``)."""
    return data.ArrayLayout(TaggedGroup, config.rows)


def w_layout(config: ArrayConfig) -> data.ArrayLayout:
    """One K step of W: C tagged groups."""
    return data.ArrayLayout(TaggedGroup, config.cols)


def out_layout(config: ArrayConfig) -> data.StructLayout:
    """One output row: ``data[C]`` (FP32 bit patterns, lane c at bits ``[32c, 32c + 32)``), then
    ``mask`` (C bits), ``row`` (m) and ``col`` (the column tile, n0 / C)."""
    return data.StructLayout({
        "data": data.ArrayLayout(FP32_BITS, config.cols),
        "mask": config.cols,
        "row": config.m_bits,
        "col": config.col_bits,
    })


class GemmArray(wiring.Component):
    """The R x C output-stationary array with its tile sequencer and drain (spec §3); see the
    module docstring for interfaces, orders and timing.

    Parameters
    ----------
    config : ArrayConfig
    pe_module : str or None
        None: the PEs are Amaranth submodules (for Amaranth's simulator). A name: the PEs are
        instances of that Verilog module, and :attr:`verilog_dependencies` asks the emitter to
        write it once beside the array (:mod:`hw.array`).
    """

    def __init__(self, config: ArrayConfig = ArrayConfig(), pe_module: "str | None" = None) -> None:
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"Expected an ArrayConfig, not {config!r}")
        self.config = config
        self.pe_module = pe_module
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout(config))),
            "a": In(stream.Signature(a_layout(config))),
            "w": In(stream.Signature(w_layout(config))),
            "o": Out(stream.Signature(out_layout(config))),
            "busy": Out(1),
        })

    @property
    def verilog_dependencies(self) -> "list[tuple[str, wiring.Component]]":
        """``(module name, component)`` of the Verilog modules this design instantiates: the PE
        when ``pe_module`` is set (:func:`hw.emit.emit` writes them into the same file)."""
        return verilog_modules(self.config, self.pe_module)

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        p_min, depth = cfg.min_tile_period, cfg.out_depth
        m.submodules.mesh = mesh = SkewedMesh(cfg, self.pe_module)
        olay = out_layout(cfg)
        m.submodules.obuf = obuf = SyncFIFOBuffered(width=olay.size, depth=depth)

        # The running command.
        gm = Signal(cfg.m_bits, name="gemm_m")
        gn = Signal(cfg.n_bits, name="gemm_n")
        gkg = Signal(cfg.kg_bits, name="gemm_kg")
        issuing = Signal(name="issuing")
        capturing = Signal(name="capturing")

        m.d.comb += self.cmd.ready.eq(~issuing & ~capturing)

        # ---- issue side: one K step per cycles_per_group, tiles in row-major order ----------
        k = Signal(cfg.kg_bits, name="k")
        # The tile is kept as the rows and columns left from it (M - m0, N - n0), so that the
        # decisions on the next tile compare registers with constants.
        iss_left_m = Signal(cfg.m_bits, name="issue_left_m")
        iss_left_n = Signal(cfg.n_bits, name="issue_left_n")
        wait = Signal(range(16), name="wait")
        since = Signal(range(p_min + 1), init=p_min, name="since_last")
        used = Signal(range(depth + 1), name="obuf_used")

        fa, fw = self.a.payload[0].fmt, self.w.payload[0].fmt
        cpg = Signal(range(17), name="cpg")
        if cfg.multiplier == "4x4":
            m.d.comb += cpg.eq(Mux(fa & fw, 16, Mux(fa | fw, 8, 4)))   # spec §2.2
        else:
            m.d.comb += cpg.eq(16)
        # The issue decision was the array's slowest path, so what it needs of the tile and of the
        # K position is kept in registers, computed from the next state: `rows_valid`, the rows
        # of the current tile row (min(M - m0, R)), `slack`, the room a tile's last step needs
        # in the output buffer (depth - rows_valid) less the rows already counted there (`used`),
        # so that the buffer check is its sign bit, and `is_last`, whether step k is the tile's
        # last.
        rows_valid = Signal(range(R + 1), name="rows_valid")
        slack = Signal(range(-depth - R, depth + 1), name="obuf_slack")
        slack_take = Signal(range(R + 1), name="obuf_slack_take")
        is_last = Signal(name="is_last_step")

        def tile_rows(m_left):
            """Rows of a tile row with ``m_left`` rows of A left: min(m_left, R)."""
            return Mux(m_left >= R, R, m_left)

        def next_tile_rows(m_left):
            """Rows of the tile row after the one with ``m_left`` rows left, min(m_left - R, R),
            comparing ``m_left`` itself with a constant (read only when there is one)."""
            return Mux(m_left >= 2 * R, R, m_left - R)

        gate = Signal(name="last_gate")
        m.d.comb += gate.eq((since == p_min) & (slack >= 0))
        fire = Signal(name="fire")
        m.d.comb += fire.eq(issuing & (wait == 0) & self.a.valid & self.w.valid
                            & (~is_last | gate))
        m.d.comb += [self.a.ready.eq(fire), self.w.ready.eq(fire)]

        # Issue register in front of the skew; every row and column gets the K step's precision.
        # Its payload loads every cycle and only its valid bit follows `fire`: the skew and the
        # PEs take a payload only with its valid bit, and an enable on the payload fanned `fire`
        # out to (R + C) * 146 flip-flops (the 2 x 2 array's slowest path at 71.5 MHz on ECP5).
        for r in range(R):
            port = mesh.a_i[r]
            m.d.sync += [port.valid.eq(fire),
                         port.payload.group.word.eq(self.a.payload[r].word),
                         port.payload.group.fmt.eq(fa), port.payload.last.eq(is_last)]
        for c in range(C):
            port = mesh.b_i[c]
            m.d.sync += [port.valid.eq(fire),
                         port.payload.group.word.eq(self.w.payload[c].word),
                         port.payload.group.fmt.eq(fw), port.payload.last.eq(is_last)]

        with m.If(fire):
            m.d.sync += wait.eq(cpg - 1)
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        next_rows = Signal.like(rows_valid)
        m.d.comb += next_rows.eq(next_tile_rows(iss_left_m))
        new_row = iss_left_n <= C
        with m.If(fire & is_last):
            # `since` counts from 1 in the cycle after a last step: j cycles later it reads j.
            m.d.sync += [since.eq(1), k.eq(0), is_last.eq(gkg == 1)]
            with m.If(new_row):
                m.d.sync += [iss_left_n.eq(gn), iss_left_m.eq(iss_left_m - R),
                             rows_valid.eq(next_rows)]
                with m.If(iss_left_m <= R):
                    m.d.sync += issuing.eq(0)
            with m.Else():
                m.d.sync += iss_left_n.eq(iss_left_n - C)
        with m.Else():
            with m.If(since != p_min):
                m.d.sync += since.eq(since + 1)
            with m.If(fire):
                m.d.sync += [k.eq(k + 1), is_last.eq(k + 2 == gkg)]

        # ---- capture side: row r of a tile lands when PE (r, C-1)'s result does -------------
        # A landed row is registered (`landed`, `row_data`) in the cycle it lands and written into
        # the output buffer the next: the wires from the mesh's last column to the buffer are the
        # longest of the array (a 4 x 4 array's slowest path on ECP5 ran from a last-column PE's
        # result valid into the buffer's write enable, 11.5 ns of it routing). From the register
        # on, the path carries no arithmetic: which of the tile's rows lie inside the GEMM
        # (`row_ok`) and whether the tile is the last of its row or of the GEMM are registers.
        # They are kept with the rows and columns left from the tile (`cap_left_m`,
        # `cap_left_n`), so that each flag of the next tile compares a register with a constant;
        # the column mask compares `cap_left_n` with constants.
        cap_m0 = Signal(range(cfg.max_m + R + 1), name="cap_m0")
        cap_tn = Signal(cfg.col_bits, name="cap_col")
        cap_left_m = Signal(cfg.m_bits, name="cap_left_m")
        cap_left_n = Signal(cfg.n_bits, name="cap_left_n")
        row_ok = Signal(R, name="cap_row_ok")
        last_col = Signal(name="cap_last_col")
        last_row = Signal(name="cap_last_row")
        land_now = Cat(mesh.result[r][C - 1].valid for r in range(R))
        landed = Signal(R, name="row_landed")
        row_data = Signal(olay["data"].shape, name="row_data")
        m.d.sync += landed.eq(land_now)
        row = Signal(olay)
        m.d.comb += row.data.eq(row_data)
        for c in range(C):
            # At most one row lands per cycle (tiles' last steps are P_min >= R apart): AND-OR.
            m.d.sync += row_data[c].eq(_or_rows(mesh, land_now, R, c))
            m.d.comb += row.mask[c].eq(cap_left_n > c)
        row_idx = Signal(range(R), name="landed_row")
        for r in range(R):
            with m.If(landed[r]):
                m.d.comb += row_idx.eq(r)
        if R & (R - 1) == 0:
            # cap_m0 is a multiple of R: with R a power of two the row index fills its low bits.
            m.d.comb += row.row.eq(Cat(row_idx, cap_m0[(R - 1).bit_length():]))
        else:
            m.d.comb += row.row.eq(cap_m0 + row_idx)
        m.d.comb += [row.col.eq(cap_tn), obuf.w_data.eq(row),
                     obuf.w_en.eq((landed & row_ok).any())]

        def capture_tile_row(m_left, before: int):
            """The flags of a tile row with ``m_left - before`` rows of A left (comparing
            ``m_left`` with constants): the last tile row, and which of its rows exist."""
            m.d.sync += [last_row.eq(m_left <= before + R),
                         row_ok.eq(Cat(m_left > before + r for r in range(R)))]

        with m.If(landed[R - 1]):
            with m.If(last_col):
                m.d.sync += [cap_m0.eq(cap_m0 + R), cap_tn.eq(0), cap_left_m.eq(cap_left_m - R),
                             cap_left_n.eq(gn), last_col.eq(gn <= C)]
                capture_tile_row(cap_left_m, R)
                with m.If(last_row):
                    m.d.sync += capturing.eq(0)
            with m.Else():
                m.d.sync += [cap_tn.eq(cap_tn + 1), cap_left_n.eq(cap_left_n - C),
                             last_col.eq(cap_left_n <= 2 * C)]

        # ---- output stream and buffer credits ------------------------------------------------
        m.d.comb += [self.o.valid.eq(obuf.r_rdy), self.o.payload.eq(obuf.r_data),
                     obuf.r_en.eq(self.o.ready)]
        pop = self.o.valid & self.o.ready
        # A last step counts its tile's rows into `used`; `slack` (room - used) loses them, or,
        # when a new tile row begins, the new row's (its room changes by the difference):
        # `slack_take`, registered every cycle (a tile's last steps are at least 4 cycles apart,
        # and a command sets it directly). Every alternative is one addition of registers, and
        # `fire` and `pop` only select.
        issue_last = fire & is_last
        m.d.sync += slack_take.eq(Mux(new_row, next_rows, rows_valid))
        m.d.sync += [used.eq(Mux(issue_last, Mux(pop, used + rows_valid - 1, used + rows_valid),
                                 Mux(pop, used - 1, used))),
                     slack.eq(Mux(issue_last,
                                  Mux(pop, slack - (slack_take - 1), slack - slack_take),
                                  Mux(pop, slack + 1, slack)))]
        m.d.comb += self.busy.eq(issuing | capturing | (used != 0))

        # ---- command ------------------------------------------------------------------------
        with m.If(self.cmd.valid & self.cmd.ready):
            p = self.cmd.payload
            start = (p.m != 0) & (p.n != 0) & (p.kg != 0)
            m.d.sync += [gm.eq(p.m), gn.eq(p.n), gkg.eq(p.kg), issuing.eq(start),
                         capturing.eq(start), k.eq(0), iss_left_m.eq(p.m), iss_left_n.eq(p.n),
                         wait.eq(0),
                         cap_tn.eq(0), is_last.eq(p.kg == 1),
                         rows_valid.eq(tile_rows(p.m)),
                         slack.eq(depth - tile_rows(p.m) - used + pop),
                         slack_take.eq(Mux(p.n <= C, next_tile_rows(p.m), tile_rows(p.m)))]
            m.d.sync += [cap_m0.eq(0), cap_left_m.eq(p.m), cap_left_n.eq(p.n),
                         last_col.eq(p.n <= C)]
            capture_tile_row(p.m, 0)
        return m


def _or_rows(mesh, landed, r_count: int, c: int):
    """OR over rows of ``landed[r] ? result[r][c] : 0``: the landed row's word of column c."""
    terms = [Mux(landed[r], mesh.result[r][c].payload, 0) for r in range(r_count)]
    out = terms[0]
    for t in terms[1:]:
        out = out | t
    return out


def make_array() -> GemmArray:
    """The default 16 x 16 GEMM array, for ``mixdit verilog`` (one shared PE module)."""
    return GemmArray(ArrayConfig(), pe_module="array_pe")
