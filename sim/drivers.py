"""Idle and back-pressure generators shared by the cocotb testbenches (cocotbext-axi's style).

Each factory returns a callable that makes a fresh infinite iterator of booleans, one per clock
cycle: ``True`` means a source offers data (valid) or a sink accepts it (ready) in that cycle.
Crossing these patterns with the data cases is how the testbenches show that stalls and gaps
delay results without losing or duplicating any.
"""

import random
from typing import Callable, Iterator

__all__ = ["Pattern", "always", "coin", "bursts"]

#: A factory of per-cycle willingness iterators.
Pattern = Callable[[], Iterator[bool]]


def always() -> Iterator[bool]:
    """Willing every cycle (full rate)."""
    while True:
        yield True


def coin(p: float, seed: int) -> Pattern:
    """Willing with probability ``p`` each cycle, from a seeded generator."""
    if not 0.0 < p <= 1.0:
        raise ValueError(f"Probability must lie in (0, 1], not {p!r}")

    def gen() -> Iterator[bool]:
        rnd = random.Random(seed)
        while True:
            yield rnd.random() < p
    return gen


def bursts(on: int, off: int) -> Pattern:
    """Willing for ``on`` cycles, then not for ``off`` cycles, repeated."""
    if on < 1 or off < 0:
        raise ValueError(f"Bursts need on >= 1 and off >= 0, not {on!r} and {off!r}")

    def gen() -> Iterator[bool]:
        while True:
            yield from [True] * on
            yield from [False] * off
    return gen


async def collect(dut, count: int, ready: Iterator[bool], *, what: str,
                  limit: int) -> tuple[list[int], int]:
    """Take ``count`` words from the DUT's ``o`` stream, driving ``o__ready`` from ``ready``.

    Signals change just after a falling edge; a word counts when ``o__valid`` and ``o__ready``
    are both high there, the handshake the next rising edge completes. An X in a taken word,
    more than ``limit`` cycles, or a word offered in the 4 cycles after the last one (with
    ``o__ready`` high: nothing may be duplicated) fails the test naming ``what``.

    Returns
    -------
    (list of int, int)
        The words as unsigned integers, and the cycles taken.
    """
    from cocotb.triggers import FallingEdge, Timer

    words: list[int] = []
    cycles = 0
    while len(words) < count:
        r = next(ready)
        dut.o__ready.value = int(r)
        await Timer(1, unit="ps")
        if r and dut.o__valid.value == 1:
            v = dut.o__payload.value
            assert v.is_resolvable, f"X in the output word of the {what}: {v}"
            words.append(v.to_unsigned())
        await FallingEdge(dut.clk)
        cycles += 1
        assert cycles < limit, f"{what} stopped making progress"
    dut.o__ready.value = 1
    for _ in range(4):
        await Timer(1, unit="ps")
        assert dut.o__valid.value == 0, f"{what} emitted an extra word"
        await FallingEdge(dut.clk)
    dut.o__ready.value = 0
    return words, cycles
