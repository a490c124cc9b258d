"""The board-level design: a GEMM array behind a UART command and data port (``mixdit board``).

:class:`BoardCore` is the whole design between two pins, ``rx`` and ``tx`` (8 data bits, no
parity, one stop bit, ``divisor`` clock cycles per bit), so that the very design that goes on an
FPGA board is what the end-to-end test simulates. :class:`BoardTop` puts it on an
:mod:`amaranth_boards` platform: the board's UART pins and its oscillator (the ULX3S's 25 MHz
``clk25``, the platform's default clock, so the design runs at that clock).

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

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import ArrayConfig
from .sequencer import GemmArray, a_layout, cmd_layout, out_layout, w_layout

__all__ = ["CMD", "STEP", "ACK", "RESULT", "cmd_bytes", "step_bytes", "out_bytes",
           "UARTRx", "UARTTx", "BoardCore", "BoardTop", "board_config"]

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
    """:class:`BoardCore` on an :mod:`amaranth_boards` platform: UART 0 and the default clock.

    Parameters
    ----------
    config : ArrayConfig
    baud : int
        UART rate; the divisor is the platform's default clock frequency over it.
    """

    def __init__(self, config: ArrayConfig, baud: int = 115200) -> None:
        self.config = config
        self.baud = baud

    def divisor(self, platform) -> int:
        return int(round(platform.default_clk_frequency / self.baud))

    def elaborate(self, platform) -> Module:
        m = Module()
        uart = platform.request("uart", 0)
        m.submodules.core = core = BoardCore(self.config, self.divisor(platform))
        m.d.comb += [core.rx.eq(uart.rx.i), uart.tx.o.eq(core.tx)]
        led = platform.request("led", 0)
        m.d.comb += led.o.eq(core.busy)
        return m

