"""golden.gemm: exhaustive products, the exact oracle on small GEMMs, padding, speed-free."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
from golden import gemm, mx
from golden.formats import format_of
from golden.fp32 import to_bits


def single_element_tensor(q: np.ndarray, fmt: str, mu: int, e: int, sign: np.ndarray) -> mx.MXTensor:
    """Rows of one group each whose only nonzero element is element 0 with magnitude q[row]."""
    n = q.size
    mant = np.zeros((n, 1, 16), np.uint8)
    mant[:, 0, 0] = q
    signs = np.zeros((n, 1, 16), np.uint8)
    signs[:, 0, 0] = sign
    micro = np.zeros((n, 1, 8), np.uint8)
    micro[:, 0, 0] = mu
    return mx.MXTensor(np.full((n, 1), e, np.uint8), micro, signs, mant,
                       np.array([format_of(fmt).code], np.uint8), 16)


@pytest.mark.parametrize("fa,fb", [("mx6", "mx6"), ("mx9", "mx9"), ("mx9", "mx6"), ("mx6", "mx9")])
@pytest.mark.parametrize("mu_a", [0, 1])
@pytest.mark.parametrize("mu_b", [0, 1])
def test_every_magnitude_product(fa, fb, mu_a, mu_b):
    """Every q_a x q_b of the formats, with every microexponent pair and both signs, against
    the element values of spec §1.1 multiplied in exact integer arithmetic."""
    ma, mb = format_of(fa).mant_bits, format_of(fb).mant_bits
    qa = np.arange(1 << ma, dtype=np.uint8)
    qb = np.arange(1 << mb, dtype=np.uint8)
    sa = (qa % 3 == 1).astype(np.uint8)
    sb = (qb % 5 == 2).astype(np.uint8)
    ea, eb = 130, 120
    a = single_element_tensor(qa, fa, mu_a, ea, sa)
    b = single_element_tensor(qb, fb, mu_b, eb, sb)
    got = to_bits(gemm.mx_matmul(a, b))
    # value = (-1)^s q 2^(E - 127 - mu - (m - 1)); the product is exact in FP32 here.
    pa = ea - 127 - mu_a - (ma - 1)
    pb = eb - 127 - mu_b - (mb - 1)
    prod = (np.where(sa, -1, 1).astype(np.int64) * qa)[:, None] * \
           (np.where(sb, -1, 1).astype(np.int64) * qb)[None, :]
    want = to_bits(np.ldexp(prod.astype(np.float64), pa + pb).astype(np.float32))
    want = np.where(prod == 0, 0, want)  # an exactly zero product is +0.0
    assert np.array_equal(got, want)


def oracle_matmul(a: mx.MXTensor, b: mx.MXTensor) -> np.ndarray:
    def groups(t, r):
        return [(int(t.exp[r, g]), t.micro[r, g].tolist(), t.sign[r, g].tolist(),
                 t.mant[r, g].tolist(), int(t.mant_bits[g])) for g in range(t.groups)]
    return np.array([[oracle.dot(groups(a, i), groups(b, j)) for j in range(b.shape[0])]
                     for i in range(a.shape[0])], dtype=np.uint32)


def random_operands(rng, m, n, groups, exp_center=127, exp_spread=6, specials=True):
    fa = list(rng.choice(["mx6", "mx9"], size=groups))
    fb = list(rng.choice(["mx6", "mx9"], size=groups))
    def make(rows, fmts):
        e = np.clip(exp_center + rng.integers(-exp_spread, exp_spread + 1, (rows, groups, 1))
                    - rng.integers(0, 4, (rows, groups, 16)), 1, 254)
        x = (rng.integers(0, 2, (rows, groups, 16)) << 31) | (e << 23) | \
            rng.integers(0, 1 << 23, (rows, groups, 16))
        x = x.astype(np.uint32).view(np.float32).reshape(rows, groups * 16)
        if specials:
            x[rng.random(x.shape) < 0.003] = np.inf
            x[rng.random(x.shape) < 0.003] = np.nan
            x[rng.random(x.shape) < 0.05] = -0.0
        return mx.quantize(x, fmts, rng.choice(["trunc", "rne"]))
    return make(m, fa), make(n, fb)


@pytest.mark.parametrize("seed", range(6))
def test_small_gemms_match_oracle(seed):
    rng = np.random.default_rng(seed)
    a, b = random_operands(rng, 3, 4, int(rng.integers(1, 7)))
    assert np.array_equal(to_bits(gemm.mx_matmul(a, b)), oracle_matmul(a, b))


@pytest.mark.parametrize("center,name", [(10, "subnormal flush"), (245, "overflow to Inf"),
                                         (70, "near the FTZ edge")])
def test_range_edges_match_oracle(center, name):
    """Products far below 2^-126 (flushed), far above 2^128 (Inf), and straddling the edge."""
    rng = np.random.default_rng(center)
    a, b = random_operands(rng, 3, 3, 4, exp_center=center, exp_spread=3, specials=False)
    got = to_bits(gemm.mx_matmul(a, b))
    assert np.array_equal(got, oracle_matmul(a, b)), name


def test_range_edges_are_reached():
    """The edge cases above really produce flushed zeros, infinities and -0."""
    rng = np.random.default_rng(10)
    a, b = random_operands(rng, 3, 3, 4, exp_center=10, exp_spread=3, specials=False)
    assert (gemm.mx_matmul(a, b) == 0).all()
    rng = np.random.default_rng(245)
    a, b = random_operands(rng, 3, 3, 4, exp_center=245, exp_spread=3, specials=False)
    assert np.isinf(gemm.mx_matmul(a, b)).any()
    # -0: a normal negative sum cancelled into the subnormal range flushes to -0 (sign kept),
    # and -0 plus a flushed negative product stays -0; +0 plus -0 is +0 (spec §1.3).
    x = np.zeros((1, 48), np.float32)
    w = np.zeros((1, 48), np.float32)
    x[0, 0], w[0, 0] = -1.5 * 2.0 ** -63, 2.0 ** -63      # group 0: -1.5 * 2^-126
    x[0, 16], w[0, 16] = 2.0 ** -63, 2.0 ** -63           # group 1: +2^-126 -> -0.5 * 2^-126
    x[0, 32], w[0, 32] = -(2.0 ** -70), 2.0 ** -70        # group 2: -2^-140, flushed to -0
    a, b = mx.quantize(x, "mx9"), mx.quantize(w, "mx9")
    assert to_bits(gemm.mx_matmul(a, b))[0, 0] == 0x80000000 == oracle_matmul(a, b)[0, 0]
    x[0, :32] = 0.0
    a = mx.quantize(x, "mx9")
    assert to_bits(gemm.mx_matmul(a, b))[0, 0] == 0 == oracle_matmul(a, b)[0, 0]


def test_nan_group_poisons_only_its_dot_products():
    x = np.ones((2, 32), np.float32)
    x[1, 20] = np.nan
    w = np.ones((3, 32), np.float32)
    out = to_bits(gemm.mx_matmul(mx.quantize(x, "mx6"), mx.quantize(w, "mx6")))
    assert (out[1] == 0x7FC00000).all()
    assert (out[0] == to_bits(np.float32(32.0))).all()


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.integers(1, 5), st.integers(0, 2 ** 32 - 1))
def test_zero_padding_never_changes_a_gemm(k, m, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32) * 8
    w = rng.standard_normal((n, k)).astype(np.float32)
    pad = -(-k // 16) * 16 + 16 * int(rng.integers(0, 2))
    xp = np.zeros((m, pad), np.float32)
    wp = np.zeros((n, pad), np.float32)
    xp[:, :k], wp[:, :k] = x, w
    fa = "mx9" if seed % 2 else "mx6"
    got = gemm.mx_matmul(mx.quantize(x, fa), mx.quantize(w, "mx6"))
    padded = gemm.mx_matmul(mx.quantize(xp, fa), mx.quantize(wp, "mx6"))
    assert np.array_equal(to_bits(got), to_bits(padded))


def test_group_sums_are_exact_integers():
    rng = np.random.default_rng(1)
    a, b = random_operands(rng, 4, 5, 3, specials=False)
    s = gemm.group_sums(a, b)
    sa = gemm.signed_operand(a).astype(np.int64)
    sb = gemm.signed_operand(b).astype(np.int64)
    exact = np.einsum("mgi,ngi->gmn", sa, sb)
    assert np.array_equal(s.astype(np.int64), exact)
    assert np.abs(exact).max() < 2 ** 21


def test_shape_errors():
    a = mx.quantize(np.ones((2, 32), np.float32), "mx6")
    b = mx.quantize(np.ones((2, 48), np.float32), "mx6")
    with pytest.raises(ValueError, match="K groups differ"):
        gemm.mx_matmul(a, b)
    with pytest.raises(ValueError, match="2-D"):
        gemm.mx_matmul(a[0], a)


def test_mx_dot_is_one_pe():
    rng = np.random.default_rng(4)
    a, b = random_operands(rng, 1, 1, 5, specials=False)
    assert to_bits(np.float32(gemm.mx_dot(a[0], b[0]))) == oracle_matmul(a, b)[0, 0]
