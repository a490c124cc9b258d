"""FP32 arithmetic of the accumulators (spec §1.3).

IEEE-754 binary32 with round-to-nearest-even, except that a subnormal *result* is flushed to zero
with its sign kept (FTZ after rounding). Inf and NaN follow IEEE; every NaN leaves as the canonical
quiet NaN ``0x7FC00000``. The functions use NumPy float32 arithmetic (correctly rounded by the
CPU) plus an explicit flush after each rounding, never float64.
"""

import numpy as np

__all__ = [
    "CANONICAL_NAN", "SIGN_MASK", "to_bits", "from_bits", "flush", "fp32_add", "scale_exact",
]

#: The one NaN bit pattern an accumulator produces.
CANONICAL_NAN = np.uint32(0x7FC00000)
SIGN_MASK = np.uint32(0x80000000)
_EXP_MASK = np.uint32(0x7F800000)
_FRAC_MASK = np.uint32(0x007FFFFF)


def to_bits(x: np.ndarray) -> np.ndarray:
    """FP32 bit patterns (uint32) of ``x``, which must already be float32."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"Expected float32 data, not {x.dtype}")
    return x.view(np.uint32)


def from_bits(bits: np.ndarray) -> np.ndarray:
    """The float32 values whose bit patterns are ``bits`` (any unsigned or signed 32-bit ints)."""
    return np.asarray(bits).astype(np.uint32).view(np.float32)


def flush(x: np.ndarray) -> np.ndarray:
    """Flush subnormals to signed zero and make every NaN canonical (spec §1.3).

    Parameters
    ----------
    x : numpy.ndarray of float32

    Returns
    -------
    numpy.ndarray of float32
        A new array; ``x`` is not modified.
    """
    bits = to_bits(np.ascontiguousarray(x, dtype=np.float32)).copy()
    exp = bits & _EXP_MASK
    sub = exp == 0
    bits[sub] &= SIGN_MASK
    nan = (exp == _EXP_MASK) & ((bits & _FRAC_MASK) != 0)
    bits[nan] = CANONICAL_NAN
    return bits.view(np.float32)


def fp32_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` as the accumulator adds (spec §1.3).

    One IEEE binary32 addition rounded to nearest even (subnormal operands are honoured as IEEE
    defines them), then a subnormal result is flushed to zero with its sign kept and a NaN result
    becomes ``0x7FC00000``. ``Inf - Inf`` is NaN.

    Parameters
    ----------
    a, b : numpy.ndarray of float32
        Broadcastable operands.

    Returns
    -------
    numpy.ndarray of float32
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    with np.errstate(all="ignore"):
        return flush(np.add(a, b, dtype=np.float32))


def scale_exact(s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``s * 2**e`` rounded to FP32 as the PE converts a group sum (spec §2.1).

    Parameters
    ----------
    s : numpy.ndarray
        Integers with ``|s| < 2**24`` (so exact in float32), as float32 or an integer dtype.
    e : numpy.ndarray of int
        Power-of-two exponents, broadcastable with ``s``.

    Returns
    -------
    numpy.ndarray of float32
        Exact when the product lies in the normal range; otherwise rounded to nearest even on
        the IEEE grid, overflowing to Inf, and flushed to signed zero when the rounded result is
        subnormal.
    """
    s = np.asarray(s, dtype=np.float32)
    # ldexp on float32 is correctly rounded (it is exact unless the result leaves the normal
    # range); exponents far outside the range give 0 or Inf, so clamp them to keep int32 sane.
    e = np.clip(np.asarray(e), -400, 400).astype(np.int32)
    with np.errstate(all="ignore"):
        return flush(np.ldexp(s, e))
