"""One GEMM cut into independent shards for a cluster, each run on the array's harness or on the
accelerator top's and its result cached by content (spec §3, §6).

A shard is a range of whole output-column tiles of ``A @ W^T``: rows ``[0, M)`` of A, rows
``[n0, n1)`` of W, with ``n0`` and ``n1`` multiples of the array's C columns (except the last
``n1 = N``). The array computes every column tile independently of the others (the sequencer
walks row tiles and column tiles and accumulates each tile alone, spec §3), so the shards'
results side by side are the whole GEMM's, bit for bit; only the fill and drain between tiles
of different shards are paid once per shard (:func:`hw.cycles.gemm_cycles` of each slice).

:func:`run_shards` is what a cluster worker executes, for one or a few shards: it looks each
result up in the task cache (``build/tasks/``), else runs :func:`sim.harness.run_gemm` and
stores the result under its content key, written to a temporary file and renamed into place,
so that a worker killed mid-write never leaves a result a later run trusts. The key covers A's and W's packed groups,
their formats and the harness build (whose own key covers the RTL sources, the testbench and the
simulator's version), so a rerun of a killed job skips exactly the shards that finished and
workers on a shared file system share the cache.

:class:`TopShard` is the same for the accelerator top (:mod:`sim.harness.top`): one run of a
few commands, whose FP32 results and next-layer groups both come back (:func:`run_top_shards`);
its key also covers the commands' buffer placement and the consumer's order and MX9 map. Each
next-layer group is one token's, so a linear layer on the top is cut by ranges of whole row tiles
(:func:`row_ranges`), not by column tiles.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.formats import MAX_GROUP_BITS
from golden.mx import MXTensor, bytes_to_words, pack_bytes, words_to_bytes
from hw.config import ArrayConfig

__all__ = ["TASKS", "Shard", "ShardResult", "column_ranges", "row_ranges", "shards",
           "task_key", "cached", "store", "run_shards", "assemble", "TopShard",
           "TopShardResult", "top_key", "top_row_shards", "run_top_shards"]

TASKS = Path(__file__).resolve().parent.parent / "build" / "tasks"


@dataclass(frozen=True)
class Shard:
    """Output columns ``[n0, n1)`` of one GEMM, with the operands that compute them."""

    a: MXTensor
    w: MXTensor
    n0: int
    n1: int
    key: str

    @property
    def what(self) -> str:
        """The shard in errors."""
        return f"output columns [{self.n0}, {self.n1})"


@dataclass(frozen=True)
class ShardResult:
    """What a shard gave: ``c`` float32 ``[M, n1 - n0]``, the harness's cycles and wall time,
    whether it came from the cache, and the host that ran it."""

    c: np.ndarray
    cycles: int
    sim_s: float
    cached: bool
    host: str


def column_ranges(n: int, cols: int, parts: int) -> list[tuple[int, int]]:
    """At most ``parts`` ranges of whole ``cols``-wide column tiles covering ``[0, n)``, as even
    as the tiles allow (the first ranges take the extra tile)."""
    if n < 1 or cols < 1 or parts < 1:
        raise ValueError(f"column_ranges needs positive n, cols and parts, not {n}, {cols}, "
                         f"{parts}")
    tiles = -(-n // cols)
    parts = min(parts, tiles)
    base, extra = divmod(tiles, parts)
    out, t = [], 0
    for i in range(parts):
        take = base + (i < extra)
        out.append((t * cols, min(n, (t + take) * cols)))
        t += take
    return out


def row_ranges(m: int, rows: int, parts: int) -> list[tuple[int, int]]:
    """At most ``parts`` ranges of whole ``rows``-high row tiles covering ``[0, m)``."""
    return column_ranges(m, rows, parts)


def _hash_operands(h, a: MXTensor, w: MXTensor) -> None:
    for t in (a, w):
        h.update(repr(t.shape).encode())
        h.update(np.ascontiguousarray(t.fmt).tobytes())
        h.update(pack_bytes(t, MAX_GROUP_BITS).tobytes())


def task_key(a: MXTensor, w: MXTensor, build_id: str) -> str:
    """The content key of running ``a @ w^T`` on the harness build ``build_id``."""
    h = hashlib.sha256()
    _hash_operands(h, a, w)
    h.update(build_id.encode())
    return h.hexdigest()[:24]


def shards(a: MXTensor, w: MXTensor, config: ArrayConfig, parts: int,
           build_id: str) -> list[Shard]:
    """``a @ w^T`` (``[M, G]`` and ``[N, G]``) cut into at most ``parts`` column shards."""
    out = []
    for n0, n1 in column_ranges(w.shape[0], config.cols, parts):
        ws = w[n0:n1]
        out.append(Shard(a, ws, n0, n1, task_key(a, ws, build_id)))
    return out


@dataclass(frozen=True)
class TopShard:
    """One run of the accelerator top: ``commands`` (:class:`sim.harness.top.TopCommand`) and
    the consumer's channel ``order`` and ``mx9`` map (empty when nothing is converted); ``what``
    names it in errors."""

    commands: tuple
    order: np.ndarray
    mx9: np.ndarray
    what: str
    key: str


@dataclass(frozen=True)
class TopShardResult:
    """What a top shard gave: ``c``, each command's float32 results; ``words``, the next-layer
    groups (tagged §1.2 words, as :class:`sim.harness.top.TopResult` has them); the top's
    cycles and wall time, whether it came from the cache, and the host that ran it."""

    c: list
    words: list
    cycles: int
    sim_s: float
    cached: bool
    host: str


_WORD_BYTES = -(-(MAX_GROUP_BITS + 1) // 8)


def top_key(commands, order, mx9, build_id: str) -> str:
    """The content key of running ``commands`` with ``order`` and ``mx9`` on the top build
    ``build_id``."""
    h = hashlib.sha256()
    for cmd in commands:
        _hash_operands(h, cmd.a, cmd.w)
        h.update(repr((cmd.store, cmd.col, cmd.groups)).encode())
    h.update(np.asarray(order, dtype=np.int64).tobytes())
    h.update(np.asarray(mx9, dtype=bool).tobytes())
    h.update(build_id.encode())
    return "t" + h.hexdigest()[:23]


def top_row_shards(a: MXTensor, w: MXTensor, order, mx9, rows: int, parts: int,
                   build_id: str) -> "list[TopShard]":
    """A linear layer ``a @ w^T`` on the top cut into at most ``parts`` shards of whole
    ``rows``-high row tiles, each storing its results and converting its tokens into the
    consumer's groups (``order``, ``mx9``; empty: no conversion)."""
    from sim.harness.top import TopCommand

    order, mx9 = np.asarray(order, dtype=np.int64), np.asarray(mx9, dtype=bool)
    out = []
    for m0, m1 in row_ranges(a.shape[0], rows, parts):
        cmds = (TopCommand(a[m0:m1], w, True, 0, len(mx9)),)
        out.append(TopShard(cmds, order, mx9, f"rows [{m0}, {m1})",
                            top_key(cmds, order, mx9, build_id)))
    return out


