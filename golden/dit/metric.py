"""Image-quality metric for generated digits: a small classifier and a Frechet distance.

spec §4 scores each (p1, p2) point with an FID-like quality figure; spec §7 supplies it for
the shipped model. Inception features mean nothing on 8x8 digits, so the metric uses its own feature
extractor: an MLP classifier trained on the real training images. Two numbers come out of it:

- the *accuracy* with which the classifier recognises class-conditional samples as the class they
  were asked for;
- the *Frechet distance* between Gaussians fitted to the classifier's penultimate features of the
  samples and of the real training images, computed exactly as FID does (Heusel et al., 2017):
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "DigitClassifier",
    "train_classifier",
    "save_classifier",
    "load_classifier",
    "features",
    "frechet_distance",
    "accuracy",
    "CLASSIFIER_PATH",
]

#: The shipped metric classifier, written by ``make train-dit``.
CLASSIFIER_PATH = Path(__file__).resolve().parent / "weights" / "digits_classifier.safetensors"


class DigitClassifier(nn.Module):
    """MLP ``64 -> 256 -> 64 -> 10`` with ReLU; the 64 penultimate activations are the features."""

    def __init__(self, pixels: int = 64, classes: int = 10, feature_dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(pixels, 256), nn.ReLU(), nn.Linear(256, feature_dim), nn.ReLU()
        )
        self.head = nn.Linear(feature_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(
    x: np.ndarray, y: np.ndarray, epochs: int = 60, seed: int = 0
) -> DigitClassifier:
    """Train :class:`DigitClassifier` on images ``[n, 1, 8, 8]`` in ``[-1, 1]`` and labels.

    Light Gaussian pixel noise is added during training so that the classifier does not reject
    slightly smooth generated digits for reasons a human would not.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 64):
            idx = order[start : start + 64]
            noisy = xt[idx] + 0.1 * torch.randn(xt[idx].shape, generator=gen)
            loss = nn.functional.cross_entropy(model(noisy), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def save_classifier(model: DigitClassifier, path: Path = CLASSIFIER_PATH) -> None:
    """Write the classifier as float32 safetensors."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def load_classifier(path: Path = CLASSIFIER_PATH) -> DigitClassifier:
    """Load the shipped (or another) metric classifier, in eval mode."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"no classifier at {path}; run `make train-dit`")
    model = DigitClassifier()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


@torch.no_grad()
def features(model: DigitClassifier, images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Penultimate features ``[n, 64]`` (float64) of images ``[n, 1, 8, 8]``."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    return model.body(x).double().numpy()


@torch.no_grad()
def accuracy(
    model: DigitClassifier, images: np.ndarray | torch.Tensor, labels: np.ndarray
) -> float:
    """Share of ``images`` the classifier assigns to ``labels``."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    pred = model(x).argmax(dim=1).numpy()
    return float(np.mean(pred == np.asarray(labels)))


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``[n, d]``.

    ``tr((S1 S2)^(1/2))`` is computed as ``tr((S1^(1/2) S2 S1^(1/2))^(1/2))``, whose argument is
    symmetric positive semi-definite, so only symmetric eigendecompositions are needed.
    """
    mu_a, mu_b = feat_a.mean(axis=0), feat_b.mean(axis=0)
    cov_a = np.cov(feat_a, rowvar=False)
    cov_b = np.cov(feat_b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(cross, 0, None))))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)
