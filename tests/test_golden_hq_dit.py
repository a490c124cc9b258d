"""golden.quality.minifloat, clipping and hq_dit: FP4 grids, clipping search, format choice."""

import numpy as np
import pytest

from golden.quality import baselines, clipping, hq_dit, minifloat
from golden.quality.operands import Operands


def test_fp4_grids():
    assert minifloat.fp_grid("e2m1").tolist() == baselines.FP4_E2M1_GRID.tolist()
    assert minifloat.fp_grid("e1m2").tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5]
    assert minifloat.fp_grid("e3m0").tolist() == [0, 0.25, 0.5, 1, 2, 4, 8, 16]
    with pytest.raises(ValueError, match="FP4 format"):
        minifloat.fp_grid("e4m0")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_e2m1_at_the_full_range_is_the_plain_fp4_baseline(seed):
    print(f"seed={seed}")
    x = (np.random.default_rng(seed).standard_normal(4096) * 3).astype(np.float32)
    got = minifloat.fp_quantize(x, "e2m1", np.abs(x).max())
    assert np.array_equal(got.view(np.uint32), baselines.fp4_e2m1(x).view(np.uint32))


def test_fp_quantize_saturates_and_rounds_to_the_grid():
    x = np.array([[0.1, 0.35, 0.5, -1.3, 5.0], [4.0, 0.0, -0.2, 1.0, 3.0]], np.float32)
    q = minifloat.fp_quantize(x, "e3m0", np.array([[1.6], [16.0]], np.float32))
    # Row 0: scale 0.1, grid 0.1 * {0, .25, .5, 1, 2, 4, 8, 16}; 5.0 saturates to 1.6.
    # Row 1: scale 1; 3.0 is a tie between 2 (index 4) and 4 (index 5): the even index wins.
    np.testing.assert_allclose(q, [[0.1, 0.4, 0.4, -1.6, 1.6], [4.0, 0.0, -0.25, 1.0, 2.0]],
                               rtol=1e-6)


DATA = {
    "gauss": lambda r, n: r.standard_normal(n),
    "laplace": lambda r, n: r.laplace(size=n),
    "student2": lambda r, n: r.standard_t(2, size=n),
    "uniform": lambda r, n: r.uniform(-1, 1, n),
}


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("dist", sorted(DATA))
@pytest.mark.parametrize("fmt", minifloat.FP4_FORMATS)
def test_clipping_search_never_increases_error_on_its_calibration_data(seed, dist, fmt):
    print(f"seed={seed}")
    x = DATA[dist](np.random.default_rng(seed), (64, 32)).astype(np.float32)
    amax = hq_dit.rowmax(x)
    quant = lambda v, r: minifloat.fp_quantize(v, fmt, r * amax)
    r, mse, mse1 = clipping.search_clip(x, quant)
    assert mse <= mse1
    # Brute force over the same candidates.
    errs = {c: np.mean((quant(x, c).astype(np.float64) - x) ** 2) for c in clipping.CLIP_RATIOS}
    assert mse == pytest.approx(min(errs.values()), rel=1e-12)
    assert mse1 == pytest.approx(errs[1.0], rel=1e-12)


def test_clipping_helps_heavy_tails():
    x = np.random.default_rng(7).standard_t(2, size=(64, 64)).astype(np.float32)
    amax = np.abs(x).max()
    r, mse, mse1 = clipping.search_clip(x, lambda v, r: minifloat.fp_quantize(v, "e2m1", r * amax))
    assert r < 1.0 and mse < mse1


@pytest.mark.parametrize("seed", [0, 1])
def test_format_choice_is_the_least_error_and_follows_the_distribution(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    for dist in DATA:
        x = DATA[dist](rng, (128, 64)).astype(np.float32)
        fmt, r, table = hq_dit.choose_format(x)
        assert table[fmt] == min(table.values())
        amax = hq_dit.rowmax(x)
        bf = min(np.mean((minifloat.fp_quantize(x, f, c * amax).astype(np.float64) - x) ** 2)
                 for f in minifloat.FP4_FORMATS for c in clipping.CLIP_RATIOS)
        assert table[fmt] == pytest.approx(bf, rel=1e-12)
    # Flat data wants mantissa bits, heavy tails exponent bits.
    flat = hq_dit.choose_format(rng.uniform(-1, 1, (128, 64)).astype(np.float32))[0]
    heavy = hq_dit.choose_format(rng.standard_t(1, (128, 64)).astype(np.float32))[0]
    assert flat == "e1m2" and heavy in ("e3m0", "e2m1")


def test_hq_dit_linear_rotates_and_tracks_the_gemm():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((64, 128)) * np.exp(rng.standard_normal(128))).astype(np.float32)
    w = (rng.standard_normal((32, 128)) / 11).astype(np.float32)
    fn, info = hq_dit.linear("l", w, np.zeros(32, np.float32), Operands({}, {"l": x}))
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    err = np.linalg.norm(fn(x) - ref) / np.linalg.norm(ref)
    plain = baselines.fp4_e2m1(x) @ baselines.fp4_e2m1(w).T
    assert err < np.linalg.norm(plain - ref) / np.linalg.norm(ref)
    assert err < 0.25
    assert set(info) == {"w", "a"} and info["a"][0] in minifloat.FP4_FORMATS
