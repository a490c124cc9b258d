"""A small, real Diffusion Transformer and the activations it feeds the accelerator (spec §7).

Public API:

- :func:`load_model` (the shipped digits DiT), :class:`DiT`, :class:`DiTConfig`;
  :mod:`golden.dit.shipped`: the shipped DiTs by name (``digits``, ``fashion``);
- :func:`ddim_sample`: 25-step DDIM with classifier-free guidance, deterministic given the seeds;
- :func:`replace_linears` and :func:`set_attention_matmuls`: put a quantized GEMM in place of the
  accelerator's layers (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``, Q K^T and P V);
- :func:`capture` / :func:`load_capture`: record the GEMM operands while sampling;
- :mod:`golden.dit.metric`: the classifier accuracy and Frechet distance that score samples;
- :mod:`golden.dit.loaders`: official DiT ``.pt`` checkpoints and diffusers directories.

Submodules import torch; ``import golden.dit`` does too.
"""

from .capture import FIXTURE_PATH, capture, load_capture, save_capture
from .checkpoint import CHECKPOINT_PATH, FASHION_CHECKPOINT_PATH, load_model, save_model
from .diffusion import Schedule, ddim_sample, ddim_timesteps
from .model import (
    DIGITS_CONFIG,
    DIT_XL_2_256,
    FASHION_CONFIG,
    GEMM_LAYERS,
    DiT,
    DiTConfig,
    replace_linears,
    set_attention_matmuls,
)

__all__ = [
    "CHECKPOINT_PATH",
    "DIGITS_CONFIG",
    "DIT_XL_2_256",
    "FASHION_CHECKPOINT_PATH",
    "FASHION_CONFIG",
    "FIXTURE_PATH",
    "GEMM_LAYERS",
    "DiT",
    "DiTConfig",
    "Schedule",
    "capture",
    "ddim_sample",
    "ddim_timesteps",
    "load_capture",
    "load_model",
    "replace_linears",
    "save_capture",
    "save_model",
    "set_attention_matmuls",
]
