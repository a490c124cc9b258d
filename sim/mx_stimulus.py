"""Stimulus for the MX converter and the reordering controller, and their golden references.

The generators build FP32 *inputs* only (bit patterns, uint32); every expected output comes from
:mod:`golden.mx`, the reference (spec §6). The same functions feed the Amaranth-simulator unit
tests and the cocotb testbenches, so both check the same cases.
"""

from typing import Sequence

import numpy as np

from golden import mx
from golden.formats import GROUP_SIZE, MX6, MX9, format_of

__all__ = [
    "SPECIAL_BITS", "special_groups", "tie_groups", "random_groups", "calibrated_plan",
    "adversarial_order", "random_order", "pack_fields",
    "lanes_word", "golden_words", "golden_reorder",
]

#: FP32 bit patterns every converter test mixes in: zeros, subnormals, extremes, Inf and NaN.
SPECIAL_BITS = np.array([
    0x00000000, 0x80000000,                    # +0, -0
    0x00000001, 0x807FFFFF, 0x00400000,        # subnormals (flushed to zero, sign kept)
    0x00800000, 0x80800000,                    # smallest normals
    0x7F7FFFFF, 0xFF7FFFFF,                    # largest finite
    0x3F800000, 0xBF800000, 0x3FFFFFFF,        # 1, -1, just below 2
    0x7F800000, 0xFF800000,                    # +Inf, -Inf
    0x7FC00000, 0xFFC00001, 0x7F800001,        # quiet, negative and signalling NaN
], dtype=np.uint32)

_NAN_OR_INF = 0xFF


def _exp_of(bits: np.ndarray) -> np.ndarray:
    return (bits >> 23) & 0xFF


