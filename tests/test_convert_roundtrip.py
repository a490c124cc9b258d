"""The MX converter's round trip over every FP32 exponent class and tie position (spec §1.1, §5).

quantize -> pack (golden) and the RTL converter (Amaranth simulation of hw.mx_convert) must give
the same packed word for every group, and unpacking the RTL's word must give back the golden
MXTensor field for field: for zeros (+0, -0), subnormals, every normal exponent at distance 0..40
below the group maximum (with the microexponent 0 and 1), Inf and NaN, and for every shift at
which a rounding tie can occur, with odd and even magnitudes. Then every code point (sign and
magnitude) of MX4, MX6 and MX9 decodes to its value and re-encodes to itself, in the golden model
and, for MX6 and MX9, in the RTL. The seed is printed; all data come from it.
"""

from fractions import Fraction

import numpy as np
import pytest

from golden import mx
from golden.formats import FORMATS, GROUP_SIZE, MAX_GROUP_BITS, MX6, MX9, format_of
from test_hw_mx_convert import rtl_convert

SEED = 20260112
_MASK = (1 << MAX_GROUP_BITS) - 1


def _bits(sign, exp, frac):
    return (np.uint32(sign) << np.uint32(31)) | (np.uint32(exp) << np.uint32(23)) | np.uint32(frac)


def exponent_class_groups(rng) -> np.ndarray:
    """Groups [N, 16] of uint32: lane 0 holds the group maximum E; the other lanes sit d = 0..40
    below it (pair 0 shares mu = 0 with the maximum, pairs 1..7 get mu = 1 when d >= 1), and
    groups of zeros, subnormals, Inf and NaN beside normal values."""
    out = []
    for big in (41, 130, 254):
        for d in range(41):
            if big - d < 1:
                continue
            g = [_bits(rng.integers(2), big, rng.integers(1 << 23))]
            g += [_bits(rng.integers(2), big - d, rng.integers(1 << 23)) for _ in range(15)]
            out.append(g)
    normals = lambda n: [_bits(rng.integers(2), rng.integers(1, 255), rng.integers(1 << 23))
                         for _ in range(n)]
    zero, nzero = _bits(0, 0, 0), _bits(1, 0, 0)
    sub = lambda: _bits(rng.integers(2), 0, rng.integers(1, 1 << 23))
    inf, ninf = _bits(0, 255, 0), _bits(1, 255, 0)
    qnan, snan = _bits(0, 255, 1 << 22), _bits(1, 255, rng.integers(1, 1 << 22))
    out.append([zero] * 8 + [nzero] * 8)                              # all zero: E = 0
    out.append([sub() for _ in range(16)])                           # all subnormal: E = 0
    out.append([zero, nzero, sub(), sub()] + normals(12))            # flushed beside normals
    out.append([sub(), _bits(0, 1, 0)] + [sub() for _ in range(14)])  # E = 1
    for special in (inf, ninf, qnan, snan):
        for lane in (0, 7, 15):
            g = normals(16)
            g[lane] = special
            out.append(g)
    return np.array(out, dtype=np.uint32)


def tie_groups(m: int) -> np.ndarray:
    """Groups whose lanes sit exactly half-way between two magnitudes, for every shift
    ``sh = 24 - m .. 24`` at which a tie exists, with the lane in a mu = 0 and a mu = 1 pair."""
    out = []
    big = 140
    for sh in range(24 - m, 25):
        lo = (1 << 23) >> sh
        hi = ((1 << 24) - 1) >> sh
        for q in sorted({lo, lo + 1, hi - 1, hi} & set(range(lo, hi + 1))):
            sig = (q << sh) | (1 << (sh - 1))
            if not (1 << 23) <= sig < (1 << 24):
                continue
            frac = sig - (1 << 23)
            # mu = 0: the tie lane shares pair 0 with the maximum; d = sh - (24 - m).
            d0 = sh - (24 - m)
            g = [_bits(0, big, 0), _bits(q & 1, big - d0, frac)]
            # mu = 1: pairs 1..7 both at d1 = d0 + 1 below E, so E - mu - e = d0 again.
            g += [_bits(i & 1, big - d0 - 1, frac) for i in range(14)]
            out.append(g)
    return np.array(out, dtype=np.uint32)


