"""The reordering controller: output buffer, channel-order table and MX converter (spec §4, §5).

The array writes FP32 results into an output buffer of ``C`` banks, channel ``n`` of token ``t``
in bank ``n mod C`` at word ``t * (K_max / C) + n // C``. A table memory holds, per entry (one
(layer, timestep) of spec §4), the channel order the next layer needs, 16 channels per row, with
an MX9 flag per row (per group). A command names an entry, the groups per token and the token
count; the controller then reads every token's channels in table order, 16 at a time, and hands
each group to an :class:`hw.mx_convert.MXConverter`, whose output is the next layer's A operand,
packed (spec §1.2) and in order (token-major, group-minor).

Read schedule
-------------
Each bank has one read port, so each cycle reads at most one word per bank. The controller works
on one group at a time: in every cycle each bank serves the lowest-numbered lane of the current
group that still waits for it (a fixed-priority arbiter per bank). A group therefore takes
``max_b |{i : chan_i mod C == b}|`` cycles, at least ``ceil(16 / C)``: one cycle when its 16
channels sit in 16 different banks (C = 16), 16 cycles when they all sit in one bank. The next
group's row is prefetched from the table while the current one is read, so groups follow each
other without a bubble; each bank's read address is registered before the read, the words read
are registered one cycle after it (the banks' read latency) and selected into their lanes the
next; a group completes then, is registered whole (the gather register: the lane multiplexers
end at a flip-flop, not in the converter's first stage, which kept the controller at 26 MHz on
ECP5) and enters the converter the next cycle.
Without back-pressure a command's groups leave :data:`PIPELINE_CYCLES` cycles after its read
schedule.

Back-pressure on ``o`` stalls the converter; a full converter holds the gather register, and a
completed group that finds it held stalls the whole read pipeline (bank read ports included,
whose data then holds), so nothing is lost or repeated.

Gated reads (``ReorderConfig.gated``): the top (:mod:`hw.top`) converts a layer while the array
still writes it. A gated controller has a ``limit`` input, the tokens complete in the buffer, and
fetches no table row of token ``t`` (so reads no word of it) until ``t < limit``; the groups of the
last tokens then follow the array's last result by their read schedule and the pipeline latency.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden.formats import GROUP_SIZE
from golden.mx import ROUNDINGS
from hw.layouts import TaggedGroup
from hw.mx_convert import CONVERT_LATENCY, MXConverter

__all__ = ["ReorderConfig", "Reorder", "make_reorder", "group_cycles", "PIPELINE_CYCLES"]

_FP32_BITS = 32

#: Cycles from a command's transfer to its last group's transfer on ``o``, beyond the read
#: schedule (the sum of :func:`group_cycles` over its groups), with ``o`` always ready: the
#: table row fetch, the first grant, the address register, the bank read, the read data register
#: and the gather register, then the converter's stages (both ends counted once).
PIPELINE_CYCLES = 6 + CONVERT_LATENCY


@dataclass(frozen=True)
class ReorderConfig:
    """Every parameter of the reordering controller; variants use :func:`dataclasses.replace`.

    Parameters
    ----------
    banks : int
        C, the output buffer's banks, equal to the array's columns (a power of two).
    max_channels : int
        K_max, the most channels of a layer's output; a multiple of 16 and of ``banks``.
    max_tokens : int
        The most tokens (rows of A) the buffer holds.
    entries : int
        Table entries held at once (two let the next layer's order load while one runs).
    rounding : {"trunc", "rne"}
        Rounding of the MX converter (spec §1.1).
    gated : bool
        Add the ``limit`` input: read only tokens below it (module docstring).
    """

    banks: int = 16
    max_channels: int = 1152
    max_tokens: int = 256
    entries: int = 2
    rounding: str = "trunc"
    gated: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.banks, int) or self.banks < 1 or self.banks & (self.banks - 1):
            raise ValueError(f"Bank count must be a positive power of two, not {self.banks!r}")
        if (not isinstance(self.max_channels, int) or self.max_channels < GROUP_SIZE
                or self.max_channels % GROUP_SIZE or self.max_channels % self.banks):
            raise ValueError(f"Channel count must be a positive multiple of {GROUP_SIZE} and of "
                             f"the bank count {self.banks}, not {self.max_channels!r}")
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise ValueError(f"Token count must be a positive integer, not {self.max_tokens!r}")
        if not isinstance(self.entries, int) or self.entries < 1:
            raise ValueError(f"Table entry count must be a positive integer, not {self.entries!r}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"Rounding must be one of {ROUNDINGS}, not {self.rounding!r}")

    @property
    def bank_bits(self) -> int:
        return ceil_log2(self.banks)

    @property
    def chan_bits(self) -> int:
        return max(1, ceil_log2(self.max_channels))

    @property
    def row_words(self) -> int:
        """Words one token occupies in each bank."""
        return self.max_channels // self.banks

    @property
    def bank_depth(self) -> int:
        return self.max_tokens * self.row_words

    @property
    def max_groups(self) -> int:
        """Table rows of one entry (groups per token at K_max)."""
        return self.max_channels // GROUP_SIZE

    @property
    def table_depth(self) -> int:
        return self.entries * self.max_groups

    def write_layout(self) -> data.StructLayout:
        """One array write: C results of one token, channels ``col * C .. col * C + C - 1``."""
        return data.StructLayout({
            "token": unsigned(max(1, ceil_log2(self.max_tokens))),
            "col": unsigned(max(1, ceil_log2(self.row_words))),
            "data": data.ArrayLayout(unsigned(_FP32_BITS), self.banks),
        })

    def row_layout(self) -> data.StructLayout:
        """One table row: the 16 channels of one group, in lane order, and its MX9 flag."""
        return data.StructLayout({
            "chans": data.ArrayLayout(unsigned(self.chan_bits), GROUP_SIZE),
            "mx9": unsigned(1),
        })

    def config_layout(self) -> data.StructLayout:
        """One table write: row ``addr = entry * max_groups + group``."""
        return data.StructLayout({
            "addr": unsigned(max(1, ceil_log2(self.table_depth))),
            "row": self.row_layout(),
        })

    def command_layout(self) -> data.StructLayout:
        """One layer: table ``entry``, ``groups`` per token (K / 16) and ``tokens``."""
        return data.StructLayout({
            "entry": unsigned(max(1, ceil_log2(self.entries))),
            "groups": unsigned(ceil_log2(self.max_groups + 1)),
            "tokens": unsigned(ceil_log2(self.max_tokens + 1)),
        })


def group_cycles(chans, banks: int) -> int:
    """Cycles the read schedule spends on one group of channels: its largest bank load."""
    loads: dict[int, int] = {}
    for n in chans:
        loads[int(n) % banks] = loads.get(int(n) % banks, 0) + 1
    return max(loads.values())


class Reorder(wiring.Component):
    """Reordering controller with its output buffer, table and MX converter (spec §5).

    Parameters
    ----------
    config : ReorderConfig

    Attributes
    ----------
    w : In(stream.Signature(config.write_layout()))
        Array results, C channels of one token per transfer (one word per bank); always ready.
    cfg : In(stream.Signature(config.config_layout()))
        Table rows; always ready. Rows of an entry that no running command uses may be written at
        any time, so the next layer's order loads while the current one is read.
    cmd : In(stream.Signature(config.command_layout()))
        One command per layer; taken once the previous command's table rows are all fetched. A
        command with zero groups or tokens does nothing.
    o : Out(stream.Signature(TaggedGroup))
        The next layer's A operand: ``tokens * groups`` packed groups, token-major.
    busy : Out(1)
        High from a command's acceptance until its last group has entered the converter (the
        converter's pipeline, :data:`hw.mx_convert.CONVERT_LATENCY` deep, drains after).
    limit : In(range(max_tokens + 1)), only when ``config.gated``
        Tokens the controller may read: token ``t``'s first table row is fetched once
        ``t < limit``.
    """

    def __init__(self, config: ReorderConfig = ReorderConfig()) -> None:
        if not isinstance(config, ReorderConfig):
            raise TypeError(f"Expected a ReorderConfig, not {config!r}")
        self.config = config
        ports = {
            "w": In(stream.Signature(config.write_layout())),
            "cfg": In(stream.Signature(config.config_layout())),
            "cmd": In(stream.Signature(config.command_layout())),
            "o": Out(stream.Signature(TaggedGroup)),
            "busy": Out(1),
        }
        if config.gated:
            ports["limit"] = In(config.command_layout()["tokens"].shape)
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        cfg = self.config
        m = Module()
        C, bb = cfg.banks, cfg.bank_bits
        addr_bits = max(1, ceil_log2(cfg.bank_depth))

        m.submodules.convert = conv = MXConverter(cfg.rounding)
        wiring.connect(m, wiring.flipped(self.o), conv.o)

        # --- table memory and its configuration port -------------------------------------------
        m.submodules.table = table = Memory(shape=cfg.row_layout(), depth=cfg.table_depth, init=[])
        tw = table.write_port()
        tr = table.read_port(domain="sync")
        m.d.comb += [
            tw.addr.eq(self.cfg.payload.addr),
            tw.data.eq(self.cfg.payload.row),
            tw.en.eq(self.cfg.valid),
            self.cfg.ready.eq(1),
        ]

        # --- output buffer banks: the array writes one word per bank --------------------------
        stall = Signal()
        # Each bank's read address is registered (`a_addr`) before it reaches the block RAM: the
        # arbiters' grant into the address adder and across the chip to the RAM's address pins
        # was the controller's slowest path (59.7 MHz on ECP5).
        rd_addr = [Signal(addr_bits, name=f"rd_addr{b}") for b in range(C)]
        a_addr = [Signal(addr_bits, name=f"a_addr{b}") for b in range(C)]
        rd_data = []
        w_addr = Signal(addr_bits)
        m.d.comb += [
            w_addr.eq(self.w.payload.token * cfg.row_words + self.w.payload.col),
            self.w.ready.eq(1),
        ]
        for b in range(C):
            mem = Memory(shape=unsigned(_FP32_BITS), depth=cfg.bank_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(domain="sync")
            m.d.comb += [
                wp.addr.eq(w_addr),
                wp.data.eq(self.w.payload.data[b]),
                wp.en.eq(self.w.valid),
                rp.addr.eq(a_addr[b]),
                rp.en.eq(~stall),
            ]
            # The read data is registered before the lanes select from it: a block RAM's
            # output (cascaded blocks for deep banks) into the 16-way bank multiplexer was the
            # controller's slowest path once the gather register was in (51 MHz on ECP5).
            word = Signal(_FP32_BITS, name=f"rd_q{b}")
            with m.If(~stall):
                m.d.sync += word.eq(rp.data)
            rd_data.append(word)

        # --- command and table prefetch ---------------------------------------------------------
        f_active = Signal()
        f_base = Signal.like(self.cfg.payload.addr)
        f_grp = Signal.like(self.cmd.payload.groups)
        f_tok = Signal.like(self.cmd.payload.tokens)
        f_rowbase = Signal(addr_bits)
        # Whether the row fetched next is its token's last, and the token the command's last:
        # registers, so that a fetch only selects (the fetch decision ends the controller's
        # longest path, from the current group's completion).
        f_last_grp = Signal()
        f_last_tok = Signal()
        n_groups = Signal.like(self.cmd.payload.groups)
        n_tokens = Signal.like(self.cmd.payload.tokens)
        n_valid = Signal()                     # the table read port holds the next row
        n_rowbase = Signal(addr_bits)

        # --- current group, issue and landing registers ----------------------------------------
        c_valid = Signal()
        c_chans = Signal(data.ArrayLayout(unsigned(cfg.chan_bits), GROUP_SIZE))
        c_fmt = Signal()
        c_pending = Signal(GROUP_SIZE)
        c_rowbase = Signal(addr_bits)
        # Three stages after the grant: the read addresses, the banks' read ports, then their
        # registered data (`rd_q`).
        a_grant = Signal(GROUP_SIZE)           # lanes whose address is in `a_addr` now
        a_bank = Signal(data.ArrayLayout(unsigned(max(1, bb)), GROUP_SIZE))
        a_last = Signal()
        a_fmt = Signal()
        r_grant = Signal(GROUP_SIZE)           # lanes whose word the banks read now
        r_bank = Signal(data.ArrayLayout(unsigned(max(1, bb)), GROUP_SIZE))
        r_last = Signal()                      # ... and they complete the group
        r_fmt = Signal()
        l_grant = Signal(GROUP_SIZE)           # lanes whose word is in `rd_q` now
        l_bank = Signal.like(r_bank)
        l_last = Signal()
        l_fmt = Signal()
        gather = Signal(data.ArrayLayout(unsigned(_FP32_BITS), GROUP_SIZE))

        q_valid = Signal()                     # the gather register: a whole group
        q_payload = Signal.like(conv.i.payload)
        q_held = Signal()                      # ... that the converter refuses this cycle
        m.d.comb += stall.eq(l_last & q_held)

        # Per bank, a fixed-priority arbiter over the lanes still waiting for it.
        def bank_of(chan):
            """The bank that holds channel ``chan`` (bank 0 when there is one bank)."""
            return chan[:bb] if bb else Const(0, 1)

        lane_bank = [bank_of(c_chans[i]) for i in range(GROUP_SIZE)]
        grant = Signal(GROUP_SIZE)
        grant_terms = []
        for b in range(C):
            req = Signal(GROUP_SIZE, name=f"req{b}")
            m.d.comb += req.eq(Cat(*(c_valid & c_pending[i] & (lane_bank[i] == b)
                                          for i in range(GROUP_SIZE))))
            one = Signal(GROUP_SIZE, name=f"grant{b}")
            m.d.comb += one.eq(req & (~req + 1))
            grant_terms.append(one)
            offset = 0
            for i in range(GROUP_SIZE):
                offset = offset | Mux(one[i], c_chans[i][bb:], 0)
            m.d.comb += rd_addr[b].eq(c_rowbase + offset)
        m.d.comb += grant.eq(_or_all(grant_terms))
        remaining = c_pending & ~grant
        # The group is done when no bank has two lanes still pending: each bank then grants its
        # last one now (the same as `remaining == 0`). Formed from `c_same`, which pairs of lanes
        # share a bank (registered with the group), and not from the arbiters' grants: their
        # carry chains made the path from the group's state to the next table-row fetch the
        # controller's slowest.
        pairs = [(i, j) for i in range(GROUP_SIZE) for j in range(i + 1, GROUP_SIZE)]
        c_same = Signal(len(pairs), name="c_same")
        clash = Signal(name="bank_clash")
        m.d.comb += clash.eq(Cat(*(c_pending[i] & c_pending[j] & c_same[n]
                                   for n, (i, j) in enumerate(pairs))).any())
        done = Signal(name="group_done")
        m.d.comb += done.eq(c_valid & ~clash)
        take = ~stall & n_valid & (~c_valid | done)
        fetch = f_active & (~n_valid | take)
        if cfg.gated:
            fetch = fetch & (f_tok < self.limit)

        m.d.comb += [
            tr.addr.eq(f_base + f_grp),
            tr.en.eq(fetch),
            self.cmd.ready.eq(~f_active),
            self.busy.eq(f_active | n_valid | c_valid | a_grant.any() | r_grant.any()
                         | l_grant.any() | q_valid),
        ]

        with m.If(self.cmd.valid & ~f_active):
            p = self.cmd.payload
            m.d.sync += [
                f_active.eq((p.groups != 0) & (p.tokens != 0)),
                f_base.eq(p.entry * cfg.max_groups),
                f_grp.eq(0),
                f_last_grp.eq(p.groups == 1),
                f_tok.eq(0),
                f_last_tok.eq(p.tokens == 1),
                f_rowbase.eq(0),
                n_groups.eq(p.groups),
                n_tokens.eq(p.tokens),
            ]
        with m.If(fetch):
            m.d.sync += [n_valid.eq(1), n_rowbase.eq(f_rowbase)]
            with m.If(f_last_grp):
                m.d.sync += [
                    f_grp.eq(0),
                    f_last_grp.eq(n_groups == 1),
                    f_tok.eq(f_tok + 1),
                    f_last_tok.eq(f_tok + 2 == n_tokens),
                    f_rowbase.eq(f_rowbase + cfg.row_words),
                ]
                with m.If(f_last_tok):
                    m.d.sync += f_active.eq(0)
            with m.Else():
                m.d.sync += [f_grp.eq(f_grp + 1), f_last_grp.eq(f_grp + 2 == n_groups)]
        with m.Elif(take):
            m.d.sync += n_valid.eq(0)

        with m.If(~stall):
            m.d.sync += [
                a_grant.eq(grant),
                a_last.eq(done),
                a_fmt.eq(c_fmt),
                r_grant.eq(a_grant),
                r_last.eq(a_last),
                r_fmt.eq(a_fmt),
                r_bank.eq(a_bank),
                l_grant.eq(r_grant),
                l_last.eq(r_last),
                l_fmt.eq(r_fmt),
                l_bank.eq(r_bank),
                c_pending.eq(remaining),
            ]
            m.d.sync += [a_addr[b].eq(rd_addr[b]) for b in range(C)]
            for i in range(GROUP_SIZE):
                m.d.sync += a_bank[i].eq(lane_bank[i])
            with m.If(take):
                row_bank = [bank_of(tr.data.chans[i]) for i in range(GROUP_SIZE)]
                m.d.sync += c_same.eq(Cat(*(row_bank[i] == row_bank[j] for i, j in pairs)))
                m.d.sync += [
                    c_valid.eq(1),
                    c_chans.eq(tr.data.chans),
                    c_fmt.eq(tr.data.mx9),
                    c_pending.eq((1 << GROUP_SIZE) - 1),
                    c_rowbase.eq(n_rowbase),
                ]
            with m.Elif(done):
                m.d.sync += c_valid.eq(0)

        # --- landing: each granted lane takes its word from its bank, one cycle after the read --
        # A completed group goes into the gather register `q`, then to the converter.
        # The payload is one concatenation: per-lane assignments to slices of one signal become
        # many Verilog `always @*` blocks, which Icarus leaves at X.
        lanes = []
        for i in range(GROUP_SIZE):
            word = Signal(_FP32_BITS, name=f"land{i}")
            sel = l_bank[i]
            m.d.comb += word.eq(rd_data[0])
            for b in range(1, C):
                with m.If(sel == b):
                    m.d.comb += word.eq(rd_data[b])
            lane = Signal(_FP32_BITS, name=f"lane{i}")
            m.d.comb += lane.eq(Mux(l_grant[i], word, gather[i]))
            lanes.append(lane)
            with m.If(~stall & l_grant[i]):
                m.d.sync += gather[i].eq(word)
        with m.If(~stall & l_last):
            m.d.sync += [q_valid.eq(1), q_payload.eq(Cat(*lanes, l_fmt))]
        with m.Elif(conv.i.ready):
            m.d.sync += q_valid.eq(0)
        m.d.comb += [conv.i.valid.eq(q_valid), conv.i.payload.eq(q_payload)]
        m.d.comb += q_held.eq(q_valid & ~conv.i.ready)
        return m


def _or_all(values):
    out = values[0]
    for v in values[1:]:
        out = out | v
    return out


def make_reorder() -> Reorder:
    """The controller ``mixdit verilog`` emits: 16 banks, 1152 channels (DiT-XL/2's hidden size)
    and one row block of 16 tokens, the rows of one array tile (spec §3).

    A buffer for whole layers (``max_tokens=256``) is the same design with deeper memories.
    """
    return Reorder(ReorderConfig(max_tokens=16))
