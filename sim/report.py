"""The one JSON writer of the command line: strict RFC 8259 output.

JSON has no NaN or Infinity. A report figure that is not finite (an SQNR of a perfect match, a
relative error of an all-zero reference, ...) is written as ``null``, and a field named
``<key>_reason`` beside it says what the value was (``"NaN"``, ``"+Inf"`` or ``"-Inf"``); in a
list, the list's reason field names the positions. NumPy scalars and arrays become plain numbers
and lists, paths and other objects their ``str``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import UsageError

__all__ = ["strict", "dumps", "write_json"]


def _why(x: float) -> str:
    return "NaN" if math.isnan(x) else ("+Inf" if x > 0 else "-Inf")


def _plain(v):
    import numpy as np

    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return v


def _convert(v):
    """(JSON-ready value, reason or None)."""
    import dataclasses

    v = _plain(v)
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v, None
    if isinstance(v, float):
        return (v, None) if math.isfinite(v) else (None, _why(v))
    if isinstance(v, dict):
        return strict(v), None
    if isinstance(v, list):
        out, bad = [], []
        for i, x in enumerate(v):
            y, why = _convert(x)
            out.append(y)
            if why is not None:
                bad.append(f"[{i}] {why}")
        return out, ("; ".join(bad) if bad else None)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return strict(dataclasses.asdict(v)), None
    if isinstance(v, Path):
        return str(v), None
    return str(v), None


def strict(obj: dict) -> dict:
    """A copy of ``obj`` that :func:`json.dumps` writes with ``allow_nan=False``."""
    out: dict = {}
    for k, v in obj.items():
        key = str(k)
        value, why = _convert(v)
        out[key] = value
        if why is not None:
            out[f"{key}_reason"] = why
    return out


def dumps(obj: dict, indent: int = 2) -> str:
    """Strict JSON text of ``obj`` (see the module docstring)."""
    return json.dumps(strict(obj), indent=indent, allow_nan=False)


def write_json(path: "str | Path", obj: dict, option: str = "--json") -> Path:
    """Write ``obj`` as strict JSON to ``path``; returns the path.

    Raises
    ------
    UsageError
        If the file cannot be written.
    """
    text = dumps(obj) + "\n"
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise UsageError(f"{option}: cannot write {str(path)!r}: {exc.strerror}") from None
    return Path(path)
