"""The Fashion-MNIST DiT: its data loader, its training recipe (resume, determinism) and the
shipped checkpoint, classifier and fixture (issue 13)."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from golden.dit import data
from golden.dit.data import DatasetMissing, FASHION_DIR, read_idx

HAVE_FASHION = (FASHION_DIR / "t10k-labels-idx1-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(not HAVE_FASHION,
                                   reason="apt package dataset-fashion-mnist not installed")
ROOT = Path(__file__).resolve().parents[1]


def _idx(values: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, values.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in values.shape)
    return header + values.astype(np.uint8).tobytes()


def test_read_idx_decodes_the_format():
    v = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(_idx(v)), v)
    with pytest.raises(ValueError, match="magic"):
        read_idx(b"\x01\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(ValueError, match="type code"):
        read_idx(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="header says"):
        read_idx(_idx(v)[:-1])


def test_padding_maps_pixels_to_unit_range_with_background_border():
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 0, 0], img[0, 27, 27] = 255, 51
    x = data.fashion_to_unit(img)
    assert x.shape == (1, 1, 32, 32) and x.dtype == np.float32
    assert x[0, 0, 2, 2] == 1.0 and x[0, 0, 29, 29] == np.float32(51 / 127.5 - 1)
    assert (x[0, 0, :2] == -1).all() and (x[0, 0, :, 30:] == -1).all()


def test_missing_data_names_the_package(tmp_path):
    with pytest.raises(DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        data.load_fashion_split(tmp_path)


def test_loader_reads_a_small_idx_tree(tmp_path):
    rng = np.random.default_rng(0)
    for part, n in (("train", 5), ("t10k", 3)):
        (tmp_path / f"{part}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28)))))
        (tmp_path / f"{part}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx(np.arange(n) % 10)))
    x_tr, y_tr, x_te, y_te = data.load_fashion_split(tmp_path)
    assert x_tr.shape == (5, 1, 32, 32) and x_te.shape == (3, 1, 32, 32)
    assert y_tr.tolist() == [0, 1, 2, 3, 4] and y_te.dtype == np.int64


@needs_fashion
def test_the_installed_test_set_is_fashion_mnist():
    labels = read_idx(gzip.decompress((FASHION_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    assert labels.shape == (10_000,) and np.bincount(labels).tolist() == [1000] * 10


def _train(tmp_path, name, *extra):
    from golden.dit.train import main

    d = tmp_path / name
    args = ["--dataset", "fashion", "--hidden", "32", "--depth", "1", "--heads", "2",
            "--steps", "6", "--warmup", "2", "--batch", "8", "--train-subset", "256",
            "--classifier-epochs", "1", "--per-class", "2", "--target", "0", "--save-every", "2",
            "--checkpoint", str(d / "dit.safetensors"), "--classifier", str(d / "clf.safetensors"),
            "--report-dir", str(d / "report"), "--state", str(d / "state.pt"), *extra]
    assert main(args) == 0
    return d


@pytest.mark.slow
@needs_fashion
def test_training_resumes_and_reproduces_bit_for_bit(tmp_path):
    # `make train-dit-fashion` in miniature: an uninterrupted run, a second one from the same
    # seed, and a third stopped after 3 of 6 steps and resumed, write identical weights.
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    a = _train(tmp_path, "a")
    b = _train(tmp_path, "b")
    c = _train(tmp_path, "c", "--stop-after", "3")
    assert not (c / "dit.safetensors").exists()
    assert torch.load(c / "state.pt", weights_only=False)["step"] == 3
    _train(tmp_path, "c")
    runs = [load_file(str(d / "dit.safetensors")) for d in (a, b, c)]
    for other in runs[1:]:
        assert runs[0].keys() == other.keys()
        assert all(torch.equal(runs[0][k], other[k]) for k in runs[0])
    assert (a / "report" / "samples.png").is_file()
