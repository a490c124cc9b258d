"""Tests of golden/dit/loaders.py on small randomly initialised models saved to temporary dirs."""

import json

import numpy as np
import pytest
import torch

from golden.dit.capture import layer_key
from golden.dit.loaders import (
    capture_any,
    config_from_state_dict,
    load_checkpoint,
    load_diffusers,
    load_official_dit,
)
from golden.dit.model import DiT, DiTConfig

# hidden 384 is DiT-S, whose head count (6) the loader knows without being told
DIT_S_TINY = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=384, depth=1,
                       num_heads=6, num_classes=7, learn_sigma=True)


def _random_dit(cfg: DiTConfig) -> DiT:
    torch.manual_seed(0)
    model = DiT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.02)
    return model.eval()


def _inputs(cfg: DiTConfig):
    g = torch.Generator().manual_seed(0)
    x = torch.randn((2, cfg.in_channels, cfg.input_size, cfg.input_size), generator=g)
    return x, torch.tensor([10, 900]), torch.tensor([1, cfg.num_classes])


@pytest.mark.parametrize("wrap", [None, "ema", "model"])
def test_official_pt_checkpoint_loads_into_the_same_class(tmp_path, wrap):
    ref = _random_dit(DIT_S_TINY)
    state = ref.state_dict()
    torch.save(state if wrap is None else {wrap: state, "args": {"lr": 1e-4}}, tmp_path / "d.pt")
    for model in (load_official_dit(tmp_path / "d.pt"), load_checkpoint(tmp_path / "d.pt")):
        assert model.cfg == DIT_S_TINY
        x, t, y = _inputs(DIT_S_TINY)
        with torch.no_grad():
            assert torch.equal(model(x, t, y), ref(x, t, y))


def test_config_is_read_off_the_shapes():
    state = _random_dit(DIT_S_TINY).state_dict()
    assert config_from_state_dict(state) == DIT_S_TINY
    odd = DiTConfig(hidden_size=96, num_heads=3, depth=1)
    with pytest.raises(ValueError, match="head count"):
        config_from_state_dict(_random_dit(odd).state_dict())
    assert config_from_state_dict(_random_dit(odd).state_dict(), num_heads=3) == odd


def test_not_a_dit_checkpoint_is_rejected(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DiT"):
        load_official_dit(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def _save_diffusers(kind: str, folder):
    import diffusers

    torch.manual_seed(0)
    common = {"patch_size": 2, "in_channels": 4, "num_layers": 2, "attention_head_dim": 16,
              "num_attention_heads": 2, "sample_size": 8}
    if kind == "DiTTransformer2DModel":
        model = diffusers.DiTTransformer2DModel(out_channels=8, num_embeds_ada_norm=10, **common)
    elif kind == "PixArtTransformer2DModel":
        model = diffusers.PixArtTransformer2DModel(out_channels=8, caption_channels=24,
                                                   cross_attention_dim=32, **common)
    else:
        model = diffusers.SD3Transformer2DModel(out_channels=4, joint_attention_dim=24,
                                                caption_projection_dim=32,
                                                pooled_projection_dim=12, pos_embed_max_size=8,
                                                **common)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("kind", ["DiTTransformer2DModel", "PixArtTransformer2DModel",
                                  "SD3Transformer2DModel"])
def test_diffusers_models_are_hooked_at_the_matching_layers(tmp_path, kind):
    _save_diffusers(kind, tmp_path / "m" / "transformer")
    m = load_diffusers(tmp_path / "m")  # a pipeline-style directory with transformer/
    assert m.kind == kind and len(m.blocks) == 2
    arrays = capture_any(m, blocks=[0, 1], timesteps=[900, 100], classes=[2, 5], seeds=[0],
                         guidance=4.0, num_steps=25, with_uncond=False)
    qkv_in = arrays[layer_key(1, "attn.qkv", 100)]
    assert qkv_in.shape == (2, 16, 32) and qkv_in.dtype == np.float32
    assert arrays[layer_key(1, "mlp.fc2", 100)].shape == (2, 16, 128)
    q = arrays[layer_key(1, "attn.q", 100)]
    assert q.shape == (2, 2, 16, 16)
    attn = m.attention(1)
    with torch.no_grad():
        ref = attn.to_q(torch.from_numpy(qkv_in)).reshape(2, 16, 2, 16).permute(0, 2, 1, 3)
    np.testing.assert_allclose(q, ref.numpy(), rtol=1e-5, atol=1e-6)
    # different timesteps see different activations; the weight summary is per input channel
    assert not np.array_equal(arrays[layer_key(1, "attn.qkv", 900)], qkv_in)
    assert arrays["blocks.0.mlp.fc2/weight"].shape == (128,)


def test_diffusers_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_diffusers(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_diffusers(tmp_path / "empty")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="UNet2DModel, not a DiT"):
        load_diffusers(tmp_path / "unet")
