"""Fidelity of quantized samples to their FP32 twins: what DiT quantization papers report.

Every scheme samples the same class labels from the same noise seeds as the FP32 run, so image
``i`` of a scheme and image ``i`` of FP32 differ only by what quantization did to the GEMMs. The
figures (``mixdit evaluate``):

- **PSNR** (dB) and **SSIM** of each quantized image against its FP32 twin, on the data range
  ``[-1, 1]`` (``data_range = 2``), by scikit-image (``skimage.metrics``; SSIM with its default
  7x7 uniform window), reported as the mean over images and the worst image;
- **FD vs FP32**: the Frechet distance between the Gaussians fitted to the classifier features of
  the quantized samples and of the FP32 samples; zero when quantization changes nothing. Unlike a
  distance to real images, it cannot be lowered by an error that happens to move samples towards
  the data (the digits model's FD to real digits ranked MX6 better than FP32, issue 13);
- **FD vs real**: the same distance to the real test images (FID-like; sample quality);
- **label agreement**: the share of images the classifier labels as it labels the FP32 twin;
- **accuracy**: the share it labels as the class that was asked for.

PSNR is infinite for an image equal to its twin; a mean over such images is infinite too, and
``mixdit evaluate --json`` writes it as null.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Fidelity", "Judge", "psnr_per_image", "ssim_per_image", "fidelity", "json_safe"]

#: Pixel range of the DiT images, ``[-1, 1]``.
DATA_RANGE = 2.0


@dataclass(frozen=True)
class Fidelity:
    """One scheme's figures against the FP32 samples of the same seeds (see the module)."""

    samples: int
    psnr_db: float
    psnr_worst_db: float
    ssim: float
    ssim_worst: float
    fd_vs_fp32: float
    fd_vs_real: float
    label_agreement: float
    accuracy: float

    def as_dict(self) -> dict:
        return asdict(self)


def _pairs(images: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(images, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two image stacks [n, c, h, w] of one shape, got {a.shape} and "
                         f"{b.shape}")
    return a, b


def psnr_per_image(images: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each image against its twin, ``[n]``; ``inf`` where they are equal."""
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _pairs(images, ref)
    out = np.empty(len(a))
    for i in range(len(a)):
        if np.array_equal(a[i], b[i]):
            out[i] = math.inf
        else:
            out[i] = peak_signal_noise_ratio(b[i], a[i], data_range=DATA_RANGE)
    return out


def ssim_per_image(images: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """SSIM of each image against its twin, ``[n]`` (channels averaged)."""
    from skimage.metrics import structural_similarity

    a, b = _pairs(images, ref)
    out = np.empty(len(a))
    for i in range(len(a)):
        out[i] = np.mean([structural_similarity(b[i, c], a[i, c], data_range=DATA_RANGE)
                          for c in range(a.shape[1])])
    return out


def fidelity(images: np.ndarray, ref: np.ndarray, labels, classifier,
             real_features: np.ndarray, ref_features: "np.ndarray | None" = None,
             ref_pred: "np.ndarray | None" = None) -> Fidelity:
    """All figures of ``images`` against their FP32 twins ``ref`` (same order, same seeds).

    Parameters
    ----------
    images, ref : ``[n, c, h, w]`` in ``[-1, 1]``
    labels : ``[n]`` the classes asked for
    classifier : the metric classifier (:mod:`golden.dit.metric`)
    real_features : its features of the real test images
    ref_features, ref_pred : its features and labels of ``ref``, when already computed
    """
    from ..dit.metric import features, frechet_distance, predict

    feats = features(classifier, images)
    if ref_features is None:
        ref_features = features(classifier, ref)
    if ref_pred is None:
        ref_pred = predict(classifier, ref)
    pred = predict(classifier, images)
    psnr = psnr_per_image(images, ref)
    ssim = ssim_per_image(images, ref)
    return Fidelity(
        samples=len(images),
        psnr_db=float(np.mean(psnr)),
        psnr_worst_db=float(np.min(psnr)),
        ssim=float(np.mean(ssim)),
        ssim_worst=float(np.min(ssim)),
        fd_vs_fp32=frechet_distance(feats, ref_features),
        fd_vs_real=frechet_distance(feats, real_features),
        label_agreement=float(np.mean(pred == ref_pred)),
        accuracy=float(np.mean(pred == np.asarray(labels))),
    )


class Judge:
    """The metric classifier with the real images' features, scoring many schemes in turn.

    Parameters
    ----------
    classifier : the metric classifier of the model
    real_images : the real held-out images the FD vs real is measured against
    """

    def __init__(self, classifier, real_images: np.ndarray) -> None:
        from ..dit.metric import features

        self.classifier = classifier
        self.real_features = features(classifier, real_images)
        self._ref: "tuple[bytes, np.ndarray, np.ndarray] | None" = None

    def score(self, images: np.ndarray, labels, ref: np.ndarray) -> Fidelity:
        """:func:`fidelity` of ``images`` against ``ref``, the FP32 features computed once."""
        from ..dit.metric import features, predict

        key = np.ascontiguousarray(ref).tobytes()
        if self._ref is None or self._ref[0] != key:
            self._ref = (key, features(self.classifier, ref), predict(self.classifier, ref))
        return fidelity(images, ref, labels, self.classifier, self.real_features,
                        self._ref[1], self._ref[2])


def json_safe(value):
    """``value`` with every NaN and infinity replaced by None, recursively (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
