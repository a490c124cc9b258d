"""The output-stationary PE grid (spec §3; Gemmini's ``Mesh``, here without pipeline registers
between PEs beyond the PEs' own operand registers).

Row r of A enters PE (r, 0) at the left and moves right one PE per cycle; column c of W (a row
of W, i.e. a column of B = W^T) enters PE (0, c) at the top and moves down one PE per cycle; PE
(r, c) accumulates C[r, c]. Every PE's ``result`` shadow register holds its finished dot product
while the accumulator works on the next tile (:mod:`hw.pe`), which is what lets the sequencer
drain tile t while tile t+1 computes (:mod:`hw.sequencer`).

:class:`Mesh` is the bare grid; :class:`SkewedMesh` puts the input skew (:class:`hw.skew.Skew`)
in front of it, so that one K step enters all rows and columns in the same cycle.

Both take ``pe_module``: with None the PEs are Amaranth submodules (what Amaranth's simulator
needs); with a Verilog module name they are instances of that module, C to a row module
(:class:`PERow`, ``<pe_module>_row``) that the mesh instantiates R times; the emitter writes both
once beside the array (:func:`verilog_modules`, :attr:`hw.sequencer.GemmArray.verilog_dependencies`).
Amaranth emits every submodule instance as its own Verilog module, so a 16 x 16 grid of
submodules is 256 copies of the PE (about 30 MB of Verilog and minutes of Yosys); one shared
module is 125 kB. The row is the unit Verilator verilates once as a hierarchical block.
"""

from amaranth.hdl import ClockSignal, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import ArrayConfig
from .pe import OPERAND, PE, OperandSignature, ResultSignature
from .skew import Skew

__all__ = ["Mesh", "SkewedMesh", "PERow", "row_module_name", "verilog_modules"]


def _check_config(config) -> ArrayConfig:
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"Expected an ArrayConfig, not {config!r}")
    return config


def _check_pe_module(name) -> "str | None":
    if name is not None and (not isinstance(name, str) or not name.isidentifier()):
        raise ValueError(f"PE module name must be a Verilog identifier or None, not {name!r}")
    return name


class _Bus:
    """A valid bit and a flat operand payload between two PE instances."""

    def __init__(self, pe: str, port: str) -> None:
        self.valid = Signal(name=f"{pe}_{port}_valid")
        self.payload = Signal(OPERAND.size, name=f"{pe}_{port}_payload")


def _pe_instance(m: Module, name: str, module: str, a_src, b_src, result):
    """Instantiate the PE's Verilog module ``module``; returns its a_o/b_o buses."""
    # Plain signals, not layout views: a view gets a Verilog wire per field, 480 times over.
    a_o = _Bus(name, "a_o")
    b_o = _Bus(name, "b_o")
    m.submodules[name] = Instance(
        module,
        i_clk=ClockSignal(), i_rst=ResetSignal(), i_clear=0,
        i_a_i__valid=a_src.valid, i_a_i__payload=a_src.payload,
        i_b_i__valid=b_src.valid, i_b_i__payload=b_src.payload,
        o_a_o__valid=a_o.valid, o_a_o__payload=a_o.payload,
        o_b_o__valid=b_o.valid, o_b_o__payload=b_o.payload,
        o_result__valid=result.valid, o_result__payload=result.payload,
    )
    return a_o, b_o


def row_module_name(pe_module: str) -> str:
    """The Verilog module of one row of PEs, for PE module ``pe_module``."""
    return f"{pe_module}_row"


