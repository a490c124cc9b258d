"""The board-level design: a GEMM array behind a UART command and data port (``mixdit board``).

:class:`BoardCore` is the whole design between two pins, ``rx`` and ``tx`` (8 data bits, no
parity, one stop bit, ``divisor`` clock cycles per bit), so that the very design that goes on an
FPGA board is what the end-to-end test simulates. :class:`BoardTop` puts it on an
:mod:`amaranth_boards` platform: the board's UART pins and its oscillator (the ULX3S's 25 MHz
``clk25``, the platform's default clock), either directly or through the ECP5's PLL
(``EHXPLLL``, dividers from :func:`pll_dividers`) at a faster clock.

Protocol (bytes; multi-byte payloads little-endian, as the bit layouts of :mod:`hw.sequencer`)
------------------------------------------------------------------------------------------------
Host to board, one frame at a time, each answered by :data:`ACK` once the array has taken it:

``CMD`` + :func:`cmd_bytes` bytes
    A GEMM command (``m``, ``n``, ``kg`` of :func:`hw.sequencer.cmd_layout`).
``STEP`` + :func:`step_bytes` bytes
    One K step: the ``a`` payload (R tagged groups) followed, at bit ``R * 145``, by the ``w``
    payload (C tagged groups), in the operand order of :mod:`hw.sequencer`.

Board to host: :data:`ACK` (one byte) for each frame taken, and ``RESULT`` + :func:`out_bytes`
bytes for each row the array puts on ``o`` (:func:`hw.sequencer.out_layout`: FP32 data, mask,
row, column tile). The host waits for a frame's ACK before it sends the next, so the receiver
never has to hold more than one frame; results may come between any two ACKs.
"""

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Elaboratable, Instance, Module, Mux,
                          Signal)
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from .config import ArrayConfig
from .sequencer import GemmArray, a_layout, cmd_layout, out_layout, w_layout

__all__ = ["CMD", "STEP", "ACK", "RESULT", "cmd_bytes", "step_bytes", "out_bytes",
           "UARTRx", "UARTTx", "BoardCore", "BoardTop", "board_config", "board_pll",
           "pll_dividers"]

CMD = 0x43
STEP = 0x53
ACK = 0x06
RESULT = 0x52


def _nbytes(bits: int) -> int:
    return (bits + 7) // 8


def cmd_bytes(config: ArrayConfig) -> int:
    """Payload bytes of a ``CMD`` frame."""
    return _nbytes(cmd_layout(config).size)


def step_bytes(config: ArrayConfig) -> int:
    """Payload bytes of a ``STEP`` frame (A then W)."""
    return _nbytes(a_layout(config).size + w_layout(config).size)


def out_bytes(config: ArrayConfig) -> int:
    """Payload bytes of a ``RESULT`` frame."""
    return _nbytes(out_layout(config).size)


def board_config(rows: int, cols: int) -> ArrayConfig:
    """The array configuration of the board design: ``rows`` x ``cols`` PEs and GEMMs of up to
    1024 x 1024 outputs and K = 4096 (256 groups), so that the counters stay small."""
    return ArrayConfig(rows=rows, cols=cols, max_m=1024, max_n=1024, max_groups=256)


#: Operating ranges of the ECP5 PLL in Hz (input, phase detector, VCO, output) that this project
#: keeps to: the VCO's 400-800 MHz of Lattice's ECP5 family data sheet (sysCLOCK PLL timing),
#: and 10 MHz as the lowest input, phase-detector and output frequency, a conservative floor
#: (the data sheet's own minima are lower).
_PLL_IN = (10e6, 400e6)
_PLL_PFD = (10e6, 400e6)
_PLL_VCO = (400e6, 800e6)
_PLL_OUT = (10e6, 400e6)


def pll_dividers(f_in: float, f_out: float) -> "tuple[int, int, int]":
    """``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV)`` for an ECP5 PLL with feedback from CLKOP that makes
    exactly ``f_out`` from ``f_in`` (``f_out = f_in * CLKFB_DIV / CLKI_DIV``, VCO ``f_out *
    CLKOP_DIV``), the VCO nearest the middle of its range; ValueError when none does."""
    def inside(f, rng):
        return rng[0] <= f <= rng[1]
    if not inside(f_in, _PLL_IN) or not inside(f_out, _PLL_OUT):
        raise ValueError(f"the ECP5 PLL makes {_PLL_OUT[0] / 1e6:g} to {_PLL_OUT[1] / 1e6:g} MHz "
                         f"from {_PLL_IN[0] / 1e6:g} to {_PLL_IN[1] / 1e6:g} MHz, not "
                         f"{f_out / 1e6:g} MHz from {f_in / 1e6:g} MHz")
    best = None
    for ki in range(1, 129):
        if not inside(f_in / ki, _PLL_PFD):
            continue
        for fb in range(1, 81):
            if abs(f_in * fb / ki - f_out) > 1e-3:
                continue
            for op in range(1, 129):
                vco = f_out * op
                if inside(vco, _PLL_VCO):
                    score = abs(vco - sum(_PLL_VCO) / 2)
                    if best is None or score < best[0]:
                        best = (score, (ki, fb, op))
    if best is None:
        raise ValueError(f"no ECP5 PLL divider set makes exactly {f_out / 1e6:g} MHz from "
                         f"{f_in / 1e6:g} MHz")
    return best[1]


