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
