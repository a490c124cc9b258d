"""The DiTs that ship with the repository, by name: ``digits`` and ``fashion``.

spec §7. Each has a checkpoint (:mod:`golden.dit.checkpoint`), the metric classifier trained with
it (:mod:`golden.dit.metric`) and the real held-out images that sample quality is measured against
(:mod:`golden.dit.data`). Commands take the name as ``--model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import CHECKPOINT_PATH, FASHION_CHECKPOINT_PATH
from .metric import CLASSIFIER_PATH, FASHION_CLASSIFIER_PATH

__all__ = ["ShippedModel", "SHIPPED", "shipped"]


@dataclass(frozen=True)
class ShippedModel:
    """One shipped DiT: its checkpoint, its metric classifier and its data set."""

    name: str
    dataset: str
    checkpoint: Path
    classifier: Path
    train_command: str

    def test_images(self) -> tuple[np.ndarray, np.ndarray]:
        """The real held-out images ``[n, 1, s, s]`` in ``[-1, 1]`` and their labels."""
        from .data import load_split

        _, _, x_te, y_te = load_split(self.dataset)
        return x_te, y_te


SHIPPED: dict[str, ShippedModel] = {
    "digits": ShippedModel("digits", "digits", CHECKPOINT_PATH, CLASSIFIER_PATH,
                           "make train-dit"),
    "fashion": ShippedModel("fashion", "fashion", FASHION_CHECKPOINT_PATH,
                            FASHION_CLASSIFIER_PATH, "make train-dit-fashion"),
}


def shipped(name: str) -> ShippedModel:
    """The shipped model called ``name``; ValueError naming the choices otherwise."""
    try:
        return SHIPPED[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(SHIPPED)}") from None