def _tie_shifts(groups: np.ndarray, m: int) -> set:
    """The shifts at which some normal lane of ``groups`` lies exactly on a tie (spec §1.1)."""
    t = mx.quantize(groups.reshape(-1).view(np.float32), "mx9" if m == 7 else "mx6")
    found = set()
    for n, g in enumerate(groups):
        for i, b in enumerate(g):
            e = (int(b) >> 23) & 0xFF
            if e in (0, 255):
                continue
            sig = (1 << 23) | (int(b) & 0x7FFFFF)
            sh = int(t.exp[n]) - int(t.micro[n, i // 2]) - e + 24 - m
            if 1 <= sh <= 24 and sig & ((1 << sh) - 1) == 1 << (sh - 1):
                found.add(sh)
    return found


def _roundtrip(groups: np.ndarray, fmt, rounding: str) -> None:
    codes = [format_of(fmt).code] * len(groups)
    x = groups.reshape(-1).view(np.float32)
    t = mx.quantize(x, [fmt] * len(groups), rounding)
    want = [int(w) for w in mx.pack(t)]
    got, _ = rtl_convert(groups, codes, rounding)
    assert len(got) == len(want)
    for n, (g, w) in enumerate(zip(got, want)):
        assert g >> MAX_GROUP_BITS == format_of(fmt).code, f"group {n}: wrong precision tag"
        assert g & _MASK == w, (f"group {n} {[hex(int(v)) for v in groups[n]]}: RTL "
                                f"{g & _MASK:#x}, golden {w:#x}")
    back = mx.unpack(np.array([g & _MASK for g in got], dtype=object), [fmt] * len(groups))
    assert back == t
    assert np.array_equal(back.dequantize().view(np.uint32), t.dequantize().view(np.uint32))


@pytest.mark.parametrize("rounding", ["trunc", "rne"])
@pytest.mark.parametrize("fmt", ["mx6", "mx9"])
def test_every_exponent_class_round_trips_through_the_rtl(fmt, rounding):
    print(f"seed {SEED}")
    groups = exponent_class_groups(np.random.default_rng(SEED))
    t = mx.quantize(groups.reshape(-1).view(np.float32), fmt)
    # The stimulus holds what it claims: every distance 0..40 from E, NaN groups, E = 0 groups.
    e = (groups >> 23) & 0xFF
    dist = {int(d) for n in range(len(groups)) if t.exp[n] not in (0, 255)
            for d in t.exp[n] - e[n][e[n] != 0]}
    assert set(range(41)) <= dist
    assert (t.exp == 255).sum() == 12 and (t.exp == 0).sum() == 2
    assert (t.micro == 1).any() and (t.micro == 0).any()
    _roundtrip(groups, fmt, rounding)


@pytest.mark.parametrize("rounding", ["trunc", "rne"])
@pytest.mark.parametrize("fmt", ["mx6", "mx9"])
def test_every_tie_position_round_trips_through_the_rtl(fmt, rounding):
    m = format_of(fmt).mant_bits
    groups = tie_groups(m)
    assert _tie_shifts(groups, m) == set(range(24 - m, 25))
    if rounding == "rne":
        # Ties really decide something: RNE and truncation differ on these groups.
        x = groups.reshape(-1).view(np.float32)
        assert mx.quantize(x, fmt, "rne") != mx.quantize(x, fmt, "trunc")
    _roundtrip(groups, fmt, rounding)


def _tensor_rows(groups, f) -> mx.MXTensor:
    # One row of n groups: exp [n], micro [n, 8], sign/mant [n, 16], fmt [n].
    n = len(groups)
    return mx.MXTensor(np.array([g[0] for g in groups], np.uint8),
                       np.array([g[1] for g in groups], np.uint8),
                       np.array([g[2] for g in groups], np.uint8),
                       np.array([g[3] for g in groups], np.uint8),
                       np.full(n, f.code, np.uint8), n * GROUP_SIZE)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_code_point_decodes_and_re_encodes(fmt):
    f = format_of(fmt)
    for big in (f.mant_bits + 1, 127, 254):   # the smallest E whose codes are all normal
        t = _tensor_rows_check(fmt, big)
        val = t.dequantize()
        # Each value against the formula of spec §1.1, exactly.
        mu = np.repeat(t.micro, 2, axis=-1).reshape(-1)
        for i, (s, q) in enumerate(zip(t.sign.reshape(-1), t.mant.reshape(-1))):
            e = big - 127 - int(mu[i]) - (f.mant_bits - 1)
            want = (-1) ** int(s) * Fraction(int(q)) * Fraction(2) ** e
            assert Fraction(float(val[i])) == want and np.signbit(val[i]) == bool(s)
        for rounding in ("trunc", "rne"):
            assert mx.quantize(val, [fmt] * t.groups, rounding) == t, (fmt, big, rounding)
        if f in (MX6, MX9):
            groups = val.view(np.uint32).reshape(-1, GROUP_SIZE)
            got, _ = rtl_convert(groups, [f.code] * len(groups), "trunc")
            assert [g & _MASK for g in got] == [int(w) for w in mx.pack(t)]


def _tensor_rows_check(fmt, big) -> mx.MXTensor:
    f = format_of(fmt)
    codes = [(s, q) for s in (0, 1) for q in range(1 << f.mant_bits)]
    top = 1 << (f.mant_bits - 1)
    groups = [(big, [0] * 8, [0, s] + [0] * 14, [top, q] + [top, 0] * 7) for s, q in codes]
    for start in range(0, len(codes), 14):
        chunk = codes[start:start + 14] + [(0, 0)] * max(0, 14 - len(codes[start:start + 14]))
        groups.append((big, [0] + [1] * 7, [0, 0] + [s for s, _ in chunk],
                       [top, 0] + [q for _, q in chunk]))
    return _tensor_rows(groups, f)
