"""The array's RTL through the file-driven harness (sim/harness): bit-exact against
golden.gemm.mx_matmul, cycles equal to hw.cycles.gemm_cycles, Verilator and Icarus agree
(spec §3, §6).

Quick cases run a 4 x 4 array under Icarus (one compile, seconds per GEMM); one moderate GEMM and
the agreement check run the default 16 x 16 array under Verilator and Icarus (marked slow: the
16 x 16 Verilator build, cached under build/harness/, compiles 268 C++ files and its time on a
2-core machine is not yet measured).
"""

import zlib
from dataclasses import replace

import numpy as np
import pytest

from golden import mx
from hw.config import ArrayConfig
from hw.cycles import gemm_cycles
from sim.array_stimulus import MIXES, expected_bits, mix_codes, random_gemm
from sim.harness import SimulatorMissing, run_gemm, simulator_missing

SMALL = replace(ArrayConfig(), rows=4, cols=4)
WIDE = replace(ArrayConfig(), rows=8, cols=16)


def _need(sim: str) -> None:
    reason = simulator_missing(sim)
    if reason:
        pytest.skip(reason)


def _check(a, w, config, sim, **kw):
    res = run_gemm(a, w, config, sim=sim, **kw)
    np.testing.assert_array_equal(res.c.view(np.uint32), expected_bits(a, w))
    return res


def _formats(codes):
    return ["mx9" if c else "mx6" for c in codes]


# (M, Kg, N): tile multiples, edges on either side, one group, tiles shorter than their drain,
# and K up to 1152 (72 groups).
SHAPES = [(4, 4, 4), (7, 5, 9), (9, 1, 10), (5, 2, 13), (3, 72, 2), (12, 3, 8)]


@pytest.mark.parametrize("mix", MIXES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_icarus_small_array(shape, mix):
    """Every shape and precision mix: bit-exact and exactly gemm_cycles."""
    _need("icarus")
    m, kg, n = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, mix)).encode()))
    a, w = random_gemm(rng, m, kg, n, mix)
    res = _check(a, w, SMALL, "icarus")
    ca, cw = mix_codes(mix, kg)
    assert res.cycles == gemm_cycles(m, 16 * kg, n, _formats(ca), _formats(cw), SMALL)


@pytest.mark.parametrize("kind", ["wide", "huge", "tiny", "nan", "cancel"])
def test_icarus_special_values(kind):
    """Overflow, underflow, NaN groups and exact cancellation through the whole array."""
    _need("icarus")
    rng = np.random.default_rng(len(kind))
    a, w = random_gemm(rng, 6, 6, 7, "mixdit", kind)
    _check(a, w, SMALL, "icarus")


def test_icarus_gaps_and_stalls():
    """Random input gaps and output stalls delay the GEMM, never change a bit."""
    _need("icarus")
    rng = np.random.default_rng(7)
    a, w = random_gemm(rng, 9, 2, 11, "alt_x_mx9")
    res = _check(a, w, SMALL, "icarus", gap=30, stall=60, seed=3)
    assert res.cycles > gemm_cycles(9, 32, 11, _formats(a.fmt), _formats(w.fmt), SMALL)


def test_icarus_8x16():
    """A non-square array."""
    _need("icarus")
    rng = np.random.default_rng(8)
    a, w = random_gemm(rng, 11, 3, 20, "mixdit")
    res = _check(a, w, WIDE, "icarus")
    assert res.cycles == gemm_cycles(11, 48, 20, _formats(a.fmt), _formats(w.fmt), WIDE)


@pytest.mark.slow
def test_verilator_16x16_and_icarus_agree():
    """The default array under Verilator: a moderate MixDiT GEMM (K = 1152, edge tiles on both
    sides) bit-exact and on the formula; a small one bit-identical under both simulators."""
    _need("verilator")
    _need("icarus")
    rng = np.random.default_rng(16)
    x = rng.standard_normal((20, 1152)).astype(np.float32)
    y = rng.standard_normal((35, 1152)).astype(np.float32)
    fmts = ["mx6"] * 68 + ["mx9"] * 4
    a, w = mx.quantize(x, fmts), mx.quantize(y, "mx6")
    res = _check(a, w, ArrayConfig(), "verilator")
    assert res.cycles == gemm_cycles(20, 1152, 35, fmts, "mx6")
    a, w = random_gemm(rng, 18, 2, 17, "mixdit", "wide")
    ver = _check(a, w, ArrayConfig(), "verilator")
    ica = _check(a, w, ArrayConfig(), "icarus")
    np.testing.assert_array_equal(ver.c.view(np.uint32), ica.c.view(np.uint32))
    assert ver.cycles == ica.cycles


def test_bad_requests():
    rng = np.random.default_rng(0)
    a, w = random_gemm(rng, 2, 2, 2, "mx6xmx6")
    with pytest.raises(SimulatorMissing, match="unknown simulator"):
        run_gemm(a, w, SMALL, sim="modelsim")
    a3, _ = random_gemm(rng, 2, 3, 2, "mx6xmx6")
    with pytest.raises(ValueError, match="K groups differ"):
        run_gemm(a3, w, SMALL, sim="icarus")
    with pytest.raises(ValueError, match="gap"):
        run_gemm(a, w, SMALL, sim="icarus", gap=95)
