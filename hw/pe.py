"""The precision-flexible processing element (spec §2).

One PE of the output-stationary systolic array (spec §3): it receives an A group (from the
left) and a B group (from the top) together, forwards both to its right/down neighbour one cycle
later, computes their exact integer group sum S with four 4-bit x 4-bit unsigned multipliers,
converts S exactly to FP32 and adds it into its FP32 accumulator, one add per group in increasing
K order (spec §2.1, §1.3).

Interface (valid/payload buses without ready: the array has no back-pressure)
-----------------------------------------------------------------------------
``a_i``, ``b_i`` : In(OperandSignature)
    An operand: ``payload.group`` is a :data:`hw.layouts.TaggedGroup` (the §1.2 word of either
    precision plus its 1-bit precision tag, 0 = MX6, 1 = MX9) and ``payload.last`` marks the last
    group of a dot product. ``valid`` is a one-cycle strobe. The A and B groups of one K step must
    be valid in the same cycle (the array's input skew arranges it), and the next pair may come
    no earlier than :func:`cycles_per_group` of this pair later (4, 8 or 16 from the two tags);
    exactly that many cycles later is full throughput, with no bubble between groups, also across
    dot products. The dot product ends after a group whose ``last`` is set on A *or* B.
``a_o``, ``b_o`` : Out(OperandSignature)
    The operands forwarded to the right (A) and down (B) neighbour: ``valid`` is ``a_i.valid``
    delayed by one cycle, ``payload`` is the last valid payload (held until the next one). This
    register is also the operand register the multipliers read.
``clear`` : In(1)
    Synchronous clear: abandons every group accepted *before* this cycle that has not reached the
    accumulator, and the next dot product starts from +0.0. Operands valid in the same cycle as
    ``clear`` are kept (they start the new dot product). ``result`` is not touched.
``result`` : Out(ResultSignature)
    The finished dot product as an FP32 bit pattern. ``valid`` pulses for one cycle when a new
    result lands; ``payload`` holds it until the next one (a shadow register: the accumulator is
    already working on the next dot product, so the array can drain results while it computes).

Timing
------
Let t be the cycle in which a group pair is valid on ``a_i``/``b_i`` and c = cycles_per_group.

- cycles t+1 .. t+c: the multiply steps issue on the registered operands; each step's products
  pass a four-stage pipeline (operand select, 4x4 products, weighted signed terms, their sum), so
  step t+i reaches the group-sum register in cycle t+i+4 and S is complete in cycle t+c+5;
- cycles t+c+6 .. t+c+9: S is converted to FP32 in four stages (magnitude, leading-zero count,
  normalising shift with the exponent, packing; exact, spec §2.1);
- cycles t+c+10 .. t+c+13: the four-stage FP32 adder adds it into the accumulator;
- for a group with ``last``: ``result.valid`` is high in cycle t + c + :data:`RESULT_LATENCY`
  (``RESULT_LATENCY`` = 14).

So for a dot product fed back to back from cycle t0 (groups k = 0..G-1 with c_k cycles each),
``result.valid`` rises in cycle ``t0 + sum(c_k) + 14``; the next dot product's first group may be
valid at ``t0 + sum(c_k)``. An add is issued at most every 4 cycles and its sum leaves the adder
4 cycles later into the adder's output register, which loads only valid sums and so is the
accumulator; an add issued in that very cycle or later reads it, so every add sees the previous
group's sum: the result is the sequential FP32 accumulation of spec §2.1 bit for bit, whatever
the mix of modes.
The pipeline is cut for the clock (README, "Area and clock speed after place and route"); it
costs latency, not throughput.

Throughput per group pair (spec §2.2): MX6 x MX6 4 cycles (each multiplier forms one 4x4
product: 4 products per cycle), MX9 x MX6 and MX6 x MX9 8 cycles (two multipliers per product:
the MX9 magnitude, zero-extended to 8 bits, splits into two nibbles), MX9 x MX9 16 cycles (four
multipliers per product, the four nibble cross products).

Datapath (cheap per cycle, for hardware and simulators alike): in a pair's first step each
operand's 16 elements are unpacked once from its operand register into byte slots ``{sign,
magnitude}`` (two 64-bit words) and its microexponents into an 8-bit field; each multiply step
shifts them by the elements it consumed (4, 2 or 1) into slot registers for the next, so the four
multipliers read slots at fixed positions instead of selecting elements by the step. The group
sum is kept as a two's-complement bit pattern; the conversion counts its leading zeros with a
tree (:func:`hw.fp32.leading_zeros`) and shifts by the count a stage later.

The ``multiplier="8x8"`` variant replaces the four 4x4 multipliers by one 8x8 multiplier doing
one product per cycle (16 cycles per group in every mode) and keeps everything else. It exists
only as the area baseline of ``make bench``; it does not meet spec §2.2.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from golden.formats import EXP_BIAS, GROUP_SIZE, MX6, MX9, NAN_EXP, format_of

from .fp32 import CANONICAL_NAN, FP32Add, infinity, leading_zeros, signed_zero
from .layouts import TaggedGroup

__all__ = [
    "OPERAND", "OperandSignature", "ResultSignature", "PE", "cycles_per_group", "RESULT_LATENCY",
    "MULTIPLIERS",
    "MODES_CPG", "make_pe", "make_pe_baseline",
]

#: An operand on the array's buses: a tagged group and the last-group-of-the-dot-product flag.
OPERAND = data.StructLayout({"group": TaggedGroup, "last": unsigned(1)})
#: The operand bus: a valid strobe and a payload, no back-pressure. (Not
#: ``stream.Signature(..., always_ready=True)``: its constant ``ready`` cannot be a port of a
#: top-level module, and every PE is emitted as one.)
OperandSignature = wiring.Signature({"valid": Out(1), "payload": Out(OPERAND)})
#: The result bus: a valid strobe and an FP32 bit pattern.
ResultSignature = wiring.Signature({"valid": Out(1), "payload": Out(32)})
#: Cycles per group of each operand-format pair (A x B), spec §2.2.
MODES_CPG = {"mx6xmx6": 4, "mx9xmx6": 8, "mx6xmx9": 8, "mx9xmx9": 16}
#: The multiplier organisations :class:`PE` can be built with.
MULTIPLIERS = ("4x4", "8x8")

_ADDER_STAGES = 4
# Cycles from a multiply step to its sum entering the group-sum register: operand select,
# product, weighted term, sum of the step's terms.
_MUL_DEPTH = 4
#: ``result.valid`` rises this many cycles after the last group's multiply steps end, i.e. in cycle
#: t + cycles_per_group + RESULT_LATENCY for operands valid in cycle t.
#: The pipeline: the multiply pipeline (_MUL_DEPTH), the group-sum register, the conversion's
#: four stages, the adder (_ADDER_STAGES) and the result register.
RESULT_LATENCY = _MUL_DEPTH + 1 + 4 + _ADDER_STAGES + 1
# |S| <= 16 * 127 * 127 * 4 < 2**21 (spec §2.1): 22 bits signed.
_SUM_BITS = 22


def cycles_per_group(fmt_a, fmt_b, multiplier: str = "4x4") -> int:
    """Cycles the PE spends on one group pair (spec §2.2).

    Parameters
    ----------
    fmt_a, fmt_b : str, int or MXFormat
        Formats (or precision codes) of the A and B groups: MX6 or MX9.
    multiplier : str
        ``"4x4"`` (the design) or ``"8x8"`` (the area baseline, always 16).
    """
    fa, fb = format_of(fmt_a), format_of(fmt_b)
    for f in (fa, fb):
        if f not in (MX6, MX9):
            raise ValueError(f"The PE computes MX6 and MX9 groups, not {f.name}")
    if multiplier not in MULTIPLIERS:
        raise ValueError(f"multiplier must be one of {MULTIPLIERS}, not {multiplier!r}")
    if multiplier == "8x8":
        return GROUP_SIZE
    return MODES_CPG[f"{fa.name}x{fb.name}"]


class PE(wiring.Component):
    """Precision-flexible MX processing element (spec §2); see the module docstring for the
    ports, the timing and the latency.

    Parameters
    ----------
    multiplier : str
        ``"4x4"``: four 4-bit x 4-bit multipliers shared by every mode (the design, spec §2.2).
        ``"8x8"``: one 8x8 multiplier, 16 cycles per group (the area baseline only).
    """

    a_i: In(OperandSignature)
    b_i: In(OperandSignature)
    a_o: Out(OperandSignature)
    b_o: Out(OperandSignature)
    clear: In(1)
    result: Out(ResultSignature)

    def __init__(self, multiplier: str = "4x4") -> None:
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be one of {MULTIPLIERS}, not {multiplier!r}")
        self.multiplier = multiplier
        super().__init__()

    @staticmethod
    def _operand_fields(m: Module, word, fmt, name: str):
        """Per-element magnitude (8 bits, MX6's 4 and MX9's 7 zero-extended), sign and
        per-subgroup microexponent of a tagged group word (spec §1.2)."""
        mags = []
        for i in range(GROUP_SIZE):
            mag = Signal(8, name=f"{name}_mag{i}")
            m.d.comb += mag.eq(Mux(fmt, word.mx9.elem[i].mant, word.mx6.elem[i].mant))
            mags.append(mag)
        # E and the microexponents sit at the same bits in both formats; elements do not.
        signs = [Mux(fmt, word.mx9.elem[i].sign, word.mx6.elem[i].sign) for i in range(GROUP_SIZE)]
        micro = word.mx9.micro
        return mags, signs, micro

    @staticmethod
    def _slots(group):
        """The 16 elements of a tagged group as 8-bit slots ``{sign, mag[6:0]}`` (MX6's 4-bit
        magnitude zero-extended), in two 64-bit halves: elements 0-7 and 8-15. MX9's elements are
        already such bytes; MX6's 5-bit elements are spread out. Kept at most 64 bits wide so
        that a simulator handles each half as one machine word."""
        raw = group.word.as_value()
        elems9 = raw[16:16 + 128]
        elem6 = [group.word.mx6.elem[i] for i in range(GROUP_SIZE)]
        six = [Cat(e.mant, Const(0, 3), e.sign) for e in elem6]
        lo = Mux(group.fmt, elems9[0:64], Cat(*six[0:8]))
        hi = Mux(group.fmt, elems9[64:128], Cat(*six[8:16]))
        return lo, hi

    def _mac_4x4(self, m: Module, step, a, b, active):
        """The sum of this step's products, from four 4x4 multipliers (spec §2.2).

        The operands are unpacked once, in the first step of a pair, from the operand registers
        into slots (one byte per element, see :meth:`_slots`) and an 8-bit microexponent field;
        each step shifts them by the elements it consumed (4 in MX6 x MX6, 2 mixed, 1 in MX9 x
        MX9) into slot registers that the next step reads, so multiplier k always reads a slot at
        a fixed position: k (MX6 x MX6), k // 2 (mixed) or 0 (MX9 x MX9). Unpacking from the
        operand registers rather than from the input ports keeps every gate of the PE off its
        inputs but the operand registers' own enables: a simulator evaluates logic on a module's
        inputs when they change as well as after the clock edge.
        """
        a9, b9 = a.fmt, b.fmt
        regs = {}
        for side, group, port in (("a", a, self.a_o), ("b", b, self.b_o)):
            lo_r = Signal(64, name=f"{side}_slot_lo")
            hi_r = Signal(64, name=f"{side}_slot_hi")
            mu_r = Signal(8, name=f"{side}_mu")
            # The pair's first step (its operands loaded in the last cycle) reads the operand
            # registers; later steps read what the step before shifted.
            in_lo, in_hi = self._slots(group)
            lo = Signal(64, name=f"{side}_cur_lo")
            hi = Signal(64, name=f"{side}_cur_hi")
            mu = Signal(8, name=f"{side}_cur_mu")
            m.d.comb += [lo.eq(Mux(port.valid, in_lo, lo_r)), hi.eq(Mux(port.valid, in_hi, hi_r)),
                         mu.eq(Mux(port.valid, group.word.mx9.micro, mu_r))]
            with m.If(active):
                with m.If(a9 & b9):      # one element per step, a new subgroup every 2 steps
                    m.d.sync += [lo_r.eq(Cat(lo[8:64], hi[0:8])), hi_r.eq(hi[8:64]),
                                 mu_r.eq(Mux(step[0], mu[1:8], mu))]
                with m.Elif(a9 | b9):    # two elements (one subgroup) per step
                    m.d.sync += [lo_r.eq(Cat(lo[16:64], hi[0:16])), hi_r.eq(hi[16:64]),
                                 mu_r.eq(mu[1:8])]
                with m.Else():           # four elements (two subgroups) per step
                    m.d.sync += [lo_r.eq(Cat(lo[32:64], hi[0:32])), hi_r.eq(hi[32:64]),
                                 mu_r.eq(mu[2:8])]
            regs[side] = (lo, mu)
        (a_lo, a_mu), (b_lo, b_mu) = regs["a"], regs["b"]
        narrow = Signal(name="narrow")  # MX6 x MX6: every multiplier on its own element
        m.d.comb += narrow.eq(~(a9 | b9))
        wide = Signal(name="wide")      # MX9 x MX9: every multiplier on element 0
        m.d.comb += wide.eq(a9 & b9)
        terms = []
        for k in range(4):
            # Slot of multiplier k: k (MX6 x MX6), k // 2 (mixed), 0 (MX9 x MX9).
            if k == 0:
                sa, sb = a_lo[0:8], b_lo[0:8]
            elif k == 1:
                sa = Mux(narrow, a_lo[8:16], a_lo[0:8])
                sb = Mux(narrow, b_lo[8:16], b_lo[0:8])
            else:
                sa = Mux(narrow, a_lo[8 * k:8 * k + 8], Mux(wide, a_lo[0:8], a_lo[8:16]))
                sb = Mux(narrow, b_lo[8 * k:8 * k + 8], Mux(wide, b_lo[0:8], b_lo[8:16]))
            slot_a = Signal(8, name=f"mul{k}_slot_a")
            slot_b = Signal(8, name=f"mul{k}_slot_b")
            m.d.comb += [slot_a.eq(sa), slot_b.eq(sb)]
            # Which nibble each multiplier takes: A's high nibble on odd k when A is MX9; B's high
            # nibble on odd k in MX6 x MX9 and on k >= 2 in MX9 x MX9.
            a_hi = a9 if k & 1 else Const(0, 1)
            b_hi = Mux(a9, Const(k >> 1, 1), Const(k & 1, 1)) & b9
            x = Signal(4, name=f"mul{k}_a")
            y = Signal(4, name=f"mul{k}_b")
            m.d.sync += [x.eq(Mux(a_hi, slot_a[4:7], slot_a[0:4])),
                         y.eq(Mux(b_hi, slot_b[4:7], slot_b[0:4]))]
            # Weight: nibble positions and 2^(2 - mu_a - mu_b) (spec §2.1); the subgroup of
            # multiplier k is microexponent bit k // 2 in MX6 x MX6, else bit 0.
            if k >= 2:
                mu_a = Mux(narrow, a_mu[1], a_mu[0])
                mu_b = Mux(narrow, b_mu[1], b_mu[0])
            else:
                mu_a, mu_b = a_mu[0], b_mu[0]
            # 2 - mu_a - mu_b as (1 - mu_a) + (1 - mu_b): unsigned, so no sign extension.
            shift = Signal(4, name=f"mul{k}_sh")
            m.d.sync += shift.eq(Cat(Const(0, 2), a_hi) + Cat(Const(0, 2), b_hi) + ~mu_a + ~mu_b)
            neg = Signal(name=f"mul{k}_neg")
            m.d.sync += neg.eq(slot_a[7] ^ slot_b[7])
            terms.append(self._term(m, x * y, shift, neg, f"{k}"))
        return terms

    @staticmethod
    def _term(m: Module, product, shift, neg, name: str):
        """Stages 2 and 3 of the multiply pipeline: the registered product, then the signed,
        weighted term ``±(product << shift)`` of the sum's width, returned as ``(term, neg)``:
        the one's complement of the magnitude when negative, and the bit that the sum of stage
        4 adds to make it the two's complement (no carry chain here)."""
        prod = Signal(len(product), name=f"mul{name}_p")
        shift_r = Signal(len(shift), name=f"mul{name}_sh_r")
        neg_r = Signal(name=f"mul{name}_neg_r")
        m.d.sync += [prod.eq(product), shift_r.eq(shift), neg_r.eq(neg)]
        mag = Signal(_SUM_BITS, name=f"term{name}_mag")
        m.d.comb += mag.eq(prod << shift_r)
        term = Signal(_SUM_BITS, name=f"term{name}")
        neg_t = Signal(name=f"term{name}_neg")
        m.d.sync += [term.eq(mag ^ neg_r.replicate(_SUM_BITS)), neg_t.eq(neg_r)]
        return term, neg_t

    def _mac_8x8(self, m: Module, step, a, b):
        """The baseline's one product per cycle from one 8x8 multiplier."""
        a_mag, a_sign, a_mu = self._operand_fields(m, a.word, a.fmt, "a")
        b_mag, b_sign, b_mu = self._operand_fields(m, b.word, b.fmt, "b")
        x = Signal(8, name="mul8_a")
        y = Signal(8, name="mul8_b")
        shift = Signal(2, name="mul8_sh")
        neg = Signal(name="mul8_neg")
        m.d.sync += [x.eq(Array(a_mag)[step]), y.eq(Array(b_mag)[step]),
                     shift.eq(2 - Array(a_mu)[step[1:4]] - Array(b_mu)[step[1:4]]),
                     neg.eq(Array(a_sign)[step] ^ Array(b_sign)[step])]
        return [self._term(m, x * y, shift, neg, "8")]

    def elaborate(self, platform) -> Module:
        m = Module()

        # Operand registers, which are also the forwarding registers (spec §3).
        for i_port, o_port in ((self.a_i, self.a_o), (self.b_i, self.b_o)):
            m.d.sync += o_port.valid.eq(i_port.valid)
            with m.If(i_port.valid):
                m.d.sync += o_port.payload.eq(i_port.payload)
        a, b = self.a_o.payload.group, self.b_o.payload.group
        last = self.a_o.payload.last | self.b_o.payload.last

        # Multiply stage: `step` counts the cycles of the group pair held in the registers.
        active = Signal(name="active")
        step = Signal(4, name="step")
        if self.multiplier == "4x4":
            last_step = Mux(a.fmt & b.fmt, 15, Mux(a.fmt | b.fmt, 7, 3))
            terms = self._mac_4x4(m, step, a, b, active)
        else:
            last_step = Const(GROUP_SIZE - 1, 4)
            terms = self._mac_8x8(m, step, a, b)
        # What travels with a step down the multiply pipeline: valid, first and last step of
        # the group pair, and the group's FP32 exponent, NaN flag and end of dot product (read at
        # its last step, before the operand registers take the next pair).
        ma1 = Mux(a.fmt, MX9.mant_bits - 1, MX6.mant_bits - 1)
        mb1 = Mux(b.fmt, MX9.mant_bits - 1, MX6.mant_bits - 1)
        a_exp = a.word.mx9.exp
        b_exp = b.word.mx9.exp
        exp_sum = Signal(signed(11), name="exp_sum")
        m.d.comb += exp_sum.eq(a_exp + b_exp)
        # Biased FP32 exponent of the value 1 * 2^(Ea + Eb - 254 - (ma-1) - (mb-1) - 2).
        tag = dict(valid=active, first=step == 0, last_step=step == last_step, last=last,
                   nan=(a_exp == NAN_EXP) | (b_exp == NAN_EXP),
                   bexp=(exp_sum - EXP_BIAS - 2 - ma1 - mb1)[0:11])
        tags = [tag]
        for d in range(1, _MUL_DEPTH + 1):
            regs = {k: Signal(len(v), name=f"m{d}_{k}") for k, v in tag.items()}
            m.d.sync += [regs[k].eq(tags[-1][k]) for k in tag]
            tags.append(regs)
        # Stage 4: the sum of the step's terms (stage 3 registered them).
        step_terms = Signal(_SUM_BITS, name="step_terms")
        m.d.sync += step_terms.eq(sum(term for term, _ in terms) + sum(neg for _, neg in terms))
        t = tags[_MUL_DEPTH]
        # The running sum is a two's-complement bit pattern (|S| < 2^21 never wraps): unsigned
        # additions, the same bits as signed ones, cheaper for a simulator.
        acc_s = Signal(_SUM_BITS, name="acc_s")
        step_sum = Signal(_SUM_BITS, name="step_sum")
        m.d.comb += step_sum.eq(Mux(t["first"], 0, acc_s) + step_terms)

        # Group-sum register feeding the conversion (spec §2.1).
        s_valid = Signal(name="s_valid")
        s_last = Signal(name="s_last")
        s_nan = Signal(name="s_nan")
        s_val = Signal(_SUM_BITS, name="s_val")  # two's complement
        s_bexp = Signal(signed(11), name="s_bexp")
        m.d.sync += s_valid.eq(0)
        with m.If(t["valid"]):
            m.d.sync += acc_s.eq(step_sum)
            with m.If(t["last_step"]):
                m.d.sync += [s_valid.eq(1), s_last.eq(t["last"]), s_nan.eq(t["nan"]),
                             s_val.eq(step_sum), s_bexp.eq(t["bexp"])]
        with m.If(active):
            m.d.sync += step.eq(step + 1)
            with m.If(step == last_step):
                m.d.sync += active.eq(0)

        # Conversion of S to FP32 in four stages (magnitude; leading-zero count; normalising
        # shift, exponent and range checks; packing): exact in the normal range; a value below
        # 2^-126 is a subnormal or an underflow, flushed to signed zero (S has at most 21 bits,
        # so no RNE step can reach 2^-126 from below); overflow gives Inf (spec §2.1).
        c_valid = Signal(name="c_valid")
        c_mag = Signal(_SUM_BITS - 1, name="c_mag")
        c = dict(last=s_last, nan=s_nan, sign=s_val[-1], bexp=s_bexp)
        c1 = {k: Signal(len(v), name=f"c1_{k}") for k, v in c.items()}
        m.d.sync += [c_valid.eq(s_valid), c_mag.eq(Mux(s_val[-1], ~s_val + 1, s_val))]
        m.d.sync += [c1[k].eq(v) for k, v in c.items()]
        # The product's biased exponent is base - lz, base = bexp + 20 (lz <= 20 for a nonzero
        # S). It overflows when lz <= base - 255 and underflows when lz >= base: both compares
        # are prepared beside the count, each flag comparing the exponent with a constant, so
        # that the next stage compares five bits.
        n_valid = Signal(name="n_valid")
        bexp_in, top = c1["bexp"].as_signed(), _SUM_BITS - 2
        c1_prep = dict(base=(bexp_in + top)[0:8], high=(bexp_in + top - 255)[0:5],
                       over_all=bexp_in >= 255, over_some=(bexp_in >= 255 - top) & (bexp_in < 255),
                       under_all=bexp_in <= -top, under_some=(bexp_in > -top) & (bexp_in <= 0),
                       zero=c_mag == 0, mag=c_mag, lz=leading_zeros(m, c_mag, "s_lz"))
        c2 = {k: Signal(len(v), name=f"c2_{k}") for k, v in c1.items() if k != "bexp"}
        c2.update({k: Signal(len(v), name=f"c2_{k}") for k, v in c1_prep.items()})
        m.d.sync += n_valid.eq(c_valid)
        m.d.sync += [c2[k].eq(c1[k]) for k in c1 if k != "bexp"]
        m.d.sync += [c2[k].eq(v) for k, v in c1_prep.items()]
        lz = c2["lz"]
        q_valid = Signal(name="q_valid")
        c3_next = dict(last=c2["last"], nan=c2["nan"], sign=c2["sign"], zero=c2["zero"],
                       norm=(c2["mag"] << lz)[0:_SUM_BITS - 2], bexp=(c2["base"] - lz)[0:8],
                       over=c2["over_all"] | (c2["over_some"] & (lz <= c2["high"])),
                       under=c2["under_all"] | (c2["under_some"] & (lz >= c2["base"][0:5])))
        c3 = {k: Signal(len(v), name=f"c3_{k}") for k, v in c3_next.items()}
        m.d.sync += q_valid.eq(n_valid)
        m.d.sync += [c3[k].eq(v) for k, v in c3_next.items()]
        sign = c3["sign"]
        p_word = Signal(32, name="p_word")
        with m.If(c3["nan"]):
            m.d.comb += p_word.eq(CANONICAL_NAN)
        with m.Elif(c3["zero"]):
            m.d.comb += p_word.eq(0)
        with m.Elif(c3["over"]):
            m.d.comb += p_word.eq(infinity(sign))
        with m.Elif(c3["under"]):
            m.d.comb += p_word.eq(signed_zero(sign))
        with m.Else():
            m.d.comb += p_word.eq(Cat(Const(0, 23 - (_SUM_BITS - 2)), c3["norm"], c3["bexp"],
                                      sign))
        p_valid = Signal(name="p_valid")
        p_last = Signal(name="p_last")
        p_val = Signal(32, name="p_val")
        m.d.sync += [p_valid.eq(q_valid), p_last.eq(c3["last"]), p_val.eq(p_word)]

        # Accumulate: one FP32 add per group (spec §1.3). The first add of a dot product finds
        # +0.0, so acc = +0.0 + P0 exactly as the golden model starts. The adder
        # takes _ADDER_STAGES cycles and adds are 4 or more cycles apart, so an add issued the
        # cycle its predecessor's sum lands, or later, sees that sum.
        adder = m.submodules.adder = FP32Add(stages=_ADDER_STAGES, hold=True)
        add_valid = Signal(_ADDER_STAGES, name="add_valid")
        add_last = Signal(_ADDER_STAGES, name="add_last")
        # The adder's output register is the accumulator and the operand, with nothing between:
        # it loads only valid sums, and becomes +0.0 (instead of loading it) when the sum ends a
        # dot product, or on clear. That sum goes to `final` and, the cycle it would have
        # landed in the accumulator, to the result.
        ending = add_valid[-2] & add_last[-2]
        final = Signal(32, name="final")
        m.d.comb += [adder.a.eq(adder.o), adder.b.eq(p_val), adder.load.eq(add_valid[-2]),
                     adder.restart.eq(ending | self.clear)]
        with m.If(ending):
            m.d.sync += final.eq(adder.sum)
        m.d.sync += [add_valid.eq(Cat(p_valid, add_valid[:-1])),
                     add_last.eq(Cat(p_last, add_last[:-1]))]
        m.d.sync += self.result.valid.eq(0)
        with m.If(add_valid[-1] & add_last[-1]):
            m.d.sync += [self.result.payload.eq(final), self.result.valid.eq(1)]

        # Clear drops what is in flight; operands arriving now still start (statements below
        # come later and win).
        with m.If(self.clear):
            m.d.sync += [active.eq(0), s_valid.eq(0), c_valid.eq(0), n_valid.eq(0),
                         q_valid.eq(0), p_valid.eq(0), add_valid.eq(0)]
            m.d.sync += [tags[d]["valid"].eq(0) for d in range(1, _MUL_DEPTH + 1)]
        with m.If(self.a_i.valid):
            m.d.sync += [active.eq(1), step.eq(0)]
        return m


def make_pe() -> PE:
    """The PE of spec §2 (four 4x4 multipliers), for ``mixdit verilog``."""
    return PE(multiplier="4x4")


def make_pe_baseline() -> PE:
    """The area baseline: one 8x8 multiplier, same accumulator, for ``make bench``."""
    return PE(multiplier="8x8")
