"""Checking what a user hands the command line, with one-line errors instead of tracebacks.

Every ``mixdit`` command reads its files and options through these functions, so that a given
mistake gets the same message and exit status 2 (:class:`~sim.errors.UsageError`) everywhere:

- :func:`load_array`: a float ``.npy`` tensor (``quantize --in``, ``gemm --a/--w``);
- :func:`load_capture`: a capture ``.npz`` of ``mixdit capture`` (``simulate-layer
  --activations``, ``analyze``), with :func:`check_capture_arrays` on its arrays;
- :func:`load_dit`: a DiT checkpoint (``--checkpoint``);
- :func:`output_file`, :func:`output_dir`: where a command will write, checked before any
  simulation starts;
- :func:`env_ints`: the integer tuples of the ``MIXDIT_TEST_FLIP_*`` test hooks.

Non-finite data: an Inf and a NaN have the same effect on an MX group (either makes it a NaN
group, spec §1.1), so the checks never tell them apart. Commands that report errors against FP32
refuse both; ``gemm`` accepts them (NaN groups are part of what the RTL computes) but refuses a
tensor without a single finite value, all-NaN and all-Inf alike: every group would be a NaN
group, every result the canonical NaN, and the check would exercise nothing of the datapath.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import UsageError

__all__ = [
    "load_array", "check_float_array", "load_capture", "check_capture_arrays", "load_dit",
    "output_file", "output_dir", "env_ints", "check_fraction",
]

#: What ``np.load`` raises on a damaged, truncated or foreign file.
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError)
_FP32_MAX = float(np.finfo(np.float32).max)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_float_array(arr: np.ndarray, what: str, *, finite: "bool | str" = True,
                      ndim: "int | tuple[int, ...] | None" = None) -> np.ndarray:
    """``arr`` as float32, or a :class:`UsageError` naming ``what``.

    Parameters
    ----------
    arr : numpy.ndarray
    what : str
        How the message names the array, e.g. ``"A 'a.npy'"``.
    finite : bool or "some"
        True: every value must be finite. ``"some"``: NaN and Inf are allowed, but not a tensor
        without any finite value. False: anything.
    ndim : int or tuple of int, optional
        The allowed ranks.

    Raises
    ------
    UsageError
        For integer, boolean, complex or object data, a wrong rank, no elements, float64 values
        beyond the FP32 range (they would silently become Inf), and non-finite values as above.
    """
    if not isinstance(arr, np.ndarray):
        raise UsageError(f"{what} is not an array")
    if not np.issubdtype(arr.dtype, np.floating):
        raise UsageError(f"{what} holds {arr.dtype} data; real floating-point data is needed")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            raise UsageError(f"{what} has shape {list(arr.shape)}; expected "
                             f"{' or '.join(f'{n}-D' for n in allowed)}")
    if arr.ndim == 0 or arr.size == 0:
        raise UsageError(f"{what} is empty (shape {list(arr.shape)})")
    if arr.dtype.itemsize > 4:
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(np.float32)
        over = np.isinf(out) & np.isfinite(arr)
        if over.any():
            big, n = float(np.abs(arr[over]).max()), int(over.sum())
            raise UsageError(f"{what} holds {n} {arr.dtype} value{'s' if n != 1 else ''} beyond "
                             f"the FP32 range (largest magnitude {big:.6g} > {_FP32_MAX:.6g}); "
                             "the accelerator's inputs are FP32")
    else:
        out = arr.astype(np.float32)
    if finite:
        bad = ~np.isfinite(out)
        if finite == "some":
            if bad.all():
                raise UsageError(f"{what} holds no finite value (only NaN or Inf): every MX group "
                                 "would be a NaN group, so the result says nothing")
        elif bad.any():
            n = int(bad.sum())
            raise UsageError(f"{what} holds {n} NaN or Inf value{'s' if n != 1 else ''}; the "
                             "error figures would be meaningless")
    return out


def load_array(path: "str | Path", what: str, *, ndim: "int | tuple[int, ...] | None" = None,
               finite: "bool | str" = True) -> np.ndarray:
    """Load a ``.npy`` file of floating-point data as float32 (see :func:`check_float_array`).

    Raises
    ------
    UsageError
        If the file is missing or unreadable (a damaged or truncated file included), an ``.npz``
        archive instead of one array, or fails :func:`check_float_array`.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{what} file {str(p)!r} does not exist")
    try:
        arr = np.load(p, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise UsageError(f"{what} file {str(p)!r} is not a readable .npy array "
                         f"({_first_line(exc)})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise UsageError(f"{what} file {str(p)!r} is an .npz archive of several arrays; give a "
                         "single .npy array")
    return check_float_array(arr, f"{what} {str(p)!r}", finite=finite, ndim=ndim)


def check_capture_arrays(arrays: dict, path: str) -> dict:
    """Check every activation array of a capture; returns the arrays (activations as float32).

    Activation arrays (every key but ``meta/*``) must be finite real floating-point data with
    at least one element; ``meta/blocks`` and ``meta/timesteps`` must be integer vectors.
    """
    for key in ("meta/blocks", "meta/timesteps"):
        if key not in arrays:
            raise UsageError(f"{path!r} is not a capture of 'mixdit capture' (no {key})")
        v = arrays[key]
        if not np.issubdtype(v.dtype, np.integer) or v.ndim != 1 or v.size == 0:
            raise UsageError(f"{path!r}: {key} must be a non-empty integer vector, not "
                             f"{v.dtype} {list(v.shape)}")
    out = {}
    for key, v in arrays.items():
        out[key] = v if key.startswith("meta/") else check_float_array(v, f"{path!r} array {key!r}")
    return out


def load_capture(path: "str | Path") -> dict:
    """Read a capture ``.npz`` of ``mixdit capture`` and check it (:func:`check_capture_arrays`).

    Raises
    ------
    UsageError
        For a missing file, a damaged or truncated archive, a single ``.npy`` array, pickled
        objects, or arrays that fail the checks.
    """
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no capture file {str(p)!r}")
    try:
        data = np.load(p, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise UsageError(f"cannot read capture {str(p)!r} as an .npz ({_first_line(exc)})") \
            from None
    if isinstance(data, np.ndarray):
        raise UsageError(f"{str(p)!r} is a single .npy array, not a capture .npz (write one with "
                         "'mixdit capture')")
    try:
        with data:
            arrays = {k: data[k] for k in data.files}
    except _READ_ERRORS as exc:
        raise UsageError(f"cannot read capture {str(p)!r}: {_first_line(exc)}") from None
    return check_capture_arrays(arrays, str(p))


def load_dit(path: "str | Path | None", option: str = "--checkpoint"):
    """The DiT of a checkpoint (the shipped one for None), or a :class:`UsageError`.

    ``.safetensors`` files are read as the project writes them (:mod:`golden.dit.checkpoint`),
    anything else as an official DiT ``.pt`` (:mod:`golden.dit.loaders`).
    """
    from golden.dit import loaders

    if path is not None and not Path(path).is_file():
        raise UsageError(f"{option}: no checkpoint file {str(path)!r}")
    try:
        return loaders.load_checkpoint(path)
    except UsageError:
        raise
    except Exception as exc:  # safetensors, pickle and torch each raise their own types
        kind = "safetensors file" if str(path).endswith(".safetensors") else "DiT checkpoint"
        why = " ".join(str(exc).split())
        why = why if len(why) <= 160 else why[:157] + "..."
        raise UsageError(f"{option} {str(path)!r} is not a usable {kind}: "
                         f"{type(exc).__name__}: {why}") from None


def _writable_dir(d: Path, option: str, path: Path) -> None:
    if not d.exists():
        raise UsageError(f"{option} {str(path)!r}: the directory {str(d)!r} does not exist")
    if not d.is_dir():
        raise UsageError(f"{option} {str(path)!r}: {str(d)!r} is not a directory")
    if not os.access(d, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {str(path)!r}: the directory {str(d)!r} is not writable")


def output_file(path: "str | Path | None", option: str, suffix: "str | None" = None) \
        -> "Path | None":
    """The file a command will really write for ``path``, checked before any work starts.

    ``suffix`` is what NumPy appends (``np.save`` adds ``.npy``, ``np.savez`` ``.npz`` when the
    name lacks it); the returned path carries it, so that "wrote X" names the real file.

    Raises
    ------
    UsageError
        If the path is an existing directory, its parent is missing or not a directory, or the
        file or its directory is not writable.
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir() or str(path).endswith(os.sep):
        raise UsageError(f"{option} {str(path)!r} is a directory; give a file name")
    if suffix is not None and p.suffix != suffix:
        p = p.with_name(p.name + suffix)
    if p.is_dir():
        raise UsageError(f"{option} {str(p)!r} (the name written) is a directory")
    _writable_dir(p.parent, option, Path(path))
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{option} {str(p)!r} exists and is not writable")
    return p


def output_dir(path: "str | Path | None", option: str) -> "Path | None":
    """A directory a command will create (with parents) and write into, checked before work.

    Raises
    ------
    UsageError
        If the path exists and is not a directory, or its nearest existing ancestor is not a
        writable directory.
    """
    if path is None or str(path) == "":
        return None
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{option} {str(p)!r} exists and is not a directory")
        _writable_dir(p, option, p)
        return p
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    _writable_dir(anc, option, p)
    return p


def env_ints(name: str, count: int, fields: str) -> "tuple[int, ...] | None":
    """The ``count`` comma-separated non-negative integers of environment variable ``name``.

    Returns None when it is unset or empty; a :class:`UsageError` naming ``fields`` (e.g.
    ``"gemm_index,row,col,bit"``) when it holds anything else.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    parts = [s.strip() for s in raw.split(",")]
    if len(parts) != count or not all(s.isdigit() for s in parts):
        raise UsageError(f"{name}={raw!r}: expected {count} non-negative integers '{fields}'")
    return tuple(int(s) for s in parts)


def check_fraction(value: float, name: str) -> float:
    """``value`` if it lies in [0, 1], else a :class:`UsageError` naming ``name``."""
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{name} must lie in [0, 1], not {value}")
    return value