class PERow(wiring.Component):
    """One row of ``cols`` PE instances (Verilog module ``pe_module``), A entering PE 0 and
    moving right, each column's W entering its PE and leaving below it: the unit the mesh
    instantiates once per row when its PEs are Verilog instances.

    A row is its own Verilog module so that Verilator can verilate it once as a hierarchical
    block (one C++ model shared by the R rows): a row per block, rather than a PE per block,
    makes R calls into the shared models per cycle instead of R x C, and each call has a fixed
    cost (the model's evaluation loop, its ports copied in and out) that, per PE, was larger
    than the PE's own logic (``bench/bench_top.py``).

    Attributes
    ----------
    a_i : In(OperandSignature)
        Feeds PE 0.
    b_i : In(OperandSignature).array(cols)
        ``b_i[c]`` feeds PE c.
    b_o : Out(OperandSignature).array(cols)
        PE c's forwarded W operand, for the row below.
    result : Out(ResultSignature).array(cols)
    """

    def __init__(self, cols: int, pe_module: str) -> None:
        if not isinstance(cols, int) or cols < 1:
            raise ValueError(f"A row needs a positive number of PEs, not {cols!r}")
        self.cols = cols
        self.pe_module = _check_pe_module(pe_module)
        if self.pe_module is None:
            raise ValueError("A row instantiates a Verilog PE module; give its name")
        super().__init__({
            "a_i": In(OperandSignature),
            "b_i": In(OperandSignature).array(cols),
            "b_o": Out(OperandSignature).array(cols),
            "result": Out(ResultSignature).array(cols),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        a_src = self.a_i
        for c in range(self.cols):
            a_src, b_o = _pe_instance(m, f"pe_{c}", self.pe_module, a_src, self.b_i[c],
                                      self.result[c])
            m.d.comb += [self.b_o[c].valid.eq(b_o.valid), self.b_o[c].payload.eq(b_o.payload)]
        return m


def _row_instance(m: Module, r: int, cols: int, module: str, a_src, b_src: list, result: list):
    """Instantiate row ``r`` (module ``module``, :class:`PERow`); returns its b_o buses."""
    ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal(),
             "i_a_i__valid": a_src.valid, "i_a_i__payload": a_src.payload}
    b_o = []
    for c in range(cols):
        bus = _Bus(f"row_{r}_{c}", "b_o")
        b_o.append(bus)
        ports.update({f"i_b_i__{c}__valid": b_src[c].valid,
                      f"i_b_i__{c}__payload": b_src[c].payload,
                      f"o_b_o__{c}__valid": bus.valid, f"o_b_o__{c}__payload": bus.payload,
                      f"o_result__{c}__valid": result[c].valid,
                      f"o_result__{c}__payload": result[c].payload})
    m.submodules[f"row_{r}"] = Instance(module, **ports)
    return b_o


class Mesh(wiring.Component):
    """R x C PEs, A flowing right and W flowing down (spec §3).

    Parameters
    ----------
    config : ArrayConfig
    pe_module : str or None
        Verilog module name to instantiate for each PE, or None for Amaranth submodules.

    Attributes
    ----------
    a_i : In(OperandSignature).array(R)
        ``a_i[r]`` feeds PE (r, 0).
    b_i : In(OperandSignature).array(C)
        ``b_i[c]`` feeds PE (0, c).
    result : Out(ResultSignature).array(R, C)
        ``result[r][c]`` is PE (r, c)'s result bus. For operands of one K step valid at PE (r, c)
        in cycle t (``a_i[r]`` valid in cycle t - c, ``b_i[c]`` in cycle t - r), a last step's
        result is valid in cycle ``t + cycles_per_group + RESULT_LATENCY`` (:mod:`hw.pe`).
    """

    def __init__(self, config: ArrayConfig = ArrayConfig(), pe_module: "str | None" = None) -> None:
        self.config = _check_config(config)
        self.pe_module = _check_pe_module(pe_module)
        super().__init__({
            "a_i": In(OperandSignature).array(config.rows),
            "b_i": In(OperandSignature).array(config.cols),
            "result": Out(ResultSignature).array(config.rows, config.cols),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        if self.pe_module is not None:
            module = row_module_name(self.pe_module)
            b_src = list(self.b_i)
            for r in range(cfg.rows):
                b_src = _row_instance(m, r, cfg.cols, module, self.a_i[r], b_src,
                                      self.result[r])
            return m
        a_out = [[None] * cfg.cols for _ in range(cfg.rows)]
        b_out = [[None] * cfg.cols for _ in range(cfg.rows)]
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                a_src = self.a_i[r] if c == 0 else a_out[r][c - 1]
                b_src = self.b_i[c] if r == 0 else b_out[r - 1][c]
                pe = m.submodules[f"pe_{r}_{c}"] = PE(cfg.multiplier)
                m.d.comb += [
                    pe.a_i.valid.eq(a_src.valid), pe.a_i.payload.eq(a_src.payload),
                    pe.b_i.valid.eq(b_src.valid), pe.b_i.payload.eq(b_src.payload),
                    pe.clear.eq(0),
                    self.result[r][c].valid.eq(pe.result.valid),
                    self.result[r][c].payload.eq(pe.result.payload),
                ]
                a_out[r][c], b_out[r][c] = pe.a_o, pe.b_o
        return m


class SkewedMesh(wiring.Component):
    """The mesh with its input skew (Gemmini's ``MeshWithDelays``, spec §3).

    The operands of one K step, valid together on ``a_i``/``b_i`` in cycle t, meet in PE (r, c)
    in cycle ``t + r + c``; a last step's result is valid at PE (r, c) in cycle
    ``t + r + c + cycles_per_group + RESULT_LATENCY``.

    Parameters
    ----------
    config : ArrayConfig
    pe_module : str or None
        As for :class:`Mesh`.

    Attributes
    ----------
    a_i : In(OperandSignature).array(R)
    b_i : In(OperandSignature).array(C)
        One K step: all buses valid in the same cycle.
    result : Out(ResultSignature).array(R, C)
    """

    def __init__(self, config: ArrayConfig = ArrayConfig(), pe_module: "str | None" = None) -> None:
        self.config = _check_config(config)
        self.pe_module = _check_pe_module(pe_module)
        super().__init__({
            "a_i": In(OperandSignature).array(config.rows),
            "b_i": In(OperandSignature).array(config.cols),
            "result": Out(ResultSignature).array(config.rows, config.cols),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        m.submodules.skew_a = skew_a = Skew(cfg.rows)
        m.submodules.skew_b = skew_b = Skew(cfg.cols)
        m.submodules.mesh = mesh = Mesh(cfg, self.pe_module)
        for r in range(cfg.rows):
            wiring.connect(m, wiring.flipped(self.a_i[r]), skew_a.i[r])
            wiring.connect(m, skew_a.o[r], mesh.a_i[r])
        for c in range(cfg.cols):
            wiring.connect(m, wiring.flipped(self.b_i[c]), skew_b.i[c])
            wiring.connect(m, skew_b.o[c], mesh.b_i[c])
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                wiring.connect(m, mesh.result[r][c], wiring.flipped(self.result[r][c]))
        return m


def verilog_modules(config: ArrayConfig, pe_module: "str | None") -> "list[tuple[str, wiring.Component]]":
    """The Verilog modules a mesh with ``pe_module`` instantiates, ``(name, component)``: its row
    (:class:`PERow`) and the PE; none for Amaranth submodules."""
    if pe_module is None:
        return []
    return [(row_module_name(pe_module), PERow(config.cols, pe_module)),
            (pe_module, PE(config.multiplier))]
