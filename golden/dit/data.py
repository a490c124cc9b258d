"""Training data that ships inside a package: scikit-learn's handwritten digits.

spec §7. ``sklearn.datasets.load_digits`` reads 1797 8x8 images of the digits 0-9 (16 grey
levels) from a file bundled in the scikit-learn wheel, so nothing is downloaded. It was chosen over
the animal-mnist package because scikit-learn is already a pinned dependency (no new package), and
because 8x8 images with 2x2 patches give 16 tokens: small enough that a DiT trains in minutes on
one CPU core and that a capture of several blocks and timesteps fits the 2 MB fixture budget.

Pixels are scaled from ``[0, 16]`` to ``[-1, 1]``. The split into train and test images is fixed
(seeded, stratified) so that the diffusion model, the metric classifier and every later
comparison use the same held-out images.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMAGE_SIZE", "NUM_CLASSES", "load_digits_split", "to_unit"]

IMAGE_SIZE = 8
NUM_CLASSES = 10
_SPLIT_SEED = 0
_TEST_FRACTION = 0.2


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Scale scikit-learn digit pixels ``[0, 16]`` to ``[-1, 1]`` float32."""
    return (np.asarray(pixels, dtype=np.float32) / 8.0 - 1.0).astype(np.float32)


def load_digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fixed train/test split of the digits.

    Returns
    -------
    x_train, y_train, x_test, y_test:
        Images ``[n, 1, 8, 8]`` float32 in ``[-1, 1]`` and int64 labels; 80% train, 20% test,
        stratified by class.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = to_unit(digits.images).reshape(-1, 1, IMAGE_SIZE, IMAGE_SIZE)
    labels = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=_TEST_FRACTION, random_state=_SPLIT_SEED, stratify=labels
    )
    return x_tr, y_tr, x_te, y_te
