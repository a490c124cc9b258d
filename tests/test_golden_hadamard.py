"""golden.quality.hadamard and golden.quality.smoothing: transforms that leave a GEMM unchanged.

Both are checked against a float64 reference ``x @ w.T`` with a rigorous first-order rounding
bound (u = 2^-24 is float32's unit roundoff):

- rotation, ``rot(x) @ rot(w).T`` in float32 with Hadamard blocks of size b: each rotated
  element is a b-term dot product with entries ``|H| = 1/sqrt(b)`` (error <= b u (|x| |H|)),
  which reaches the output through the other operand (2 b u (|x| |H|)(|w| |H|)^T for both), and
  the final K-term product adds K u (|x H| |w H|^T); with ``|x H| <= |x| |H|`` elementwise the
  total is at most ``(2 b + K + 3) u (|x| |H|) (|w| |H|)^T`` (3 u of slack for second-order
  terms);
- smoothing, ``(x / s) @ (w * s).T``: one rounding on each operand and the K-term product:
  ``(K + 3) u (|x| @ |w|^T)``.

A rotation that were not orthogonal (unnormalised, or applied to one operand only) misses these
bounds by orders of magnitude.
"""

import numpy as np
import pytest

from golden.quality import hadamard, smoothing

U = 2.0 ** -24


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 128, 512])
def test_sylvester_rows_are_orthogonal_exactly(n):
    h = hadamard.hadamard_matrix(n) * np.sqrt(n)            # the +-1 matrix
    assert set(np.unique(h)) <= {-1.0, 1.0}
    assert np.array_equal(h @ h.T, n * np.eye(n))            # integers: exact in float64


def test_block_size_and_bad_sizes():
    assert [hadamard.block_size(n) for n in (1, 16, 24, 96, 128, 1152)] == [1, 16, 8, 32, 128, 128]
    with pytest.raises(ValueError, match="power of two"):
        hadamard.hadamard_matrix(12)


@pytest.mark.parametrize("seed,m,k,n", [(0, 16, 128, 64), (1, 32, 512, 16), (2, 8, 96, 24),
                                        (3, 5, 32, 7)])
def test_rotation_leaves_an_fp32_gemm_unchanged(seed, m, k, n):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((m, k)) * np.exp(2 * rng.standard_normal(k))).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    got = (hadamard.rotate(x) @ hadamard.rotate(w).T).astype(np.float64)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    b = hadamard.block_size(k)
    # (|x| |H|)_j = sum of |x| over j's block / sqrt(b); the bound of the module docstring.
    xa = np.abs(x.astype(np.float64)).reshape(m, k // b, b).sum(-1) / np.sqrt(b)
    wa = np.abs(w.astype(np.float64)).reshape(n, k // b, b).sum(-1) / np.sqrt(b)
    bound = (2 * b + k + 3) * U * (np.repeat(xa, b, axis=1) @ np.repeat(wa, b, axis=1).T)
    assert np.all(np.abs(got - ref) <= bound)
    # The rotation really moved the data (an identity "rotation" would pass the bound too).
    assert not np.allclose(hadamard.rotate(x), x)
    # And the rotated activations' largest magnitude shrinks: outliers are spread.
    assert np.abs(hadamard.rotate(x)).max() < np.abs(x).max()


def test_rotation_along_another_axis():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 16, 4)).astype(np.float32)
    a = hadamard.rotate(x, axis=1)
    b = np.swapaxes(hadamard.rotate(np.swapaxes(x, 1, 2)), 1, 2)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("seed,alpha", [(0, 0.5), (1, 0.3), (2, 0.8)])
def test_smoothing_leaves_an_fp32_gemm_unchanged(seed, alpha):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    m, k, n = 24, 128, 40
    x = (rng.standard_normal((m, k)) * np.exp(2 * rng.standard_normal(k))).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    s = smoothing.smooth_scales(np.abs(x).max(axis=0), w, alpha)
    xs, ws = smoothing.smooth(x, w, s)
    got = (xs @ ws.T).astype(np.float64)
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    bound = (k + 3) * U * (np.abs(x.astype(np.float64)) @ np.abs(w.astype(np.float64)).T)
    assert np.all(np.abs(got - ref) <= bound)
    # The transform balances: the activation's channel maxima become flatter.
    spread = lambda v: np.abs(v).max(0).max() / np.abs(v).max(0).min()
    assert spread(xs) < spread(x)


def test_smooth_scales_formula_and_zero_channels():
    a = np.array([4.0, 0.0, 9.0])
    w = np.array([[1.0, 2.0, -4.0], [0.5, -1.0, 1.0]])
    s = smoothing.smooth_scales(a, w, 0.5)
    assert s.tolist() == [2.0, 1.0, 1.5]        # sqrt(4)/sqrt(1), zero channel -> 1, 3/sqrt(4)
