"""OCP MX formats (golden/quality/ocp_mx.py) against gfloat, bit for bit, scale and elements.

gfloat (Graphcore, pinned in the dev extras) quantizes one block at a time in pure Python with
``compute_scale_amax`` (``2^(floor(log2 amax) - emax)``, clamped to ``2^[-127, 127]``) and
``encode_block`` (round to nearest, ties to even, saturating); here the same rule is vectorised.
"""

import numpy as np
import pytest

from golden.quality import ocp_mx

gfloat = pytest.importorskip("gfloat")
from gfloat.formats import (  # noqa: E402
    format_info_mxfp4_e2m1,
    format_info_mxfp6_e2m3,
    format_info_mxfp6_e3m2,
    format_info_mxfp8_e4m3,
    format_info_mxfp8_e5m2,
    format_info_mxint8,
)

GFLOAT = {
    "mxfp8_e4m3": format_info_mxfp8_e4m3,
    "mxfp8_e5m2": format_info_mxfp8_e5m2,
    "mxfp6_e2m3": format_info_mxfp6_e2m3,
    "mxfp6_e3m2": format_info_mxfp6_e3m2,
    "mxfp4_e2m1": format_info_mxfp4_e2m1,
    "mxint8": format_info_mxint8,
}
SEED = 20261201


def _stimulus(fmt: str) -> np.ndarray:
    """Blocks of every kind: wide and narrow dynamic range, exact ties of the element grid,
    values just below and above the saturation point, subnormal elements, zeros and -0, tiny and
    huge scales (clamped at 2^-127), float32 subnormals."""
    print(f"seed {SEED}")
    rng = np.random.default_rng(SEED)
    f = ocp_mx.FORMATS[fmt]
    rows = [
        rng.standard_normal(32) * np.exp2(rng.integers(-20, 20, 32)),
        rng.standard_normal(32),
        rng.standard_normal(32) * 2.0 ** -135,
        rng.standard_normal(32) * 2.0 ** 120,
        np.zeros(32),
        np.where(np.arange(32) % 2 == 0, -0.0, 0.0),
        np.full(32, -1e-30),
    ]
    # Exact ties: the block max fixes the scale at 2^0, the others sit half-way between grid
    # points of the element format (mid-points of consecutive representable magnitudes).
    grid = np.unique(np.abs(ocp_mx.dequantize(np.array([127], np.uint8),
                                              np.arange(256, dtype=np.uint8)[None, :32]
                                              if f.bits < 6 else
                                              np.arange(32, dtype=np.uint8)[None], fmt)))
    grid = grid[np.isfinite(grid)]
    top = float(2 ** f.emax)
    mids = (grid[1:] + grid[:-1]) / 2
    tie = np.concatenate([[top], mids[: 31]])
    tie = np.pad(tie, (0, 32 - len(tie)))
    rows.append(tie * np.where(rng.random(32) < 0.5, -1, 1))
    # Saturation: amax just below the next power of two rounds beyond the largest element.
    sat = rng.uniform(-1, 1, 32)
    sat[0] = np.nextafter(np.float32(2.0), np.float32(0.0))
    rows.append(sat * 2.0 ** 5)
    rows.append(np.float32(1e-45) * rng.integers(-8, 8, 32))    # float32 subnormals
    for _ in range(24):
        rows.append(rng.standard_normal(32) * np.exp2(rng.uniform(-30, 30)))
    return np.array(rows, dtype=np.float32)


def _gfloat_block(fi, vals: np.ndarray) -> list[int]:
    v = vals.astype(np.float64)
    scale = gfloat.compute_scale_amax(fi.etype.emax, v)
    return list(gfloat.encode_block(fi, scale, v / scale, gfloat.RoundMode.TiesToEven))


@pytest.mark.parametrize("fmt", sorted(ocp_mx.FORMATS))
def test_codes_match_gfloat_bit_for_bit(fmt):
    x = _stimulus(fmt)
    scale, codes = ocp_mx.quantize(x, fmt)
    assert scale.shape == (len(x), 1) and codes.shape == (len(x), 1, 32)
    for i, row in enumerate(x):
        ref = _gfloat_block(GFLOAT[fmt], row)
        got = [int(scale[i, 0])] + [int(c) for c in codes[i, 0]]
        assert got == ref, f"{fmt} block {i}: {row}"


