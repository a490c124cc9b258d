"""Load DiT models a user already has on disk, never downloading, and capture from them.

spec §7: the same capture code is pointed at a DiT-XL/2, PixArt or SD3 checkpoint when a user
has one locally.

- :func:`load_checkpoint`: the shipped model (no path), a ``.safetensors`` written by
  :func:`golden.dit.checkpoint.save_model`, or an official facebookresearch/DiT ``.pt``
  (``DiT-XL-2-256x256.pt``, a plain state dict, or a training checkpoint with ``"ema"``/``"model"``)
  loaded into :class:`golden.dit.model.DiT` with the configuration read off the tensor shapes.
- :func:`load_diffusers`: a diffusers ``DiTTransformer2DModel``, ``PixArtTransformer2DModel`` or
  ``SD3Transformer2DModel`` directory (the model directory itself, or a pipeline directory with
  a ``transformer/`` subfolder), read with ``local_files_only=True``.

For a diffusers model, :func:`capture_any` hooks the layers that match the capture names
(:mod:`golden.dit.capture`) in each ``transformer_blocks[b]``:

=====================  ========================================================================
capture name           diffusers module (input recorded unless noted)
=====================  ========================================================================
``attn.qkv``           ``attn1.to_q`` (DiT, PixArt) or ``attn.to_q`` (SD3; image stream)
``attn.proj``          ``attn1.to_out.0`` / ``attn.to_out.0``
``mlp.fc1``            ``ff.net.0.proj``
``mlp.fc2``            ``ff.net.2``
``attn.q, .k, .v``     outputs of ``to_q``, ``to_k``, ``to_v`` split into ``[B, H, N, d]``
=====================  ========================================================================

Diffusers models are not sampled: without their VAE and text encoders, the transformer is run
once per chosen timestep on seeded Gaussian latents (what it sees at the first sampling step).
DiT gets the class labels; PixArt and SD3 get, for each "class" ``c``, seeded Gaussian caption
embeddings (generator seed ``c``) in place of a text encoder's output, so distinct classes act
as distinct pseudo-prompts. The statistics are those of real weights, but the prompts are not
real text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .capture import HEAD_ARRAYS, capture, layer_key
from .checkpoint import CHECKPOINT_PATH, load_model
from .model import DiT, DiTConfig

__all__ = [
    "DIFFUSERS_CLASSES",
    "DiffusersDiT",
    "load_checkpoint",
    "load_official_dit",
    "config_from_state_dict",
    "load_diffusers",
    "capture_any",
    "depth_of",
]

#: Diffusers transformer classes that can be loaded, by ``_class_name`` in ``config.json``.
DIFFUSERS_CLASSES = ("DiTTransformer2DModel", "PixArtTransformer2DModel", "SD3Transformer2DModel")

#: Heads of the official DiT sizes (S, B, L, XL), which the state dict does not record.
_OFFICIAL_HEADS = {384: 6, 768: 12, 1024: 16, 1152: 16}

_REQUIRED = (
    "pos_embed", "x_embedder.proj.weight", "t_embedder.mlp.0.weight",
    "y_embedder.embedding_table.weight", "final_layer.linear.weight",
    "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight",
)


def config_from_state_dict(
    state: dict[str, torch.Tensor], num_heads: int | None = None
) -> DiTConfig:
    """Infer a :class:`DiTConfig` from the tensor shapes of a facebookresearch/DiT state dict.

    Raises
    ------
    ValueError
        When a key of the DiT architecture is missing, or the head count cannot be inferred.
    """
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ValueError(f"not a DiT state dict: missing {', '.join(missing)}")
    hidden = int(state["pos_embed"].shape[-1])
    tokens = int(state["pos_embed"].shape[-2])
    patch_w = state["x_embedder.proj.weight"]
    patch, in_ch = int(patch_w.shape[-1]), int(patch_w.shape[1])
    grid = int(round(tokens ** 0.5))
    depth = 1 + max(int(m[1]) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    out = int(state["final_layer.linear.weight"].shape[0]) // (patch * patch)
    heads = num_heads or _OFFICIAL_HEADS.get(hidden)
    if heads is None:
        raise ValueError(f"cannot infer the head count of hidden size {hidden}; pass num_heads")
    return DiTConfig(
        input_size=grid * patch, patch_size=patch, in_channels=in_ch, hidden_size=hidden,
        depth=depth, num_heads=heads,
        mlp_ratio=int(state["blocks.0.mlp.fc1.weight"].shape[0]) / hidden,
        num_classes=int(state["y_embedder.embedding_table.weight"].shape[0]) - 1,
        learn_sigma=out == 2 * in_ch,
    )


def load_official_dit(path: Path | str, num_heads: int | None = None) -> DiT:
    """Load an official facebookresearch/DiT ``.pt`` checkpoint into :class:`DiT` (float32, eval).

    The file is read with ``torch.load(weights_only=True)``: tensors only, no code runs.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file is not a DiT checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise ValueError(f"{path} is not a PyTorch checkpoint: {exc}") from None
    if isinstance(obj, dict) and "ema" in obj:
        obj = obj["ema"]
    elif isinstance(obj, dict) and "model" in obj:
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    model = DiT(config_from_state_dict(state, num_heads))
    result = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path} does not match the DiT architecture: missing {result.missing_keys[:3]}, "
            f"unexpected {result.unexpected_keys[:3]}"
        )
    return model.eval()


