"""Every parameter of the systolic array and its tile sequencer, in one frozen object (spec §3).

Variants are copies with fields changed (``dataclasses.replace(ArrayConfig(), rows=4, cols=4)``),
as Gemmini's config does. Derived sizes (counter widths, the output buffer depth, the shortest tile
period) are properties, so the RTL (:mod:`hw.array`, :mod:`hw.sequencer`), the cycle model
(:mod:`hw.cycles`) and the testbenches read them from the same place.
"""

from dataclasses import dataclass

from amaranth.utils import ceil_log2

from .pe import MULTIPLIERS, RESULT_LATENCY

__all__ = ["ArrayConfig", "DEFAULT"]

# Cycles from a last-step issue to its row-0 capture, beyond c_last and the column count: the
# issue register (1) and the PE's RESULT_LATENCY; see hw/sequencer.py. Used to size the output
# buffer so that it never throttles an unstalled GEMM.
_CAPTURE_SLACK = 1 + RESULT_LATENCY
# The longest cycles_per_group (MX9 x MX9, spec §2.2).
_MAX_CPG = 16


def _positive_int(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


@dataclass(frozen=True)
class ArrayConfig:
    """Parameters of the output-stationary array and its tile sequencer (spec §3).

    Parameters
    ----------
    rows : int
        R, PE rows: A rows (tokens) of one output tile.
    cols : int
        C, PE columns: W rows (output channels) of one output tile.
    max_m : int
        Largest M (rows of A) a command may name; sets counter widths.
    max_n : int
        Largest N (rows of W).
    max_groups : int
        Largest Kg = ceil(K / 16).
    multiplier : str
        The PE's multiplier organisation, ``"4x4"`` (the design) or ``"8x8"`` (area baseline).
    """

    rows: int = 16
    cols: int = 16
    max_m: int = 4096
    max_n: int = 16384
    max_groups: int = 1024
    multiplier: str = "4x4"

    def __post_init__(self) -> None:
        _positive_int(self.rows, "Array rows")
        _positive_int(self.cols, "Array columns")
        _positive_int(self.max_m, "max_m")
        _positive_int(self.max_n, "max_n")
        _positive_int(self.max_groups, "max_groups")
        if self.multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be one of {MULTIPLIERS}, not {self.multiplier!r}")

    @property
    def name(self) -> str:
        """Short tag, e.g. ``"16x16"``; the 8x8-multiplier baseline adds ``"-m8x8"``."""
        tag = f"{self.rows}x{self.cols}"
        return tag if self.multiplier == "4x4" else f"{tag}-m{self.multiplier}"

    @property
    def m_bits(self) -> int:
        """Width of M and of a row index (0 .. max_m)."""
        return max(1, ceil_log2(self.max_m + 1))

    @property
    def n_bits(self) -> int:
        """Width of N (0 .. max_n)."""
        return max(1, ceil_log2(self.max_n + 1))

    @property
    def kg_bits(self) -> int:
        """Width of Kg (0 .. max_groups)."""
        return max(1, ceil_log2(self.max_groups + 1))

    @property
    def col_bits(self) -> int:
        """Width of a column-tile index (0 .. ceil(max_n / cols) - 1)."""
        return max(1, ceil_log2(-(-self.max_n // self.cols)))

    @property
    def min_tile_period(self) -> int:
        """P_min = max(R, C): the fewest cycles between the last K steps of two tiles.

        Results of a tile land one row per cycle (R cycles) and must be captured before the next
        tile overwrites the first column, C cycles later at the earliest (spec §3).
        """
        return max(self.rows, self.cols)

    @property
    def out_depth(self) -> int:
        """Rows the output buffer holds: enough that an unstalled GEMM never waits for it.

        A tile's rows leave the buffer at most ``c_last + C + R + slack`` cycles after its last K
        step; tiles start at least :attr:`min_tile_period` apart; one more tile is being reserved.
        """
        in_flight = (_MAX_CPG + self.cols + self.rows + _CAPTURE_SLACK + 2) // self.min_tile_period
        return self.rows * (in_flight + 2)


#: The default 16 x 16 array (spec §3).
DEFAULT = ArrayConfig()
