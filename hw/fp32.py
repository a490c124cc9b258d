"""FP32 adder of the accumulators (spec §1.3).

IEEE-754 binary32 addition rounded to nearest even. Subnormal *operands* are honoured as IEEE
defines them; a subnormal *result* is flushed to zero with its sign kept. Inf and NaN follow IEEE
(``Inf - Inf`` is NaN) and every NaN leaves as the canonical ``0x7FC00000``. The reference is
:func:`golden.fp32.fp32_add`.

Algorithm: the operand of larger exponent is ``x``; the other, ``y``, is aligned to it in a
27-bit frame (24 significand bits, then guard, round and sticky), the sticky bit being the OR of
every bit shifted out. With three extra bits the rounding decision of the frame equals that of the
exact sum: when bits were shifted out (alignment distance >= 2), the frame result is odd in its
last place and the exact sum lies strictly within one unit of it, so both sit on the same side
of every rounding boundary; with distance <= 1 nothing is shifted out and the frame is exact.
A sum of two binary32 values below 2**-126 is a multiple of 2**-149, hence exactly a subnormal,
so "normalised exponent <= 0" is exactly the set of results that FTZ flushes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FP32Add", "CANONICAL_NAN", "make_fp32_add", "leading_zeros", "normalize"]

#: The one NaN an accumulator produces (spec §1.3).
CANONICAL_NAN = 0x7FC00000
_FRAME = 27  # 24 significand bits + guard, round, sticky


def leading_zeros(m: Module, value, name: str) -> Signal:
    """Count of leading zeros of ``value`` (its full width when it is zero), as a priority encoder.

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
    count = Signal(range(width + 1), name=name)
    m.d.comb += count.eq(width)
    # The last assignment wins: scanning LSB -> MSB leaves the highest set bit's count.
    for bit in range(width):
        with m.If(value[bit]):
            m.d.comb += count.eq(width - 1 - bit)
    return count


def normalize(m: Module, value, name: str, cut: "int | None" = None) -> tuple[Signal, Signal]:
    """Leading-zero count and left-normalised ``value``, by a logarithmic shifter.

    Returns ``(count, norm)``: ``count`` as :func:`leading_zeros` gives it (the full width when
    ``value`` is zero) and ``norm = value << count`` truncated to ``len(value)`` bits. The value
    is padded with zeros below its LSB to a power of two; each of the log2 stages tests whether
    the top 2^j bits of what is left are zero and shifts them out, so the count comes out MSB
    first. Five narrow compare-and-select stages for up to 31 bits, where :func:`leading_zeros`
    is a 31-deep priority chain and the shift a separate barrel shifter: the same function, less
    work per cycle for a simulator.

    With ``cut = j`` a pipeline register (domain ``sync``) follows the first ``j`` stages, so
    that ``count`` and ``norm`` come one cycle after ``value``; the caller delays what travels
    with them.
    """
    width = len(value)
    stages = width.bit_length()  # 2**stages >= width + 1
    total = 1 << stages
    pad = total - width
    cur = Signal(total, name=f"{name}_v{stages}")
    m.d.comb += cur.eq(Cat(Const(0, pad), value))
    bits = []
    for done, j in enumerate(reversed(range(stages))):
        if done == cut:
            reg = Signal(total, name=f"{name}_c{j + 1}")
            m.d.sync += reg.eq(cur)
            cur = reg
            regs = [Signal(name=f"{name}_zr{stages - 1 - i}") for i in range(len(bits))]
            m.d.sync += [r.eq(z) for r, z in zip(regs, bits)]
            bits = regs
        shift = 1 << j
        zero = Signal(name=f"{name}_z{j}")
        m.d.comb += zero.eq(cur[total - shift:] == 0)
        nxt = Signal(total, name=f"{name}_v{j}")
        m.d.comb += nxt.eq(Mux(zero, Cat(Const(0, shift), cur[:total - shift]), cur))
        bits.append(zero)
        cur = nxt
    count = Signal(range(width + 1), name=name)
    # A zero value runs through every stage (2**stages - 1); its count is the width.
    m.d.comb += count.eq(Mux(cur[total - 1], Cat(*reversed(bits)), width))
    norm = Signal(width, name=f"{name}_norm")
    m.d.comb += norm.eq(cur[pad:])
    return count, norm


