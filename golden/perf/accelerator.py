"""Cycle and latency model of the MixDiT accelerator (spec §2.2, §3; paper §III-C, Table II).

Three levels:

1. :func:`group_cycles`: cycles of one PE per K group pair, 4 / 8 / 16 (spec §2.2).
2. :func:`array_gemm_cycles`: the exact cycles of one R x C array for an ``M x K x N`` GEMM with
   per-group precisions, as the RTL runs it: :func:`hw.cycles.gemm_cycles` of the systolic array
   issue, imported, ``S + (T - 1) * max(S, max(R, C)) + C + rows_L + FIXED_OVERHEAD`` with ``S = sum_k c_k``
   (``cbar * Kg`` of spec §3) and ``T`` tiles: spec §3's target, fill and drain paid once.
3. :func:`gemm_latency` and :func:`workload_latency`: the paper's configuration (Table II: 1024
   arrays of 16 x 16 PEs at 500 MHz, 936 GB/s, 28 MB on chip). A GEMM's output tiles are spread
   over the arrays; its time is the larger of the compute time and the time its operands take
   over the memory interface (a roofline: double buffering overlaps the two).

Precision of a GEMM under a :class:`Precision` (spec §4): for linear layers W is ``linear_w``
and A is ``linear_a`` except its last ``ceil(p1 * K / 16)`` groups, which are MX9; for attention
the top ``ceil(p2 * heads)`` heads run MX9 x MX9 and the rest ``attention`` x ``attention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from ..formats import GROUP_SIZE, MX6, MX9, format_of
from .workloads import Gemm, Workload

__all__ = [
    "GROUP_CYCLES", "group_cycles", "repetition_cycles", "tile_cycles", "array_gemm_cycles",
    "AcceleratorConfig", "PAPER_CONFIG", "Precision", "FP_MX9", "FP_MX6", "mixdit",
    "peak_tops", "GemmTime", "gemm_latency", "WorkloadTime", "workload_latency",
    "element_bits", "CYCLE_MODEL",
]

#: PE cycles per group pair (spec §2.2): the four 4x4 multipliers form 4, 2 or 1 products a
#: cycle for MX6 x MX6, MX9 x MX6 (either order) and MX9 x MX9.
GROUP_CYCLES = {("mx6", "mx6"): 4, ("mx6", "mx9"): 8, ("mx9", "mx6"): 8, ("mx9", "mx9"): 16}

#: Which per-array cycle formula the model uses (reported by ``mixdit perf``).
CYCLE_MODEL = ("hw.cycles.gemm_cycles (the RTL's exact count): "
               "S + (T-1)*max(S, max(R,C)) + C + rows_L + FIXED_OVERHEAD (the fill and drain, "
               "17 with the pipelined PE), tiles dealt over the arrays")


def group_cycles(fmt_a: str, fmt_w: str) -> int:
    """PE cycles for one group pair of formats ``fmt_a`` x ``fmt_w`` (spec §2.2)."""
    key = (format_of(fmt_a).name, format_of(fmt_w).name)
    if key not in GROUP_CYCLES:
        raise ValueError(f"The PE computes MX6 and MX9 groups, not {key[0]} x {key[1]}")
    return GROUP_CYCLES[key]


def _formats(fmt: "str | Sequence[str]", groups: int) -> list[str]:
    if isinstance(fmt, str):
        return [fmt] * groups
    fmts = list(fmt)
    if len(fmts) != groups:
        raise ValueError(f"{len(fmts)} formats given for {groups} K groups")
    return fmts


def tile_cycles(k: int, a_formats: "str | Sequence[str]", w_formats: "str | Sequence[str]") -> int:
    """``sum_k c_k``: cycles one output tile spends on its ``ceil(K/16)`` group pairs."""
    groups = -(-k // GROUP_SIZE)
    return sum(group_cycles(a, w)
               for a, w in zip(_formats(a_formats, groups), _formats(w_formats, groups)))


def array_gemm_cycles(m: int, k: int, n: int, a_formats: "str | Sequence[str]" = "mx6",
                      w_formats: "str | Sequence[str]" = "mx6", rows: int = 16,
                      cols: int = 16) -> int:
    """Exact cycles of one ``rows x cols`` array for ``[M, K] x [K, N]``: the RTL's own count,
    :func:`hw.cycles.gemm_cycles` (spec §3)."""
    from dataclasses import replace

    from hw.config import ArrayConfig
    from hw.cycles import gemm_cycles

    return gemm_cycles(m, k, n, a_formats, w_formats, replace(ArrayConfig(), rows=rows, cols=cols))


def _fixed_overhead() -> int:
    from hw.cycles import FIXED_OVERHEAD

    return FIXED_OVERHEAD


@dataclass(frozen=True)
class AcceleratorConfig:
    """The accelerator at scale (paper Table II by default).

    Attributes
    ----------
    rows, cols : int
        PEs per array (16 x 16).
    arrays : int
        Systolic arrays (1024).
    freq_hz : float
        Clock (500 MHz).
    dram_bytes_per_s : float
        Off-chip bandwidth (936 GB/s, the RTX 3090's).
    onchip_bytes : int
        On-chip buffer (28 MB); reported against each GEMM's largest operand.
    """

    rows: int = 16
    cols: int = 16
    arrays: int = 1024
    freq_hz: float = 500e6
    dram_bytes_per_s: float = 936e9
    onchip_bytes: int = 28 * 2**20

    def __post_init__(self) -> None:
        if min(self.rows, self.cols, self.arrays) < 1 or self.freq_hz <= 0 \
                or self.dram_bytes_per_s <= 0:
            raise ValueError(f"Accelerator parameters must be positive: {self!r}")


#: Paper Table II.
PAPER_CONFIG = AcceleratorConfig()


def peak_tops(fmt_a: str, fmt_w: str, cfg: AcceleratorConfig = PAPER_CONFIG) -> float:
    """Peak tera-operations per second (2 per MAC) for ``fmt_a`` x ``fmt_w`` throughout.

    ``arrays * R * C * f * 2 * 16 / c``: each PE does one 16-MAC group pair every ``c`` cycles.
    """
    c = group_cycles(fmt_a, fmt_w)
    return cfg.arrays * cfg.rows * cfg.cols * cfg.freq_hz * 2 * GROUP_SIZE / c / 1e12


@dataclass(frozen=True)
class Precision:
    """Formats of every GEMM of a workload (spec §4).

    Attributes
    ----------
    name : str
        Label for tables (``"MixDiT (5%, 20%)"``).
    linear_w, linear_a : str
        Weight format and base activation format of linear layers.
    p1 : float
        Share of linear-layer activation channels (ceil to groups) in MX9.
    attention : str
        Base format of both attention operands.
    p2 : float
        Share of heads (ceil) running MX9 x MX9.
    """

    name: str
    linear_w: str = "mx6"
    linear_a: str = "mx6"
    p1: float = 0.0
    attention: str = "mx6"
    p2: float = 0.0

    def __post_init__(self) -> None:
        for p, what in ((self.p1, "p1"), (self.p2, "p2")):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{what} must lie in [0, 1], not {p!r}")
        for f in (self.linear_w, self.linear_a, self.attention):
            if format_of(f) not in (MX6, MX9):
                raise ValueError(f"The accelerator runs MX6 and MX9, not {f!r}")

    def linear_formats(self, k: int) -> tuple[list[str], list[str]]:
        """Per-group formats of A and W of a linear layer with ``k`` input channels."""
        groups = -(-k // GROUP_SIZE)
        n9 = min(groups, math.ceil(round(self.p1 * k / GROUP_SIZE, 9)))
        return ([self.linear_a] * (groups - n9) + ["mx9"] * n9, [self.linear_w] * groups)

    def mx9_heads(self, heads: int) -> int:
        """Heads of an attention layer that run in MX9: ``ceil(p2 * heads)`` (or all, when the
        base format is MX9)."""
        if self.attention == "mx9":
            return heads
        return min(heads, math.ceil(round(self.p2 * heads, 9)))


#: Every GEMM in MX9 (the paper's "MX9" bar in Fig. 11).
FP_MX9 = Precision("MX9", "mx9", "mx9", 0.0, "mx9", 0.0)
#: Every GEMM in MX6 (the paper's "MX6" bar).
FP_MX6 = Precision("MX6")


def mixdit(p1: float, p2: float) -> Precision:
    """The MixDiT mix: W in MX6, A in MX6 but the top ``p1`` channels, the top ``p2`` heads MX9."""
    return Precision(f"MixDiT ({p1:.0%}, {p2:.0%})", p1=p1, p2=p2)


def element_bits(fmts: Sequence[str]) -> float:
    """Mean storage bits per element of groups in ``fmts`` (spec §1.2: 96 or 144 per 16)."""
    return sum(format_of(f).group_bits for f in fmts) / (GROUP_SIZE * len(fmts))


@dataclass(frozen=True)
class GemmTime:
    """Latency of one :class:`~golden.perf.workloads.Gemm` (all its instances) on the accelerator.

    Attributes
    ----------
    gemm : Gemm
    cycles : int
        Compute cycles of all repetitions (the busiest array's, fill and drain included).
    compute_s, memory_s, time_s : float
        Compute time, time of the off-chip traffic, and their maximum (the latency).
    bytes : float
        Off-chip bytes of all repetitions.
    utilization : float
        PE-cycles that real output elements need (``sum_k c_k`` each) over the PE-cycles of
        every array during ``cycles``: 1 when no PE idles on padding, load imbalance or fill.
    largest_operand : float
        Bytes of the largest single operand of one repetition (to compare with on-chip memory).
    """

    gemm: Gemm
    cycles: int
    compute_s: float
    memory_s: float
    bytes: float
    utilization: float
    largest_operand: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        """``"compute"`` or ``"memory"``."""
        return "compute" if self.compute_s >= self.memory_s else "memory"


def _spread_cycles(tiles: Sequence[tuple[int, int]], arrays: int) -> int:
    """Cycles of the busiest array when ``tiles`` (``(count, cycles per tile)``) are dealt out,
    longest first, each to the least-loaded of ``arrays`` arrays.

    With tile lengths that divide one another (4, 8 and 16 cycles per group times the same Kg),
    this greedy schedule ends at (and otherwise is bounded below by) ``max(ceil(n_long / arrays) * c_long, ceil(total / (arrays *
    c_short)) * c_short)``: the longest tiles' rounds, or the total work levelled in units of
    the shortest tile.
    """
    present = [(n, c) for n, c in tiles if n > 0]
    if not present:
        return 0
    n_long, c_long = max(present, key=lambda t: t[1])
    c_short = min(c for _, c in present)
    total = sum(n * c for n, c in present)
    return max(-(-n_long // arrays) * c_long, -(-total // (arrays * c_short)) * c_short)


def repetition_cycles(tiles: Sequence[tuple[int, int]], m: int,
                      cfg: "AcceleratorConfig") -> int:
    """Cycles of one repetition of a GEMM whose output tiles (``(count, S)`` pairs, ``S`` the
    tile's ``sum_k c_k``) are dealt over ``cfg.arrays`` arrays.

    The busiest array runs its tiles back to back, each taking ``P = max(S, max(R, C))``
    (:func:`_spread_cycles`), then pays the RTL's fill and drain once:
    ``busy + (S - P) + C + rows_L + FIXED_OVERHEAD``, with the last tile's ``S`` and ``rows_L`` the rows of
    the GEMM's last tile row. On one array this is :func:`hw.cycles.gemm_cycles` exactly
    (``tests/test_perf.py`` checks it on the array tests' shapes and mixes); on many arrays
    ``rows_L`` is taken as ``min(R, M)``, the busiest array's last tile being a full one.
    """
    p_min = max(cfg.rows, cfg.cols)
    periods = [(cnt, max(s, p_min)) for cnt, s in tiles]
    busy = _spread_cycles(periods, cfg.arrays)
    present = [s for cnt, s in tiles if cnt > 0]
    s_last = min(present)
    rows_last = m - cfg.rows * (-(-m // cfg.rows) - 1) if cfg.arrays == 1 else min(cfg.rows, m)
    return busy + s_last - max(s_last, p_min) + cfg.cols + rows_last + _fixed_overhead()


def gemm_latency(g: Gemm, prec: Precision, cfg: AcceleratorConfig = PAPER_CONFIG) -> GemmTime:
    """Latency of all instances of ``g`` under ``prec`` on the accelerator ``cfg``.

    Each repetition (``g.count``, one per block) runs after the previous one; within one, the
    output tiles of all ``g.parallel`` instances are dealt out over ``cfg.arrays`` arrays, and
    the fill and drain are paid once (:func:`repetition_cycles`). Off-chip traffic per repetition: A (when
    ``g.a_in_dram``), W or the second activation operand, and the result (when
    ``g.out_in_dram``, written by the MX converter at A's mean bits per element, spec §5).
    """
    groups = -(-g.k // GROUP_SIZE)
    tiles_each = -(-g.m // cfg.rows) * -(-g.n // cfg.cols)
    if g.kind == "linear":
        a_fmts, w_fmts = prec.linear_formats(g.k)
        per_tile = tile_cycles(g.k, a_fmts, w_fmts)
        tiles = [(tiles_each * g.parallel, per_tile)]
        bits_a = element_bits(a_fmts)
        bits_b = element_bits(w_fmts)
        b_elems = g.k * g.n * g.parallel
        ideal = g.m * g.n * g.parallel * per_tile
    else:
        n9 = prec.mx9_heads(g.heads)
        batch = g.parallel // g.heads
        base = prec.attention
        c9, c6 = groups * group_cycles("mx9", "mx9"), groups * group_cycles(base, base)
        tiles = [(tiles_each * batch * n9, c9), (tiles_each * batch * (g.heads - n9), c6)]
        fmts = ["mx9"] * n9 + [base] * (g.heads - n9)
        bits_a = bits_b = element_bits(fmts)
        b_elems = g.k * g.n * g.parallel
        ideal = g.m * g.n * batch * (n9 * c9 + (g.heads - n9) * c6)
    cycles_rep = repetition_cycles(tiles, g.m, cfg)
    a_bytes = g.m * g.k * g.parallel * bits_a / 8 if g.a_in_dram else 0.0
    b_bytes = b_elems * bits_b / 8
    out_bytes = g.m * g.n * g.parallel * bits_a / 8 if g.out_in_dram else 0.0
    bytes_rep = a_bytes + b_bytes + out_bytes
    compute_s = g.count * cycles_rep / cfg.freq_hz
    memory_s = g.count * bytes_rep / cfg.dram_bytes_per_s
    # Utilization against this mix's own cycles per group: 1 when every PE of every array is
    # busy on a real (not padded) output element.
    util = ideal / (cfg.arrays * cfg.rows * cfg.cols * cycles_rep)
    largest = max(g.m * g.k * bits_a, b_elems / g.parallel * bits_b, g.m * g.n * bits_a) / 8
    return GemmTime(g, g.count * cycles_rep, compute_s, memory_s, g.count * bytes_rep,
                    util, largest)


@dataclass(frozen=True)
class WorkloadTime:
    """Per-step and per-image latency of a workload under one precision (paper Fig. 11)."""

    workload: Workload
    precision: Precision
    gemms: tuple[GemmTime, ...] = field(repr=False)

    @property
    def step_s(self) -> float:
        """One model evaluation (one sampler step, both guidance rows)."""
        return sum(t.time_s for t in self.gemms)

    @property
    def image_s(self) -> float:
        """One image: ``steps`` model evaluations."""
        return self.step_s * self.workload.steps

    @property
    def compute_s(self) -> float:
        return sum(t.compute_s for t in self.gemms)

    @property
    def memory_s(self) -> float:
        return sum(t.memory_s for t in self.gemms)

    @property
    def effective_tops(self) -> float:
        """Tera-operations per second achieved over the step (2 per MAC)."""
        return 2 * self.workload.macs_per_step / self.step_s / 1e12


def workload_latency(w: Workload, prec: Precision,
                     cfg: AcceleratorConfig = PAPER_CONFIG) -> WorkloadTime:
    """Latency of one step and one image of ``w`` under ``prec``: the sum over its GEMMs."""
    return WorkloadTime(w, prec, tuple(gemm_latency(g, prec, cfg) for g in w.gemms))

