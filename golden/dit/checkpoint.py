"""The shipped DiT checkpoint: fp16 safetensors with its :class:`DiTConfig` in the metadata.

spec §7. :func:`load_model` with no argument returns the model trained by ``make train-dit``
(``golden/dit/weights/dit_digits.safetensors``), in float32 and eval mode.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .model import DiT, DiTConfig

__all__ = ["CHECKPOINT_PATH", "FASHION_CHECKPOINT_PATH", "save_model", "load_model", "checkpoint_metadata"]

#: The checkpoint that ships in the repository.
CHECKPOINT_PATH = Path(__file__).resolve().parent / "weights" / "dit_digits.safetensors"
#: The Fashion-MNIST checkpoint (``make train-dit-fashion``).
FASHION_CHECKPOINT_PATH = Path(__file__).resolve().parent / "weights" / "dit_fashion.safetensors"


def save_model(
    model: DiT, path: Path = CHECKPOINT_PATH, extra: dict[str, str] | None = None
) -> None:
    """Write ``model`` as fp16 safetensors; its config and ``extra`` go in the metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(dataclasses.asdict(model.cfg)), **(extra or {})}
    save_file(tensors, str(path), metadata=meta)


def load_model(path: Path | str = CHECKPOINT_PATH) -> DiT:
    """Load a checkpoint written by :func:`save_model` as a float32 :class:`DiT` in eval mode.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file has no DiT config in its metadata.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no DiT checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path} has no DiT config in its safetensors metadata")
    model = DiT(DiTConfig(**json.loads(meta["config"])))
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    return model.eval()


def checkpoint_metadata(path: Path | str = CHECKPOINT_PATH) -> dict[str, str]:
    """The safetensors metadata of a checkpoint (config, training figures)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})

