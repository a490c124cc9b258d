"""The MX converter: 16 FP32 lanes into one packed MX6 or MX9 group (spec §1.1, §1.2, §5).

Two blocks live here:

* :class:`MXConverter`, the full quantizer. It takes one group of 16 FP32 bit patterns and a
  per-group precision tag per cycle and emits one :data:`hw.layouts.TaggedGroup` per cycle,
  :data:`CONVERT_LATENCY` cycles later (a pipeline that stalls as a whole under back-pressure).
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

#: Cycles from a group accepted on ``i`` to its word valid on ``o`` when ``o`` is ready: the six
#: stages of :class:`MXConverter`.
CONVERT_LATENCY = 6

# The shift keeps the top byte of sig * 2^(8 - d), sig = 1.fraction (24 bits) and d = E - mu - e:
# the MX9 magnitude, the MX6 one and, for RNE, their rounding bits. That byte holds sig's bits
# [16 + d, 24 + d); a distance of 8 or more leaves it empty.
_KEPT_BITS = 8
_NEAR_BITS = (_KEPT_BITS - 1).bit_length()
#: Fraction bits that can reach the kept byte (fraction bits [16, 23)); the 16 below it only
#: ever count as sticky, so a lane carries their OR (`low`) through the pipeline instead.
_HIGH_FRAC = _KEPT_BITS - 1
_LOW_FRAC = _FRAC_BITS - _HIGH_FRAC

#: One lane inside the pipeline: what of an FP32 value the quantization needs.
_Lane = data.StructLayout({
    "low": unsigned(1),              # any of the fraction's low 16 bits set
    "frac": unsigned(_HIGH_FRAC),    # the fraction's top 7 bits
    "exp": unsigned(EXP_BITS),
    "sign": unsigned(1),
})


class MXConverter(wiring.Component):
    """Quantize one group of 16 FP32 values to MX6 or MX9 per cycle (spec §1.1, §5).

    Stages 1-3 find the shared exponent ``E`` (the largest exponent field: pairs, halves, whole),
    the NaN flag (any field of 255) and the eight microexponents (``mu_j = 1`` when both exponents
    of pair ``j`` are below ``E``). Stage 4 forms each lane's shift ``E - mu - e_i``, stage 5
    shifts the significand, stage 6 truncates or rounds to nearest even with saturation and packs
    the word of spec §1.2. Zero and subnormal inputs (exponent field 0) are flushed to a zero
    magnitude; the sign bit is kept for every element, except that a NaN group is ``E = 255``
    with every other field 0. Each stage is at most a comparison or an addition with a select
    around it, for the clock (README, "Area and clock speed after place and route").

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
    Latency is :data:`CONVERT_LATENCY` cycles and throughput one group per cycle. The pipeline
    advances as a whole unless ``o`` holds a group that is not taken, so back-pressure on ``o``
    stalls it without losing or repeating a group.
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
        rne = self.rounding == "rne"
        lanes_shape = data.ArrayLayout(_Lane, GROUP_SIZE)

        # Six registered stages, all loading together (`adv`) unless the output holds a group
        # that is not taken: one enable for every register, a single gate from `o`, instead of
        # each stage loading when it or a later one is empty (a chain of six logic levels into
        # every enable, the converter's slowest path on ECP5). A bubble is not squeezed out
        # during a stall; the throughput of a full pipeline is the same.
        valid = [Signal(name=f"s{k}_valid") for k in range(1, CONVERT_LATENCY)] + [self.o.valid]
        adv = Signal(name="advance")
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]
        with m.If(adv):
            m.d.sync += [valid[k].eq(self.i.valid if k == 0 else valid[k - 1])
                         for k in range(CONVERT_LATENCY)]

        def stage(k: int, *assigns) -> None:
            """Registers of stage k (1-based), loaded with what the stage before holds."""
            with m.If(adv & (self.i.valid if k == 1 else valid[k - 2])):
                m.d.sync += list(assigns)

        # --- stage 1: the larger exponent of each pair and whether it is a NaN's (spec §1.1) ----
        lanes = self.i.payload.lanes
        s1_lanes, s1_fmt = Signal(lanes_shape, name="s1_lanes"), Signal(name="s1_fmt")
        s1_pair = [Signal(EXP_BITS, name=f"s1_pair{j}") for j in range(MICRO_COUNT)]
        s1_nan = Signal(MICRO_COUNT, name="s1_nan")
        exps = [lanes[k][_FRAC_BITS:_FRAC_BITS + EXP_BITS] for k in range(GROUP_SIZE)]
        pair_exps = [(exps[SUBGROUP_SIZE * j], exps[SUBGROUP_SIZE * j + 1])
                     for j in range(MICRO_COUNT)]
        # The FP32 fields above the low fraction bits are already in _Lane's order.
        compact = [Cat(x[:_LOW_FRAC].any(), x[_LOW_FRAC:]) for x in lanes]
        assert all(len(c) == _Lane.size for c in compact)
        stage(1, s1_lanes.eq(Cat(compact)), s1_fmt.eq(self.i.payload.fmt),
              *[s1_pair[j].eq(Mux(a > b, a, b)) for j, (a, b) in enumerate(pair_exps)],
              s1_nan.eq(Cat((a == NAN_EXP) | (b == NAN_EXP) for a, b in pair_exps)))

        # --- stage 2: the largest of each half's four pair maxima ------------------------------
        # One comparison level: the maximum of four is the one that beats the three others
        # (ties go to the lower index), selected by an AND-OR.
        def max_of(values):
            out = 0
            for i, v in enumerate(values):
                beats = [v > w if j < i else v >= w for j, w in enumerate(values) if j != i]
                out = out | Mux(Cat(beats).all(), v, 0)
            return out

        half = MICRO_COUNT // 2
        s2_lanes, s2_fmt = Signal(lanes_shape, name="s2_lanes"), Signal(name="s2_fmt")
        s2_pair = [Signal(EXP_BITS, name=f"s2_pair{j}") for j in range(MICRO_COUNT)]
        s2_half = [Signal(EXP_BITS, name=f"s2_half{h}") for h in range(2)]
        s2_nan = Signal(name="s2_nan")
        stage(2, s2_lanes.eq(s1_lanes), s2_fmt.eq(s1_fmt), s2_nan.eq(s1_nan.any()),
              *[s2_pair[j].eq(s1_pair[j]) for j in range(MICRO_COUNT)],
              *[s2_half[h].eq(max_of(s1_pair[h * half:(h + 1) * half])) for h in range(2)])

        # --- stage 3: the shared exponent E and the microexponents ------------------------------
        # mu_j = 1 when pair j's maximum is below E = max(half 0, half 1), i.e. below either half.
        s3_lanes, s3_fmt = Signal(lanes_shape, name="s3_lanes"), Signal(name="s3_fmt")
        s3_exp = Signal(EXP_BITS, name="s3_exp")
        s3_micro = Signal(MICRO_COUNT, name="s3_micro")
        s3_nan = Signal(name="s3_nan")
        h0, h1 = s2_half
        stage(3, s3_lanes.eq(s2_lanes), s3_fmt.eq(s2_fmt), s3_nan.eq(s2_nan),
              s3_exp.eq(Mux(h0 > h1, h0, h1)),
              s3_micro.eq(Cat((pm < h0) | (pm < h1) for pm in s2_pair)))

        # --- stage 4: each lane's shift distance d = E - mu - e and its significand ------------
        # E - mu - e = E + ~e + ~mu - 256 (8-bit ~e; E >= e + mu, so the sum's bit 8 is set): one
        # adder with mu in its carry.
        s4_fmt, s4_nan = Signal(name="s4_fmt"), Signal(name="s4_nan")
        s4_exp = Signal(EXP_BITS, name="s4_exp")
        s4_micro = Signal(MICRO_COUNT, name="s4_micro")
        s4_sig = [Signal(_KEPT_BITS, name=f"s4_sig{k}") for k in range(GROUP_SIZE)]
        s4_low = Signal(GROUP_SIZE, name="s4_low")
        s4_sign = Signal(GROUP_SIZE, name="s4_sign")
        s4_dist = [Signal(EXP_BITS, name=f"s4_dist{k}") for k in range(GROUP_SIZE)]
        lane_regs = []
        for k in range(GROUP_SIZE):
            x = s3_lanes[k]
            # sig's top byte 1.frac, or 0 for a flushed element (exponent field 0): its
            # magnitude is then 0 whatever d is, and with no rounding bit nothing rounds up.
            lane_regs += [s4_sig[k].eq(Mux(x.exp == 0, 0, Cat(x.frac, Const(1, 1)))),
                          s4_dist[k].eq(s3_exp + ~x.exp + ~s3_micro[k // SUBGROUP_SIZE])]
        stage(4, s4_fmt.eq(s3_fmt), s4_nan.eq(s3_nan), s4_micro.eq(s3_micro),
              s4_exp.eq(Mux(s3_nan, NAN_EXP, s3_exp)),
              s4_low.eq(Cat(s3_lanes[k].low for k in range(GROUP_SIZE))),
              s4_sign.eq(Cat(s3_lanes[k].sign for k in range(GROUP_SIZE))), *lane_regs)

        # --- stage 5: the shift (spec §1.1) -----------------------------------------------------
        # The kept byte is sig's top byte shifted right by d. For RNE, whether any bit below it
        # is set (sticky) is the low bits' OR and the top byte's bits that the shift moves out.
        # d >= 8 (`far`) empties the byte, rounding bits included, so that nothing rounds up
        # whatever the sticky bit says.
        s5_fmt, s5_nan = Signal(name="s5_fmt"), Signal(name="s5_nan")
        s5_exp = Signal(EXP_BITS, name="s5_exp")
        s5_micro = Signal(MICRO_COUNT, name="s5_micro")
        s5_sign = Signal(GROUP_SIZE, name="s5_sign")
        s5_top = [Signal(_KEPT_BITS, name=f"s5_top{k}") for k in range(GROUP_SIZE)]
        s5_sticky = Signal(GROUP_SIZE, name="s5_sticky")
        lane_regs = []
        for k in range(GROUP_SIZE):
            sig, d = s4_sig[k], s4_dist[k]
            near, far = d[:_NEAR_BITS], d[_NEAR_BITS:].any()
            lane_regs.append(s5_top[k].eq(Mux(far, 0, sig >> near)))
            if rne:
                out = [s4_low[k]] + [(near > i) & sig[i] for i in range(_KEPT_BITS - 1)]
                lane_regs.append(s5_sticky[k].eq(Cat(out).any()))
        stage(5, s5_fmt.eq(s4_fmt), s5_nan.eq(s4_nan), s5_exp.eq(s4_exp),
              s5_micro.eq(s4_micro), s5_sign.eq(s4_sign), *lane_regs)

        # --- stage 6: rounding, saturation and the packed word (spec §1.1, §1.2) --------------
        # The words are built as one concatenation in the field order of spec §1.2 (and of
        # hw.layouts.group_layout): a View signal assigned field by field becomes a Verilog reg
        # driven by many `always @*` blocks, which Icarus leaves at X until an input toggles.
        micro_out = Mux(s5_nan, 0, s5_micro)
        elems = {MX9: [], MX6: []}
        for k in range(GROUP_SIZE):
            top = s5_top[k]
            sign = Mux(s5_nan, 0, s5_sign[k])
            for f in (MX9, MX6):
                mb = f.mant_bits
                q = top[8 - mb:]
                if rne:
                    rnd = top[7 - mb]
                    sticky = Cat(top[:7 - mb], s5_sticky[k]).any()
                    up = rnd & (sticky | q[0]) & (q != f.max_mant)
                    q = (q + up)[:mb]
                elems[f] += [Mux(s5_nan, 0, q), sign]
        w9 = Cat(s5_exp, micro_out, *elems[MX9])
        w6 = Cat(s5_exp, micro_out, *elems[MX6])
        assert len(w9) == group_layout(MX9).size and len(w6) == group_layout(MX6).size
        stage(6, self.o.payload.word.eq(Mux(s5_fmt == MX9.code, w9, w6)),
              self.o.payload.fmt.eq(s5_fmt))
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

