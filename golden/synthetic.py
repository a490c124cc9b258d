"""Synthetic activations with outlier channels, shaped like DiT linear-layer inputs.

The paper's Fig. 5 shows DiT activations whose large magnitudes sit in a few channels, the same
channels for every prompt; :func:`outlier_activations` reproduces that structure with a seed, for
tests and demos that should not depend on a trained model.
"""

import numpy as np

__all__ = ["outlier_activations"]


def outlier_activations(tokens: int = 256, channels: int = 1152, outlier_share: float = 0.01,
                        scale: tuple[float, float] = (30.0, 100.0),
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian activations ``[tokens, channels]`` with a few channels ``scale`` times larger.

    Parameters
    ----------
    outlier_share : float
        Fraction of channels that are outliers (at least one).
    scale : (float, float)
        Each outlier channel is multiplied by a factor drawn uniformly from this range.

    Returns
    -------
    x : numpy.ndarray of float32, shape ``[tokens, channels]``
    outliers : numpy.ndarray of int64
        Indices of the outlier channels, sorted.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, channels)).astype(np.float32)
    n = max(1, int(round(outlier_share * channels)))
    idx = np.sort(rng.choice(channels, size=n, replace=False))
    x[:, idx] *= rng.uniform(*scale, size=n).astype(np.float32)
    return x, idx
