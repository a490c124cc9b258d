"""Image-quality metric for generated images: a small classifier and a Frechet distance.

spec §4 scores each (p1, p2) point with an FID-like quality figure; spec §7 supplies it for
the shipped model. Inception features mean nothing on 8x8 digits, so the metric uses its own feature
extractor: an MLP classifier trained on the real training images. Two numbers come out of it:

- the *accuracy* with which the classifier recognises class-conditional samples as the class they
  were asked for;
- the *Frechet distance* between Gaussians fitted to the classifier's penultimate features of the
  samples and of the real training images, computed exactly as FID does (Heusel et al., 2017):
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

Two classifiers: :class:`DigitClassifier` (an MLP, 64 features) for the 8x8 digits and
:class:`FashionClassifier` (a small CNN, 128 features) for the 32x32 padded Fashion-MNIST images.
Both expose ``body`` (image to penultimate features) and ``head`` (features to logits); the
safetensors file records which one it holds (metadata ``arch``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "DigitClassifier",
    "FashionClassifier",
    "FASHION_CLASSIFIER_PATH",
    "train_fashion_classifier",
    "train_classifier",
    "save_classifier",
    "load_classifier",
    "features",
    "frechet_distance",
    "accuracy",
    "predict",
    "CLASSIFIER_PATH",
]

#: The shipped metric classifier, written by ``make train-dit``.
CLASSIFIER_PATH = Path(__file__).resolve().parent / "weights" / "digits_classifier.safetensors"
#: The Fashion-MNIST metric classifier, written by ``make train-dit-fashion``.
FASHION_CLASSIFIER_PATH = (
    Path(__file__).resolve().parent / "weights" / "fashion_classifier.safetensors"
)


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


class FashionClassifier(nn.Module):
    """CNN for ``[n, 1, 32, 32]`` images; the 128 penultimate activations are the features.

    ``conv 3x3 (16), ReLU, max-pool 2, conv 3x3 (32), ReLU, max-pool 2, conv 3x3 (32), ReLU,
    max-pool 2, flatten (32 x 4 x 4), linear 128, ReLU``, then a linear head to 10 classes.
    """

    def __init__(self, classes: int = 10, feature_dim: int = 128) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_fashion_classifier(
    x: np.ndarray, y: np.ndarray, epochs: int = 4, seed: int = 0,
    progress: "Callable[[str], None] | None" = None,
) -> FashionClassifier:
    """Train :class:`FashionClassifier` on images ``[n, 1, 32, 32]`` in ``[-1, 1]`` and labels.

    Adam at 2e-3 with a cosine decay, batch 128, random horizontal flips and light Gaussian pixel
    noise (so that slightly noisy generated images are not rejected for reasons a person would
    not see). Seeded; reproducible single-threaded.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = FashionClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    batches = (len(xt) + 127) // 128
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * batches)
    for epoch in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 128):
            idx = order[start : start + 128]
            xb = xt[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
            xb = xb + 0.05 * torch.randn(xb.shape, generator=gen)
            loss = nn.functional.cross_entropy(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress(f"classifier epoch {epoch + 1}/{epochs}: last loss {loss.item():.3f}")
    return model.eval()


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


_ARCHS: dict[str, type[nn.Module]] = {"digits-mlp": DigitClassifier, "fashion-cnn": FashionClassifier}


def save_classifier(model: nn.Module, path: Path = CLASSIFIER_PATH) -> None:
    """Write the classifier as float32 safetensors, its architecture in the metadata."""
    from safetensors.torch import save_file

    arch = next(name for name, cls in _ARCHS.items() if type(model) is cls)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
        metadata={"arch": arch},
    )


def load_classifier(path: Path = CLASSIFIER_PATH) -> nn.Module:
    """Load the shipped (or another) metric classifier, in eval mode.

    The architecture comes from the file's metadata; a file without one is the digits MLP.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"no classifier at {path}; run `make train-dit`")
    with safe_open(str(path), framework="pt") as f:
        arch = (f.metadata() or {}).get("arch", "digits-mlp")
    if arch not in _ARCHS:
        raise ValueError(f"{path}: unknown classifier architecture {arch!r}")
    model = _ARCHS[arch]()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


@torch.no_grad()
def features(
    model: nn.Module, images: np.ndarray | torch.Tensor, batch: int = 1000
) -> np.ndarray:
    """Penultimate features ``[n, d]`` (float64) of images ``[n, 1, size, size]``."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    return torch.cat([model.body(x[i:i + batch]) for i in range(0, len(x), batch)]).double().numpy()


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray | torch.Tensor, batch: int = 1000) -> np.ndarray:
    """The classifier's label for each image, ``[n]`` int64."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    return torch.cat([model(x[i:i + batch]).argmax(dim=1) for i in range(0, len(x), batch)]).numpy()


@torch.no_grad()
def accuracy(
    model: nn.Module, images: np.ndarray | torch.Tensor, labels: np.ndarray
) -> float:
    """Share of ``images`` the classifier assigns to ``labels``."""
    return float(np.mean(predict(model, images) == np.asarray(labels)))


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
    fd = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)
    # Rounding in the eigendecompositions can leave a distance of equal sets a hair below zero.
    return max(fd, 0.0)
