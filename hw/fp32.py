"""FP32 adder of the accumulators (spec §1.3).

IEEE-754 binary32 addition rounded to nearest even. Subnormal *operands* are honoured as IEEE
defines them; a subnormal *result* is flushed to zero with its sign kept. Inf and NaN follow IEEE
(``Inf - Inf`` is NaN) and every NaN leaves as the canonical ``0x7FC00000``. The reference is
:func:`golden.fp32.fp32_add`.

Algorithm: the operand of larger exponent is ``x``, the other ``y``, and the sum takes one of
two paths (the classic split of floating-point adders into a far and a near path):

- the *far* path, for every addition and for subtractions whose exponents differ by 2 or more
  (or by 1, when the top bit survives): ``y`` is aligned to ``x`` in a 27-bit frame (24
  significand bits, then guard, round and sticky), the sticky bit being the OR of every bit
  shifted out, and the sum needs at most one bit of normalisation either way. With three extra
  bits the rounding decision of the frame equals that of the exact sum: when bits were shifted
  out (alignment distance >= 2), the frame result is odd in its last place and the exact sum
  lies strictly within one unit of it, so both sit on the same side of every rounding boundary;
  with distance <= 1 nothing is shifted out and the frame is exact;
- the *near* path, for subtractions at distance 0 or 1 that cancel the top bit: the difference
  is exact in a 25-bit frame, any number of leading bits may cancel, and it is normalised by
  its leading-zero count with nothing to round (a shift of at least one takes in the one bit
  below the significand).

So neither path has both a long alignment shift and a long normalising shift, which is what lets
the PE's accumulate loop (four stages, one add every four cycles) run at 125 MHz on an ECP5.
A sum of two binary32 values below 2**-126 is a multiple of 2**-149, hence exactly a subnormal,
so "normalised exponent <= 0" is exactly the set of results that FTZ flushes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FP32Add", "CANONICAL_NAN", "make_fp32_add", "leading_zeros", "infinity", "signed_zero"]

#: The one NaN an accumulator produces (spec §1.3).
CANONICAL_NAN = 0x7FC00000
_FRAME = 27  # 24 significand bits + guard, round, sticky
_NEAR = 25  # the near path: 24 significand bits + the one bit a distance of 1 shifts out


def infinity(sign):
    """The FP32 bit pattern of an infinity of sign ``sign`` (a 1-bit value)."""
    return Cat(Const(0, 23), Const(0xFF, 8), sign)


def signed_zero(sign):
    """The FP32 bit pattern of a zero of sign ``sign`` (a 1-bit value): a flushed result."""
    return Cat(Const(0, 31), sign)


def leading_zeros(m: Module, value, name: str) -> Signal:
    """Count of leading zeros of ``value`` (its full width when it is zero), by a binary tree.

    The value is extended below its LSB by a one and then zeros, to a power of two wider than
    itself, so the extension is never zero and its count is the width exactly when ``value``
    is. Each node of the tree takes its halves' counts: the high half's when that half holds a
    one, else half the node's width plus the low half's. The count's bit ``j`` is "the high
    half of the node at level ``j`` is zero", so the depth is logarithmic in the width, not the
    priority chain's linear one.

    Parameters
    ----------
    m : Module
        Module the combinational logic is added to.
    value : Value
        Unsigned value to scan from its MSB.
    name : str
        Name of the result signal.
    """
    width = len(value)
    total = 1 << width.bit_length()  # > width, so at least one padding bit
    padded = Cat(Const(1 << (total - width - 1), total - width), value)

    def count(bits):
        """(all zero, leading-zero count) of ``bits``, a power-of-two-wide value of >= 2 bits."""
        half = len(bits) // 2
        lo, hi = bits[:half], bits[half:]
        if half == 1:
            return ~(hi | lo), ~hi
        zero_lo, count_lo = count(lo)
        zero_hi, count_hi = count(hi)
        return zero_hi & zero_lo, Cat(Mux(zero_hi, count_lo, count_hi), zero_hi)

    result = Signal(range(width + 1), name=name)
    m.d.comb += result.eq(count(padded)[1])
    return result


class FP32Add(wiring.Component):
    """``o = a + b`` in binary32 per spec §1.3, optionally pipelined.

    Parameters
    ----------
    stages : int
        Pipeline registers, 0 to 4; this is the latency in cycles. With 0 the adder is
        combinational. With 1 the result is registered. With 2 a register also follows the
        far path's alignment shift and the near path's subtraction; with 3 another follows the
        operand swap and exponent distance; with 4 another follows the far path's add and
        rounding decision and the near path's leading-zero count, leaving the rounding
        increment and the near path's last shifts for the last stage (the PE's configuration:
        four stages of about equal depth, see :mod:`hw.pe`). Every stage advances every cycle
        (no enable): a result appears ``stages`` cycles after its operands.
    hold : bool
        Give the output register a load enable and a synchronous clear (ports ``load`` and
        ``restart``) and show the sum it would load (port ``sum``), so that ``o`` keeps the last
        sum loaded while the stages behind it carry other operands; needs ``stages >= 1``. The
        PE's accumulator is this register, fed back as ``a`` (see :mod:`hw.pe`).

    Attributes
    ----------
    a, b : In(32)
        Operands, FP32 bit patterns.
    o : Out(32)
        Sum, FP32 bit pattern.
    load, restart : In(1)
        With ``hold`` only: ``o`` becomes +0.0 at the end of a cycle with ``restart`` high,
        else takes the sum of the stages' last cycle when ``load`` is high in that cycle, and
        keeps its value otherwise.
    sum : Out(32)
        With ``hold`` only: the sum of the stages' last cycle, combinational (what ``o`` would
        load).
    """

    def __init__(self, stages: int = 1, *, hold: bool = False) -> None:
        if not isinstance(stages, int) or isinstance(stages, bool) or stages not in range(5):
            self._MustUse__silence = True  # never built: no "created but never used" warning
            raise ValueError(f"FP32Add stages must be 0 to 4, not {stages!r}")
        if hold and stages == 0:
            self._MustUse__silence = True
            raise ValueError("FP32Add with hold needs stages >= 1 (the output register)")
        self.stages = stages
        self.hold = bool(hold)
        members = {"a": In(32), "b": In(32), "o": Out(32)}
        if self.hold:
            members.update(load=In(1), restart=In(1), sum=Out(32))
        super().__init__(members)

    @property
    def latency(self) -> int:
        """Cycles from operands to sum (equal to ``stages``)."""
        return self.stages

    @staticmethod
    def _cut(m: Module, values: dict, suffix: str) -> dict:
        """One pipeline register for each value of ``values``."""
        regs = {}
        for key, sig in values.items():
            reg = Signal(len(sig), name=f"{key}_{suffix}")
            m.d.sync += reg.eq(sig)
            regs[key] = reg
        return regs

    def elaborate(self, platform) -> Module:
        m = Module()
        a, b = self.a, self.b

        # Stage 0: classes, order and distance. The pipeline registers that follow each stage
        # are cut A (stages >= 3), B (stages >= 2) and C (stages == 4); the output register
        # (stages >= 1) follows stage 3.
        ea, eb = a[23:31], b[23:31]
        fa, fb = a[0:23], b[0:23]
        a_nan = (ea == 0xFF) & (fa != 0)
        b_nan = (eb == 0xFF) & (fb != 0)
        a_inf = (ea == 0xFF) & (fa == 0)
        b_inf = (eb == 0xFF) & (fb == 0)

        # x is the operand of larger exponent (a when they are equal). Comparing the 8-bit
        # exponents, not the 31-bit magnitudes, keeps a long carry chain off this stage, which
        # the PE's accumulate loop forwards into; with equal exponents the near path forms both
        # differences (below).
        swap = eb > ea
        # The distance both ways, from the raw exponent fields, in parallel with the compare,
        # clamped to 31. A subnormal has the exponent of the smallest normal (1, not 0) and no
        # hidden bit; rather than correct the distance to a subnormal y by one (a second carry
        # chain), y's significand is shifted left by one, which its missing hidden bit leaves
        # room for. With both exponent fields zero nothing changes.
        d_ab = Signal(9, name="d_ab")
        d_ba = Signal(9, name="d_ba")
        m.d.comb += [d_ab.eq(ea - eb), d_ba.eq(eb - ea)]
        c_ab = Mux(d_ab[5:9] != 0, 31, d_ab[0:5])
        c_ba = Mux(d_ba[5:9] != 0, 31, d_ba[0:5])
        dist_c = Signal(5, name="dist_c")
        m.d.comb += dist_c.eq(Mux(swap, c_ba, c_ab))
        a_sub, b_sub = ea == 0, eb == 0
        ea_eff = Mux(a_sub, 1, ea)
        eb_eff = Mux(b_sub, 1, eb)
        sig_a, sig_b = Cat(fa, ~a_sub), Cat(fb, ~b_sub)
        # a is y only when its exponent field is the smaller, b also when they are equal.
        y_from_a = Mux(a_sub, Cat(Const(0, 1), fa), sig_a)
        y_from_b = Mux(b_sub & ~a_sub, Cat(Const(0, 1), fb), sig_b)
        s0 = dict(a_nan=a_nan, b_nan=b_nan, a_inf=a_inf, b_inf=b_inf, a_sign=a[31], b_sign=b[31],
                  x_sign=Mux(swap, b[31], a[31]), dist_c=dist_c,
                  dist_1=Mux(swap, d_ba == 1, d_ab == 1),
                  sig_x=Mux(swap, sig_b, sig_a), sig_y=Mux(swap, y_from_a, y_from_b),
                  ex_eff=Mux(swap, eb_eff, ea_eff),
                  subtract=a[31] != b[31])
        if self.stages >= 3:
            s0 = self._cut(m, s0, "r0")
        dist_c, sig_x, sig_y, subtract = s0["dist_c"], s0["sig_x"], s0["sig_y"], s0["subtract"]

        # Stage 1. Special results, decided from the operands' classes alone (an infinite
        # operand is the result with its sign).
        special = Signal(name="special")
        special_val = Signal(32, name="special_val")
        with m.If(s0["a_nan"] | s0["b_nan"] |
                  (s0["a_inf"] & s0["b_inf"] & (s0["a_sign"] != s0["b_sign"]))):
            m.d.comb += [special.eq(1), special_val.eq(CANONICAL_NAN)]
        with m.Elif(s0["a_inf"]):
            m.d.comb += [special.eq(1),
                         special_val.eq(infinity(s0["a_sign"]))]
        with m.Elif(s0["b_inf"]):
            m.d.comb += [special.eq(1),
                         special_val.eq(infinity(s0["b_sign"]))]

        # Far path, first half: y in a 56-bit field, frame bits [29:56]; the bits shifted below
        # the frame are y's bits j < dist - 3, whose OR (the sticky bit) is formed from a mask
        # beside the shifter.
        y_field = Signal(56, name="y_field")
        m.d.comb += y_field.eq(Cat(Const(0, 29), Const(0, 3), sig_y) >> dist_c)
        lost = Cat(*(j + 3 < dist_c for j in range(len(sig_y))))
        y_frame = Signal(_FRAME, name="y_frame")
        m.d.comb += y_frame.eq(y_field[29:56] | ((sig_y & lost) != 0))
        # For a subtraction the next stage adds the one's complement and a carry in: no select
        # after its carry chain.
        y_term = Signal(_FRAME + 1, name="y_term")
        m.d.comb += y_term.eq(Cat(y_frame, Const(0, 1)) ^ subtract.replicate(_FRAME + 1))

        # Near path, first half: a subtraction at distance 0 or 1, exact in a 25-bit frame (x's
        # hidden bit at bit 24, one bit below the significand for y's last bit at distance 1).
        # Only at distance 0 can y be the larger; y - x, formed beside x - y, is then the
        # magnitude and the result takes y's sign.
        near_x = Cat(Const(0, 1), sig_x)
        near_y = Mux(s0["dist_1"], sig_y, Cat(Const(0, 1), sig_y))
        near_diff = Signal(_NEAR + 1, name="near_diff")
        m.d.comb += near_diff.eq(near_x - near_y)
        near_neg = near_diff[_NEAR]
        near_mag = Signal(_NEAR, name="near_mag")
        m.d.comb += near_mag.eq(Mux(near_neg, near_y - near_x, near_diff[0:_NEAR]))

        e = s0["ex_eff"]
        s1 = dict(special=special, special_val=special_val, y_term=y_term, sig_x=sig_x,
                  subtract=subtract, exp=e, x_sign=s0["x_sign"], near_sign=s0["x_sign"] ^ near_neg,
                  near_mag=near_mag, near_try=subtract & (dist_c[1:5] == 0),
                  e_is_1=e == 1, e_is_254=e == 254)
        if self.stages >= 2:
            s1 = self._cut(m, s1, "r1")
        e = s1["exp"]

        # Stage 2, far path: the aligned add, a one-bit normalisation and the rounding decision.
        # A carry out (c) shifts right by one, folding the lost bit into sticky; a result without
        # its top bit (t) shifts left by one, which is the most a far result needs: an addition
        # keeps x's top bit, and a subtraction at distance >= 2 (or at distance 1 without
        # cancellation of the top bit, which the near path detects) loses at most one. With x
        # subnormal (E = 1, nothing shifted out), a result without its top bit is subnormal and
        # exact, so flushed.
        x_frame = Cat(Const(0, 3), s1["sig_x"])
        far_sum = Signal(_FRAME + 1, name="far_sum")
        m.d.comb += far_sum.eq(x_frame + s1["y_term"] + s1["subtract"])
        carry_out, top = far_sum[_FRAME], far_sum[_FRAME - 1]
        far_norm = Signal(_FRAME, name="far_norm")
        with m.If(carry_out):
            m.d.comb += far_norm.eq(Cat(far_sum[0] | far_sum[1], far_sum[2:_FRAME + 1]))
        with m.Elif(top):
            m.d.comb += far_norm.eq(far_sum[0:_FRAME])
        with m.Else():
            m.d.comb += far_norm.eq(Cat(Const(0, 1), far_sum[0:_FRAME - 1]))
        # Round to nearest even on the 24-bit significand far_norm[3:27]: the decision here, the
        # increment in stage 3, on the exponent and fraction fields together, so that an
        # increment carrying out of the fraction (all ones) leaves it zero and adds one to the
        # exponent, and one that reaches exponent 255 is exactly Inf. Only a carry out of the
        # add at E = 254 overflows before rounding; a left shift never overflows.
        up = far_norm[2] & (far_norm[0] | far_norm[1] | far_norm[3])
        far_exp = Signal(8, name="far_exp")
        m.d.comb += far_exp.eq(Mux(carry_out, e + 1, Mux(top, e, e - 1)))
        far_over = carry_out & s1["e_is_254"]
        far_under = ~carry_out & ~top & s1["e_is_1"]

        # Stage 2, near path: the leading zeros of the difference. Its result is taken when its
        # top bit is clear (always so at distance 0 with both operands normal); otherwise the
        # far path's, which then shifts by at most one.
        # The shift by the count's multiple of 8 happens here too, the rest in stage 3.
        near_mag = s1["near_mag"]
        near_lz = leading_zeros(m, near_mag, "near_lz")
        near_part = Signal(_NEAR, name="near_part")
        m.d.comb += near_part.eq(near_mag << Cat(Const(0, 3), near_lz[3:]))

        near = s1["near_try"] & ~near_mag[_NEAR - 1]
        special = s1["special"]
        s2 = dict(special=special, special_val=s1["special_val"], x_sign=s1["x_sign"],
                  far_word=Cat(far_norm[3:_FRAME - 1], far_exp), far_up=up,
                  far_sel=~special & ~near & ~far_over & ~far_under,
                  over_sel=~special & ~near & far_over,
                  near_sel=~special & near & (near_mag != 0),
                  zero_sel=~special & near & (near_mag == 0),
                  exp=e, e_small=e[5:8] == 0, near_sign=s1["near_sign"], near_part=near_part,
                  near_lz=near_lz)
        if self.stages == 4:
            s2 = self._cut(m, s2, "r2")

        # Stage 3: the far path's rounding increment, the near path's shift (exact: at most one
        # bit was below the significand, and a shift of at least one takes it in) and the result.
        # Which result it is was decided in stage 2 but for the near path's underflow, so the
        # far path's increment, the latest signal, meets a single two-way select.
        far_word = Signal(31, name="far_word")
        m.d.comb += far_word.eq(s2["far_word"] + s2["far_up"])
        near_norm = Signal(_NEAR, name="near_norm")
        m.d.comb += near_norm.eq(s2["near_part"] << s2["near_lz"][0:3])
        # The near result's exponent E - lz, flushed when E <= lz (lz <= 24 < 32).
        near_exp = Signal(8, name="near_exp")
        m.d.comb += near_exp.eq(s2["exp"] - s2["near_lz"])
        near_under = s2["e_small"] & (s2["exp"][0:5] <= s2["near_lz"])

        other = Signal(32, name="other")
        x_sign = s2["x_sign"]
        with m.If(s2["special"]):
            m.d.comb += other.eq(s2["special_val"])
        with m.Elif(s2["near_sel"]):
            with m.If(near_under):
                m.d.comb += other.eq(signed_zero(s2["near_sign"]))  # FTZ, sign kept
            with m.Else():
                m.d.comb += other.eq(Cat(near_norm[1:_NEAR - 1], near_exp, s2["near_sign"]))
        with m.Elif(s2["zero_sel"]):
            m.d.comb += other.eq(0)  # x - x is +0 under RNE
        with m.Elif(s2["over_sel"]):
            m.d.comb += other.eq(infinity(x_sign))
        with m.Else():
            # The far path's underflow; also 0 + 0 of equal signs, which keeps its sign
            # (-0 + -0 = -0).
            m.d.comb += other.eq(signed_zero(x_sign))
        result = Signal(32, name="result")
        m.d.comb += result.eq(Mux(s2["far_sel"], Cat(far_word, x_sign), other))

        if self.hold:
            m.d.comb += self.sum.eq(result)
            with m.If(self.restart):
                m.d.sync += self.o.eq(0)
            with m.Elif(self.load):
                m.d.sync += self.o.eq(result)
        elif self.stages >= 1:
            m.d.sync += self.o.eq(result)
        else:
            m.d.comb += self.o.eq(result)
        return m


def make_fp32_add() -> FP32Add:
    """The adder at the configuration the PE uses (4 stages), for ``mixdit verilog``."""
    return FP32Add(stages=4)
