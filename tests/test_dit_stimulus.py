"""The cocotb testbenches' real DiT stimulus (sim/dit_stimulus.py) is the capture, calibrated as
simulate-layer calibrates it, and another capture can be passed through ``MIXDIT_CAPTURE``."""

import numpy as np
import pytest

from golden import mx
from golden.dit.capture import FIXTURE_PATH, load_capture, save_capture
from golden.dit.checkpoint import CHECKPOINT_PATH
from golden.formats import MX9
from golden.gemm import mx_dot, mx_matmul
from golden.layer import block_params, calibrate_block
from sim import dit_stimulus as ds


@pytest.fixture(autouse=True)
def _fixture_capture(monkeypatch):
    monkeypatch.delenv(ds.CAPTURE_ENV, raising=False)


def test_paths_are_the_shipped_ones():
    assert ds.FIXTURE == FIXTURE_PATH and ds.CHECKPOINT == CHECKPOINT_PATH


def test_linear_layer_is_the_calibrated_capture():
    from golden.dit.checkpoint import load_model

    acts = load_capture(FIXTURE_PATH)
    lay = ds.load_layer("mlp.fc1")
    b, t = int(acts["meta/blocks"][0]), sorted(int(x) for x in acts["meta/timesteps"])[1]
    assert lay.name == f"blocks.{b}.mlp.fc1/t{t}"
    plan = calibrate_block(acts, b, t, ds.P1, ds.P2).linear["mlp.fc1"]
    np.testing.assert_array_equal(lay.perm, plan.perm)
    x = acts[f"blocks.{b}.mlp.fc1/t{t}"].reshape(-1, lay.x.shape[1])
    assert lay.a == mx.quantize(x[:, plan.perm], list(plan.a_formats))
    w = block_params(load_model(), b).weights["mlp.fc1"]
    assert lay.w == mx.quantize(w[:, plan.perm], "mx6")
    assert lay.mx9.any() and not lay.mx9.all()
    np.testing.assert_array_equal(lay.out.view(np.uint32), mx_matmul(lay.a, lay.w).view(np.uint32))


def test_pe_dots_and_tiles_are_rows_of_the_layers():
    cases = ds.pe_dots(per_layer=2, seed=1)
    assert len(cases) == 8
    for c in cases:
        assert c.expected == int(np.float32(mx_dot(c.a, c.b)).view(np.uint32))
    lay = ds.load_layer("attn.qkv")
    i, j = np.unravel_index(np.argmax(np.abs(lay.out)), lay.out.shape)
    assert cases[0].a == lay.a[int(i)] and cases[0].b == lay.w[int(j)]
    a, w, what = ds.layer_tile("mlp.fc2", 5, 5, seed=0)
    assert a.shape == (5, 32) and w.shape == (5, 32) and "mlp.fc2" in what
    head = ds.load_layer("attn")
    assert head.a.fmt[0] == head.w.fmt[0] and "Q K^T" in head.name


def test_converter_and_controller_inputs():
    groups, fmts, what = ds.converter_groups("mlp.fc1", tokens=2)
    lay = ds.load_layer("mlp.fc1")
    name, perm, cfmts = lay.consumer
    assert name == "mlp.fc2" and groups.shape == (2 * 512 // 16, 16)
    np.testing.assert_array_equal(groups.reshape(2, -1), lay.out[:2, perm].view(np.uint32))
    assert list(fmts[:len(cfmts)]) == [int(f == MX9.name) for f in cfmts]
    acts, order, mx9, what = ds.controller_layer("attn.qkv", 256, 2)
    qkv = ds.load_layer("attn.qkv")
    np.testing.assert_array_equal(order, qkv.perm)
    np.testing.assert_array_equal(mx9, qkv.mx9)
    np.testing.assert_array_equal(acts, qkv.x[:2])
    acts, order, mx9, what = ds.controller_layer("mlp.fc2", 64, 4)
    assert acts.shape == (4, 64) and sorted(order) == list(range(64)) and "0:64" in what


def test_top_layer_is_the_layer_with_its_consumers_conflict_free_table():
    from golden.layer import consumer_plan
    from hw.reorder import group_cycles

    acts = load_capture(FIXTURE_PATH)
    b, t = int(acts["meta/blocks"][0]), sorted(int(x) for x in acts["meta/timesteps"])[1]
    a, w, order, fmts, what = ds.top_layer("attn.proj", 4, tokens=8)
    plans = calibrate_block(acts, b, t, ds.P1, ds.P2, banks=4)
    name, perm, want_fmts = consumer_plan("attn.proj", plans, None, 32)
    assert name == "mlp.fc1" and "mlp.fc1" in what and "tokens 0:8" in what
    np.testing.assert_array_equal(order, perm)
    assert fmts == tuple(want_fmts) and MX9.name in fmts
    # Conflict-free for 4 banks: each group of 16 reads 4 channels of every bank.
    assert all(group_cycles(order[16 * g:16 * g + 16], 4) == 4 for g in range(len(fmts)))
    plan = plans.linear["attn.proj"]
    x = acts[f"blocks.{b}.attn.proj/t{t}"].reshape(-1, 128)[:8]
    assert a == mx.quantize(x[:, plan.perm], list(plan.a_formats)) and w.shape == (128, 8)
    with pytest.raises(ValueError, match="linear layer"):
        ds.top_layer("attn", 4)
    with pytest.raises(ValueError, match="no consumer"):
        ds.top_layer("mlp.fc2", 4)


def test_another_capture_through_the_environment(tmp_path, monkeypatch):
    acts = load_capture(FIXTURE_PATH)
    scaled = {k: (v * np.float32(2.0) if v.dtype == np.float32 else v) for k, v in acts.items()}
    path = tmp_path / "other.npz"
    save_capture(scaled, path)
    base = ds.load_layer("mlp.fc1")
    monkeypatch.setenv(ds.CAPTURE_ENV, str(path))
    assert ds.capture_path() == path
    other = ds.load_layer("mlp.fc1")
    np.testing.assert_array_equal(other.x, base.x * 2)
    assert other.a != base.a
