"""The MX converter: 16 FP32 lanes into one packed MX6 or MX9 group (spec §1.1, §1.2, §5).

Two blocks live here:

* :class:`MXConverter`, the full quantizer. It takes one group of 16 FP32 bit patterns and a
  per-group precision tag per cycle and emits one :data:`hw.layouts.TaggedGroup` per cycle, two
  cycles later (a two-stage pipeline that stalls stage by stage under back-pressure).
* :class:`MX9ToMX6`, the cheap path: under truncation an MX6 group is the exact bit slice
  ``q6 = q9 >> 3`` of the MX9 group with the same ``E`` and ``mu`` (spec §1.1), so it is pure
  wiring plus a multiplexer.

Both use :mod:`amaranth.lib.stream` (valid/ready) and the group layouts of :mod:`hw.layouts`, the
same ones the PE and the golden packer use.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.formats import (
    EXP_BITS, GROUP_SIZE, MICRO_COUNT, MX6, MX9, NAN_EXP, SUBGROUP_SIZE,
)
from golden.mx import ROUNDINGS
from hw.layouts import TaggedGroup, group_layout

__all__ = ["LaneGroup", "MXConverter", "MX9ToMX6", "CONVERT_LATENCY"]

#: FP32 bits per lane.
FP32_BITS = 32
_FRAC_BITS = 23

#: The converter's input: 16 FP32 bit patterns (lane i is element i of the group) and the
#: precision tag of the group to produce (``golden.formats`` codes: 0 is MX6, 1 is MX9).
LaneGroup = data.StructLayout({
    "lanes": data.ArrayLayout(unsigned(FP32_BITS), GROUP_SIZE),
    "fmt": unsigned(1),
})

#: Cycles from a group accepted on ``i`` to its word valid on ``o`` when ``o`` is ready.
CONVERT_LATENCY = 2

# The shift distance E - mu - e is clamped here: sh = d + 24 - m >= 25 already shifts every
# 24-bit significand out with a remainder below one half, for MX9 (m = 7) and for MX6 alike.
_D_MAX = 24 + 1 - (24 - MX9.mant_bits)
_D_BITS = _D_MAX.bit_length()


class MXConverter(wiring.Component):
    """Quantize one group of 16 FP32 values to MX6 or MX9 per cycle (spec §1.1, §5).

    Stage 1 finds the shared exponent ``E`` (the largest exponent field), the NaN flag (any field
    of 255) and the eight microexponents (``mu_j = 1`` when both exponents of pair ``j`` are below
    ``E``). Stage 2 shifts each significand by ``E - mu - e_i``, truncates or rounds to nearest
    even with saturation, and packs the word of spec §1.2. Zero and subnormal inputs (exponent
    field 0) are flushed to a zero magnitude; the sign bit is kept for every element, except that a
    NaN group is ``E = 255`` with every other field 0.

    Parameters
    ----------
    rounding : {"trunc", "rne"}
        The rounding of every group; a build parameter (spec §1.1).

    Attributes
    ----------
    i : In(stream.Signature(LaneGroup))
        Groups of FP32 lanes with the precision to produce.
    o : Out(stream.Signature(TaggedGroup))
        Packed groups; an MX6 word occupies the low 96 bits, the rest are zero.

    Notes
    -----
    Latency is :data:`CONVERT_LATENCY` cycles and throughput one group per cycle. Each pipeline
    register advances when it is empty or the next one advances, so back-pressure on ``o`` stalls
    the pipeline without losing or repeating a group.
    """

    i: In(stream.Signature(LaneGroup))
    o: Out(stream.Signature(TaggedGroup))

    def __init__(self, rounding: str = "trunc") -> None:
        if rounding not in ROUNDINGS:
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise ValueError(f"Rounding must be one of {ROUNDINGS}, not {rounding!r}")
        self.rounding = rounding
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()

        # --- stage 1: exponents (spec §1.1) -------------------------------------------------
        lanes = self.i.payload.lanes
        exps = [lanes[k][_FRAC_BITS:_FRAC_BITS + EXP_BITS] for k in range(GROUP_SIZE)]
        pair_max = []
        for j in range(MICRO_COUNT):
            a, b = exps[SUBGROUP_SIZE * j], exps[SUBGROUP_SIZE * j + 1]
            pm = Signal(EXP_BITS, name=f"pair_max{j}")
            m.d.comb += pm.eq(Mux(a > b, a, b))
            pair_max.append(pm)
        level = pair_max
        while len(level) > 1:
            nxt = []
            for a, b in zip(level[0::2], level[1::2]):
                mx = Signal(EXP_BITS)
                m.d.comb += mx.eq(Mux(a > b, a, b))
                nxt.append(mx)
            level = nxt
        big_e = level[0]
        nan = Cat(*(e == NAN_EXP for e in exps)).any()
        micro = Cat(*(pm < big_e for pm in pair_max))

        s1_valid = Signal()
        s1_lanes = Signal(data.ArrayLayout(unsigned(FP32_BITS), GROUP_SIZE))
        s1_fmt = Signal()
        s1_exp = Signal(EXP_BITS)
        s1_micro = Signal(MICRO_COUNT)
        s1_nan = Signal()

        # --- stage 2: shift, round, saturate, pack (spec §1.1, §1.2) --------------------------
        # The words are built as one concatenation in the field order of spec §1.2 (and of
        # hw.layouts.group_layout): a View signal assigned field by field becomes a Verilog reg
        # driven by many `always @*` blocks, which Icarus leaves at X until an input toggles.
        micro_out = Mux(s1_nan, 0, s1_micro)
        elems = {MX9: [], MX6: []}
        for k in range(GROUP_SIZE):
            x = s1_lanes[k]
            e = x[_FRAC_BITS:_FRAC_BITS + EXP_BITS]
            mu = s1_micro[k // SUBGROUP_SIZE]
            # sig = 1.fraction, or 0 for a flushed element: its magnitude is then 0 whatever d is.
            sig = Mux(e == 0, 0, Cat(x[:_FRAC_BITS], Const(1, 1)))
            d = Signal(EXP_BITS + 1, name=f"d{k}")
            m.d.comb += d.eq(s1_exp - mu - e)
            d_sat = Signal(_D_BITS, name=f"d_sat{k}")
            m.d.comb += d_sat.eq(Mux(d > _D_MAX, _D_MAX, d))
            # ext = sig * 2^(32 - 24 - d): the magnitude is its top m bits (sh = d + 24 - m).
            ext = Signal(32, name=f"ext{k}")
            m.d.comb += ext.eq((Cat(Const(0, 32 - 24), sig) >> d_sat)[:32])
            sign = Mux(s1_nan, 0, x[FP32_BITS - 1])
            for f in (MX9, MX6):
                mb = f.mant_bits
                q = ext[32 - mb:]
                if self.rounding == "rne":
                    rnd = ext[31 - mb]
                    sticky = ext[:31 - mb].any()
                    up = rnd & (sticky | q[0]) & (q != f.max_mant)
                    q = (q + up)[:mb]
                elems[f] += [Mux(s1_nan, 0, q), sign]
        w9 = Cat(s1_exp, micro_out, *elems[MX9])
        w6 = Cat(s1_exp, micro_out, *elems[MX6])
        assert len(w9) == group_layout(MX9).size and len(w6) == group_layout(MX6).size

        # --- pipeline control: each register advances when empty or when its successor does ---
        s2_ready = ~self.o.valid | self.o.ready
        s1_ready = ~s1_valid | s2_ready
        m.d.comb += self.i.ready.eq(s1_ready)
        with m.If(s1_ready):
            m.d.sync += s1_valid.eq(self.i.valid)
            with m.If(self.i.valid):
                m.d.sync += [
                    s1_lanes.eq(lanes),
                    s1_fmt.eq(self.i.payload.fmt),
                    s1_exp.eq(Mux(nan, NAN_EXP, big_e)),
                    s1_micro.eq(micro),
                    s1_nan.eq(nan),
                ]
        with m.If(s2_ready):
            m.d.sync += self.o.valid.eq(s1_valid)
            with m.If(s1_valid):
                m.d.sync += [
                    self.o.payload.word.eq(Mux(s1_fmt == MX9.code, w9, w6)),
                    self.o.payload.fmt.eq(s1_fmt),
                ]
        return m


class MX9ToMX6(wiring.Component):
    """The cheap MX9 -> MX6 path: ``q6 = q9 >> 3`` with the same ``E``, ``mu`` and signs.

    Under truncation this is exactly the MX6 quantization of the original values (spec §1.1).
    MX9 groups are converted, MX6 groups pass through; the block is combinational (no latency)
    and passes ``ready`` straight through.

    Attributes
    ----------
    i : In(stream.Signature(TaggedGroup))
    o : Out(stream.Signature(TaggedGroup))
    """

    i: In(stream.Signature(TaggedGroup))
    o: Out(stream.Signature(TaggedGroup))

    def elaborate(self, platform) -> Module:
        m = Module()
        src = self.i.payload.word.mx9
        shift = MX9.mant_bits - MX6.mant_bits
        # One concatenation in spec §1.2 order (see MXConverter.elaborate for why not a View).
        w6 = Cat(src.exp, src.micro,
                 *[Cat(src.elem[k].mant[shift:], src.elem[k].sign) for k in range(GROUP_SIZE)])
        assert len(w6) == group_layout(MX6).size
        m.d.comb += [
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
        ]
        with m.If(self.i.payload.fmt == MX9.code):
            m.d.comb += [
                self.o.payload.word.eq(w6),
                self.o.payload.fmt.eq(MX6.code),
            ]
        with m.Else():
            m.d.comb += self.o.payload.eq(self.i.payload)
        return m

