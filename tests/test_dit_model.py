"""Tests of golden/dit/model.py: the DiT architecture, its names, and the GEMM replacement hooks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from golden.dit.model import (
    DIT_XL_2_256,
    GEMM_LAYERS,
    DiT,
    DiTConfig,
    sincos_pos_embed_2d,
    replace_linears,
    set_attention_matmuls,
)

SMALL = DiTConfig(input_size=8, patch_size=2, in_channels=2, hidden_size=64, depth=2, num_heads=4,
                  num_classes=5)


def _small(seed: int = 0, cfg: DiTConfig = SMALL) -> DiT:
    torch.manual_seed(seed)
    model = DiT(cfg)
    # adaLN-Zero makes a fresh model the identity-to-zero map; randomise so outputs carry signal.
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.05)
    return model.eval()


def _inputs(cfg: DiTConfig, batch: int = 3):
    g = torch.Generator().manual_seed(1)
    x = torch.randn((batch, cfg.in_channels, cfg.input_size, cfg.input_size), generator=g)
    t = torch.tensor([0, 500, 999][:batch])
    y = torch.tensor([0, 1, cfg.num_classes][:batch])
    return x, t, y


def test_dit_xl_2_matches_the_official_parameter_names_and_count():
    # facebookresearch/DiT, models.py: the names of one block and the global tensors, and the
    # paper's 675M parameters for DiT-XL/2.
    with torch.device("meta"):
        model = DiT(DIT_XL_2_256)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = {
        "pos_embed": (1, 256, 1152),
        "x_embedder.proj.weight": (1152, 4, 2, 2),
        "x_embedder.proj.bias": (1152,),
        "t_embedder.mlp.0.weight": (1152, 256),
        "t_embedder.mlp.2.weight": (1152, 1152),
        "y_embedder.embedding_table.weight": (1001, 1152),
        "blocks.27.attn.qkv.weight": (3456, 1152),
        "blocks.27.attn.proj.weight": (1152, 1152),
        "blocks.27.mlp.fc1.weight": (4608, 1152),
        "blocks.27.mlp.fc2.weight": (1152, 4608),
        "blocks.27.adaLN_modulation.1.weight": (6912, 1152),
        "final_layer.linear.weight": (32, 1152),
        "final_layer.adaLN_modulation.1.weight": (2304, 1152),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert "blocks.28.attn.qkv.weight" not in shapes
    assert len(shapes) == 1 + 2 + 4 + 1 + 28 * 10 + 4
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(params / 1e6) == 675


def test_pos_embed_encodes_column_then_row():
    emb = sincos_pos_embed_2d(16, 4)
    assert emb.shape == (16, 16)
    # token 0 is (row 0, col 0): sin(0) = 0 and cos(0) = 1 in both halves
    np.testing.assert_array_equal(emb[0], np.array(([0.0] * 4 + [1.0] * 4) * 2, np.float32))
    # token 1 is (row 0, col 1): only the first (column) half changes; token 4 is (row 1, col 0)
    assert np.array_equal(emb[1, 8:], emb[0, 8:]) and not np.array_equal(emb[1, :8], emb[0, :8])
    assert np.array_equal(emb[4, :8], emb[0, :8]) and np.array_equal(emb[4, 8:], emb[1, :8])


def test_attention_equals_scaled_dot_product_attention():
    model = _small()
    attn = model.blocks[0].attn
    x = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(3))
    q, k, v = attn.split(attn.qkv(x))
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 16, 64)
    torch.testing.assert_close(attn(x), attn.proj(ref), rtol=1e-5, atol=1e-6)


def test_output_shape_and_guidance_of_one_is_conditional():
    model = _small()
    x, t, y = _inputs(SMALL, 2)
    out = model(x, t, y)
    assert out.shape == x.shape
    cond = model(x, t, y)
    torch.testing.assert_close(model.forward_with_cfg(x, t, y, 1.0), cond, rtol=1e-5, atol=1e-6)
    guided = model.forward_with_cfg(x, t, y, 3.0)
    uncond = model(x, t, torch.full_like(y, SMALL.num_classes))
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_learn_sigma_doubles_the_output_channels():
    cfg = DiTConfig(input_size=4, patch_size=2, in_channels=3, hidden_size=32, depth=1,
                    num_heads=2, num_classes=3, learn_sigma=True)
    model = _small(cfg=cfg)
    x, t, y = _inputs(cfg, 2)
    assert model(x, t, y).shape == (2, 6, 4, 4)
    assert model.forward_with_cfg(x, t, y, 2.0).shape == (2, 3, 4, 4)


def test_replace_linears_routes_every_gemm_through_the_factory():
    model = _small()
    x, t, y = _inputs(SMALL)
    ref = model(x, t, y)
    calls: list[str] = []

    class Recorded(torch.nn.Module):
        def __init__(self, name: str, linear: torch.nn.Linear) -> None:
            super().__init__()
            self.name, self.linear = name, linear

        def forward(self, inp: torch.Tensor) -> torch.Tensor:
            calls.append(self.name)
            return inp @ self.linear.weight.T + self.linear.bias

    names = replace_linears(model, Recorded)
    assert names == [f"blocks.{b}.{layer}" for b in range(SMALL.depth) for layer in GEMM_LAYERS]
    out = model(x, t, y)
    assert calls == names
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_attention_matmuls_can_be_replaced():
    model = _small()
    x, t, y = _inputs(SMALL)
    ref = model(x, t, y)
    seen: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

    def factory(name: str):
        def qk(a, b):
            seen.append((name + ".qk", tuple(a.shape), tuple(b.shape)))
            return torch.matmul(a, b)

        def pv(a, b):
            seen.append((name + ".pv", tuple(a.shape), tuple(b.shape)))
            return torch.matmul(a, b)

        return qk, pv

    assert set_attention_matmuls(model, factory) == ["blocks.0.attn", "blocks.1.attn"]
    torch.testing.assert_close(model(x, t, y), ref)
    assert seen[0] == ("blocks.0.attn.qk", (3, 4, 16, 16), (3, 4, 16, 16))
    assert seen[1] == ("blocks.0.attn.pv", (3, 4, 16, 16), (3, 4, 16, 16))
    # a deliberately wrong product must change the output: the hook is really on the data path
    set_attention_matmuls(model, lambda name: (torch.matmul, lambda a, b: 2 * torch.matmul(a, b)))
    assert not torch.allclose(model(x, t, y), ref)


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="patch_size"):
        DiTConfig(input_size=7, patch_size=2)
    with pytest.raises(ValueError, match="num_heads"):
        DiTConfig(hidden_size=100, num_heads=3)
