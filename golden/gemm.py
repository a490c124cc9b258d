"""The PE's arithmetic: MX group dot products and the MX GEMM (spec §2.1, §1.3).

For one pair of groups the PE forms an exact integer

    S = sum_i (-1)^(s_a,i xor s_b,i) * q_a,i * q_b,i * 2^(2 - mu_a,i//2 - mu_b,i//2)

converts ``P = S * 2^(Ea + Eb - 254 - (ma - 1) - (mb - 1) - 2)`` to FP32 and adds it into an FP32
accumulator, groups in increasing K order. |S| <= 16 * 127 * 127 * 4 < 2^21, so S is exact in
float32 whatever the summation order, and a BLAS float32 matmul per group computes every S of a
GEMM exactly; :func:`golden.fp32.scale_exact` and :func:`golden.fp32.fp32_add` then do the one
rounding per group and the one FP32 add per group of the hardware.
"""

import numpy as np

from .formats import EXP_BIAS, SUBGROUP_SIZE
from .fp32 import CANONICAL_NAN, fp32_add, scale_exact
from .mx import MXTensor

__all__ = ["signed_operand", "group_sums", "group_exponents", "mx_matmul", "mx_dot"]


def signed_operand(t: MXTensor) -> np.ndarray:
    """Each element as the signed integer ``(-1)^s * q * 2^(1 - mu)``, float32 ``[..., G, 16]``.

    The product of an A and a B operand is then ``(-1)^(sa xor sb) qa qb 2^(2 - mua - mub)``,
    one term of S (spec §2.1). Magnitudes are at most 254, exact in float32.
    """
    mu = np.repeat(t.micro, SUBGROUP_SIZE, axis=-1).astype(np.float32)
    mag = t.mant.astype(np.float32) * (2.0 - mu)
    return np.where(t.sign.astype(bool), -mag, mag).astype(np.float32)


def group_exponents(a: MXTensor, w: MXTensor, g: int) -> np.ndarray:
    """Power of two of group ``g``'s product, ``Ea + Eb - 254 - (ma-1) - (mb-1) - 2``, int32
    ``[M, N]`` (spec §2.1)."""
    ma = int(a.mant_bits[g])
    mb = int(w.mant_bits[g])
    return (a.exp[:, g].astype(np.int32)[:, None] + w.exp[:, g].astype(np.int32)[None, :]
            - 2 * EXP_BIAS - (ma - 1) - (mb - 1) - 2)


def _check_operands(a: MXTensor, w: MXTensor) -> None:
    if a.exp.ndim != 2 or w.exp.ndim != 2:
        raise ValueError(f"mx_matmul needs 2-D operands [M, G] and [N, G], got {a.shape} and "
                         f"{w.shape}")
    if a.groups != w.groups:
        raise ValueError(f"K groups differ: A has {a.groups}, W has {w.groups}")


def group_sums(a: MXTensor, w: MXTensor) -> np.ndarray:
    """Every exact integer group sum S, float32 ``[G, M, N]`` (spec §2.1).

    Meant for tests and small GEMMs; :func:`mx_matmul` never holds all groups at once.
    """
    _check_operands(a, w)
    sa = signed_operand(a)
    sw = signed_operand(w)
    return np.einsum("mgi,ngi->gmn", sa, sw).astype(np.float32)


def mx_matmul(a: MXTensor, w: MXTensor) -> np.ndarray:
    """The MX GEMM ``a @ w.T`` as the accelerator computes it, bit for bit (spec §2.1, §1.3).

    Parameters
    ----------
    a : MXTensor, shape ``[M, G]``
        Activations, one row per token (any per-group formats).
    w : MXTensor, shape ``[N, G]``
        Weights in the torch ``Linear.weight`` layout (one row per output channel).

    Returns
    -------
    numpy.ndarray of float32, shape ``[M, N]``
        Each element starts at +0.0 and receives one FP32 add per group in increasing K order.
        A NaN group on either side makes that group's product NaN (hence the result NaN, which is
        canonical ``0x7FC00000``).

    Raises
    ------
    ValueError
        If the operands are not 2-D or their group counts differ.
    """
    _check_operands(a, w)
    sa = np.ascontiguousarray(np.moveaxis(signed_operand(a), 1, 0))   # [G, M, 16]
    sw = np.ascontiguousarray(np.moveaxis(signed_operand(w), 1, 0))   # [G, N, 16]
    nan_a = a.nan_groups
    nan_w = w.nan_groups
    acc = np.zeros((a.shape[0], w.shape[0]), dtype=np.float32)
    for g in range(a.groups):
        # Exact: every partial sum is an integer below 2^21 < 2^24 (spec §2.1).
        s = sa[g] @ sw[g].T
        p = scale_exact(s, group_exponents(a, w, g))
        if nan_a[:, g].any() or nan_w[:, g].any():
            p[nan_a[:, g][:, None] | nan_w[:, g][None, :]] = CANONICAL_NAN.view(np.float32)
        acc = fp32_add(acc, p)
    return acc


def mx_dot(a: MXTensor, w: MXTensor) -> np.float32:
    """One dot product of two 1-D MX tensors (``[G]`` each): what one PE computes."""
    if a.exp.ndim != 1 or w.exp.ndim != 1:
        raise ValueError(f"mx_dot needs 1-D operands, got {a.shape} and {w.shape}")
    lift = lambda t: MXTensor(t.exp[None], t.micro[None], t.sign[None], t.mant[None], t.fmt,
                              t.length)
    return mx_matmul(lift(a), lift(w))[0, 0]
