"""Exact cycle count of a GEMM on the array (spec §3), as the RTL of :mod:`hw.sequencer` runs it.

For an M x K x N GEMM with Kg = ceil(K / 16) groups, per-group cycles c_k =
``cycles_per_group(fmt_a[k], fmt_w[k])`` (spec §2.2), ``S = sum_k c_k`` (one tile's compute),
``c_L = c_{Kg-1}``, ``T = ceil(M/R) * ceil(N/C)`` tiles, ``P = max(S, P_min)`` with
``P_min = max(R, C)`` (:attr:`hw.config.ArrayConfig.min_tile_period`) and ``rows_L = M - R *
(ceil(M/R) - 1)`` rows in the last tile row, with operands always valid and the output always
ready, the cycles from the command's transfer to the last output row's transfer, both included,
are

    cycles = S + (T - 1) * P + C + rows_L + 3 + RESULT_LATENCY

Term by term: 1 cycle from the command to the first K step, ``S - c_L`` to the last step of tile
0, ``(T - 1) * P`` to the last step of the last tile (tile t+1's last step follows tile t's after
``S`` cycles, or after ``P_min`` when the tile is shorter than its drain), ``c_L`` more for its
multiply steps, the issue register (1), the skew and the mesh to column C-1 (``C - 1``), the PE's
RESULT_LATENCY (14), ``rows_L - 1`` cycles for the rows of that tile to land, the landing
register and the output buffer (3), and 1 for counting both ends. With ``S >= P_min`` that is
``T * S + C + rows_L + 18``, i.e. spec §3's target ``ceil(M/R) * ceil(N/C) * cbar * Kg + R + C +
18``: fill and drain are paid once per GEMM. The design without overlap that DaCapo and
SCALE-Sim count is
``T * (S + R + C - 2)`` (:func:`no_overlap_cycles`).
"""

from golden.formats import GROUP_SIZE

from .config import ArrayConfig
from .pe import RESULT_LATENCY, cycles_per_group

__all__ = ["group_cycles", "tile_cycles", "gemm_cycles", "no_overlap_cycles", "tiles",
           "FIXED_OVERHEAD"]

#: Constant cycles of :func:`gemm_cycles` beyond ``C + rows_L`` (see the module docstring).
FIXED_OVERHEAD = 4 + RESULT_LATENCY


def _formats(fmts, kg: int, what: str) -> list:
    if isinstance(fmts, (str, int)) or hasattr(fmts, "mant_bits"):
        return [fmts] * kg
    out = list(fmts)
    if len(out) != kg:
        raise ValueError(f"{what} names {len(out)} group formats; K needs {kg}")
    return out


def _check_dims(m: int, k: int, n: int) -> int:
    for name, v in (("M", m), ("K", k), ("N", n)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return -(-k // GROUP_SIZE)


def group_cycles(k: int, a_fmts, w_fmts, config: ArrayConfig = ArrayConfig()) -> list[int]:
    """Cycles of each K group, ``[c_0 .. c_{Kg-1}]`` (spec §2.2).

    Parameters
    ----------
    k : int
        K, the reduction length in elements.
    a_fmts, w_fmts : str or sequence
        One format for every group, or one per group (``ceil(k / 16)`` of them).
    """
    kg = _check_dims(1, k, 1)
    fa, fw = _formats(a_fmts, kg, "a_fmts"), _formats(w_fmts, kg, "w_fmts")
    return [cycles_per_group(x, y, config.multiplier) for x, y in zip(fa, fw)]


def tiles(m: int, n: int, config: ArrayConfig = ArrayConfig()) -> int:
    """T = ceil(M/R) * ceil(N/C), the output tiles of an M x N result."""
    return -(-m // config.rows) * -(-n // config.cols)


def tile_cycles(k: int, a_fmts, w_fmts, config: ArrayConfig = ArrayConfig()) -> int:
    """S = sum_k c_k: cycles one tile keeps the PEs busy (``cbar * Kg``)."""
    return sum(group_cycles(k, a_fmts, w_fmts, config))


def gemm_cycles(m: int, k: int, n: int, a_fmts="mx6", w_fmts="mx6",
                config: ArrayConfig = ArrayConfig()) -> int:
    """Exact cycles of an M x K x N GEMM on the RTL with no stalls (module docstring formula).

    Parameters
    ----------
    m, k, n : int
        The GEMM: A is ``[M, K]``, W is ``[N, K]``.
    a_fmts, w_fmts : str or sequence of str
        Per-group formats of A and W (``"mx6"``/``"mx9"``), or one format for all groups.
    config : ArrayConfig

    Returns
    -------
    int
        Cycles from the command's transfer to the last result row's transfer, both included.
    """
    cs = group_cycles(k, a_fmts, w_fmts, config)
    _check_dims(m, k, n)
    s = sum(cs)
    t = tiles(m, n, config)
    rows_last = m - config.rows * (-(-m // config.rows) - 1)
    return s + (t - 1) * max(s, config.min_tile_period) + config.cols + rows_last + FIXED_OVERHEAD


def no_overlap_cycles(m: int, k: int, n: int, a_fmts="mx6", w_fmts="mx6",
                      config: ArrayConfig = ArrayConfig()) -> int:
    """The anchor without overlapped drain, ``T * (S + R + C - 2)`` (SCALE-Sim's
    output-stationary count, as DaCapo uses it; spec §3)."""
    _check_dims(m, k, n)
    s = tile_cycles(k, a_fmts, w_fmts, config)
    return tiles(m, n, config) * (s + config.rows + config.cols - 2)
