"""Capture the activations the accelerator would see while a DiT samples images.

spec §7 (stimulus from a real DiT) for the layers of spec §4. Forward hooks record, at the
chosen sampler timesteps and blocks, the *inputs* of the four linear layers of a block and the
per-head Q, K, V of its attention, as float32 NumPy arrays.

Keys of the ``.npz`` (``{b}`` a block index, ``{T}`` a diffusion timestep such as ``960``):

=================================  =========================================  =================
key                                array                                      shape
=================================  =========================================  =================
``blocks.{b}.attn.qkv/t{T}``       input of ``qkv`` (A of the QKV GEMM)       ``[B, N, hidden]``
``blocks.{b}.attn.proj/t{T}``      input of ``proj`` (attention output)       ``[B, N, hidden]``
``blocks.{b}.mlp.fc1/t{T}``        input of ``fc1``                           ``[B, N, hidden]``
``blocks.{b}.mlp.fc2/t{T}``        input of ``fc2`` (after GELU)              ``[B, N, mlp]``
``blocks.{b}.attn.q/t{T}``         per-head queries (unscaled)                ``[B, H, N, d]``
``blocks.{b}.attn.k/t{T}``         per-head keys                              ``[B, H, N, d]``
``blocks.{b}.attn.v/t{T}``         per-head values                            ``[B, H, N, d]``
``blocks.{b}.{layer}/weight``      mean ``|W|`` of each input channel          ``[K]``
``meta/labels``                    class label of each row (null class last)  ``[B]``
``meta/seeds``                     noise seed of each row                     ``[B]``
``meta/conditional``               false on the unconditional rows            ``[B]`` (bool)
``meta/timesteps``                 captured timesteps, sampler order          ``[n_t]``
``meta/blocks``                    captured blocks                            ``[n_b]``
``meta/guidance``                  classifier-free guidance scale             ``[]``
``meta/source``                    what was captured (checkpoint path)        ``[]`` (str)
=================================  =========================================  =================

The layer names before the ``/`` (``blocks.3.mlp.fc1``) are the module names in the model, the
names other commands take (``--layer blocks.3.mlp.fc1``). Row ``r`` of the batch axis ``B`` is
class ``classes[r // len(seeds)]`` with seed ``seeds[r % len(seeds)]``; with ``with_uncond`` the
unconditional rows of classifier-free guidance follow in the same order, labelled with the null
class.

Reproducibility: the model runs single-threaded with oneDNN off, so a capture is bit-for-bit
repeatable on one machine. MKL chooses its GEMM kernels by CPU features; run with the environment
variable ``MKL_CBWR=COMPATIBLE`` (read when MKL starts, so set it before Python starts) and the
result is the same on any x86-64 CPU with AVX2 or AVX-512, which is how the fixture is made and
checked: ``MKL_CBWR=COMPATIBLE python -m golden.dit.fixture`` rewrites it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .diffusion import ddim_sample, ddim_timesteps
from .model import GEMM_LAYERS, DiT

__all__ = [
    "FIXTURE_PATH",
    "FIXTURE_ARGS",
    "FASHION_FIXTURE_PATH",
    "FASHION_FIXTURE_ARGS",
    "FIXTURES",
    "layer_key",
    "capture",
    "capture_fixture",
    "save_capture",
    "load_capture",
    "capture_hooks",
]

#: The small capture shipped for tests and the demo.
FIXTURE_PATH = Path(__file__).resolve().parent / "data" / "fixture_capture.npz"

#: How the fixture is made from the shipped checkpoint: first and last block; early, middle and
#: late timesteps; two classes; one seed; guidance 2.
FIXTURE_ARGS: dict[str, object] = {
    "blocks": (0, 5),
    "timesteps": (960, 480, 0),
    "classes": (3, 7),
    "seeds": (0,),
    "guidance": 2.0,
}

#: The Fashion-MNIST model's fixture (issue 13): a dress (3) and a sneaker (7), one seed, its first
#: and last blocks at an early and a middle timestep. Its 64 tokens make each array four times the
#: digits' size: with the third timestep it would be 3.7 MB compressed, beyond the 3 MB budget.
FASHION_FIXTURE_PATH = FIXTURE_PATH.with_name("fixture_capture_fashion.npz")
FASHION_FIXTURE_ARGS: dict[str, object] = {**FIXTURE_ARGS, "blocks": (0, 3),
                                           "timesteps": (960, 480)}

#: Fixture path, capture arguments and checkpoint (relative to the repository) by model name.
FIXTURES: dict[str, tuple[Path, dict[str, object], str]] = {
    "digits": (FIXTURE_PATH, FIXTURE_ARGS, "golden/dit/weights/dit_digits.safetensors"),
    "fashion": (FASHION_FIXTURE_PATH, FASHION_FIXTURE_ARGS,
                "golden/dit/weights/dit_fashion.safetensors"),
}

#: Per-head arrays recorded from ``blocks.{b}.attn.split``.
HEAD_ARRAYS = ("attn.q", "attn.k", "attn.v")


def layer_key(block: int, layer: str, timestep: int) -> str:
    """The npz key of ``layer`` (``"mlp.fc1"``, ``"attn.q"``) of ``block`` at ``timestep``."""
    return f"blocks.{block}.{layer}/t{timestep}"


@contextlib.contextmanager
def capture_hooks(
    model: DiT, blocks: Sequence[int], rows: int, store: dict[str, np.ndarray], state: dict
) -> Iterator[None]:
    """Install forward hooks that copy the GEMM operands of ``blocks`` into ``store``.

    ``state["t"]`` names the timestep being sampled, or is None when nothing should be recorded;
    the first ``rows`` rows of each batch are kept.
    """
    handles = []

    def linear_hook(name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if state.get("t") is not None:
                store[f"{name}/t{state['t']}"] = args[0][:rows].detach().float().numpy().copy()

        return hook

    def split_hook(block: int):
        def hook(module: nn.Module, args: tuple, out: tuple[torch.Tensor, ...]) -> None:
            if state.get("t") is not None:
                for layer, tensor in zip(HEAD_ARRAYS, out):
                    key = layer_key(block, layer, state["t"])
                    store[key] = tensor[:rows].detach().float().contiguous().numpy().copy()

        return hook

    try:
        for b in blocks:
            block = model.blocks[b]
            for layer in GEMM_LAYERS:
                module = block.get_submodule(layer)
                handles.append(module.register_forward_pre_hook(linear_hook(f"blocks.{b}.{layer}")))
            handles.append(block.attn.split.register_forward_hook(split_hook(b)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _check_choices(model: DiT, blocks: Sequence[int], timesteps: Sequence[int], num_steps: int,
                   classes: Sequence[int], seeds: Sequence[int]) -> None:
    depth, visited = len(model.blocks), ddim_timesteps(num_steps)
    for b in blocks:
        if not 0 <= b < depth:
            raise ValueError(f"block {b} is not in 0..{depth - 1}")
    for t in timesteps:
        if t not in visited:
            raise ValueError(
                f"timestep {t} is not one the {num_steps}-step sampler visits: {visited}")
    for c in classes:
        if not 0 <= c < model.cfg.num_classes:
            raise ValueError(f"class {c} is not in 0..{model.cfg.num_classes - 1}")
    if not (blocks and timesteps and classes and seeds):
        raise ValueError("at least one block, timestep, class and seed are needed")


def capture(
    model: DiT,
    blocks: Sequence[int],
    timesteps: Sequence[int],
    classes: Sequence[int],
    seeds: Sequence[int],
    guidance: float = 2.0,
    num_steps: int = 25,
    with_uncond: bool = False,
    source: str = "",
) -> dict[str, np.ndarray]:
    """Sample with DDIM and classifier-free guidance, recording the chosen activations.

    Parameters
    ----------
    model:
        The DiT (eval mode).
    blocks, timesteps:
        Which blocks, and at which of the sampler's timesteps, to record.
    classes, seeds:
        Every class is sampled with every seed (rows class-major).
    guidance, num_steps:
        Sampler settings (:func:`~golden.dit.diffusion.ddim_sample`).
    with_uncond:
        Also keep the unconditional rows of the guided batch.
    source:
        Free text stored as ``meta/source``.

    Returns
    -------
    dict
        The arrays, keyed as in the module docstring.

    Raises
    ------
    ValueError
        When a block, timestep or class is out of range.
    """
    _check_choices(model, blocks, timesteps, num_steps, classes, seeds)
    labels = [c for c in classes for _ in seeds]
    row_seeds = [s for _ in classes for s in seeds]
    rows = len(labels) * (2 if with_uncond else 1)
    wanted = set(int(t) for t in timesteps)
    store: dict[str, np.ndarray] = {}
    state: dict = {"t": None}

    def on_step(_: int, t: int) -> None:
        state["t"] = t if t in wanted else None

    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    torch.set_num_threads(1)
    # oneDNN picks its convolution kernel by CPU features; the plain ATen path does not.
    torch.backends.mkldnn.enabled = False
    try:
        with capture_hooks(model, blocks, rows, store, state):
            ddim_sample(model, labels, row_seeds, guidance=guidance, num_steps=num_steps,
                        on_step=on_step)
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn

    for b in blocks:
        for layer in GEMM_LAYERS:
            weight = model.blocks[b].get_submodule(layer).weight.detach().float()
            store[f"blocks.{b}.{layer}/weight"] = weight.abs().mean(dim=0).numpy()
    null = model.cfg.num_classes
    all_labels = labels + ([null] * len(labels) if with_uncond else [])
    store["meta/labels"] = np.asarray(all_labels, dtype=np.int64)
    store["meta/conditional"] = np.asarray(
        [True] * len(labels) + ([False] * len(labels) if with_uncond else []))
    store["meta/seeds"] = np.asarray(row_seeds * (2 if with_uncond else 1), dtype=np.int64)
    visit = [t for t in ddim_timesteps(num_steps) if t in wanted]
    store["meta/timesteps"] = np.asarray(visit, dtype=np.int64)
    store["meta/blocks"] = np.asarray(sorted(set(blocks)), dtype=np.int64)
    store["meta/guidance"] = np.asarray(guidance, dtype=np.float64)
    store["meta/source"] = np.asarray(source)
    return store


def capture_fixture(model: DiT | None = None, name: str = "digits") -> dict[str, np.ndarray]:
    """The fixture capture of the shipped model ``name`` (:data:`FIXTURES`), or of ``model``
    with that model's capture arguments."""
    from .checkpoint import load_model

    _, args, source = FIXTURES[name]
    if model is None:
        model = load_model(Path(__file__).resolve().parents[2] / source)
    return capture(model, source=source, **args)


def save_capture(arrays: dict[str, np.ndarray], path: Path | str) -> None:
    """Write a capture as a compressed ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_capture(path: Path | str) -> dict[str, np.ndarray]:
    """Read a capture written by :func:`save_capture` (no pickles are allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no capture at {path}")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}

