"""Quantized DiT sampling (golden/sampling.py), ``mixdit evaluate`` and ``mixdit tune``, small.

The fake-quant emulation (dequantize + float32 matmul) used by default is checked against the
bit-exact golden GEMM to within FP32 accumulation-order error; the batched bit-exact GEMM against
golden.gemm.mx_matmul slice by slice.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from golden import gemm, mx
from golden.quality import sampling
from golden.synthetic import outlier_activations


def mixdit(*args):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True,
                          text=True)


@pytest.mark.parametrize("fmt", ["mx6", "mx9"])
def test_batched_gemm_is_mx_matmul_per_slice(fmt):
    rng = np.random.default_rng(3)
    a = (rng.standard_normal((2, 3, 5, 40)) * np.exp(rng.standard_normal((2, 3, 5, 40)))
         ).astype(np.float32)
    b = rng.standard_normal((2, 3, 7, 40)).astype(np.float32)
    qa, qb = mx.quantize(a, fmt), mx.quantize(b, fmt)
    got = sampling.mx_matmul_batched(qa, qb)
    for i in range(2):
        for j in range(3):
            ref = gemm.mx_matmul(qa[i, j], qb[i, j])
            assert np.array_equal(got[i, j].view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("m,k,n,p1", [(64, 128, 384, 0.05), (48, 512, 128, 0.2),
                                      (32, 1152, 96, 0.0)])
def test_fake_quant_agrees_with_bit_exact_gemm(m, k, n, p1):
    # Both multiply the same MX values; only the FP32 accumulation order differs, so the gap is
    # within a few ulps of the sum of |products| per output (K rounding steps at most).
    x, _ = outlier_activations(m, k, seed=m)
    w = (np.random.default_rng(k).standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    from golden.mixdit import plan_linear, quantize_linear

    a, wq = quantize_linear(x, w, plan_linear(x, p1))
    exact = gemm.mx_matmul(a, wq)
    fake = a.dequantize() @ wq.dequantize().T
    bound = (np.abs(a.dequantize()).astype(np.float64) @ np.abs(wq.dequantize()).T.astype(
        np.float64)) * (k / 16 + k) * 2.0 ** -24
    assert np.all(np.abs(exact.astype(np.float64) - fake) <= bound + 1e-30)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small random DiT (non-zero adaLN so blocks matter), saved as a checkpoint."""
    from golden.dit import DiT, DiTConfig, save_model

    torch.manual_seed(0)
    model = DiT(DiTConfig(hidden_size=64, depth=2, num_heads=4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_model(model, path)
    return model, path


def test_exact_and_fake_sampling_agree(tiny):
    model, _ = tiny
    labels, seeds = [1, 7], [0, 1]
    cal = sampling.calibrate(model, labels, [9, 10], 2.0, 3)
    sc = sampling.mixdit_scheme(0.25, 0.5)
    fake = sampling.sample(model, sc, labels, seeds, cal, 2.0, 3, emulation="fake")
    exact = sampling.sample(model, sc, labels, seeds, cal, 2.0, 3, emulation="exact")
    fp32 = sampling.sample(model, sampling.SCHEMES["fp32"], labels, seeds, None, 2.0, 3)
    assert np.abs(fake - exact).max() < 1e-3
    assert np.abs(fake - fp32).max() > 1e-3      # the quantization itself is visible


def test_quantization_error_orders_schemes(tiny):
    model, _ = tiny
    labels, seeds = list(range(10)), list(range(10))
    ref = sampling.sample(model, sampling.SCHEMES["fp32"], labels, seeds, None, 2.0, 3)
    err = {k: np.sqrt(np.mean((sampling.sample(model, sampling.SCHEMES[k], labels, seeds, None,
                                              2.0, 3) - ref) ** 2))
           for k in ("mx9", "mx6", "int8", "fp4", "mxfp8_e4m3", "mxfp4_e2m1")}
    assert err["mx9"] < err["mx6"] and err["int8"] < err["fp4"]
    assert err["mxfp8_e4m3"] < err["mxfp4_e2m1"]


def test_mixdit_needs_calibration(tiny):
    with pytest.raises(ValueError, match="calibration"):
        sampling.QuantizedDiT(tiny[0], sampling.mixdit_scheme(0.1, 0.2))


def test_cli_evaluate_and_tune_on_a_tiny_checkpoint(tiny, tmp_path):
    _, ckpt = tiny
    common = ["--checkpoint", str(ckpt), "--samples", "10", "--steps", "2", "--calib-samples",
              "4", "--cache-dir", str(tmp_path / "cache")]
    res = mixdit("tune", *common, "--out-dir", str(tmp_path / "tune"), "--plot-dir",
                 str(tmp_path))
    assert res.returncode == 0, res.stderr
    chosen = json.loads((tmp_path / "tune" / "digits" / "chosen.json").read_text())
    assert len(chosen["points"]) == 21 and chosen["metric"] == "fd_vs_fp32"
    best = min(chosen["points"], key=lambda q: q["fd_vs_fp32"] * q["latency_s"] ** 0.15)
    assert (chosen["p1"], chosen["p2"]) == (best["p1"], best["p2"])
    tables = np.load(tmp_path / "tune" / "digits" / "tables.npz")
    assert "blocks.0.attn.qkv/s0/perm" in tables.files
    assert (tmp_path / "fig8_tradeoff_digits.png").stat().st_size > 10_000
    res = mixdit("evaluate", *common, "--tune-dir", str(tmp_path / "tune"), "--table-i",
                 "--json", str(tmp_path / "q.json"))
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "q.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    rows = json.loads(text)
    assert {r["scheme"] for r in rows} >= {
        "FP32", "MX6 / MX6", "INT6 / INT6 (Q-DiT, ViDiT-Q style)", "MX9 W / MX6 A",
        "MXFP8 E4M3 (OCP)", "MXINT8 (OCP)", "FP4 E2M1 (HQ-DiT style)",
        f"MixDiT ({chosen['p1']:.0%}, {chosen['p2']:.0%})"}
    from sim.commands.evaluate import JSON_FIELDS

    assert all(set(JSON_FIELDS) <= set(r) and r["model"] == "digits" for r in rows)
    fp32 = rows[0]
    # the FP32 row is its own twin: infinite PSNR (null), SSIM 1, FD 0, full agreement
    assert fp32["scheme"] == "FP32" and fp32["psnr_db"] is None and fp32["ssim"] == 1.0
    assert abs(fp32["fd_vs_fp32"]) < 1e-9 and fp32["label_agreement"] == 1.0
    mx6 = next(r for r in rows if r["key"] == "mx6")
    mx9 = next(r for r in rows if r["key"] == "mx9")
    assert 0 < mx9["fd_vs_fp32"] < mx6["fd_vs_fp32"] and mx9["psnr_db"] > mx6["psnr_db"]
    assert "10 samples per scheme" in res.stdout


def test_cli_evaluate_without_checkpoint(tmp_path):
    res = mixdit("evaluate", "--checkpoint", str(tmp_path / "none.safetensors"))
    assert res.returncode == 2 and "cannot load the DiT" in res.stderr


def test_cli_evaluate_rejects_a_model_of_other_images(tiny, tmp_path):
    res = mixdit("evaluate", "--model", "fashion", "--checkpoint", str(tiny[1]), "--cache-dir",
                 str(tmp_path), "--classifier", str(tmp_path / "none.safetensors"))
    assert res.returncode == 2 and "cannot load the classifier" in res.stderr
    res = mixdit("evaluate", "--schemes", "mx6,nope", "--checkpoint", str(tiny[1]),
                 "--cache-dir", str(tmp_path))
    assert res.returncode == 2 and "unknown scheme 'nope'" in res.stderr


def test_register_scheme_adds_a_row_and_refuses_clashes():
    from golden.quality.baselines import int_activation, int_weight

    fq = sampling.FakeQuant(lambda w: int_weight(w, 4), lambda x: int_activation(x, 4))
    sc = sampling.Scheme("INT4 test", "fake", quant="int4-test")
    try:
        sampling.register_scheme("int4-test", sc, fq)
        assert sampling.evaluate_keys()[-1] == "int4-test"
        assert sampling.QUANTIZERS["int4-test"] is fq
        with pytest.raises(ValueError, match="taken"):
            sampling.register_scheme("int4-test", sampling.Scheme("other", "fake", quant="int8"))
        with pytest.raises(ValueError, match="no registered quantizer"):
            sampling.register_scheme("x", sampling.Scheme("x", "fake", quant="nope"))
    finally:
        sampling.SCHEMES.pop("int4-test", None)
        sampling.QUANTIZERS.pop("int4-test", None)
    keys = sampling.evaluate_keys()
    assert keys[:6] == ["fp32", "mx9", "mx9w-mx6a", "mx6w-mx9a", "mx6", "mixdit"]


def test_fidelity_figures_on_known_images():
    from golden.dit.metric import DigitClassifier
    from golden.quality import fidelity

    rng = np.random.default_rng(5)
    ref = rng.uniform(-1, 1, (6, 1, 8, 8))
    noisy = np.clip(ref + rng.normal(0, 0.1, ref.shape), -1, 1)
    psnr = fidelity.psnr_per_image(noisy, ref)
    mse = np.mean((noisy - ref) ** 2, axis=(1, 2, 3))
    assert np.allclose(psnr, 10 * np.log10(4.0 / mse))      # data range 2
    assert fidelity.psnr_per_image(ref, ref).tolist() == [np.inf] * 6
    assert np.allclose(fidelity.ssim_per_image(ref, ref), 1.0)
    assert np.all(fidelity.ssim_per_image(noisy, ref) < 1.0)
    torch.manual_seed(0)
    judge = fidelity.Judge(DigitClassifier().eval(), rng.uniform(-1, 1, (20, 1, 8, 8)))
    f = judge.score(noisy, [0] * 6, ref)
    assert f.psnr_worst_db == pytest.approx(psnr.min()) and f.psnr_db == pytest.approx(psnr.mean())
    assert f.fd_vs_fp32 > 0 and 0 <= f.label_agreement <= 1
    assert fidelity.json_safe({"a": [np.inf, 1.0, float("nan")]}) == {"a": [None, 1.0, None]}