@pytest.mark.parametrize("fmt", sorted(ocp_mx.FORMATS))
def test_dequantize_matches_gfloat_decode(fmt):
    x = _stimulus(fmt)
    scale, codes = ocp_mx.quantize(x, fmt)
    got = ocp_mx.dequantize(scale, codes, fmt)
    for i in range(len(x)):
        ref = np.array(list(gfloat.decode_block(GFLOAT[fmt], [int(scale[i, 0])] +
                                                [int(c) for c in codes[i, 0]])))
        assert np.array_equal(got[i].view(np.uint32), ref.astype(np.float32).view(np.uint32))


def test_every_element_code_decodes_like_gfloat():
    for fmt, fi in GFLOAT.items():
        n = 1 << ocp_mx.FORMATS[fmt].bits
        codes = np.arange(n, dtype=np.uint8).reshape(-1, 1, 1).repeat(32, axis=2)
        codes = codes.reshape(-1, 32)[:, None]
        got = ocp_mx.dequantize(np.full((codes.shape[0], 1), 127, np.uint8), codes, fmt)[:, 0]
        ref = np.array([gfloat.decode_float(fi.etype, c).fval for c in range(n)])
        assert np.array_equal(np.isnan(got), np.isnan(ref)), fmt
        ok = ~np.isnan(ref)
        assert np.array_equal(got[ok], ref[ok].astype(np.float32)), fmt


def test_blocks_pad_k_and_nan_blocks_get_the_nan_scale():
    x = np.ones((2, 40), np.float32)
    x[1, 35] = np.nan
    scale, codes = ocp_mx.quantize(x, "mxfp8_e4m3")
    assert scale.shape == (2, 2) and codes.shape == (2, 2, 32)
    # 1.0 -> scale 2^(0 - 8), element 256 -> E4M3 exponent 8 + 7 = 15, mantissa 0: 0x78
    assert scale[0].tolist() == [119, 119] and set(codes[0].ravel()) == {0x78, 0}
    assert scale[1].tolist() == [119, 0xFF] and not codes[1, 1].any()
    back = ocp_mx.dequantize(scale, codes, "mxfp8_e4m3", k=40)
    assert back.shape == (2, 40) and np.array_equal(back[0], x[0])
    assert np.isnan(back[1, 32:]).all()
    with pytest.raises(ValueError, match="unknown OCP MX format"):
        ocp_mx.quantize(x, "mxfp5")


def test_fake_quantize_error_shrinks_with_mantissa_bits():
    # On Gaussian blocks the error follows the mantissa: INT8 (7 fraction bits) < E4M3 ~ E2M3
    # (3 bits; E4M3 saturates more of its top binade) < E5M2 ~ E3M2 (2 bits) < E2M1 (1 bit).
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    err = {f: float(np.sqrt(np.mean((ocp_mx.fake_quantize(x, f) - x) ** 2)))
           for f in ocp_mx.FORMATS}
    three = max(err["mxfp8_e4m3"], err["mxfp6_e2m3"])
    two = min(err["mxfp8_e5m2"], err["mxfp6_e3m2"])
    assert err["mxint8"] < 0.5 * min(err["mxfp8_e4m3"], err["mxfp6_e2m3"])
    assert three < 0.7 * two and max(err["mxfp8_e5m2"], err["mxfp6_e3m2"]) < 0.7 * err["mxfp4_e2m1"]


@pytest.mark.parametrize("fmt", sorted(ocp_mx.FORMATS))
def test_fast_fake_quantize_is_dequantize_of_quantize(fmt):
    x = _stimulus(fmt)
    rng = np.random.default_rng(SEED + 1)
    wide = (rng.standard_normal((7, 3, 75)) * np.exp2(rng.integers(-40, 40, (7, 3, 75))))
    for arr in (x, wide.astype(np.float32), np.float32(2.0 ** -130) * np.ones((2, 32))):
        slow = ocp_mx.dequantize(*ocp_mx.quantize(arr, fmt), fmt, k=arr.shape[-1])
        fast = ocp_mx.fake_quantize(arr, fmt)
        assert fast.shape == arr.shape
        assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32)), fmt
