"""Host side of the board design (:mod:`hw.board`): GEMMs over a UART, and the same design in
simulation.

:class:`BoardLink` speaks the protocol of :mod:`hw.board` over any byte port with pyserial's
``write(bytes)`` / ``read(n)`` (``read`` returning fewer bytes on timeout): a real
``serial.Serial`` for a board, or :class:`SimulatedPort`, which feeds the bytes bit by bit into
the ``rx`` pin of :class:`hw.board.BoardCore` in Amaranth's simulator and decodes its ``tx`` pin,
so the end-to-end test runs the very host code and the very board-level design.
"""

import queue
import threading
import time
from typing import Callable

import numpy as np

from golden.formats import MAX_GROUP_BITS
from golden.mx import MXTensor, pack
from hw.board import ACK, CMD, RESULT, STEP, cmd_bytes, out_bytes, step_bytes
from hw.config import ArrayConfig
from hw.sequencer import cmd_layout, out_layout

from .array_stimulus import step_words

__all__ = ["BoardError", "BoardLink", "SimulatedPort", "simulate", "encode_cmd", "encode_steps",
           "decode_row"]

TAGGED = MAX_GROUP_BITS + 1


class BoardError(RuntimeError):
    """The board did not answer as the protocol says (timeout, unexpected byte)."""


def encode_cmd(config: ArrayConfig, m: int, n: int, kg: int) -> bytes:
    """The payload of a ``CMD`` frame (:func:`hw.sequencer.cmd_layout`)."""
    lay = cmd_layout(config)
    value = 0
    for name, v in (("m", m), ("n", n), ("kg", kg)):
        f = lay[name]
        if not 0 <= v < 1 << f.width:
            raise ValueError(f"{name} = {v} does not fit the array's {f.width}-bit field")
        value |= v << f.offset
    return value.to_bytes(cmd_bytes(config), "little")


def encode_steps(config: ArrayConfig, a: MXTensor, w: MXTensor):
    """The payloads of the ``STEP`` frames of ``a @ w.T``, in the operand order of
    :mod:`hw.sequencer` (tiles row-major, K steps within a tile)."""
    aw, ww = pack(a), pack(w)
    (m, kg), n = a.shape, w.shape[0]
    a_bits = config.rows * TAGGED
    for m0 in range(0, m, config.rows):
        for n0 in range(0, n, config.cols):
            for k in range(kg):
                v = step_words(a, m0, config.rows, k, aw) | (step_words(w, n0, config.cols, k, ww) << a_bits)
                yield v.to_bytes(step_bytes(config), "little")


def decode_row(config: ArrayConfig, payload: bytes) -> tuple[int, int, int, list[int]]:
    """A ``RESULT`` payload: (row, column tile, mask, C FP32 bit patterns)."""
    lay = out_layout(config)
    v = int.from_bytes(payload, "little")
    field = lambda name: (v >> lay[name].offset) & ((1 << lay[name].width) - 1)  # noqa: E731
    data = field("data")
    lanes = [(data >> (32 * c)) & 0xFFFFFFFF for c in range(config.cols)]
    return field("row"), field("col"), field("mask"), lanes