def _path(key: str, cache: Path) -> Path:
    return cache / key[:2] / f"{key}.npz"


def cached(key: str, cache: Path = TASKS) -> "ShardResult | TopShardResult | None":
    """The stored result of task ``key``, or None (also for an unreadable entry)."""
    try:
        with np.load(_path(key, cache)) as f:
            cycles, host = int(f["cycles"]), str(f["host"])
            if "words" not in f.files:
                return ShardResult(f["c"].copy(), cycles, 0.0, True, host)
            cs = [f[f"c{i}"].copy() for i in range(int(f["commands"]))]
            words = list(bytes_to_words(f["words"]))
            return TopShardResult(cs, words, cycles, 0.0, True, host)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def _arrays(res: "ShardResult | TopShardResult") -> dict:
    if isinstance(res, ShardResult):
        return {"c": res.c, "cycles": res.cycles, "host": res.host}
    words = words_to_bytes(np.array(res.words, dtype=object).reshape(-1), _WORD_BYTES)
    return {**{f"c{i}": c for i, c in enumerate(res.c)}, "commands": len(res.c),
            "words": words, "cycles": res.cycles, "host": res.host}


def store(key: str, res: "ShardResult | TopShardResult", cache: Path = TASKS) -> None:
    """Write task ``key``'s result into ``cache`` (a temporary file, renamed into place)."""
    path = _path(key, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **_arrays(res))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_batch(batch: list, cache: "str | Path", hold_s: float, compute) -> list:
    """Each shard's cached result, or ``compute(shard, t0)``'s, stored as soon as it is made."""
    cache = Path(cache)
    out = []
    for shard in batch:
        hit = cached(shard.key, cache)
        if hit is not None:
            out.append(hit)
            continue
        t0 = time.perf_counter()
        done = compute(shard, t0)
        if hold_s:
            time.sleep(hold_s)
        store(shard.key, done, cache)
        out.append(done)
    return out


def run_shards(batch: "list[Shard]", config: ArrayConfig, sim: str,
               cache: "str | Path" = TASKS, hold_s: float = 0.0) -> "list[ShardResult]":
    """One cluster task: run each shard of ``batch`` on the harness in turn unless its result
    is cached, storing each result as soon as it is computed.

    Small GEMMs (one attention head of one image) go several to a task, so that the
    scheduler's per-task cost stays small beside the simulation's. ``hold_s`` keeps the worker
    busy that long after each run (tests use it to kill a worker while it holds a task)."""
    from sim.harness import run_gemm

    def compute(shard: Shard, t0: float) -> ShardResult:
        res = run_gemm(shard.a, shard.w, config, sim=sim)
        return ShardResult(res.c, res.cycles, time.perf_counter() - t0, False,
                           socket.gethostname())

    return _run_batch(batch, cache, hold_s, compute)


def run_top_shards(batch: "list[TopShard]", top, sim: str, cache: "str | Path" = TASKS,
                   hold_s: float = 0.0) -> "list[TopShardResult]":
    """:func:`run_shards` for top shards: each run on the top's harness for ``top``
    (:class:`hw.top.TopConfig`) unless cached; harness errors propagate."""
    from sim.harness.top import run_top

    def compute(shard: TopShard, t0: float) -> TopShardResult:
        res = run_top(list(shard.commands), shard.order, shard.mx9, top, sim=sim)
        return TopShardResult(res.c, list(res.groups), res.cycles, time.perf_counter() - t0,
                              False, socket.gethostname())

    return _run_batch(batch, cache, hold_s, compute)


def assemble(parts: list[tuple[Shard, ShardResult]], m: int, n: int) -> np.ndarray:
    """The whole ``[m, n]`` result from its shards' (every column exactly once)."""
    c = np.empty((m, n), dtype=np.float32)
    seen = np.zeros(n, dtype=bool)
    for shard, res in parts:
        if res.c.shape != (m, shard.n1 - shard.n0) or seen[shard.n0:shard.n1].any():
            raise ValueError(f"shard [{shard.n0}, {shard.n1}) gave a result of shape "
                             f"{res.c.shape} or overlaps another")
        c[:, shard.n0:shard.n1] = res.c
        seen[shard.n0:shard.n1] = True
    if not seen.all():
        raise ValueError(f"columns {np.flatnonzero(~seen)[:8].tolist()} have no shard")
    return c
