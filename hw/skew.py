"""Input skew of the systolic array (spec §3; Gemmini's ``MeshWithDelays``).

Lane ``i`` of a bundle of operand buses is delayed by ``i`` cycles, so that operands of one K step
that enter the array together reach PE (r, c) in the same cycle: row r's A group travels r cycles
in the skew and c cycles through the PEs to its left, column c's W group c cycles in the skew and
r cycles through the PEs above, r + c cycles each.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pe import OPERAND, OperandSignature

__all__ = ["Skew"]


class Skew(wiring.Component):
    """Delays lane ``i`` of ``lanes`` operand buses by ``i`` cycles.

    Lane 0 is a wire. Each delay stage registers ``valid`` every cycle and ``payload`` only when
    valid (the payload is held between groups, as the PE's own forwarding registers do).

    Parameters
    ----------
    lanes : int
        Number of buses (R for A, C for W).

    Attributes
    ----------
    i : In(OperandSignature).array(lanes)
        Operands of one K step, all valid in the same cycle.
    o : Out(OperandSignature).array(lanes)
        ``o[i]`` is ``i[i]`` delayed by ``i`` cycles.
    """

    def __init__(self, lanes: int) -> None:
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ValueError(f"Skew lane count must be a positive integer, not {lanes!r}")
        self.lanes = lanes
        super().__init__({"i": In(OperandSignature).array(lanes),
                          "o": Out(OperandSignature).array(lanes)})

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(self.lanes):
            valid, payload = self.i[lane].valid, self.i[lane].payload
            for stage in range(lane):
                v = Signal(name=f"l{lane}_s{stage}_valid")
                # A flat register: a layout view would get a Verilog wire for every field.
                p = Signal(OPERAND.size, name=f"l{lane}_s{stage}_payload")
                m.d.sync += v.eq(valid)
                with m.If(valid):
                    m.d.sync += p.eq(payload)
                valid, payload = v, p
            m.d.comb += [self.o[lane].valid.eq(valid), self.o[lane].payload.eq(payload)]
        return m
