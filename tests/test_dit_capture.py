"""Tests of golden/dit/capture.py, the shipped fixture, and the capture/analyze commands."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from golden.dit.capture import (
    FIXTURE_ARGS,
    FIXTURE_PATH,
    capture,
    capture_fixture,
    layer_key,
    load_capture,
    save_capture,
)
from golden.dit.checkpoint import load_model
from golden.dit.model import GEMM_LAYERS
from sim.cli import main


@pytest.fixture(scope="module")
def shipped():
    return load_model()


@pytest.fixture(scope="module")
def fixture_arrays():
    return load_capture(FIXTURE_PATH)


def test_capture_in_process_matches_the_fixture_layout(shipped, fixture_arrays):
    fresh = capture_fixture(shipped)
    assert sorted(fresh) == sorted(fixture_arrays)
    for key, value in fresh.items():
        if value.dtype.kind == "U":
            assert value == fixture_arrays[key]
        else:
            np.testing.assert_allclose(value, fixture_arrays[key], rtol=1e-3, atol=1e-4)


def test_fixture_is_small():
    assert FIXTURE_PATH.stat().st_size <= 2 * 1024 * 1024


def test_fixture_regenerates_bit_exactly(tmp_path, fixture_arrays):
    # In a fresh process with MKL's CPU-independent kernels, as the fixture was made (see the
    # docstring of golden/dit/capture.py).
    script = ("import sys; from golden.dit.capture import capture_fixture, save_capture; "
              "save_capture(capture_fixture(), sys.argv[1])")
    env = {**os.environ, "MKL_CBWR": "COMPATIBLE"}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "f.npz")], env=env, check=True,
                   cwd=Path(__file__).resolve().parents[1])
    fresh = load_capture(tmp_path / "f.npz")
    assert sorted(fresh) == sorted(fixture_arrays)
    for key, value in fresh.items():
        assert value.dtype == fixture_arrays[key].dtype, key
        assert np.array_equal(value, fixture_arrays[key]), key


def test_fixture_keys_and_shapes(shipped, fixture_arrays):
    cfg = shipped.cfg
    rows = len(FIXTURE_ARGS["classes"]) * len(FIXTURE_ARGS["seeds"])
    for b in FIXTURE_ARGS["blocks"]:
        for t in FIXTURE_ARGS["timesteps"]:
            for layer in ("attn.qkv", "attn.proj", "mlp.fc1"):
                assert fixture_arrays[layer_key(b, layer, t)].shape == (rows, cfg.num_tokens,
                                                                         cfg.hidden_size)
            assert fixture_arrays[layer_key(b, "mlp.fc2", t)].shape == (rows, cfg.num_tokens,
                                                                        cfg.mlp_hidden)
            for layer in ("attn.q", "attn.k", "attn.v"):
                assert fixture_arrays[layer_key(b, layer, t)].shape == (
                    rows, cfg.num_heads, cfg.num_tokens, cfg.head_dim)
                assert fixture_arrays[layer_key(b, layer, t)].dtype == np.float32
    assert list(fixture_arrays["meta/timesteps"]) == list(FIXTURE_ARGS["timesteps"])
    assert list(fixture_arrays["meta/labels"]) == list(FIXTURE_ARGS["classes"])


def test_captured_operands_are_consistent_with_the_layers(shipped, fixture_arrays):
    # q, k, v are the qkv layer applied to its captured input; fc2's input is GELU(fc1(x)).
    b, t = FIXTURE_ARGS["blocks"][1], FIXTURE_ARGS["timesteps"][1]
    block = shipped.blocks[b]
    with torch.no_grad():
        x = torch.from_numpy(fixture_arrays[layer_key(b, "attn.qkv", t)])
        q, k, v = block.attn.split(block.attn.qkv(x))
        for name, ref in (("attn.q", q), ("attn.k", k), ("attn.v", v)):
            np.testing.assert_allclose(fixture_arrays[layer_key(b, name, t)], ref.numpy(),
                                       rtol=1e-5, atol=1e-5)
        h = torch.from_numpy(fixture_arrays[layer_key(b, "mlp.fc1", t)])
        np.testing.assert_allclose(fixture_arrays[layer_key(b, "mlp.fc2", t)],
                                   block.mlp.act(block.mlp.fc1(h)).numpy(), rtol=1e-5, atol=1e-5)
        # the attention output fed to proj is softmax(q k^T / sqrt(d)) v, heads concatenated
        p = (q @ k.transpose(-2, -1) * block.attn.scale).softmax(-1)
        o = (p @ v).transpose(1, 2).reshape(x.shape)
        np.testing.assert_allclose(fixture_arrays[layer_key(b, "attn.proj", t)], o.numpy(),
                                   rtol=1e-5, atol=1e-5)
    for layer in GEMM_LAYERS:
        w = fixture_arrays[f"blocks.{b}.{layer}/weight"]
        ref = block.get_submodule(layer).weight.abs().mean(0).detach().numpy()
        np.testing.assert_allclose(w, ref, rtol=1e-6)


def test_capture_with_uncond_keeps_the_guided_batch(shipped):
    arrays = capture(shipped, blocks=[2], timesteps=[0], classes=[1, 4], seeds=[3],
                     num_steps=25, with_uncond=True)
    x = arrays[layer_key(2, "mlp.fc1", 0)]
    assert x.shape[0] == 4
    assert list(arrays["meta/labels"]) == [1, 4, 10, 10]
    assert list(arrays["meta/conditional"]) == [True, True, False, False]
    cond_only = capture(shipped, blocks=[2], timesteps=[0], classes=[1, 4], seeds=[3])
    np.testing.assert_array_equal(cond_only[layer_key(2, "mlp.fc1", 0)], x[:2])


@pytest.mark.parametrize("kwargs, message", [
    ({"blocks": [6]}, "block 6"),
    ({"timesteps": [961]}, "timestep 961"),
    ({"classes": [10]}, "class 10"),
])
def test_bad_choices_are_rejected(shipped, kwargs, message):
    args = {"blocks": [0], "timesteps": [0], "classes": [0], "seeds": [0], **kwargs}
    with pytest.raises(ValueError, match=message):
        capture(shipped, **args)


def test_save_and_load_round_trip(tmp_path, fixture_arrays):
    save_capture(fixture_arrays, tmp_path / "c.npz")
    back = load_capture(tmp_path / "c.npz")
    assert all(np.array_equal(back[k], v) for k, v in fixture_arrays.items())
    with pytest.raises(FileNotFoundError):
        load_capture(tmp_path / "missing.npz")


def test_capture_and_analyze_commands(tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert main(["capture", "--blocks", "1", "--timesteps", "480", "--classes", "0", "1",
                 "--out", str(out)]) == 0
    arrays = load_capture(out)
    assert arrays[layer_key(1, "mlp.fc2", 480)].shape == (2, 16, 512)
    assert main(["analyze", str(out), "--plots", str(tmp_path / "plots")]) == 0
    text = capsys.readouterr().out
    assert "blocks.1.mlp.fc2" in text and "blocks.1.attn" in text
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["fig3_block1.png",
                                                                      "fig5_block1.png"]


def test_commands_fail_cleanly_on_bad_input(tmp_path, capsys):
    assert main(["capture", "--timesteps", "7", "--out", str(tmp_path / "x.npz")]) == 2
    assert main(["capture", "--checkpoint", str(tmp_path / "no.pt"), "--out", "x.npz"]) == 2
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    assert main(["analyze", str(tmp_path / "plain.npz")]) == 2
    assert main(["analyze", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err
    assert "timestep 7" in err and "not a capture" in err and "Traceback" not in err