def special_groups(rng: np.random.Generator, count: int = 64) -> np.ndarray:
    """Groups ``[count, 16]`` (uint32) built from :data:`SPECIAL_BITS` and ordinary values.

    Every special value appears alone among ordinary values, in pairs, in groups made only of
    specials, and in groups that are all zero or all subnormal (``E = 0``).
    """
    ordinary = rng.integers(0x3E000000, 0x41000000, size=(count, GROUP_SIZE), dtype=np.uint32)
    ordinary |= rng.integers(0, 2, size=ordinary.shape, dtype=np.uint32) << 31
    out = ordinary.copy()
    n_spec = len(SPECIAL_BITS)
    for g in range(count):
        kind = g % 4
        if kind == 0:                                   # one special among ordinary values
            out[g, rng.integers(GROUP_SIZE)] = SPECIAL_BITS[(g // 4) % n_spec]
        elif kind == 1:                                 # a random handful of specials
            k = rng.integers(1, GROUP_SIZE + 1)
            lanes = rng.choice(GROUP_SIZE, size=k, replace=False)
            out[g, lanes] = rng.choice(SPECIAL_BITS, size=k)
        elif kind == 2:                                 # specials only, NaN/Inf excluded half the time
            pool = SPECIAL_BITS if g % 8 == 2 else SPECIAL_BITS[_exp_of(SPECIAL_BITS) != _NAN_OR_INF]
            out[g] = rng.choice(pool, size=GROUP_SIZE)
        else:                                           # all zero / subnormal: E = 0
            out[g] = rng.choice(SPECIAL_BITS[:5], size=GROUP_SIZE)
    return out


def tie_groups(rng: np.random.Generator) -> np.ndarray:
    """Groups that put every lane on a rounding boundary of MX9 or MX6 (spec §1.1).

    Lane 0 holds the largest exponent ``E``. Each other lane sits ``d`` exponents below it, with
    and without a pair partner at ``E`` (so ``mu`` is 0 or 1), and a fraction whose low bits are
    just below, exactly at, or just above one half of the last kept bit, with an even or odd kept
    part, for both magnitude widths. Groups whose largest lanes have all fraction bits set test
    saturation of round-to-nearest-even.
    """
    big = 140
    groups = []
    for m in (MX9.mant_bits, MX6.mant_bits):
        for d in range(0, 10):
            for partner_at_e in (True, False):
                for near in (-1, 0, 1):
                    e = np.full(GROUP_SIZE, big - d, dtype=np.int64)
                    e[0] = big
                    if partner_at_e:
                        e[2::2] = big                       # every pair reaches E: mu = 0
                    pair_max = e.reshape(-1, 2).max(axis=1)
                    mu = np.repeat((pair_max < big).astype(np.int64), 2)
                    sh = big - mu - e + 24 - m              # last kept bit of the significand
                    g = np.zeros(GROUP_SIZE, dtype=np.uint32)
                    for k in range(GROUP_SIZE):
                        sig = int(rng.integers(0, 1 << 24)) | (1 << 23)
                        if 1 <= sh[k] <= 24:
                            half = 1 << int(sh[k] - 1)
                            sig = (sig >> int(sh[k]) << int(sh[k])) | (half + near) % (2 * half)
                        sign = int(rng.integers(0, 2))
                        g[k] = (sign << 31) | (int(e[k]) << 23) | (sig & 0x7FFFFF)
                    groups.append(g)
    sat = np.full((4, GROUP_SIZE), (big << 23) | 0x7FFFFF, dtype=np.uint32)
    sat[1, 1::2] = ((big - 1) << 23) | 0x7FFFFF                # mu = 0 pairs with a smaller lane
    sat[2, 2:] = ((big - 1) << 23) | 0x7FFFFF                 # mu = 1 pairs of all ones
    sat[3] |= np.uint32(1 << 31)
    return np.concatenate([np.stack(groups), sat])


def random_groups(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random groups ``[count, 16]``: uniform bit patterns mixed with groups whose exponents
    cluster within a few binades (the common case), with rare specials."""
    out = rng.integers(0, 1 << 32, size=(count, GROUP_SIZE), dtype=np.uint64).astype(np.uint32)
    centre = rng.integers(1, 254, size=(count, 1))
    spread = rng.integers(0, 12, size=(count, 1))
    e = np.clip(centre - rng.integers(0, 1 << 8, size=(count, GROUP_SIZE)) % (spread + 1), 0, 254)
    clustered = rng.random(count) < 0.75
    out[clustered] = (out[clustered] & np.uint32(0x807FFFFF)) | (e[clustered].astype(np.uint32) << 23)
    spec = rng.random(out.shape) < 0.01
    out[spec] = rng.choice(SPECIAL_BITS, size=int(spec.sum()))
    return out


def lanes_word(lanes: np.ndarray, fmt: int) -> int:
    """The converter's input payload (:data:`hw.mx_convert.LaneGroup`) as an integer."""
    word = int.from_bytes(np.ascontiguousarray(lanes, dtype="<u4").tobytes(), "little")
    return word | (int(fmt) << (32 * GROUP_SIZE))


def golden_words(groups: np.ndarray, fmts: Sequence[int], rounding: str) -> list[int]:
    """The packed words (spec §1.2) golden.mx gives for each group ``[N, 16]`` (uint32) in the
    format of its code (0 MX6, 1 MX9)."""
    groups = np.ascontiguousarray(groups, dtype=np.uint32)
    x = groups.reshape(-1).view(np.float32)
    t = mx.quantize(x, [format_of(int(c)).name for c in fmts], rounding=rounding)
    return [int(w) for w in mx.pack(t)]


def golden_reorder(acts: np.ndarray, order: np.ndarray, mx9: np.ndarray,
                   rounding: str) -> list[int]:
    """The A operand the reordering controller must emit for ``acts`` ``[tokens, K]`` (float32):
    channels permuted by ``order``, group ``g`` in MX9 where ``mx9[g]``, as packed words in
    token-major, group-minor order (spec §4, §5)."""
    names = [MX9.name if f else MX6.name for f in mx9]
    t = mx.quantize(np.asarray(acts, dtype=np.float32)[:, order], names, rounding=rounding)
    return [int(w) for w in mx.pack(t).reshape(-1)]


def calibrated_plan(tokens: int, channels: int, p1: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activations with outlier channels and the table entry the golden calibration gives them
    (spec §4): ``(acts [tokens, K] float32, order [K], mx9 [K/16] bool)``. Calibration runs on
    other tokens of the same distribution, as it would offline."""
    from golden import mixdit
    from golden.synthetic import outlier_activations

    calib, _ = outlier_activations(tokens=4 * tokens, channels=channels, seed=seed)
    acts = outlier_activations(tokens=tokens, channels=channels, seed=seed)[0]
    plan = mixdit.plan_linear(calib, p1)
    mx9 = np.array([f == MX9.name for f in plan.a_formats], dtype=bool)
    return acts, np.asarray(plan.perm, dtype=np.int64), mx9


def adversarial_order(channels: int, banks: int) -> np.ndarray:
    """A permutation whose every group of 16 draws its channels from as few banks as possible
    (all 16 from one bank when ``channels >= 16 * banks``): the read schedule's worst case."""
    by_bank = [np.arange(b, channels, banks) for b in range(banks)]
    return np.concatenate(by_bank).astype(np.int64)


def random_order(rng: np.random.Generator, channels: int) -> np.ndarray:
    """A uniformly random permutation of ``channels``."""
    return rng.permutation(channels).astype(np.int64)


def pack_fields(layout, **fields) -> int:
    """An integer holding ``fields`` at their places in the Amaranth ``layout`` (a struct whose
    fields are integers, lists for array fields, or dicts for nested structs)."""
    from amaranth.lib import data

    def put(shape, value) -> int:
        if isinstance(shape, data.ArrayLayout):
            size = shape.elem_shape.size if isinstance(shape.elem_shape, data.Layout) \
                else shape.elem_shape.width
            return sum(put(shape.elem_shape, v) << (k * size) for k, v in enumerate(value))
        if isinstance(shape, data.StructLayout):
            return sum(put(shape[name].shape, v) << shape[name].offset
                       for name, v in value.items())
        width = shape.width if hasattr(shape, "width") else shape.size
        v = int(value)
        if not 0 <= v < (1 << width):
            raise ValueError(f"Value {v} does not fit in {width} bits")
        return v

    return put(layout, fields)
