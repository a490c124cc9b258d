"""The OCP Microscaling (MX) formats of GPUs, as accuracy-only baselines (not the accelerator's).

The OCP Microscaling Formats (MX) Specification v1.0 (Open Compute Project, 2023) defines blocks
of 32 elements that share one E8M0 scale ``X = 2^(s - 127)``. The element formats:

==============  ========  ============================  ==========  ==========================
name            bits      element                        emax_elem   largest magnitude
==============  ========  ============================  ==========  ==========================
``mxfp8_e4m3``  8         FP8 E4M3, bias 7, no inf       8           448 (S.1111.111 is NaN)
``mxfp8_e5m2``  8         FP8 E5M2, bias 15, IEEE-like   15          57344
``mxfp6_e2m3``  6         FP6 E2M3, bias 1               2           7.5
``mxfp6_e3m2``  6         FP6 E3M2, bias 3               4           28
``mxfp4_e2m1``  4         FP4 E2M1, bias 1               2           6
``mxint8``      8         two's complement, 2^-6 units   0           1.984375 (and -2)
==============  ========  ============================  ==========  ==========================

These are *not* the accelerator's MX6/MX9 (:mod:`golden.mx`, spec §1.1, whose blocks of 16 share
an 8-bit exponent and pairs a 1-bit micro-exponent, with truncation); they are what a
Blackwell-class GPU multiplies, so that ``mixdit evaluate`` can set MixDiT's mix beside them.

Scale and rounding rule (the conversion from FP32 of the OCP MX v1.0 specification, its section 6.3): with ``amax = max |V_i|``
over the block,

- ``X = 2^(floor(log2(amax)) - emax_elem)``, its exponent clamped to E8M0's ``[-127, 127]``; an
  all-zero block gets the smallest scale ``2^-127`` (code 0);
- each element ``V_i / X`` is rounded to the nearest value of the element format, ties to even,
  and magnitudes beyond its largest finite value are clamped to it (saturation, as the
  conversion of that section 6.3 clamps normal numbers);
- a block holding a NaN or an infinity gets the NaN scale (code 0xFF) and zero elements.

gfloat (Graphcore's ``gfloat`` package, pinned in the dev extras) implements the same rule in its
``compute_scale_amax`` and ``encode_block(..., RoundMode.TiesToEven)`` with saturation;
``tests/test_quality_ocp_mx.py`` checks every scale and element code against it bit for bit.
Negative values that round to zero keep their sign bit in the FP formats (``-0``), as gfloat
does.

Codes: FP elements are ``sign | exponent | mantissa`` in the low ``bits`` of a ``uint8``; MXINT8
elements are the two's-complement byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BLOCK", "ElementFormat", "FORMATS", "quantize", "dequantize", "fake_quantize"]

#: Elements per block, every format.
BLOCK = 32
_SCALE_BIAS = 127
_SCALE_NAN = 0xFF


@dataclass(frozen=True)
class ElementFormat:
    """One element format of an MX block.

    Attributes
    ----------
    name : str
    ebits, mbits : int
        Exponent and mantissa bits of an FP element (0 and 7 for the integer format).
    bias : int
        Exponent bias (FP only).
    max_value : float
        Largest finite magnitude, to which larger ones saturate.
    emax : int
        ``floor(log2(max_value))``, the ``emax_elem`` of the scale rule.
    is_int : bool
        Two's-complement integer elements in units of ``2^-6`` (MXINT8).
    """

    name: str
    ebits: int
    mbits: int
    bias: int
    max_value: float
    emax: int
    is_int: bool = False

    @property
    def bits(self) -> int:
        """Bits per element."""
        return 8 if self.is_int else 1 + self.ebits + self.mbits


FORMATS: dict[str, ElementFormat] = {
    "mxfp8_e4m3": ElementFormat("mxfp8_e4m3", 4, 3, 7, 448.0, 8),
    "mxfp8_e5m2": ElementFormat("mxfp8_e5m2", 5, 2, 15, 57344.0, 15),
    "mxfp6_e2m3": ElementFormat("mxfp6_e2m3", 2, 3, 1, 7.5, 2),
    "mxfp6_e3m2": ElementFormat("mxfp6_e3m2", 3, 2, 3, 28.0, 4),
    "mxfp4_e2m1": ElementFormat("mxfp4_e2m1", 2, 1, 1, 6.0, 2),
    "mxint8": ElementFormat("mxint8", 0, 7, 0, 127 / 64, 0, is_int=True),
}


def _format(fmt: "str | ElementFormat") -> ElementFormat:
    if isinstance(fmt, ElementFormat):
        return fmt
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown OCP MX format {fmt!r}; one of {sorted(FORMATS)}") from None


def _blocks(x: np.ndarray) -> np.ndarray:
    """``[..., K]`` float32 to ``[..., G, 32]`` float64, zero-padded at the end of K."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 0:
        raise ValueError("quantize needs at least one axis (the blocked one)")
    pad = (-x.shape[-1]) % BLOCK
    if pad:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), np.float32)], axis=-1)
    return x.astype(np.float64).reshape(x.shape[:-1] + (x.shape[-1] // BLOCK, BLOCK))


def _encode_fp(v: np.ndarray, f: ElementFormat) -> np.ndarray:
    """Round scaled values ``v`` (float64) to the FP element format and encode them."""
    sign = np.signbit(v)
    mag = np.abs(v)
    emin = 1 - f.bias                       # exponent of the smallest normal (and of subnormals)
    with np.errstate(divide="ignore"):
        _, e = np.frexp(mag)                # mag = m 2^e, m in [0.5, 1): floor(log2) = e - 1
    exp = np.maximum(e - 1, emin)
    quantum = np.ldexp(1.0, exp - f.mbits)
    q = np.minimum(np.rint(mag / quantum) * quantum, f.max_value)   # ties to even, saturate
    _, e2 = np.frexp(q)
    normal = q >= np.ldexp(1.0, emin)
    e_q = np.where(normal, e2 - 1, emin)
    exp_field = np.where(normal, e_q + f.bias, 0)
    mant = q / np.ldexp(1.0, e_q - f.mbits) - np.where(normal, 2 ** f.mbits, 0)
    code = (sign.astype(np.int64) << (f.ebits + f.mbits)) | (exp_field.astype(np.int64) << f.mbits)
    return (code | mant.astype(np.int64)).astype(np.uint8)


def _decode_fp(codes: np.ndarray, f: ElementFormat) -> np.ndarray:
    c = codes.astype(np.int64)
    sign = (c >> (f.ebits + f.mbits)) & 1
    exp_field = (c >> f.mbits) & ((1 << f.ebits) - 1)
    mant = c & ((1 << f.mbits) - 1)
    normal = exp_field > 0
    e = np.where(normal, exp_field - f.bias, 1 - f.bias)
    sig = np.where(normal, mant + 2 ** f.mbits, mant)
    val = np.ldexp(sig.astype(np.float64), e - f.mbits)
    if f.name == "mxfp8_e4m3":
        val = np.where((exp_field == 15) & (mant == 7), np.nan, val)
    elif f.name == "mxfp8_e5m2":
        val = np.where(exp_field == 31, np.where(mant == 0, np.inf, np.nan), val)
    return np.where(sign == 1, -val, val)


def quantize(x: np.ndarray, fmt: "str | ElementFormat") -> tuple[np.ndarray, np.ndarray]:
    """Quantize ``x [..., K]`` to an OCP MX format in blocks of 32 along the last axis.

    ``K`` is padded with zeros to a multiple of 32 (the padding takes part in no scale: zeros
    never raise ``amax``).

    Returns
    -------
    scale : uint8 ``[..., G]``
        E8M0 codes (``X = 2^(code - 127)``; 0xFF is NaN), ``G = ceil(K / 32)``.
    codes : uint8 ``[..., G, 32]``
        Element codes.
    """
    f = _format(fmt)
    v = _blocks(x)
    finite = np.isfinite(v).all(axis=-1)
    vz = np.where(np.isfinite(v), v, 0.0)
    amax = np.abs(vz).max(axis=-1)
    _, e = np.frexp(amax)
    scale_exp = np.where(amax > 0, e - 1 - f.emax, -_SCALE_BIAS)
    scale_exp = np.clip(scale_exp, -_SCALE_BIAS, _SCALE_BIAS)
    scaled = vz / np.ldexp(1.0, scale_exp)[..., None]
    if f.is_int:
        q = np.clip(np.rint(scaled * 64.0), -128, 127).astype(np.int64)
        codes = (q & 0xFF).astype(np.uint8)
    else:
        codes = _encode_fp(scaled, f)
    codes = np.where(finite[..., None], codes, np.uint8(0))
    scale = np.where(finite, scale_exp + _SCALE_BIAS, _SCALE_NAN).astype(np.uint8)
    return scale, codes


def dequantize(scale: np.ndarray, codes: np.ndarray, fmt: "str | ElementFormat",
               k: "int | None" = None) -> np.ndarray:
    """The values ``X * element`` of MX blocks, float32 ``[..., G * 32]`` (or the first ``k``).

    Exact: every product is representable in float32 for scales a finite input can produce.
    """
    f = _format(fmt)
    scale = np.asarray(scale, dtype=np.uint8)
    codes = np.asarray(codes, dtype=np.uint8)
    if codes.shape != scale.shape + (BLOCK,):
        raise ValueError(f"codes {codes.shape} do not match scales {scale.shape} + ({BLOCK},)")
    if f.is_int:
        elem = codes.astype(np.int8).astype(np.float64) / 64.0
    else:
        elem = _decode_fp(codes, f)
    s = scale.astype(np.int64)
    x = np.where(s == _SCALE_NAN, np.nan, np.ldexp(1.0, s - _SCALE_BIAS))
    out = (elem * x[..., None]).astype(np.float32)
    out = out.reshape(scale.shape[:-1] + (scale.shape[-1] * BLOCK,))
    return out if k is None else out[..., :k]


def fake_quantize(x: np.ndarray, fmt: "str | ElementFormat") -> np.ndarray:
    """``dequantize(quantize(x))``: ``x`` as the MX format represents it, float32, same shape.

    Computed directly in float32 for speed (sampling a DiT calls it on every GEMM operand):
    exponents are read from the float32 bit patterns and every step is exact (power-of-two
    scalings, ``rint`` to nearest even), so the result equals ``dequantize(quantize(x))`` bit for
    bit (``tests/test_quality_ocp_mx.py``); blocks whose largest magnitude is a float32
    subnormal, and blocks with NaN or infinity, take that slower path.
    """
    f = _format(fmt)
    x = np.asarray(x, dtype=np.float32)
    k = x.shape[-1]
    pad = (-k) % BLOCK
    xp = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), np.float32)], axis=-1) if pad else x
    v = xp.reshape(xp.shape[:-1] + (xp.shape[-1] // BLOCK, BLOCK))
    amax = np.abs(v).max(axis=-1)
    if not (np.isfinite(amax).all() and ((amax == 0) | (amax >= np.float32(2.0 ** -126))).all()):
        return dequantize(*quantize(x, f), f, k=k)
    e_amax = ((amax.view(np.uint32) >> 23).astype(np.int32) - 127)
    scale_exp = np.clip(np.where(amax > 0, e_amax - f.emax, -_SCALE_BIAS), -_SCALE_BIAS,
                        _SCALE_BIAS)
    # 2^scale_exp and its inverse as float64 (2^-127 is below float32's normal range).
    scale = np.ldexp(1.0, scale_exp)[..., None]
    scaled = (v.astype(np.float64) / scale).astype(np.float32)   # exact: power-of-two division
    if f.is_int:
        # + 0 turns -0 into +0: a two's-complement element has no negative zero.
        q = np.clip(np.rint(scaled * np.float32(64.0)), -128, 127) / np.float32(64.0) + 0.0
    else:
        mag = np.abs(scaled)
        e = (mag.view(np.uint32) >> 23).astype(np.int32) - 127
        emin = 1 - f.bias
        quantum_exp = np.maximum(e, emin) - f.mbits
        quantum = ((quantum_exp + 127).astype(np.uint32) << 23).view(np.float32)
        q = np.minimum(np.rint(mag / quantum) * quantum, np.float32(f.max_value))
        q = np.copysign(q, scaled)
    out = (q.astype(np.float64) * scale).astype(np.float32)
    out = out.reshape(xp.shape)
    return out[..., :k] if pad else out