class BoardLink:
    """GEMMs on a board running :class:`hw.board.BoardCore` with ``config``, through ``port``."""

    def __init__(self, port, config: ArrayConfig, timeout_s: float = 10.0) -> None:
        self.port, self.config, self.timeout_s = port, config, timeout_s
        self._rows: list[tuple[int, int, int, list[int]]] = []

    def _read(self, n: int) -> bytes:
        out = b""
        deadline = time.monotonic() + self.timeout_s
        while len(out) < n:
            chunk = self.port.read(n - len(out))
            if chunk:
                out += chunk
            elif time.monotonic() > deadline:
                raise BoardError(f"board timeout: {len(out)} of {n} bytes in {self.timeout_s:g} s")
        return out

    def _answer(self) -> bool:
        """Read one answer: True for ACK, False for a result row (kept)."""
        b = self._read(1)[0]
        if b == ACK:
            return True
        if b == RESULT:
            self._rows.append(decode_row(self.config, self._read(out_bytes(self.config))))
            return False
        raise BoardError(f"unexpected byte 0x{b:02x} from the board")

    def _frame(self, tag: int, payload: bytes) -> None:
        self.port.write(bytes([tag]) + payload)
        while not self._answer():
            pass

    def gemm(self, a: MXTensor, w: MXTensor, progress: "Callable[[int, int], None] | None" = None
             ) -> np.ndarray:
        """``a @ w.T`` on the board: FP32 bit patterns, uint32 ``[M, N]``."""
        cfg = self.config
        (m, kg), n = a.shape, w.shape[0]
        if w.shape[1] != kg:
            raise ValueError(f"A has {kg} groups per row, W {w.shape[1]}")
        self._rows = []
        self._frame(CMD, encode_cmd(cfg, m, n, kg))
        steps = list(encode_steps(cfg, a, w))
        for i, s in enumerate(steps):
            self._frame(STEP, s)
            if progress:
                progress(i + 1, len(steps))
        n_tiles = -(-n // cfg.cols)
        while len(self._rows) < m * n_tiles:
            self._answer()
        out = np.zeros((m, n), np.uint32)
        seen = np.zeros((m, n), bool)
        for row, col, mask, lanes in self._rows:
            for c in range(cfg.cols):
                j = col * cfg.cols + c
                if mask >> c & 1:
                    if row >= m or j >= n or seen[row, j]:
                        raise BoardError(f"result ({row}, {j}) out of range or repeated")
                    out[row, j], seen[row, j] = lanes[c], True
        if not seen.all():
            raise BoardError(f"{int((~seen).sum())} results missing")
        return out


class SimulatedPort:
    """A pyserial-like port whose other end is :class:`hw.board.BoardCore` in simulation
    (:func:`simulate` creates it)."""

    def __init__(self) -> None:
        self.to_board: "queue.Queue[int]" = queue.Queue()
        self.from_board: "queue.Queue[int]" = queue.Queue()

    def write(self, data: bytes) -> int:
        for b in data:
            self.to_board.put(b)
        return len(data)

    def read(self, n: int) -> bytes:
        out = bytearray()
        try:
            out.append(self.from_board.get(timeout=0.5))
            while len(out) < n:
                out.append(self.from_board.get_nowait())
        except queue.Empty:
            pass
        return bytes(out)


def simulate(config: ArrayConfig, host: Callable[[SimulatedPort], object], divisor: int = 4,
             max_cycles: int = 5_000_000):
    """Run ``host(port)`` in a thread against :class:`hw.board.BoardCore` in Amaranth's
    simulator, the UART pins driven and sampled bit by bit; return what ``host`` returns.

    Raises
    ------
    BoardError
        If the simulation passes ``max_cycles`` before ``host`` returns.
    """
    from amaranth.sim import Simulator

    from hw.board import BoardCore

    dut = BoardCore(config, divisor)
    port = SimulatedPort()
    result: dict = {}

    def run_host():
        try:
            result["value"] = host(port)
        except BaseException as exc:  # handed to the caller below
            result["error"] = exc

    thread = threading.Thread(target=run_host, daemon=True)

    async def drive_rx(ctx):
        ctx.set(dut.rx, 1)
        cycles = 0
        thread.start()
        while thread.is_alive():
            try:
                b = port.to_board.get_nowait()
            except queue.Empty:
                await ctx.tick().repeat(divisor)
                cycles += divisor
                if cycles > max_cycles:
                    raise BoardError(f"simulation passed {max_cycles} cycles")
                if cycles % (256 * divisor) == 0:
                    time.sleep(0)  # let the host thread run
                continue
            for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                ctx.set(dut.rx, bit)
                await ctx.tick().repeat(divisor)
            cycles += 10 * divisor

    async def sample_tx(ctx):
        while True:
            # (Polled, not ``tick().until()``: a background testbench is abandoned mid-await
            # when the host is done, and an abandoned ``until`` warns.)
            while ctx.get(dut.tx):
                await ctx.tick()
            # Middle of the start bit, then of each data bit; the stop bit must be high.
            await ctx.tick().repeat(divisor // 2)
            value = 0
            for i in range(8):
                await ctx.tick().repeat(divisor)
                value |= ctx.get(dut.tx) << i
            await ctx.tick().repeat(divisor)
            if not ctx.get(dut.tx):
                raise BoardError("framing error on tx (stop bit low)")
            port.from_board.put(value)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(drive_rx)
    sim.add_testbench(sample_tx, background=True)
    sim.run()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
