"""FP32 adder of the accumulators (spec §1.3).

IEEE-754 binary32 addition rounded to nearest even. Subnormal *operands* are honoured as IEEE
defines them; a subnormal *result* is flushed to zero with its sign kept. Inf and NaN follow IEEE
(``Inf - Inf`` is NaN) and every NaN leaves as the canonical ``0x7FC00000``. The reference is
:func:`golden.fp32.fp32_add`.

Algorithm: the operand of larger magnitude is ``x``; the other, ``y``, is aligned to it in a
27-bit frame (24 significand bits, then guard, round and sticky), the sticky bit being the OR of
every bit shifted out. With three extra bits the rounding decision of the frame equals that of the
exact sum: when bits were shifted out (alignment distance >= 2), the frame result is odd in its
last place and the exact sum lies strictly within one unit of it, so both sit on the same side
of every rounding boundary; with distance <= 1 nothing is shifted out and the frame is exact.
A sum of two binary32 values below 2**-126 is a multiple of 2**-149, hence exactly a subnormal,
so "normalised exponent <= 0" is exactly the set of results that FTZ flushes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
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


def normalize(m: Module, value, name: str) -> tuple[Signal, Signal]:
    """Leading-zero count and left-normalised ``value``, by a logarithmic shifter.

    Returns ``(count, norm)``: ``count`` as :func:`leading_zeros` gives it (the full width when
    ``value`` is zero) and ``norm = value << count`` truncated to ``len(value)`` bits. The value
    is padded with zeros below its LSB to a power of two; each of the log2 stages tests whether
    the top 2^j bits of what is left are zero and shifts them out, so the count comes out MSB
    first. Five narrow compare-and-select stages for up to 31 bits, where :func:`leading_zeros`
    is a 31-deep priority chain and the shift a separate barrel shifter: the same function, less
    work per cycle for a simulator.
    """
    width = len(value)
    stages = width.bit_length()  # 2**stages >= width + 1
    total = 1 << stages
    pad = total - width
    cur = Signal(total, name=f"{name}_v{stages}")
    m.d.comb += cur.eq(Cat(Const(0, pad), value))
    bits = []
    for j in reversed(range(stages)):
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
        Pipeline registers, 0, 1 or 2; this is the latency in cycles. With 0 the adder is
        combinational. With 1 the result is registered. With 2 a register also splits the
        datapath after the alignment add, before normalisation and rounding. Every stage
        advances every cycle (no enable): a result appears ``stages`` cycles after its operands.

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
        if not isinstance(stages, int) or isinstance(stages, bool) or stages not in (0, 1, 2):
            raise ValueError(f"FP32Add stages must be 0, 1 or 2, not {stages!r}")
        self.stages = stages
        super().__init__()

    @property
    def latency(self) -> int:
        """Cycles from operands to sum (equal to ``stages``)."""
        return self.stages

    def elaborate(self, platform) -> Module:
        m = Module()
        a, b = self.a, self.b

        ea, eb = a[23:31], b[23:31]
        fa, fb = a[0:23], b[0:23]
        a_nan = (ea == 0xFF) & (fa != 0)
        b_nan = (eb == 0xFF) & (fb != 0)
        a_inf = (ea == 0xFF) & (fa == 0)
        b_inf = (eb == 0xFF) & (fb == 0)

        # Special results, decided from the operands alone.
        special = Signal(name="special")
        special_val = Signal(32, name="special_val")
        with m.If(a_nan | b_nan | (a_inf & b_inf & (a[31] != b[31]))):
            m.d.comb += [special.eq(1), special_val.eq(CANONICAL_NAN)]
        with m.Elif(a_inf):
            m.d.comb += [special.eq(1), special_val.eq(a)]
        with m.Elif(b_inf):
            m.d.comb += [special.eq(1), special_val.eq(b)]

        # x is the operand of larger magnitude (exponent and fraction compare as one integer).
        swap = b[0:31] > a[0:31]
        x = Mux(swap, b, a)
        y = Mux(swap, a, b)
        ex, ey = x[23:31], y[23:31]
        # A subnormal's significand has no hidden bit and the exponent of the smallest normal.
        sig_x = Cat(x[0:23], ex != 0)
        sig_y = Cat(y[0:23], ey != 0)
        ex_eff = Mux(ex == 0, 1, ex)
        ey_eff = Mux(ey == 0, 1, ey)
        dist = Signal(8, name="dist")
        m.d.comb += dist.eq(ex_eff - ey_eff)
        dist_c = Signal(5, name="dist_c")
        m.d.comb += dist_c.eq(Mux(dist > 31, 31, dist))

        # y in a 59-bit field: frame bits [32:59], bits shifted out fall into [0:32] (never off
        # the end, since the shift is at most 31), and their OR is the sticky bit.
        y_field = Signal(59, name="y_field")
        m.d.comb += y_field.eq(Cat(Const(0, 32), Const(0, 3), sig_y) >> dist_c)
        y_frame = Signal(_FRAME, name="y_frame")
        m.d.comb += y_frame.eq(y_field[32:59] | (y_field[0:32] != 0))
        x_frame = Cat(Const(0, 3), sig_x)

        subtract = x[31] != y[31]
        total = Signal(_FRAME + 1, name="total")
        m.d.comb += total.eq(Mux(subtract, x_frame - y_frame, x_frame + y_frame))

        # Pipeline cut 1 (stages == 2): the aligned sum and what the second half needs.
        s1 = dict(special=special, special_val=special_val, total=total, exp=ex_eff,
                  sign=x[31], subtract=subtract)
        if self.stages == 2:
            regs = {}
            for key, sig in s1.items():
                reg = Signal.like(sig, name=f"{key}_r") if isinstance(sig, Signal) else \
                    Signal(len(sig), name=f"{key}_r")
                m.d.sync += reg.eq(sig)
                regs[key] = reg
            s1 = regs

        total = s1["total"]
        # Normalise: a carry out shifts right by one (folding the lost bit into sticky), else
        # shift left by the leading zeros of the 27-bit frame.
        lz, shifted = normalize(m, total[0:_FRAME], "lz")
        exp_in = Signal(signed(11), name="exp_in")
        m.d.comb += exp_in.eq(s1["exp"])
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
        rounded = Signal(25, name="rounded")
        m.d.comb += rounded.eq(norm[3:_FRAME] + up)
        exp_r = Signal(signed(11), name="exp_r")
        frac_r = Signal(23, name="frac_r")
        with m.If(rounded[24]):
            m.d.comb += [exp_r.eq(exp_n + 1), frac_r.eq(rounded[1:24])]
        with m.Else():
            m.d.comb += [exp_r.eq(exp_n), frac_r.eq(rounded[0:23])]

        result = Signal(32, name="result")
        sign = s1["sign"]
        with m.If(s1["special"]):
            m.d.comb += result.eq(s1["special_val"])
        with m.Elif(total == 0):
            # Exact zero: x + (-x) is +0 under RNE; equal signs keep their sign (-0 + -0 = -0).
            m.d.comb += result.eq(Cat(Const(0, 31), sign & ~s1["subtract"]))
        with m.Elif(exp_r >= 255):
            m.d.comb += result.eq(Cat(Const(0, 23), Const(0xFF, 8), sign))
        with m.Elif(exp_r <= 0):
            m.d.comb += result.eq(Cat(Const(0, 31), sign))  # FTZ, sign kept (spec §1.3)
        with m.Else():
            m.d.comb += result.eq(Cat(frac_r, exp_r[0:8], sign))

        if self.stages >= 1:
            m.d.sync += self.o.eq(result)
        else:
            m.d.comb += self.o.eq(result)
        return m


def make_fp32_add() -> FP32Add:
    """The adder at the configuration the PE uses (2 stages), for ``mixdit verilog``."""
    return FP32Add(stages=2)
