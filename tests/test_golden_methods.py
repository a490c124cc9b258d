"""golden.quality.methods: the published baselines as sampling schemes, on a tiny DiT."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from golden.quality import methods, sampling


@pytest.fixture(scope="module")
def tiny():
    """A small random DiT (non-zero adaLN so that blocks matter) and its calibration."""
    from golden.dit import DiT, DiTConfig

    torch.manual_seed(0)
    model = DiT(DiTConfig(hidden_size=64, depth=2, num_heads=4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    with threadpool_limits(1):
        cal = methods.calibrate(model, sampling.SCHEMES["vidit-q-mp-w4a8"], 4, 2.0, 3,
                                sensitivity_samples=4)
    return model, cal


def test_calibration_records_every_gemm(tiny):
    model, cal = tiny
    lins = [f"blocks.{b}.{l}" for b in range(2) for l in ("attn.qkv", "attn.proj", "mlp.fc1",
                                                            "mlp.fc2")]
    assert sorted(cal.operands.absmax) == sorted(lins)
    assert cal.operands.rows["blocks.0.mlp.fc2"].shape == (3 * methods.ROWS_PER_STEP, 256)
    assert cal.operands.rows["blocks.1.attn.pv.b"].shape == (3 * methods.ROWS_PER_STEP, 16)
    # The sensitivity table covers every linear layer; at most 2 x 3 stay at 8 bits.
    assert [r["layer"] for r in cal.sensitivity] == lins
    assert 3 <= len(cal.high) <= 6


def test_every_method_scheme_samples_near_fp32(tiny):
    model, cal = tiny
    labels, seeds = [1, 7], [0, 1]
    fp32 = sampling.sample(model, sampling.SCHEMES["fp32"], labels, seeds, None, 2.0, 3)
    rms = {}
    for key, sc in sampling.SCHEMES.items():
        if sc.kind in sampling.METHOD_KINDS:
            with threadpool_limits(1):
                x = sampling.sample(model, sc, labels, seeds, cal, 2.0, 3)
            assert np.isfinite(x).all()
            rms[key] = float(np.sqrt(np.mean((x - fp32) ** 2)))
    assert set(rms) == {"vidit-q-w8a8", "vidit-q-w6a6", "vidit-q-w4a8", "vidit-q-mp-w4a8",
                        "q-dit-w6a6", "hq-dit-w4a4"}
    assert 0 < rms["vidit-q-w8a8"] < rms["vidit-q-w6a6"] < rms["hq-dit-w4a4"]
    assert rms["vidit-q-w8a8"] < 0.02
    mp = cal.plans["ViDiT-Q-MP W4A8"]
    assert mp["high"] == sorted(cal.high)
    assert set(cal.plans["Q-DiT W6A6"]["groups"].values()) <= set(methods.q_dit.GROUP_CANDIDATES)
    titles = [t for sc in sampling.SCHEMES.values() if sc.kind in sampling.METHOD_KINDS
              for t, _, _ in methods.report(sc, cal)]
    assert len(titles) == 3


def test_method_scheme_needs_its_calibration(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="calibration"):
        sampling.QuantizedDiT(model, sampling.SCHEMES["q-dit-w6a6"], None)


def test_sensitivity_uses_the_models_own_classifier():
    """A 28x28 DiT's sensitivity analysis in its own classifier's feature space (the digits
    classifier cannot read 32x32 images: it used to fail with a shape error)."""
    from golden.dit import DiT, DiTConfig
    from golden.dit.metric import FASHION_CLASSIFIER_PATH

    torch.manual_seed(1)
    model = DiT(DiTConfig(input_size=32, patch_size=4, hidden_size=32, depth=1,
                          num_heads=2)).eval()
    with threadpool_limits(1):
        cal = methods.calibrate(model, sampling.SCHEMES["vidit-q-mp-w4a8"], 2, 2.0, 2,
                                sensitivity_samples=2, classifier=FASHION_CLASSIFIER_PATH)
    assert [r["layer"] for r in cal.sensitivity] == [
        f"blocks.0.{l}" for l in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")]
    assert all(np.isfinite(v) for r in cal.sensitivity for k, v in r.items() if k != "layer")
