"""golden.fp32 against the exact-arithmetic oracle (spec §1.3)."""

import numpy as np
import pytest

import oracle
from golden.fp32 import CANONICAL_NAN, fp32_add, from_bits, scale_exact, to_bits

SPECIALS = [
    0x00000000, 0x80000000,            # +-0
    0x00000001, 0x80000001,            # smallest subnormals
    0x007FFFFF, 0x807FFFFF,            # largest subnormals
    0x00800000, 0x80800000,            # smallest normals
    0x00800001, 0x01000000,
    0x3F800000, 0xBF800000,            # +-1
    0x3F800001, 0xBF7FFFFF,
    0x7F7FFFFF, 0xFF7FFFFF,            # +-max
    0x7F800000, 0xFF800000,            # +-Inf
    0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF,  # NaNs
]


def add_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return to_bits(fp32_add(from_bits(a), from_bits(b)))


def test_every_special_pairing():
    a, b = np.meshgrid(np.array(SPECIALS, np.uint32), np.array(SPECIALS, np.uint32))
    got = add_bits(a.ravel(), b.ravel())
    want = [oracle.add_f32(int(x), int(y)) for x, y in zip(a.ravel(), b.ravel())]
    assert got.tolist() == want


def test_nan_is_canonical_and_inf_minus_inf_is_nan():
    r = add_bits(np.array([0x7F800000], np.uint32), np.array([0xFF800000], np.uint32))
    assert r[0] == CANONICAL_NAN


@pytest.mark.parametrize("seed", range(4))
def test_random_bit_patterns(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2 ** 32, 3000, dtype=np.uint64).astype(np.uint32)
    # Same-magnitude partners exercise cancellation and carry-out.
    b = np.where(rng.random(3000) < 0.5, a ^ np.uint32(0x80000000) ^ rng.integers(0, 8, 3000).astype(np.uint32),
                 rng.integers(0, 2 ** 32, 3000, dtype=np.uint64).astype(np.uint32))
    got = add_bits(a, b)
    want = [oracle.add_f32(int(x), int(y)) for x, y in zip(a, b)]
    assert got.tolist() == want


def test_subnormal_results_flush_with_sign():
    # 1.5 * 2^-126 - 1.0 * 2^-126 = 0.5 * 2^-126, subnormal -> +0; negated -> -0.
    a = np.array([0x00C00000, 0x80C00000], np.uint32)
    b = np.array([0x80800000, 0x00800000], np.uint32)
    assert add_bits(a, b).tolist() == [0x00000000, 0x80000000]


@pytest.mark.parametrize("seed", range(3))
def test_scale_exact_matches_rational_rounding(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(-(2 ** 21), 2 ** 21, 4000)
    e = rng.integers(-200, 140, 4000)
    got = to_bits(scale_exact(s.astype(np.float32), e))
    want = [oracle.round_f32_ftz(int(si) * oracle.Fraction(2) ** int(ei)) for si, ei in zip(s, e)]
    assert got.tolist() == want
