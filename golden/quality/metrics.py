"""Error of a quantized result against its FP32 reference (accuracy, not bit-exactness)."""

import numpy as np

__all__ = ["relative_error", "sqnr_db", "max_abs_error", "error_report"]


def _pair(approx, ref):
    a = np.asarray(approx, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"Shapes differ: {a.shape} and {r.shape}")
    return a, r


def relative_error(approx: np.ndarray, ref: np.ndarray) -> float:
    """Relative Frobenius error ``||approx - ref|| / ||ref||``."""
    a, r = _pair(approx, ref)
    den = np.linalg.norm(r)
    return float(np.linalg.norm(a - r) / den) if den > 0 else float(np.linalg.norm(a - r))


def sqnr_db(approx: np.ndarray, ref: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(||ref||^2 / ||approx - ref||^2)`` in dB
    (infinite when they are equal)."""
    a, r = _pair(approx, ref)
    noise = np.sum((a - r) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(r ** 2) / noise))


def max_abs_error(approx: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute elementwise difference."""
    a, r = _pair(approx, ref)
    return float(np.abs(a - r).max(initial=0.0))


def error_report(approx: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """All three figures, keyed ``rel_err``, ``sqnr_db`` and ``max_abs_err``."""
    return {"rel_err": relative_error(approx, ref), "sqnr_db": sqnr_db(approx, ref),
            "max_abs_err": max_abs_error(approx, ref)}
