"""A Diffusion Transformer with the architecture and parameter names of facebookresearch/DiT.

spec §7: the stimulus of the accelerator comes from a real DiT. This module holds one class,
:class:`DiT`, that both the small model trained here and the official ``DiT-XL-2-256x256.pt``
checkpoint load into (the state-dict keys and shapes are those of the official ``models.py``):

========================================  =========================================================
key                                       shape
========================================  =========================================================
``pos_embed``                             ``[1, tokens, hidden]`` (fixed 2-D sin-cos, in the dict)
``x_embedder.proj.{weight,bias}``         ``[hidden, in_channels, patch, patch]``, ``[hidden]``
``t_embedder.mlp.{0,2}.{weight,bias}``    ``[hidden, 256]``, ``[hidden, hidden]``
``y_embedder.embedding_table.weight``     ``[classes + 1, hidden]`` (the last row is the null class)
``blocks.{i}.attn.qkv.{weight,bias}``     ``[3 hidden, hidden]`` (fused Q, K, V)
``blocks.{i}.attn.proj.{weight,bias}``    ``[hidden, hidden]``
``blocks.{i}.mlp.fc1.{weight,bias}``      ``[mlp hidden, hidden]``
``blocks.{i}.mlp.fc2.{weight,bias}``      ``[hidden, mlp hidden]``
``blocks.{i}.adaLN_modulation.1.*``       ``[6 hidden, hidden]``
``final_layer.linear.*``                  ``[patch * patch * out_channels, hidden]``
``final_layer.adaLN_modulation.1.*``      ``[2 hidden, hidden]``
========================================  =========================================================

The accelerator's GEMMs are the four ``nn.Linear`` of every block (``attn.qkv``, ``attn.proj``,
``mlp.fc1``, ``mlp.fc2``) and the two per-head attention products. The attention computes both
products explicitly through :attr:`Attention.qk_matmul` and :attr:`Attention.pv_matmul`, so a
quantized GEMM can be put in their place (see :func:`set_attention_matmuls`); the linear layers are
replaced with :func:`replace_linears`. The per-head Q, K and V leave :class:`SplitHeads`, a
parameter-free module whose forward hook sees them (``blocks.{i}.attn.split``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

__all__ = [
    "DiTConfig",
    "DIGITS_CONFIG",
    "FASHION_CONFIG",
    "DIT_XL_2_256",
    "DiT",
    "Attention",
    "SplitHeads",
    "GEMM_LAYERS",
    "sincos_pos_embed_2d",
    "replace_linears",
    "set_attention_matmuls",
]

#: The linear layers of a block that run on the accelerator (spec §4), as suffixes of
#: ``blocks.{i}.``.
GEMM_LAYERS: tuple[str, ...] = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")

MatMul = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Every hyperparameter of a :class:`DiT`.

    Parameters
    ----------
    input_size:
        Side of the square input (latent or image) in pixels.
    patch_size:
        Side of a square patch; the model sees ``(input_size // patch_size) ** 2`` tokens.
    in_channels:
        Channels of the input.
    hidden_size:
        Token width.
    depth:
        Number of DiT blocks.
    num_heads:
        Attention heads; ``hidden_size`` must be a multiple of it.
    mlp_ratio:
        Width of the MLP hidden layer relative to ``hidden_size``.
    num_classes:
        Class labels; one more embedding row holds the null class of classifier-free guidance.
    learn_sigma:
        When true the model also predicts the variance, doubling the output channels (the
        official checkpoints); the sampler here uses only the noise half.
    """

    input_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    hidden_size: int = 128
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    num_classes: int = 10
    learn_sigma: bool = False

    def __post_init__(self) -> None:
        if self.input_size % self.patch_size:
            raise ValueError(
                f"input_size {self.input_size} is not a multiple of patch_size {self.patch_size}"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        if self.hidden_size % 4:
            raise ValueError(f"hidden_size must be a multiple of 4, not {self.hidden_size}")

    @property
    def out_channels(self) -> int:
        """Channels of the model output (noise, and variance when ``learn_sigma``)."""
        return self.in_channels * 2 if self.learn_sigma else self.in_channels

    @property
    def grid(self) -> int:
        """Patches along one side."""
        return self.input_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """Tokens per image."""
        return self.grid * self.grid

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        """Width of ``fc1``'s output."""
        return int(self.hidden_size * self.mlp_ratio)


#: The model trained and shipped here (spec §7): scikit-learn's 8x8 digits, patch 2 (16 tokens),
#: hidden 128 and head_dim 32, both multiples of the accelerator's 16-wide K groups (spec §1.1).
DIGITS_CONFIG = DiTConfig()

#: The Fashion-MNIST model (issue 13): 28x28 padded to 32x32, patch 4 (64 tokens), hidden 128,
#: depth 4, 4 heads of 32 (1.3 M parameters). Sized so that ``make train-dit-fashion`` fits about
#: an hour on a heavily shared core (see :data:`golden.dit.train.RECIPES`).
FASHION_CONFIG = DiTConfig(input_size=32, patch_size=4, hidden_size=128, depth=4, num_heads=4)

#: DiT-XL/2 at 256x256 (32x32x4 latents), as in the official ``DiT-XL-2-256x256.pt``.
DIT_XL_2_256 = DiTConfig(
    input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
    num_classes=1000, learn_sigma=True,
)


def sincos_pos_embed_2d(dim: int, grid: int) -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding of DiT (from MAE), ``[grid * grid, dim]``.

    Token ``n = row * grid + col`` gets the 1-D embedding of its column in the first half of the
    channels and that of its row in the second half; each 1-D embedding is ``sin`` then ``cos`` of
    the position times ``10000 ** (-k / (dim / 4))``.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, not {dim}")
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")

    def one_d(pos: np.ndarray) -> np.ndarray:
        angles = pos.reshape(-1, 1).astype(np.float64) * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([one_d(cols), one_d(rows)], axis=1).astype(np.float32)


def timestep_embedding(
    t: torch.Tensor, dim: int = 256, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, ``cos`` half first as in DiT."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift``, broadcast over tokens."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    """Patchify with a strided convolution (``x_embedder.proj``), then flatten to tokens."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            cfg.in_channels, cfg.hidden_size, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    """Sinusoidal frequency embedding of the timestep, then ``Linear, SiLU, Linear``."""

    def __init__(self, hidden: int, freq_dim: int = 256) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(timestep_embedding(t, self.freq_dim))


class LabelEmbedder(nn.Module):
    """Class embedding table with one extra row, index ``num_classes``, for the null class."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, hidden)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(y)


class SplitHeads(nn.Module):
    """Split the fused ``qkv`` output into per-head Q, K, V, each ``[batch, heads, tokens, dim]``.

    It has no parameters; it exists so that a forward hook on ``blocks.{i}.attn.split`` sees the
    per-head operands of the two attention GEMMs (spec §4, head-wise precision).
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads

    def forward(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, c3 = qkv.shape
        heads = qkv.reshape(b, n, 3, self.num_heads, c3 // (3 * self.num_heads))
        q, k, v = heads.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` and an output ``proj``.

    Both per-head products run through replaceable callables, so that a quantized GEMM can stand
    in for them without touching this class:

    - ``scores = qk_matmul(q, k.transpose(-2, -1)) * head_dim ** -0.5``
    - ``out = pv_matmul(softmax(scores), v)``

    Each takes two tensors ``[batch, heads, m, k]`` and ``[batch, heads, k, n]``; the default is
    :func:`torch.matmul`. The scale is applied after the product (a host FP32 multiply), so the
    GEMM sees Q exactly as captured.
    """

    def __init__(self, hidden: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (hidden // num_heads) ** -0.5
        self.qkv = nn.Linear(hidden, hidden * 3)
        self.split = SplitHeads(num_heads)
        self.proj = nn.Linear(hidden, hidden)
        self.qk_matmul: MatMul = torch.matmul
        self.pv_matmul: MatMul = torch.matmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.split(self.qkv(x))
        scores = self.qk_matmul(q, k.transpose(-2, -1)) * self.scale
        out = self.pv_matmul(scores.softmax(dim=-1), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """``fc1``, GELU (tanh approximation), ``fc2``."""

    def __init__(self, hidden: int, mlp_hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp_hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(mlp_hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """DiT block with adaLN-Zero conditioning: attention and MLP, each shifted, scaled and gated."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(h, cfg.num_heads)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(h, cfg.mlp_hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(c).chunk(6, dim=1)
        )
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """adaLN-Zero final layer: modulated layer norm, then a linear map to patch pixels."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        h = cfg.hidden_size
        self.norm_final = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(h, cfg.patch_size * cfg.patch_size * cfg.out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(h, 2 * h))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Class-conditional Diffusion Transformer (Peebles and Xie, 2023), spec §7.

    Parameters
    ----------
    cfg:
        Hyperparameters; :data:`DIGITS_CONFIG` for the shipped model, :data:`DIT_XL_2_256` for the
        official checkpoint.

    Notes
    -----
    ``forward(x, t, y)`` takes images ``[batch, in_channels, size, size]``, integer or float
    timesteps ``[batch]`` and labels ``[batch]`` (``cfg.num_classes`` is the null class) and
    returns ``[batch, out_channels, size, size]``.
    """

    def __init__(self, cfg: DiTConfig = DIGITS_CONFIG) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden_size
        self.x_embedder = PatchEmbed(cfg)
        self.t_embedder = TimestepEmbedder(h)
        self.y_embedder = LabelEmbedder(cfg.num_classes, h)
        self.pos_embed = nn.Parameter(
            torch.from_numpy(sincos_pos_embed_2d(h, cfg.grid)).unsqueeze(0), requires_grad=False
        )
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier linears, zeroed adaLN and output layers (adaLN-Zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, tokens, p * p * c]`` back to ``[batch, c, size, size]``."""
        cfg = self.cfg
        p, g, c = cfg.patch_size, cfg.grid, cfg.out_channels
        x = x.reshape(x.shape[0], g, g, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, g * p, g * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        tokens = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            tokens = block(tokens, c)
        return self.unpatchify(self.final_layer(tokens, c))

    def forward_with_cfg(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Classifier-free guided noise prediction for ``y``, one batch of ``2 * batch`` rows.

        The model runs once on ``cat([x, x])`` with labels ``cat([y, null])``: the accelerator
        sees the conditional rows first, then the unconditional ones. Returns the guided noise
        ``uncond + scale * (cond - uncond)``, ``[batch, in_channels, size, size]``.
        """
        null = torch.full_like(y, self.cfg.num_classes)
        out = self(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        eps = out[:, : self.cfg.in_channels]
        cond, uncond = eps.chunk(2, dim=0)
        return uncond + scale * (cond - uncond)


def replace_linears(model: nn.Module, factory: Callable[[str, nn.Linear], nn.Module]) -> list[str]:
    """Replace every accelerator linear layer (:data:`GEMM_LAYERS`) of every block.

    Parameters
    ----------
    model:
        A :class:`DiT`.
    factory:
        Called with the layer name (``"blocks.3.mlp.fc1"``) and the ``nn.Linear``; returns the
        module to put in its place (for example one that quantizes its input to MX and calls a
        golden GEMM with the same weight and bias).

    Returns
    -------
    list of str
        The names replaced, in order.
    """
    names = []
    for name, module in list(model.named_modules()):
        parent_name, _, leaf = name.rpartition(".")
        if isinstance(module, nn.Linear) and any(name.endswith("." + s) for s in GEMM_LAYERS):
            parent = model.get_submodule(parent_name)
            setattr(parent, leaf, factory(name, module))
            names.append(name)
    return names


def set_attention_matmuls(
    model: nn.Module, factory: Callable[[str], tuple[MatMul, MatMul]]
) -> list[str]:
    """Set ``qk_matmul`` and ``pv_matmul`` of every :class:`Attention` in ``model``.

    ``factory(name)`` gets the attention module's name (``"blocks.3.attn"``) and returns the pair
    of callables; pass ``lambda name: (torch.matmul, torch.matmul)`` to restore the defaults.
    Returns the names set.
    """
    names = []
    for name, module in model.named_modules():
        if isinstance(module, Attention):
            module.qk_matmul, module.pv_matmul = factory(name)
            names.append(name)
    return names
