"""golden.quality.baselines: INT-n and FP4 E2M1 quantizers."""

import numpy as np
import pytest

from golden.quality import baselines


def test_int_per_channel_grid_and_range():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 64)).astype(np.float32) * np.arange(1, 9)[:, None]
    for bits in (4, 6, 8):
        q = baselines.int_weight(w, bits)
        qmax = 2 ** (bits - 1) - 1
        scale = np.abs(w).max(axis=1, keepdims=True) / qmax
        steps = q / scale
        assert np.allclose(steps, np.rint(steps), atol=1e-3)   # on the grid (float scales)
        assert np.abs(steps).max() <= qmax + 1e-3
        assert (np.abs(q - w) <= scale / 2 + 1e-6).all()


def test_int_activation_is_per_token():
    x = np.zeros((2, 16), np.float32)
    x[0, 0], x[1, 0] = 100.0, 1.0
    x[1, 1] = 0.5
    q = baselines.int_activation(x, 8)
    assert q[1, 1] == pytest.approx(0.5, abs=1 / 127)   # token 1 keeps its own small scale


def test_fp4_grid_ties_and_sign():
    x = np.array([6.0, -3.1, -2.5, 0.25, 0.75, 1.25, 5.0, 0.1, -0.0], np.float32)
    # max|x| = 6 -> scale 1: nearest E2M1 values, ties to the even encoding.
    assert baselines.fp4_e2m1(x).tolist() == [6.0, -3.0, -2.0, 0.0, 1.0, 1.0, 4.0, 0.0, 0.0]


def test_bad_bits():
    with pytest.raises(ValueError, match="bit width"):
        baselines.int_weight(np.ones((2, 2), np.float32), 1)