def board_pll(platform, clock_hz: float) -> "tuple[int, int, int] | None":
    """The PLL's ``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV)`` that make ``clock_hz`` from ``platform``'s
    oscillator, or None when that is the oscillator's own frequency; ValueError when the PLL
    cannot make it (:func:`pll_dividers`)."""
    if clock_hz == platform.default_clk_frequency:
        return None
    return pll_dividers(platform.default_clk_frequency, clock_hz)


def _check_divisor(divisor: int) -> int:
    """The UART's clock cycles per bit, refused below 4 (too few to sample a bit's middle)."""
    if divisor < 4:
        raise ValueError(f"UART divisor must be at least 4 cycles per bit, not {divisor}")
    return divisor


class UARTRx(wiring.Component):
    """8N1 receiver: ``valid`` pulses for one cycle with ``data`` when a byte's stop bit is seen.

    ``rx`` goes through two flip-flops first (it comes from another clock domain). A byte whose
    stop bit is low (a framing error) is dropped.
    """

    rx: In(1, init=1)
    data: Out(8)
    valid: Out(1)

    def __init__(self, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        sync_rx = Signal(2, init=0b11)
        m.d.sync += sync_rx.eq(Cat(self.rx, sync_rx[0]))
        rx = sync_rx[1]
        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(10))
        shift = Signal(8)
        m.d.sync += self.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # Sample in the middle of each data bit: 1.5 bit times after the start edge.
                    m.d.sync += [timer.eq(self.divisor * 3 // 2 - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 8):
                        with m.If(rx):
                            m.d.sync += [self.data.eq(shift), self.valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += shift.eq(Cat(shift[1:], rx))
        return m


class UARTTx(wiring.Component):
    """8N1 transmitter: takes ``data`` when ``valid`` and ``ready`` are both high."""

    tx: Out(1, init=1)
    data: In(8)
    valid: In(1)
    ready: Out(1)

    def __init__(self, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(range(11))
        shift = Signal(10, init=0x3FF)
        m.d.comb += [self.ready.eq(bits == 0), self.tx.eq(shift[0])]
        with m.If(bits == 0):
            with m.If(self.valid):
                m.d.sync += [shift.eq(Cat(0, self.data, 1)), bits.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shift.eq(Cat(shift[1:], 1)), bits.eq(bits - 1),
                         timer.eq(self.divisor - 1)]
        return m


class BoardCore(wiring.Component):
    """The GEMM array with its UART port (see the module docstring for the protocol).

    Parameters
    ----------
    config : ArrayConfig
    divisor : int
        Clock cycles per UART bit (clock frequency / baud rate).
    pe_module : str or None
        As :class:`hw.sequencer.GemmArray`'s (None for Amaranth's simulator and board builds).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, config: ArrayConfig, divisor: int, pe_module: "str | None" = None) -> None:
        self.config = config
        self.divisor = divisor
        self.pe_module = pe_module
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg = self.config
        m.submodules.array = array = GemmArray(cfg, pe_module=self.pe_module)
        m.submodules.urx = urx = UARTRx(self.divisor)
        m.submodules.utx = utx = UARTTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), self.busy.eq(array.busy)]

        # --- receiver: tag byte, payload bytes into a shift register, hold until taken ----------
        n_cmd, n_step = cmd_bytes(cfg), step_bytes(cfg)
        a_bits = a_layout(cfg).size
        buf = Signal(8 * max(n_cmd, n_step))
        left = Signal(range(max(n_cmd, n_step) + 1))
        is_step = Signal()
        ack_pending = Signal()
        # A byte enters at the top and the register shifts right, so after n bytes the frame's
        # first byte sits at bit 8 * (len - n): the payload is buf's top 8 * n bits.
        top_cmd = buf[8 * (len(buf) // 8 - n_cmd):]
        top_step = buf[8 * (len(buf) // 8 - n_step):]
        m.d.comb += [array.cmd.payload.eq(top_cmd),
                     array.a.payload.eq(top_step[:a_bits]),
                     array.w.payload.eq(top_step[a_bits:])]
        with m.FSM(name="rx_fsm"):
            with m.State("TAG"):
                with m.If(urx.valid & ((urx.data == CMD) | (urx.data == STEP))):
                    m.d.sync += [is_step.eq(urx.data == STEP),
                                 left.eq(Mux(urx.data == STEP, n_step, n_cmd))]
                    m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with m.If(urx.valid):
                    m.d.sync += [buf.eq(Cat(buf[8:], urx.data)), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "HOLD"
            with m.State("HOLD"):
                m.d.comb += [array.cmd.valid.eq(~is_step), array.a.valid.eq(is_step),
                             array.w.valid.eq(is_step)]
                with m.If(Mux(is_step, array.a.ready, array.cmd.ready)):
                    m.d.sync += ack_pending.eq(1)
                    m.next = "TAG"

        # --- transmitter: ACKs first, then result rows as RESULT + payload -----------------------
        n_out = out_bytes(cfg)
        out = Signal(8 * n_out)
        out_left = Signal(range(n_out + 1))
        with m.FSM(name="tx_fsm"):
            with m.State("IDLE"):
                with m.If(ack_pending):
                    m.d.comb += [utx.data.eq(ACK), utx.valid.eq(1)]
                    with m.If(utx.ready):
                        m.d.sync += ack_pending.eq(0)
                with m.Elif(array.o.valid):
                    m.d.comb += [utx.data.eq(RESULT), utx.valid.eq(1)]
                    with m.If(utx.ready):
                        m.d.comb += array.o.ready.eq(1)
                        m.d.sync += [out.eq(array.o.payload), out_left.eq(n_out)]
                        m.next = "ROW"
            with m.State("ROW"):
                m.d.comb += [utx.data.eq(out[:8]), utx.valid.eq(1)]
                with m.If(utx.ready):
                    m.d.sync += [out.eq(out >> 8), out_left.eq(out_left - 1)]
                    with m.If(out_left == 1):
                        m.next = "IDLE"
        return m


class BoardTop(Elaboratable):
    """:class:`BoardCore` on an :mod:`amaranth_boards` platform: UART 0, the busy LED and the
    clock.

    Parameters
    ----------
    config : ArrayConfig
    baud : int
        UART rate; the divisor is the clock frequency over it.
    clock_hz : float or None
        None (or the oscillator's frequency): the platform's default clock drives the design.
        Otherwise an ECP5 PLL (``EHXPLLL``) makes this clock from the oscillator, the design
        held in reset until the PLL locks; nextpnr derives this clock's frequency from the
        dividers and reports its timing there.
    """

    def __init__(self, config: ArrayConfig, baud: int = 115200,
                 clock_hz: "float | None" = None) -> None:
        self.config = config
        self.baud = baud
        self.clock_hz = clock_hz

    def clock_frequency(self, platform) -> float:
        return self.clock_hz or platform.default_clk_frequency

    def pll(self, platform) -> "tuple[int, int, int] | None":
        """:func:`board_pll` of this design's clock."""
        return board_pll(platform, self.clock_frequency(platform))

    def divisor(self, platform) -> int:
        return int(round(self.clock_frequency(platform) / self.baud))

    def elaborate(self, platform) -> Module:
        m = Module()
        dividers = self.pll(platform)
        if dividers is not None:
            self._pll(m, platform, dividers)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.submodules.led_buf = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.submodules.core = core = BoardCore(self.config, self.divisor(platform))
        m.d.comb += [core.rx.eq(rx.i), tx.o.eq(core.tx), led.o.eq(core.busy)]
        return m

    def _pll(self, m: Module, platform, dividers: "tuple[int, int, int]") -> None:
        """The ``sync`` domain from an EHXPLLL fed by the oscillator (feedback from CLKOP)."""
        f_in, f_out = platform.default_clk_frequency, self.clock_hz
        ki, fb, op = dividers
        m.submodules.clk_buf = buf = io.Buffer("i", platform.request(platform.default_clk,
                                                                      dir="-"))
        clk, locked = Signal(name="pll_clk"), Signal(name="pll_locked")
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{f_in / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{f_out / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
            a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
            p_CLKI_DIV=ki, p_CLKFB_DIV=fb, p_CLKOP_DIV=op, p_CLKOP_CPHASE=op - 1,
            p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            i_CLKI=buf.i, i_CLKFB=clk, o_CLKOP=clk, o_LOCK=locked,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0,
            i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0)
        m.domains.sync = ClockDomain("sync")
        m.d.comb += ClockSignal("sync").eq(clk)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        # No constraint on the PLL's output: nextpnr derives its frequency from the oscillator's
        # constraint and the dividers, and reports the clock's timing against it.