class FP32Add(wiring.Component):
    """``o = a + b`` in binary32 per spec §1.3, optionally pipelined.

    Parameters
    ----------
    stages : int
        Pipeline registers, 0 to 4; this is the latency in cycles. With 0 the adder is
        combinational. With 1 the result is registered. With 2 a register also splits the
        datapath after the alignment add, before normalisation and rounding. With 3 another
        one sits after the operand swap and exponent distance, before the alignment shift; with
        4 another inside the normaliser, after its first four shifts (the PE's configuration:
        four stages of about equal depth, see :mod:`hw.pe`). Every stage advances every cycle (no enable): a
        result appears ``stages`` cycles after its operands.

    Attributes
    ----------
    a, b : In(32)
        Operands, FP32 bit patterns.
    o : Out(32)
        Sum, FP32 bit pattern.
    """

    a: In(32)
    b: In(32)
    o: Out(32)

    def __init__(self, stages: int = 1) -> None:
        if not isinstance(stages, int) or isinstance(stages, bool) or stages not in range(5):
            raise ValueError(f"FP32Add stages must be 0 to 4, not {stages!r}")
        self.stages = stages
        super().__init__()

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

        ea, eb = a[23:31], b[23:31]
        fa, fb = a[0:23], b[0:23]
        a_nan = (ea == 0xFF) & (fa != 0)
        b_nan = (eb == 0xFF) & (fb != 0)
        a_inf = (ea == 0xFF) & (fa == 0)
        b_inf = (eb == 0xFF) & (fb == 0)

        # x is the operand of larger exponent (a when they are equal). Comparing the 8-bit
        # exponents, not the 31-bit magnitudes, keeps a long carry chain off the adder's first
        # stage, which the PE's accumulate loop forwards into; with equal exponents nothing is
        # shifted and the second stage forms both differences (below).
        swap = eb > ea
        # The exponent distance both ways, in parallel with the compare, clamped to 31.
        ea_eff = Mux(ea == 0, 1, ea)
        eb_eff = Mux(eb == 0, 1, eb)
        d_ab = Signal(9, name="d_ab")
        d_ba = Signal(9, name="d_ba")
        m.d.comb += [d_ab.eq(ea_eff - eb_eff), d_ba.eq(eb_eff - ea_eff)]
        c_ab = Mux(d_ab[5:9] != 0, 31, d_ab[0:5])
        c_ba = Mux(d_ba[5:9] != 0, 31, d_ba[0:5])
        dist_c = Signal(5, name="dist_c")
        m.d.comb += dist_c.eq(Mux(swap, c_ba, c_ab))
        # Pipeline cut 0 (stages >= 3): the ordered operands and their distance.
        # Significands: a subnormal has no hidden bit and the exponent of the smallest normal.
        sig_a, sig_b = Cat(fa, ea != 0), Cat(fb, eb != 0)
        s0 = dict(a_nan=a_nan, b_nan=b_nan, a_inf=a_inf, b_inf=b_inf, a_sign=a[31], b_sign=b[31],
                  x_sign=Mux(swap, b[31], a[31]), dist_c=dist_c,
                  sig_x=Mux(swap, sig_b, sig_a), sig_y=Mux(swap, sig_a, sig_b),
                  ex_eff=Mux(swap, eb_eff, ea_eff),
                  subtract=a[31] != b[31])
        if self.stages >= 3:
            s0 = self._cut(m, s0, "r0")
        dist_c = s0["dist_c"]

        # Special results, decided from the operands' classes alone (an infinite operand is
        # the result with its sign).
        special = Signal(name="special")
        special_val = Signal(32, name="special_val")
        with m.If(s0["a_nan"] | s0["b_nan"] |
                  (s0["a_inf"] & s0["b_inf"] & (s0["a_sign"] != s0["b_sign"]))):
            m.d.comb += [special.eq(1), special_val.eq(CANONICAL_NAN)]
        with m.Elif(s0["a_inf"]):
            m.d.comb += [special.eq(1),
                         special_val.eq(Cat(Const(0, 23), Const(0xFF, 8), s0["a_sign"]))]
        with m.Elif(s0["b_inf"]):
            m.d.comb += [special.eq(1),
                         special_val.eq(Cat(Const(0, 23), Const(0xFF, 8), s0["b_sign"]))]
        sig_x, sig_y, ex_eff, subtract = s0["sig_x"], s0["sig_y"], s0["ex_eff"], s0["subtract"]

        # y in a 56-bit field: frame bits [29:56]; the bits shifted below the frame are y's bits
        # j < dist - 3, whose OR (the sticky bit) is formed from a mask beside the shifter.
        y_field = Signal(56, name="y_field")
        m.d.comb += y_field.eq(Cat(Const(0, 29), Const(0, 3), sig_y) >> dist_c)
        lost = Cat(*(j + 3 < dist_c for j in range(len(sig_y))))
        y_frame = Signal(_FRAME, name="y_frame")
        m.d.comb += y_frame.eq(y_field[29:56] | ((sig_y & lost) != 0))
        x_frame = Cat(Const(0, 3), sig_x)

        # A subtraction is negative only with equal exponents (x's significand is the smaller
        # one), where the frame holds y exactly: y - x, formed beside x - y, is then the
        # magnitude, and the result takes y's sign.
        diff = Signal(_FRAME + 1, name="diff")
        m.d.comb += diff.eq(x_frame - y_frame)
        neg = subtract & diff[_FRAME]
        total = Signal(_FRAME + 1, name="total")
        m.d.comb += total.eq(Mux(subtract, Mux(neg, y_frame - x_frame, diff), x_frame + y_frame))

        # Pipeline cut 1 (stages >= 2): the aligned sum and what the second half needs.
        s1 = dict(special=special, special_val=special_val, total=total, exp=ex_eff,
                  sign=s0["x_sign"] ^ neg, subtract=subtract)
        if self.stages >= 2:
            s1 = self._cut(m, s1, "r")

        # Normalise: a carry out shifts right by one (folding the lost bit into sticky), else
        # shift left by the leading zeros of the 27-bit frame. Pipeline cut 2 (stages == 4) sits
        # inside the normaliser, after its first four shifts (of five).
        lz, shifted = normalize(m, s1["total"][0:_FRAME], "lz", cut=4 if self.stages == 4 else None)
        s2 = dict(s1, zero=s1["total"] == 0)
        if self.stages == 4:
            s2 = self._cut(m, s2, "r2")
        total = s2["total"]
        exp_in = Signal(signed(11), name="exp_in")
        m.d.comb += exp_in.eq(s2["exp"])
        norm = Signal(_FRAME, name="norm")
        exp_n = Signal(signed(11), name="exp_n")
        with m.If(total[_FRAME]):
            m.d.comb += [norm.eq(Cat(total[0] | total[1], total[2:_FRAME + 1])),
                         exp_n.eq(exp_in + 1)]
        with m.Else():
            m.d.comb += [norm.eq(shifted), exp_n.eq(exp_in - lz)]

        # Round to nearest even on the 24-bit significand norm[3:27].
        guard = norm[2]
        rest = norm[0] | norm[1]
        up = guard & (rest | norm[3])
        # A carry out of the rounding increment (the significand all ones) leaves a zero fraction
        # and bumps the exponent: both exponents and their range checks are formed in parallel
        # with the increment, and the carry only selects.
        carry = up & (norm[3:_FRAME] == (1 << 24) - 1)
        frac_r = Signal(23, name="frac_r")
        m.d.comb += frac_r.eq(norm[3:_FRAME - 1] + up)
        exp_n1 = Signal(signed(11), name="exp_n1")
        with m.If(total[_FRAME]):
            m.d.comb += exp_n1.eq(exp_in + 2)
        with m.Else():
            m.d.comb += exp_n1.eq(exp_in + 1 - lz)
        exp_r = Signal(signed(11), name="exp_r")
        m.d.comb += exp_r.eq(Mux(carry, exp_n1, exp_n))
        # The range checks of exp_r, from the operand exponent E (1 .. 254: larger ones are
        # special) and the shift: no subtraction on their path. A carry out of the alignment add
        # gives E + 1 (+ 1 more on a rounding carry), which overflows from E = 254 (253); a left
        # shift by lz gives E - lz (+ 1), which overflows only from E = 254, lz = 0, rounding
        # carry, and underflows (<= 0) when E <= lz (E < lz).
        e = s2["exp"][0:8]
        e_small = e[5:8] == 0
        over = Signal(name="over")
        under = Signal(name="under")
        with m.If(total[_FRAME]):
            m.d.comb += over.eq(Mux(carry, e >= 253, e >= 254))
        with m.Else():
            m.d.comb += [over.eq(carry & (e == 254) & (lz == 0)),
                         under.eq(e_small & Mux(carry, e[0:5] < lz, e[0:5] <= lz))]

        result = Signal(32, name="result")
        sign = s2["sign"]
        with m.If(s2["special"]):
            m.d.comb += result.eq(s2["special_val"])
        with m.Elif(s2["zero"]):
            # Exact zero: x + (-x) is +0 under RNE; equal signs keep their sign (-0 + -0 = -0).
            m.d.comb += result.eq(Cat(Const(0, 31), sign & ~s2["subtract"]))
        with m.Elif(over):
            m.d.comb += result.eq(Cat(Const(0, 23), Const(0xFF, 8), sign))
        with m.Elif(under):
            m.d.comb += result.eq(Cat(Const(0, 31), sign))  # FTZ, sign kept (spec §1.3)
        with m.Else():
            m.d.comb += result.eq(Cat(frac_r, exp_r[0:8], sign))

        if self.stages >= 1:
            m.d.sync += self.o.eq(result)
        else:
            m.d.comb += self.o.eq(result)
        return m


def make_fp32_add() -> FP32Add:
    """The adder at the configuration the PE uses (4 stages), for ``mixdit verilog``."""
    return FP32Add(stages=4)
