"""Stimulus and reference results for the PE (spec §2), shared by the Amaranth-sim tests and
the cocotb testbench.

A dot product is a pair of 1-D :class:`golden.mx.MXTensor` (``[G]`` groups each, any per-group
mix of MX6 and MX9). Their fields are drawn directly (exponent, microexponents, signs,
magnitudes), which reaches every corner the PE must get right: NaN groups, products that
overflow to Inf, products that underflow and are flushed, Inf - Inf, exact cancellation. The
reference result is :func:`golden.gemm.mx_dot`, as an FP32 bit pattern.
"""

from dataclasses import dataclass

import numpy as np

from golden.formats import GROUP_SIZE, MAX_GROUP_BITS, MICRO_COUNT, MX6, MX9, NAN_EXP
from golden.fp32 import to_bits
from golden.gemm import mx_dot
from golden.mx import MXTensor, pack

__all__ = ["KINDS", "MODES", "DotCase", "random_group_fields", "random_dot", "operand_words",
           "expected_bits", "cycles_per_group_list"]

#: Operand format pairs (A, B) and their names.
MODES = {"mx6xmx6": (MX6, MX6), "mx9xmx6": (MX9, MX6), "mx6xmx9": (MX6, MX9),
         "mx9xmx9": (MX9, MX9)}
#: Value regimes of random groups: ``normal`` (exponents near the bias), ``wide`` (any exponent),
#: ``huge`` (products overflow to Inf), ``tiny`` (products underflow, flushed to signed zero),
#: ``nan`` (some NaN groups), ``cancel`` (pairs of groups whose products cancel exactly).
KINDS = ("normal", "wide", "huge", "tiny", "nan", "cancel")

_LAST_BIT = MAX_GROUP_BITS + 1
_FMT_BIT = MAX_GROUP_BITS


@dataclass
class DotCase:
    """One dot product: operands and the golden result (an FP32 bit pattern)."""

    a: MXTensor
    b: MXTensor
    expected: int

    @property
    def groups(self) -> int:
        return self.a.groups


def random_group_fields(rng: np.random.Generator, fmt_codes: np.ndarray, kind: str) -> MXTensor:
    """A random 1-D MX tensor with one group per entry of ``fmt_codes`` in regime ``kind``."""
    if kind not in KINDS:
        raise ValueError(f"Unknown stimulus kind {kind!r}; expected one of {KINDS}")
    g = len(fmt_codes)
    mant_max = np.where(np.asarray(fmt_codes) == MX9.code, MX9.max_mant, MX6.max_mant)
    mant = (rng.integers(0, 1 << 16, (g, GROUP_SIZE)) % (mant_max[:, None] + 1)).astype(np.uint8)
    # Sparse groups (many zeros) make exact cancellations and small sums likely too.
    mant[rng.random((g, GROUP_SIZE)) < rng.uniform(0, 0.5)] = 0
    sign = rng.integers(0, 2, (g, GROUP_SIZE), dtype=np.uint8)
    micro = rng.integers(0, 2, (g, MICRO_COUNT), dtype=np.uint8)
    if kind == "wide":
        exp = rng.integers(0, NAN_EXP, g)
    elif kind == "huge":
        exp = rng.integers(230, NAN_EXP, g)
    elif kind == "tiny":
        exp = rng.integers(30, 76, g)
    else:
        exp = rng.integers(110, 145, g)
    exp = exp.astype(np.uint8)
    if kind == "nan":
        nan = rng.random(g) < 0.3
        exp[nan] = NAN_EXP
        mant[nan] = 0
        sign[nan] = 0
        micro[nan] = 0
    return MXTensor(exp, micro, sign, mant, np.asarray(fmt_codes, dtype=np.uint8),
                    GROUP_SIZE * g)


def random_dot(rng: np.random.Generator, groups: int, fmts_a, fmts_b, kind: str) -> DotCase:
    """A random dot product of ``groups`` groups with per-group format codes ``fmts_a`` and
    ``fmts_b`` (arrays of precision codes, or one code for all groups)."""
    fa = np.broadcast_to(np.asarray(fmts_a, dtype=np.uint8), (groups,)).copy()
    fb = np.broadcast_to(np.asarray(fmts_b, dtype=np.uint8), (groups,)).copy()
    a = random_group_fields(rng, fa, kind)
    b = random_group_fields(rng, fb, kind)
    if kind == "huge" and rng.random() < 0.5:
        b.sign[:] = a.sign  # every product positive: the sum overflows to +Inf, never Inf - Inf
    if kind == "cancel":
        # Odd groups repeat the even ones with B's signs flipped: P(2j+1) = -P(2j), so the
        # accumulator keeps returning to an exact +0.0 (or to the earlier partial sum).
        for t, f in ((a, fa), (b, fb)):
            f[1::2] = f[0:groups - 1:2]
            t.fmt[:] = f
            for field in (t.exp, t.micro, t.sign, t.mant):
                field[1::2] = field[0:groups - 1:2]
        b.sign[1::2] ^= 1
    return DotCase(a, b, expected_bits(a, b))


def expected_bits(a: MXTensor, b: MXTensor) -> int:
    """Golden dot product of two 1-D MX tensors as an FP32 bit pattern (spec §2.1)."""
    return int(to_bits(np.asarray(mx_dot(a, b), dtype=np.float32)))


def operand_words(t: MXTensor) -> list[int]:
    """The operand bus payloads of ``t``'s groups (:data:`hw.pe.OPERAND`): the §1.2 word, the
    precision tag above it, and the ``last`` flag on the final group."""
    words = pack(t)
    out = [int(w) | (int(c) << _FMT_BIT) for w, c in zip(words, t.fmt)]
    out[-1] |= 1 << _LAST_BIT
    return out


def cycles_per_group_list(case: DotCase) -> list[int]:
    """Cycles per group of each group pair of ``case`` (spec §2.2)."""
    from hw.pe import cycles_per_group
    return [cycles_per_group(int(x), int(y)) for x, y in zip(case.a.fmt, case.b.fmt)]