def load_checkpoint(path: Path | str | None = None) -> DiT:
    """Load the shipped model (``path`` None), a project ``.safetensors`` or an official ``.pt``.

    Raises
    ------
    FileNotFoundError, ValueError
        When the path is missing or does not hold a DiT.
    """
    path = Path(path) if path is not None else CHECKPOINT_PATH
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        return load_model(path)
    return load_official_dit(path)


@dataclasses.dataclass
class DiffusersDiT:
    """A diffusers transformer loaded from disk, with what capture needs to know of it."""

    model: nn.Module
    kind: str
    path: Path

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, in order."""
        return self.model.transformer_blocks

    def attention(self, block: int) -> nn.Module:
        """The self-attention of ``block`` (``attn1`` in DiT and PixArt, ``attn`` in SD3)."""
        blk = self.blocks[block]
        return blk.attn if self.kind == "SD3Transformer2DModel" else blk.attn1

    def linears(self, block: int) -> dict[str, nn.Module]:
        """The modules whose inputs are recorded under each capture name."""
        attn, ff = self.attention(block), self.blocks[block].ff
        return {"attn.qkv": attn.to_q, "attn.proj": attn.to_out[0],
                "mlp.fc1": ff.net[0].proj, "mlp.fc2": ff.net[2]}


def _model_dir(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"no diffusers model directory at {path}")
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory; a diffusers model is a directory")
    for candidate in (path, path / "transformer"):
        if (candidate / "config.json").is_file():
            return candidate
    raise ValueError(
        f"{path} has no config.json (nor transformer/config.json): not a diffusers model")


def load_diffusers(path: Path | str) -> DiffusersDiT:
    """Load a diffusers DiT, PixArt or SD3 transformer with ``local_files_only=True``.

    Raises
    ------
    FileNotFoundError
        When the directory does not exist.
    ValueError
        When it is not a diffusers model of one of :data:`DIFFUSERS_CLASSES`.
    """
    folder = _model_dir(Path(path))
    try:
        class_name = json.loads((folder / "config.json").read_text()).get("_class_name")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{folder / 'config.json'} is not valid JSON: {exc}") from None
    if class_name not in DIFFUSERS_CLASSES:
        raise ValueError(
            f"{folder} holds a {class_name or 'model without _class_name'}, not a DiT "
            f"(expected one of {', '.join(DIFFUSERS_CLASSES)})"
        )
    import diffusers

    model = getattr(diffusers, class_name).from_pretrained(str(folder), local_files_only=True)
    return DiffusersDiT(model=model.float().eval(), kind=class_name, path=folder)


def depth_of(model: DiT | DiffusersDiT) -> int:
    """Number of transformer blocks."""
    return len(model.blocks)


def _split_heads(t: torch.Tensor, heads: int) -> np.ndarray:
    b, n, c = t.shape
    split = t.reshape(b, n, heads, c // heads).permute(0, 2, 1, 3)
    return split.float().contiguous().numpy().copy()


def _diffusers_inputs(m: DiffusersDiT, x: torch.Tensor, t: int, labels: Sequence[int]) -> dict:
    batch = x.shape[0]
    cfg = m.model.config
    timestep = torch.full((batch,), t, dtype=torch.long)
    if m.kind == "DiTTransformer2DModel":
        return {"hidden_states": x, "timestep": timestep,
                "class_labels": torch.as_tensor(list(labels), dtype=torch.long)}
    pixart = m.kind == "PixArtTransformer2DModel"
    width = cfg.caption_channels if pixart else cfg.joint_attention_dim
    text = torch.stack([
        torch.randn((8, width), generator=torch.Generator().manual_seed(int(c))) for c in labels
    ])
    if pixart:
        extra = {"added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
        return {"hidden_states": x, "encoder_hidden_states": text, "timestep": timestep, **extra}
    pooled = torch.stack([
        torch.randn((cfg.pooled_projection_dim,), generator=torch.Generator().manual_seed(int(c)))
        for c in labels
    ])
    return {"hidden_states": x, "encoder_hidden_states": text, "pooled_projections": pooled,
            "timestep": timestep.float()}


@torch.no_grad()
def capture_diffusers(
    m: DiffusersDiT, blocks: Sequence[int], timesteps: Sequence[int], classes: Sequence[int],
    seeds: Sequence[int], source: str = "",
) -> dict[str, np.ndarray]:
    """Run a diffusers transformer once per timestep on seeded noise and record the capture keys.

    See the module docstring for the layers and the stand-in conditioning. Rows are class-major
    as in :func:`golden.dit.capture.capture`.
    """
    depth = depth_of(m)
    for b in blocks:
        if not 0 <= b < depth:
            raise ValueError(f"block {b} is not in 0..{depth - 1}")
    cfg = m.model.config
    size, channels = int(cfg.sample_size), int(cfg.in_channels)
    labels = [c for c in classes for _ in seeds]
    row_seeds = [s for _ in classes for s in seeds]
    x = torch.stack([torch.randn((channels, size, size), generator=torch.Generator().manual_seed(s))
                     for s in row_seeds])
    store: dict[str, np.ndarray] = {}
    state: dict = {"t": None}
    handles = []
    for b in blocks:
        attn = m.attention(b)
        for name, module in m.linears(b).items():
            def pre(mod: nn.Module, args: tuple, name: str = f"blocks.{b}.{name}") -> None:
                store[f"{name}/t{state['t']}"] = args[0].detach().float().numpy().copy()

            handles.append(module.register_forward_pre_hook(pre))
        for layer, proj in zip(HEAD_ARRAYS, (attn.to_q, attn.to_k, attn.to_v)):
            def post(mod: nn.Module, args: tuple, out: torch.Tensor, layer: str = layer,
                     b: int = b, heads: int = attn.heads) -> None:
                store[layer_key(b, layer, state["t"])] = _split_heads(out.detach(), heads)

            handles.append(proj.register_forward_hook(post))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in timesteps:
            state["t"] = int(t)
            m.model(**_diffusers_inputs(m, x, int(t), labels), return_dict=False)
    finally:
        torch.set_num_threads(threads)
        for h in handles:
            h.remove()
    for b in blocks:
        for name, module in m.linears(b).items():
            weight = module.weight.detach().float()
            store[f"blocks.{b}.{name}/weight"] = weight.abs().mean(0).numpy()
    store["meta/labels"] = np.asarray(labels, dtype=np.int64)
    store["meta/conditional"] = np.ones(len(labels), dtype=bool)
    store["meta/seeds"] = np.asarray(row_seeds, dtype=np.int64)
    store["meta/timesteps"] = np.asarray(list(timesteps), dtype=np.int64)
    store["meta/blocks"] = np.asarray(sorted(set(blocks)), dtype=np.int64)
    store["meta/guidance"] = np.asarray(1.0)
    store["meta/source"] = np.asarray(source or f"diffusers:{m.kind}:{m.path}")
    return store


def capture_any(model: DiT | DiffusersDiT, **kwargs) -> dict[str, np.ndarray]:
    """:func:`golden.dit.capture.capture` for a :class:`DiT`, :func:`capture_diffusers` otherwise.

    ``guidance``, ``num_steps`` and ``with_uncond`` apply to a :class:`DiT` only.
    """
    if isinstance(model, DiT):
        return capture(model, **kwargs)
    for key in ("guidance", "num_steps", "with_uncond"):
        kwargs.pop(key, None)
    return capture_diffusers(model, **kwargs)
