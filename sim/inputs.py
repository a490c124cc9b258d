"""Loading user-supplied arrays with one-line errors instead of tracebacks."""

from pathlib import Path

import numpy as np

from .errors import UsageError

__all__ = ["load_array", "check_fraction"]


def load_array(path: "str | Path", what: str, *, ndim: "int | tuple[int, ...] | None" = None,
               finite: bool = True) -> np.ndarray:
    """Load a ``.npy`` file of floating-point data as float32.

    Raises
    ------
    UsageError
        If the file is missing or unreadable, not floating-point, of the wrong rank, empty, or
        (with ``finite``) holds NaN or Inf.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} file {str(p)!r} does not exist")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UsageError(f"{what} file {str(p)!r} is not a readable .npy array ({exc})") from None
    if not isinstance(arr, np.ndarray):
        raise UsageError(f"{what} file {str(p)!r} holds several arrays; give a single .npy array")
    if not np.issubdtype(arr.dtype, np.floating):
        raise UsageError(f"{what} {str(p)!r} holds {arr.dtype} data; floating-point data is needed")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise UsageError(f"{what} {str(p)!r} has shape {list(arr.shape)}; expected "
                             f"{' or '.join(f'{n}-D' for n in allowed)}")
    if arr.ndim == 0 or arr.size == 0:
        raise UsageError(f"{what} {str(p)!r} is empty (shape {list(arr.shape)})")
    arr = arr.astype(np.float32)
    if finite and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise UsageError(f"{what} {str(p)!r} holds {bad} NaN or Inf values (after conversion to "
                         "float32); the error figures would be meaningless")
    return arr


def check_fraction(value: float, name: str) -> float:
    """``value`` if it lies in [0, 1], else a :class:`UsageError` naming ``name``."""
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{name} must lie in [0, 1], not {value}")
    return value
