"""The Dask cluster that runs simulation shards, and the progress line of a run.

:func:`connect` gives a ``distributed.Client``: on a ``LocalCluster`` it starts (``workers``
processes of one thread each: every task is one simulator process, so threads would only
contend for the GIL between runs) or on an existing scheduler (``scheduler="tcp://host:8786"``,
e.g. one that ``dask-jobqueue`` started on a SLURM or LSF farm). A worker that dies while it
holds a task costs a retry on another worker (the scheduler's ``allowed-failures``), never a lost
result: the task's result goes back through the scheduler, or, for a rerun, through the task
cache of :mod:`sim.shard`.

:class:`ShardRunner` runs batches of shards on that client, one task per batch: results that
are cached are read directly, the rest are submitted and gathered as they finish, with a
:class:`Progress` line of tasks done / total and the cluster's simulated cycles per second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

from .errors import CheckFailed, UsageError
from .shard import (TASKS, Shard, ShardResult, TopShard, assemble, cached, run_shards,
                    run_top_shards, shards)

__all__ = ["connect", "Progress", "ShardRunner", "default_workers", "sharded_gemm",
           "probe_scheduler", "add_options"]


def add_options(p, what: str, shards: str) -> None:
    """The cluster options every sharding command takes: ``--workers N`` or ``--scheduler
    ADDRESS`` (exclusive) and ``--shards S``; ``what`` is what is sharded, ``shards`` the
    default shard count in words."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help=f"shard {what} over a local Dask cluster of N worker processes")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help=f"shard {what} over the Dask cluster at ADDRESS (tcp://host:8786)")
    p.add_argument("--shards", type=int, metavar="S",
                   help=f"shards with --workers/--scheduler (default: {shards})")


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def probe_scheduler(address: str) -> None:
    """A UsageError now, not after the client's 20 s of retries, if nothing listens at a
    ``tcp://host:port`` address (other protocols are left to the client)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp":
        return
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise UsageError(f"--scheduler {address!r}: expected tcp://HOST:PORT")
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address!r}: "
                         f"{exc.strerror or exc}") from None


@contextlib.contextmanager
def connect(workers: "int | None" = None, scheduler: "str | None" = None):
    """A ``distributed.Client`` on a new ``LocalCluster`` of ``workers`` processes (default:
    :func:`default_workers`), or on the scheduler at ``scheduler``; closed on exit."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("dask's 'distributed' package is missing; run `make venv`") from None
    if scheduler is not None and workers is not None:
        raise UsageError("give --workers (a local cluster) or --scheduler (an existing one), "
                         "not both")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be a positive integer, not {workers}")
    if scheduler is not None:
        probe_scheduler(scheduler)
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                           processes=True, dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


class Progress:
    """``tasks done / total`` with the simulated cycles per second, on one stderr line (redrawn
    on a terminal, a new line every ``every_s`` seconds otherwise)."""

    def __init__(self, total: int, label: str = "tasks", every_s: float = 10.0,
                 stream=None) -> None:
        self.total, self.label, self.every_s = total, label, every_s
        self.stream = stream or sys.stderr
        self.done = self.cached = self.cycles = 0
        self.t0 = time.perf_counter()
        self._last = 0.0
        self.tty = getattr(self.stream, "isatty", lambda: False)()

    def add_total(self, n: int) -> None:
        self.total += n

    def update(self, res: ShardResult) -> None:
        self.done += 1
        self.cached += res.cached
        self.cycles += 0 if res.cached else res.cycles
        now = time.perf_counter()
        if self.tty or now - self._last >= self.every_s or self.done == self.total:
            self._last = now
            self._draw(now)

    def rate(self) -> float:
        """Simulated cycles per wall second of this run (cached tasks not counted)."""
        return self.cycles / max(time.perf_counter() - self.t0, 1e-9)

    def _draw(self, now: float) -> None:
        width = 24
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(width * frac) + "." * (width - int(width * frac))
        line = (f"[{bar}] {self.done}/{self.total} {self.label} ({self.cached} cached), "
                f"{self.rate():,.0f} simulated cycles/s, {now - self.t0:.0f} s")
        if self.tty:
            end = "\n" if self.done == self.total else ""
            print(f"\r{line}", end=end, file=self.stream, flush=True)
        else:
            print(f"... {line}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self.done != self.total:
            print(file=self.stream, flush=True)


class ShardRunner:
    """Runs shards on ``client`` with the task cache at ``cache``: array shards
    (:class:`sim.shard.Shard`) on ``config``'s harness, top shards (:class:`sim.shard.TopShard`)
    on the harness of the top ``top`` (set it before running any).

    ``hold_s`` is passed to :func:`sim.shard.run_shards` (a test hook)."""

    def __init__(self, client, config, sim: str, progress: Progress,
                 cache: "str | Path" = TASKS, hold_s: float = 0.0, top=None) -> None:
        self.client, self.config, self.sim, self.top = client, config, sim, top
        self.progress, self.cache, self.hold_s = progress, Path(cache), hold_s
        self.tasks = self.reused = 0

    def run(self, batches: "list[list[Shard | TopShard]]", what: str) -> list:
        """Every shard's result, batch by batch in the order given; each batch that is not
        wholly cached is one task. ``what`` names the GEMM in errors."""
        from distributed import as_completed

        out: dict[int, list] = {}
        futures = {}
        for i, batch in enumerate(batches):
            hits = [cached(s.key, self.cache) for s in batch]
            self.tasks += len(batch)
            if all(h is not None for h in hits):
                out[i] = hits
                self._done(hits)
                continue
            key = "shards-" + "-".join(s.key[:12] for s in batch[:4]) + f"-{len(batch)}"
            on_top = isinstance(batch[0], TopShard)
            fn, target = (run_top_shards, self.top) if on_top else (run_shards, self.config)
            fut = self.client.submit(fn, batch, target, self.sim, str(self.cache),
                                     self.hold_s, key=key, pure=False, retries=2)
            futures[fut] = i
        for fut in as_completed(list(futures)):
            batch = batches[futures[fut]]
            try:
                res = fut.result()
            except Exception as exc:  # a worker's harness error, or a task that killed workers
                part = ", ".join(s.what for s in batch[:3])
                why = str(exc).splitlines()[0] if str(exc) else ""
                raise CheckFailed(f"{what}: the RTL run of {part} failed: "
                                  f"{type(exc).__name__}: {why}") from None
            out[futures[fut]] = res
            self._done(res)
        return [out[i] for i in range(len(batches))]

    def _done(self, results: "list[ShardResult]") -> None:
        for r in results:
            self.reused += r.cached
            self.progress.update(r)


def sharded_gemm(runner: ShardRunner, a, w, parts: int, build_id: str, what: str = "GEMM"):
    """``a @ w^T`` as at most ``parts`` column shards on ``runner``'s cluster.

    Returns
    -------
    tuple
        The float32 ``[M, N]`` result and the shards with their results, in column order.
    """
    pieces = shards(a, w, runner.config, parts, build_id)
    runner.progress.add_total(len(pieces))
    done = [r[0] for r in runner.run([[s] for s in pieces], what)]
    pairs = list(zip(pieces, done))
    return assemble(pairs, a.shape[0], w.shape[0]), pairs
