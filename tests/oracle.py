"""An independent oracle for the golden model: exact rational arithmetic, one value at a time.

Nothing here uses NumPy's float arithmetic or the golden model's bit tricks: values are
:class:`fractions.Fraction`, rounding to FP32 is done on the rationals, and MX quantization divides
by the group scale instead of shifting significands. Slow and obviously correct, for small cases.
"""

import math
import struct
from fractions import Fraction

F32_MIN_NORMAL = Fraction(1, 2 ** 126)
F32_MIN_SUB = Fraction(1, 2 ** 149)
F32_OVERFLOW = Fraction(2 ** 128)
NAN = "nan"


def f32_value(bits: int):
    """Exact value of an FP32 bit pattern: a Fraction, +-inf as float, or NAN."""
    sign = -1 if bits >> 31 else 1
    e = (bits >> 23) & 0xFF
    frac = bits & 0x7FFFFF
    if e == 255:
        return NAN if frac else sign * math.inf
    if e == 0:
        return sign * Fraction(frac, 2 ** 149)
    return sign * Fraction((1 << 23) | frac) * Fraction(2) ** (e - 150)


def _is_neg_zero_bits(bits: int) -> bool:
    return bits == 0x80000000


def round_f32_ftz(v: Fraction, negative_zero: bool = False) -> int:
    """FP32 bits of the exact rational ``v`` rounded to nearest even on the IEEE grid, overflowing
    to Inf, then flushed to signed zero when the rounded result is subnormal (spec §1.3).

    ``negative_zero`` gives the sign of an exactly zero ``v``.
    """
    if v == 0:
        return 0x80000000 if negative_zero else 0
    sign = 0x80000000 if v < 0 else 0
    a = abs(v)
    k = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** k > a:
        k -= 1
    # 2^k <= a < 2^(k+1)
    quantum = F32_MIN_SUB if k < -126 else Fraction(2) ** (k - 23)
    n = a / quantum
    r = round(n)  # Fraction.__round__ rounds half to even
    value = r * quantum
    if value >= F32_OVERFLOW:
        return sign | 0x7F800000
    if value < F32_MIN_NORMAL:
        return sign  # flushed, sign kept
    return sign | struct.unpack("<I", struct.pack("<f", float(value)))[0]


def add_f32(a_bits: int, b_bits: int) -> int:
    """The accumulator's FP32 add on bit patterns (spec §1.3), by exact arithmetic."""
    a, b = f32_value(a_bits), f32_value(b_bits)
    if a is NAN or b is NAN:
        return 0x7FC00000
    if isinstance(a, float) or isinstance(b, float):  # an infinity
        if isinstance(a, float) and isinstance(b, float) and a != b:
            return 0x7FC00000
        inf = a if isinstance(a, float) else b
        return 0x7F800000 | (0x80000000 if inf < 0 else 0)
    s = a + b
    both_neg_zero = _is_neg_zero_bits(a_bits) and _is_neg_zero_bits(b_bits)
    return round_f32_ftz(s, negative_zero=both_neg_zero)


def quantize_group(bits16: list[int], m: int, rounding: str):
    """One group of 16 FP32 bit patterns -> (E, mu[8], s[16], q[16]) by spec §1.1, exactly."""
    e = [(b >> 23) & 0xFF for b in bits16]
    if any(x == 255 for x in e):
        return 255, [0] * 8, [0] * 16, [0] * 16
    big_e = max(e)
    mu = [min(big_e - max(e[2 * j], e[2 * j + 1]), 1) for j in range(8)]
    signs, qs = [], []
    for i, b in enumerate(bits16):
        signs.append(b >> 31)
        if e[i] == 0:
            qs.append(0)
            continue
        scale = Fraction(2) ** (big_e - 127 - mu[i // 2] - (m - 1))
        ratio = abs(f32_value(b)) / scale
        q = math.floor(ratio) if rounding == "trunc" else round(ratio)
        qs.append(min(q, 2 ** m - 1))
    return big_e, mu, signs, qs


def element_value(E: int, mu: int, s: int, q: int, m: int) -> Fraction:
    """Exact value of one MX element (spec §1.1)."""
    return (-1) ** s * q * Fraction(2) ** (E - 127 - mu - (m - 1))


def dot(a_groups, b_groups) -> int:
    """One PE dot product. Each group is (E, mu[8], s[16], q[16], m); returns FP32 bits.

    Every group's exact product sum is rounded once (RNE, FTZ, overflow to Inf) and added into an
    accumulator that starts at +0.0, in order (spec §2.1).
    """
    acc = 0
    for (ea, mua, sa, qa, ma), (eb, mub, sb, qb, mb) in zip(a_groups, b_groups):
        if ea == 255 or eb == 255:
            p = 0x7FC00000
        else:
            exact = sum(element_value(ea, mua[i // 2], sa[i], qa[i], ma)
                        * element_value(eb, mub[i // 2], sb[i], qb[i], mb) for i in range(16))
            p = round_f32_ftz(exact)
        acc = add_f32(acc, p)
    return acc
