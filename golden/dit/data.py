"""Training data that needs no download: scikit-learn's digits and Debian's Fashion-MNIST.

spec §7. Two data sets, each with a fixed train/test split so that the diffusion model, the metric
classifier and every later comparison use the same held-out images:

- **digits**: ``sklearn.datasets.load_digits`` reads 1797 8x8 images of the digits 0-9 (16 grey
  levels) from a file bundled in the scikit-learn wheel. Small enough that a DiT trains in minutes
  on one core (patch 2, 16 tokens). Split 80/20, seeded and stratified.
- **fashion**: Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017), 60,000 training and 10,000 test
  images of ten kinds of clothing, 28x28 with 256 grey levels, read from the IDX files that the
  Debian package ``dataset-fashion-mnist`` installs under ``/usr/share/datasets/fashion-mnist/``
  (``scripts/install-tools.sh`` installs it). The images are padded with background to 32x32 so
  that patch 4 gives an 8x8 grid of 64 tokens. The split is the data set's own.

Pixels are scaled to ``[-1, 1]`` (background is -1 in both sets).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SIZE",
    "FASHION_SIZE",
    "FASHION_DIR",
    "FASHION_PACKAGE",
    "FASHION_CLASSES",
    "NUM_CLASSES",
    "DatasetMissing",
    "fashion_to_unit",
    "load_digits_split",
    "load_fashion_split",
    "load_split",
    "read_idx",
    "to_unit",
]

IMAGE_SIZE = 8
#: Side of a Fashion-MNIST image after padding 28x28 by 2 pixels on every side.
FASHION_SIZE = 32
NUM_CLASSES = 10
_SPLIT_SEED = 0
_TEST_FRACTION = 0.2

#: The Debian package with the Fashion-MNIST files.
FASHION_PACKAGE = "dataset-fashion-mnist"
#: Where the package puts them; the environment variable ``FASHION_MNIST_DIR`` overrides it.
FASHION_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
#: Class names of the ten labels, in label order.
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class DatasetMissing(FileNotFoundError):
    """A data set's files are not installed; the message says which package installs them."""


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


def read_idx(data: bytes) -> np.ndarray:
    """Decode an (uncompressed) IDX file of unsigned bytes: big-endian dims, then the values.

    The header is two zero bytes, the type code (``0x08`` for unsigned bytes), the number of
    dimensions ``d``, then ``d`` big-endian 32-bit sizes (LeCun's MNIST format).
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"IDX type code {data[2]:#04x} is not unsigned bytes (0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    values = np.frombuffer(data, dtype=np.uint8, offset=header)
    if values.size != int(np.prod(dims)):
        raise ValueError(f"IDX file holds {values.size} values, its header says {dims}")
    return values.reshape(dims)


def _read_fashion(part: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = _FASHION_FILES[part]
    paths = [root / images_name, root / labels_name]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetMissing(
            f"Fashion-MNIST not found ({missing[0]}): install it with "
            f"`apt-get install {FASHION_PACKAGE}` (scripts/install-tools.sh does)"
        )
    images = read_idx(gzip.decompress(paths[0].read_bytes()))
    labels = read_idx(gzip.decompress(paths[1].read_bytes()))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"{root}: images {images.shape} and labels {labels.shape} do not match")
    return images, labels


def fashion_to_unit(images: np.ndarray) -> np.ndarray:
    """28x28 uint8 images ``[n, 28, 28]`` to ``[n, 1, 32, 32]`` float32 in ``[-1, 1]``.

    ``0 -> -1`` and ``255 -> 1``; the 2-pixel border added on every side is background (-1).
    """
    x = np.asarray(images, dtype=np.float32) / 127.5 - 1.0
    pad = (FASHION_SIZE - x.shape[-1]) // 2
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), constant_values=-1.0)
    return x[:, None].astype(np.float32)


def load_fashion_split(
    root: Path | str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST's own split: 60,000 training and 10,000 test images.

    Returns
    -------
    x_train, y_train, x_test, y_test:
        Images ``[n, 1, 32, 32]`` float32 in ``[-1, 1]`` (28x28 padded with background) and int64
        labels.

    Raises
    ------
    DatasetMissing
        When the files are not installed; the message names the Debian package.
    """
    root = Path(root) if root is not None else FASHION_DIR
    x_tr, y_tr = _read_fashion("train", root)
    x_te, y_te = _read_fashion("test", root)
    return (
        fashion_to_unit(x_tr), y_tr.astype(np.int64), fashion_to_unit(x_te), y_te.astype(np.int64)
    )


def load_split(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`load_digits_split` or :func:`load_fashion_split` by name (``digits``, ``fashion``)."""
    if dataset == "digits":
        return load_digits_split()
    if dataset == "fashion":
        return load_fashion_split()
    raise ValueError(f"unknown dataset {dataset!r}; choose digits or fashion")
