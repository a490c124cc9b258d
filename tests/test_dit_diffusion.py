"""Tests of golden/dit/diffusion.py and golden/dit/metric.py, and of the shipped model's quality."""

import numpy as np
import pytest
import torch

from golden.dit.checkpoint import CHECKPOINT_PATH, checkpoint_metadata, load_model
from golden.dit.data import load_digits_split
from golden.dit.diffusion import Schedule, ddim_sample, ddim_timesteps, initial_noise
from golden.dit.metric import accuracy, features, frechet_distance, load_classifier
from golden.dit.model import DiT, DiTConfig

TINY = DiTConfig(input_size=4, patch_size=2, in_channels=1, hidden_size=32, depth=1, num_heads=2,
                 num_classes=3)


def test_ddim25_visits_dits_respaced_timesteps():
    # DiT's space_timesteps(1000, "ddim25"): stride 40 from 0
    assert ddim_timesteps(25) == list(range(960, -1, -40))
    assert ddim_timesteps(10) == list(range(900, -1, -100))


def test_schedule_is_the_linear_ddpm_schedule():
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(Schedule().alphas_cumprod.numpy(), np.cumprod(1 - betas), rtol=1e-12)


def test_q_sample_mixes_signal_and_noise():
    s = Schedule()
    x0, noise = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    out = s.q_sample(x0, torch.tensor([0, 999]), noise)
    assert out[0].mean() == pytest.approx(s.alphas_cumprod[0].sqrt().item(), rel=1e-6)
    assert out[1].mean() < 0.01


def test_noise_of_an_image_depends_only_on_its_seed():
    a = initial_noise([5, 6], (1, 4, 4))
    b = initial_noise([6], (1, 4, 4))
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])


def test_sampler_is_deterministic_and_in_range():
    torch.manual_seed(0)
    model = DiT(TINY)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
    model.eval()
    first = ddim_sample(model, [0, 1, 2], [0, 1, 2], guidance=2.0, num_steps=5)
    second = ddim_sample(model, [0, 1, 2], [0, 1, 2], guidance=2.0, num_steps=5)
    assert torch.equal(first, second)
    assert first.shape == (3, 1, 4, 4) and first.abs().max() <= 1
    other = ddim_sample(model, [0, 1, 2], [0, 1, 3], guidance=2.0, num_steps=5)
    assert torch.equal(other[:2], first[:2]) or torch.allclose(other[:2], first[:2], atol=1e-6)
    assert not torch.allclose(other[2], first[2])
    with pytest.raises(ValueError):
        ddim_sample(model, [0, 1], [0], num_steps=5)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    # same covariance, mean shifted by d: the distance is |d|^2
    assert frechet_distance(a, a + np.array([1.0, 2.0, 0.0])) == pytest.approx(5.0, rel=1e-9)
    # isotropic Gaussians N(0, 1) and N(0, 4): per dimension 1 + 4 - 2 * 2 = 1
    b = rng.normal(size=(200000, 3))
    c = 2 * rng.normal(size=(200000, 3))
    assert frechet_distance(b, c) == pytest.approx(3.0, rel=0.03)


def test_shipped_classifier_recognises_the_real_test_digits():
    _, _, x_te, y_te = load_digits_split()
    assert accuracy(load_classifier(), x_te, y_te) >= 0.95


def test_shipped_checkpoint_is_small_fp16_and_records_its_figures():
    assert CHECKPOINT_PATH.stat().st_size <= 5 * 1024 * 1024
    from safetensors.torch import load_file

    assert all(t.dtype == torch.float16 for t in load_file(str(CHECKPOINT_PATH)).values())
    meta = checkpoint_metadata()
    assert float(meta["sample_accuracy"]) >= 0.80


def test_shipped_model_samples_are_recognised_at_guidance_2():
    # Fresh seeds, not those of the training report: 10 samples per class.
    torch.set_num_threads(1)
    model, clf = load_model(), load_classifier()
    labels = np.repeat(np.arange(10), 10)
    images = ddim_sample(model, labels.tolist(), list(range(10_000, 10_100)), guidance=2.0)
    assert accuracy(clf, images.numpy(), labels) >= 0.80
    x_tr, _, x_te, _ = load_digits_split()
    # the samples are further from the real digits than held-out real digits are, but not far
    real = frechet_distance(features(clf, x_te), features(clf, x_tr))
    fake = frechet_distance(features(clf, images.numpy()), features(clf, x_tr))
    noise = frechet_distance(features(clf, initial_noise(range(100), (1, 8, 8)).clamp(-1, 1)),
                             features(clf, x_tr))
    assert real < noise and fake < noise


@pytest.mark.slow
def test_training_is_reproducible(tmp_path):
    # `make train-dit` in miniature: two seeded single-threaded runs write identical weights.
    from safetensors.torch import load_file

    from golden.dit.train import main as train_main

    runs = []
    for name in ("a", "b"):
        args = ["--steps", "30", "--warmup", "5", "--target", "0",
                "--checkpoint", str(tmp_path / name / "dit.safetensors"),
                "--classifier", str(tmp_path / name / "clf.safetensors"),
                "--report-dir", str(tmp_path / name / "report")]
        assert train_main(args) == 0
        runs.append(load_file(str(tmp_path / name / "dit.safetensors")))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert (tmp_path / "a" / "report" / "samples.png").is_file()
