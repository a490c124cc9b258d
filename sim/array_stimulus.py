"""Stimulus and reference results for the GEMM array (spec §3), shared by the harness tests,
the cocotb testbench and the benchmarks.

Operands are :class:`golden.mx.MXTensor` pairs ``A [M, G]``, ``W [N, G]`` with per-group formats
shared by all rows (spec §1.1, §4). Their fields are drawn directly, per row, with the PE
stimulus of :func:`sim.pe_stimulus.random_group_fields`, so NaN groups, overflow, underflow and
exact cancellation reach the array too. The reference is :func:`golden.gemm.mx_matmul`.
"""

import numpy as np

from golden.formats import MAX_GROUP_BITS, MX6, MX9
from golden.fp32 import to_bits
from golden.gemm import mx_matmul
from golden.mx import MXTensor

from .pe_stimulus import random_group_fields

__all__ = ["MIXES", "mix_codes", "random_matrix", "random_gemm", "expected_bits"]

#: Precision mixes (A codes, W codes) by name, as functions of Kg: MX6 x MX6; MixDiT's linear
#: layers (the last quarter of A's groups in MX9, at the end of K, spec §4); MX9 x MX9; and an
#: alternating A against MX9 W, which crosses every cycles_per_group change.
MIXES = ("mx6xmx6", "mixdit", "mx9xmx9", "alt_x_mx9")


def mix_codes(mix: str, kg: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group precision codes of A and W for ``mix`` (:data:`MIXES`) and ``kg`` groups."""
    six, nine = MX6.code, MX9.code
    if mix == "mx6xmx6":
        a, w = [six] * kg, [six] * kg
    elif mix == "mixdit":
        n9 = max(1, kg // 4)
        a, w = [six] * (kg - n9) + [nine] * n9, [six] * kg
    elif mix == "mx9xmx9":
        a, w = [nine] * kg, [nine] * kg
    elif mix == "alt_x_mx9":
        a, w = [six if g % 2 == 0 else nine for g in range(kg)], [nine] * kg
    else:
        raise ValueError(f"Unknown precision mix {mix!r}; expected one of {MIXES}")
    return np.asarray(a, np.uint8), np.asarray(w, np.uint8)


def random_matrix(rng: np.random.Generator, rows: int, codes: np.ndarray, kind: str) -> MXTensor:
    """``rows`` random rows of groups with formats ``codes`` in regime ``kind`` (see
    :data:`sim.pe_stimulus.KINDS`)."""
    parts = [random_group_fields(rng, codes, kind) for _ in range(rows)]
    stack = lambda f: np.stack([getattr(p, f) for p in parts])
    return MXTensor(stack("exp"), stack("micro"), stack("sign"), stack("mant"),
                    np.asarray(codes, np.uint8), parts[0].length)


def random_gemm(rng: np.random.Generator, m: int, kg: int, n: int, mix: str,
                kind: str = "normal") -> tuple[MXTensor, MXTensor]:
    """Random operands ``A [m, kg]``, ``W [n, kg]`` in precision mix ``mix``."""
    ca, cw = mix_codes(mix, kg)
    return random_matrix(rng, m, ca, kind), random_matrix(rng, n, cw, kind)


def expected_bits(a: MXTensor, w: MXTensor) -> np.ndarray:
    """The golden GEMM ``a @ w.T`` as FP32 bit patterns, uint32 ``[M, N]`` (spec §2.1)."""
    return to_bits(mx_matmul(a, w))


def step_words(t: MXTensor, base: int, lanes: int, k: int, words: np.ndarray) -> int:
    """One K step of the array's ``a`` or ``w`` stream: ``lanes`` tagged groups of K group ``k``
    (the format tag above each packed word, rows ``base ..``), zero words past the end."""
    tag = int(t.fmt[k])
    out = 0
    for lane in range(lanes):
        word = int(words[base + lane, k]) if base + lane < words.shape[0] else 0
        out |= ((tag << MAX_GROUP_BITS) | word) << (lane * (MAX_GROUP_BITS + 1))
    return out
