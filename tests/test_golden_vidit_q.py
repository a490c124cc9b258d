"""golden.quality.uniform (dynamic asymmetric INT) and golden.quality.vidit_q."""

import numpy as np
import pytest

from golden.quality import uniform, vidit_q
from golden.quality.operands import Operands
from golden.synthetic import outlier_activations


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dynamic_per_token_ranges_are_the_tokens_extremes_exactly(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((2, 7, 64)) * np.exp(rng.standard_normal((2, 7, 1)))).astype(
        np.float32)
    lo, hi = uniform.group_ranges(x)
    assert np.array_equal(lo[..., 0, 0], x.min(axis=-1))
    assert np.array_equal(hi[..., 0, 0], x.max(axis=-1))
    # With groups: the extremes of each group, compared with a plain loop.
    lo, hi = uniform.group_ranges(x, 16)
    for g in range(4):
        assert np.array_equal(hi[..., g, 0], x[..., 16 * g:16 * (g + 1)].max(axis=-1))
        assert np.array_equal(lo[..., g, 0], x[..., 16 * g:16 * (g + 1)].min(axis=-1))


@pytest.mark.parametrize("seed", [3, 4])
def test_ranges_are_dynamic_not_calibrated(seed):
    # A token's quantization depends on that token only, at every call (timestep).
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((8, 32)).astype(np.float32)
    q = uniform.quantize_asym(x, 6)
    for i in range(8):
        assert np.array_equal(q[i], uniform.quantize_asym(x[i:i + 1], 6)[0])
    y = x.copy()
    y[3] *= 100.0                                   # another timestep: one token grows
    qy = uniform.quantize_asym(y, 6)
    assert np.array_equal(np.delete(qy, 3, 0), np.delete(q, 3, 0))
    assert np.abs(qy[3] - y[3]).max() > 10 * np.abs(q[3] - x[3]).max()


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_asymmetric_grid_and_error_bound(bits):
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal((16, 48)) + rng.uniform(-2, 2, (16, 1))).astype(np.float32)
    q = uniform.quantize_asym(x, bits)
    lo = np.minimum(x.min(1, keepdims=True), 0)
    hi = np.maximum(x.max(1, keepdims=True), 0)
    scale = (hi - lo) / (2 ** bits - 1)
    assert np.all(np.abs(q - x) <= scale / 2 * (1 + 1e-5))          # every value in range
    codes = q / scale + np.rint(-lo / scale)                          # on the row's grid
    assert np.allclose(codes, np.rint(codes), atol=1e-3)
    assert codes.min() > -1e-3 and codes.max() < 2 ** bits - 1 + 1e-3
    assert np.all(uniform.quantize_asym(np.zeros((2, 8), np.float32), bits) == 0)
    # A row of softmax-like positive values keeps its levels (the range contains 0).
    p = rng.uniform(0.2, 1.0, (4, 16)).astype(np.float32)
    assert np.abs(uniform.quantize_asym(p, 8) - p).max() < 1.0 / 255


def test_bad_groups():
    with pytest.raises(ValueError, match="does not divide"):
        uniform.quantize_asym(np.ones((2, 24), np.float32), 8, 16)


def _layer(seed, k=128, n=96):
    x, _ = outlier_activations(64, k, outlier_share=0.03, seed=seed)
    w = (np.random.default_rng(seed).standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b = np.zeros(n, np.float32)
    return x, w, b, Operands({"l": np.abs(x).max(0).astype(np.float64)}, {"l": x})


@pytest.mark.parametrize("seed", [0, 1])
def test_vidit_q_linear_is_the_gemm_at_high_precision(seed):
    print(f"seed={seed}")
    x, w, b, ops = _layer(seed)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    y = vidit_q.linear("l", w, b, ops, 16, 16)(x)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_channel_balancing_beats_plain_per_token_int8_on_outliers(seed):
    print(f"seed={seed}")
    x, w, b, ops = _layer(seed)
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    plain = uniform.quantize_asym(x, 8) @ uniform.quantize_asym(w, 8).T
    bal = vidit_q.linear("l", w, b, ops, 8, 8)(x)
    err = lambda y: np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert err(bal) < err(plain)


def test_select_high_is_the_union_of_each_metrics_top_layers():
    m0, m1 = vidit_q.SENSITIVITY_METRICS
    table = [{"layer": f"L{i}", m0: a, m1: c}
             for i, (a, c) in enumerate([(5, 0), (1, 9), (4, 1), (0, 8), (3, 3), (2, 2)])]
    assert vidit_q.select_high(table, 2) == ["L0", "L1", "L2", "L3"]
    assert vidit_q.select_high(table, 1) == ["L0", "L1"]
    # Brute force: a layer is high iff it ranks in the top k of some metric.
    for k in range(1, 7):
        want = {r["layer"] for m in (m0, m1) for r in sorted(table, key=lambda r: -r[m])[:k]}
        assert set(vidit_q.select_high(table, k)) == want
