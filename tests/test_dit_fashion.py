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
from hw.top import ARRAY_LATENCY
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


# --- the shipped Fashion-MNIST model -------------------------------------------------------------

from golden.dit.capture import FASHION_FIXTURE_PATH, load_capture  # noqa: E402
from golden.dit.checkpoint import FASHION_CHECKPOINT_PATH, checkpoint_metadata, load_model  # noqa: E402,E501
from golden.dit.metric import FASHION_CLASSIFIER_PATH  # noqa: E402

needs_model = pytest.mark.skipif(
    not (FASHION_CHECKPOINT_PATH.is_file() and FASHION_FIXTURE_PATH.is_file()),
    reason="the Fashion-MNIST checkpoint and fixture are not shipped yet (make train-dit-fashion)")


@needs_model
def test_shipped_checkpoint_is_small_fp16_and_records_its_figures():
    from safetensors.torch import load_file

    from golden.dit.model import FASHION_CONFIG

    assert FASHION_CHECKPOINT_PATH.stat().st_size <= 12 * 1024 * 1024
    assert all(t.dtype == torch.float16
               for t in load_file(str(FASHION_CHECKPOINT_PATH)).values())
    meta = checkpoint_metadata(FASHION_CHECKPOINT_PATH)
    assert meta["dataset"] == '"fashion"'
    assert load_model(FASHION_CHECKPOINT_PATH).cfg == FASHION_CONFIG
    assert float(meta["classifier_test_accuracy"]) >= 0.88


@needs_model
@needs_fashion
def test_shipped_classifier_recognises_the_real_test_images():
    from golden.dit.metric import accuracy, load_classifier

    torch.set_num_threads(1)
    _, _, x_te, y_te = data.load_fashion_split()
    assert accuracy(load_classifier(FASHION_CLASSIFIER_PATH), x_te, y_te) >= 0.88


@needs_model
def test_fixture_is_small_and_regenerates_bit_exactly(tmp_path):
    assert FASHION_FIXTURE_PATH.stat().st_size <= 3 * 1024 * 1024
    script = ("import sys; from golden.dit.capture import capture_fixture, save_capture; "
              "save_capture(capture_fixture(name='fashion'), sys.argv[1])")
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "f.npz")], env=env, check=True,
                   cwd=ROOT)
    fresh, shipped = load_capture(tmp_path / "f.npz"), load_capture(FASHION_FIXTURE_PATH)
    assert sorted(fresh) == sorted(shipped)
    assert shipped["blocks.3.mlp.fc2/t480"].shape == (2, 64, 512)
    for key, value in fresh.items():
        assert value.dtype == shipped[key].dtype, key
        assert np.array_equal(value, shipped[key]), key


@needs_model
def test_analyze_prints_fashion_beside_digits(capsys, tmp_path):
    from sim.cli import main

    assert main(["analyze", "--model", "fashion", "--beside", "digits", "--plots",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "blocks.3.mlp.fc2" in out and "summary over blocks" in out
    header = next(line for line in out.splitlines() if line.startswith("layer kind"))
    assert header.split()[-2:] == ["fashion", "digits"]
    assert (tmp_path / "fig3_block3.png").is_file() and (tmp_path / "fig5_block0.png").is_file()


@needs_model
@pytest.mark.skipif(subprocess.run(["which", "iverilog"], capture_output=True).returncode != 0,
                    reason="no Icarus Verilog")
def test_simulate_layer_runs_a_fashion_gemm_on_the_rtl(capsys, tmp_path):
    import json

    from sim.cli import main

    out = tmp_path / "r.json"
    rc = main(["simulate-layer", "--model", "fashion", "--layer", "blocks.3.mlp.fc1",
               "--sim", "icarus", "--rows", "4", "--cols", "4", "--tokens", "4",
               "--out-channels", "8", "--no-convert", "--timestep", "480", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads(out.read_text())
    assert rep["results_checked"] == 4 * 8
    # The top adds its command register and operand buffers to the array's cycle model.
    assert rep["array_cycles"] == rep["model_cycles"] + ARRAY_LATENCY > ARRAY_LATENCY
    assert "dit_fashion" in rep["source"]
