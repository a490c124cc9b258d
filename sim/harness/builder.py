"""Build and run a file-driven SystemVerilog testbench around emitted Verilog (spec §6).

Generic over the design: a :class:`Design` names the testbench, a function that emits the DUT's
Verilog, the sources whose content decides whether a cached build is still valid, the macros, and
the modules Verilator verilates as hierarchical blocks. :func:`build` compiles it for Verilator
(``--binary``) or Icarus Verilog (``iverilog -g2012``), once per content key, and :func:`run`
runs the result with plusargs. The array harness (:mod:`sim.harness`) and the top's harness use
the same two functions.

Builds are cached under ``build/harness/<name>-<sim>[-waves]-<key>/``. The key covers the
sources' content, the testbench, the design's parameters, the build flags and the simulator's
version. A build is made in a temporary directory beside the cache and renamed into place only
when complete, so an interrupted build never leaves an entry a later run trusts; a lock file
stops two test workers from building the same entry twice.

Hierarchical verilation (Verilator 5.048): the modules in :attr:`Design.hier_blocks` (a row of
the array's PEs, :class:`hw.array.PERow`) are marked in a Verilator configuration file
(``hier_block -module``), so that one C++ model of the row serves all R rows instead of one copy
of the code per PE instance. A row rather than a PE: every call into a hierarchical block's model
costs a fixed overhead (its evaluation loop, a lock, its ports copied both ways, two or three
calls per cycle), and with a PE per block that overhead outweighed the PE's logic.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from sim import verilator

__all__ = ["SIMULATORS", "WAVE_FORMATS", "HarnessError", "SimulatorMissing", "Design", "Build",
           "simulator_missing", "waves_format", "build", "run", "failure_reason", "BUILD",
           "VERILATOR_OPT", "VERILATOR_CFLAGS"]

ROOT = Path(__file__).resolve().parent.parent.parent
BUILD = ROOT / "build" / "harness"
SIMULATORS = ("verilator", "icarus")
#: Waveform formats by file suffix.
WAVE_FORMATS = {".fst": "fst", ".vcd": "vcd"}
#: gcc optimisation of Verilator's generated code (part of the cache key): -O2, measured against
#: -O1 on DiT-XL/2's QKV projection through the 16 x 16 top (one run, 1.05 M cycles, the two
#: alternated on a quiet machine): 87.0 and 87.4 s against 94.1 s, bit-exact (README, "How fast
#: the RTL simulates"). Verilator's default is -Os.
VERILATOR_OPT = "-O2"
#: Extra C++ flags of every Verilator build (part of the cache key): gcc 12 at -O2 crashes (an
#: internal compiler error, a segmentation fault in its interprocedural constant propagation,
#: "during IPA pass: cp") on the testbench's main file; without that one pass it does not.
VERILATOR_CFLAGS = "-fno-ipa-cp"


class HarnessError(RuntimeError):
    """The build or the simulation failed; the first line says why, the rest is the tool's
    output."""


class SimulatorMissing(HarnessError):
    """The requested simulator is unknown or not installed."""


@dataclass(frozen=True)
class Design:
    """What to build: a testbench around emitted Verilog.

    Attributes
    ----------
    name : str
        Cache tag of this configuration (``"16x16"``); part of the build directory's name.
    testbench : pathlib.Path
        The SystemVerilog testbench.
    top : str
        Its module name (the simulation's top level).
    emit : callable
        ``emit(directory) -> list of Path``: writes the DUT's Verilog there, returns the files.
    sources : sequence of Path
        Files whose content the DUT's Verilog depends on (the generator's Python sources).
    defines : mapping
        Macros of the testbench (``-D``), e.g. sizes and memory depths.
    hier_blocks : tuple of str
        Verilog modules that Verilator verilates as hierarchical blocks (one shared C++ model).
    params : str
        Anything else that changes the emitted Verilog (a configuration's repr).
    """

    name: str
    testbench: Path
    top: str
    emit: Callable[[Path], Sequence[Path]]
    sources: Sequence[Path]
    defines: Mapping[str, object] = field(default_factory=dict)
    hier_blocks: tuple[str, ...] = ()
    params: str = ""


@dataclass(frozen=True)
class Build:
    """A finished build: what to run, and the seconds this call spent building (0 if cached).

    :meth:`stats` reads what the build recorded when it was made (``build.json``): wall and CPU
    seconds, and the bytes of C++ Verilator generated.
    """

    sim: str
    exe: Path
    directory: Path
    build_s: float
    waves: "str | None"
    version: str

    def stats(self) -> dict:
        """``{"wall_s", "cpu_s", "cpp_bytes", "command"}`` of the build that made this entry."""
        try:
            return json.loads((self.directory / "build.json").read_text())
        except (OSError, ValueError):
            return {}

    def command(self, plusargs: Sequence[str]) -> list[str]:
        """The command line that runs this build with ``plusargs``."""
        if self.sim == "verilator":
            return [str(self.exe), *plusargs]
        extended = [f"-{self.waves}"] if self.waves else []
        return ["vvp", "-n", str(self.exe), *extended, *plusargs]


def simulator_missing(sim: str) -> "str | None":
    """Why ``sim`` cannot run here (unknown or not installed), or None when it can."""
    if sim not in SIMULATORS:
        return f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}"
    if sim == "icarus":
        for exe in ("iverilog", "vvp"):
            if shutil.which(exe) is None:
                return f"icarus ({exe}) is not installed (scripts/install-tools.sh installs it)"
        return None
    reason = verilator.missing()
    if reason:
        return reason
    for exe in ("make", "g++"):
        if shutil.which(exe) is None:
            return (f"verilator needs {exe}, which is not installed (scripts/install-tools.sh "
                    "installs it)")
    return None


def waves_format(path: "str | Path") -> str:
    """``"fst"`` or ``"vcd"`` from a waveform file's suffix; ValueError for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in WAVE_FORMATS:
        raise ValueError(f"waves file {str(path)!r} must end in .fst or .vcd (the format "
                         "follows the suffix)")
    return WAVE_FORMATS[suffix]


def _key(design: Design, sim: str, waves: "str | None", flags: Sequence[str], version: str) -> str:
    h = hashlib.sha256()
    for path in [*design.sources, design.testbench]:
        p = Path(path)
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    defines = sorted((k, str(v)) for k, v in design.defines.items())
    h.update(repr((design.name, design.top, design.params, defines, design.hier_blocks, sim,
                   waves, tuple(flags), version)).encode())
    return h.hexdigest()[:16]


def _verilator_cmds(design: Design, rtl: Sequence[Path], out: Path, waves: "str | None",
                    jobs: int) -> list[list[str]]:
    """The commands that build ``design`` under Verilator, run in order.

    A flat design is one ``verilator --binary``. A hierarchical one is verilated without
    ``--build`` and then compiled by one ``make -jN`` of the top's makefile: Verilator's own
    ``--build`` of a hierarchical design compiles the top from inside a recipe of its outer make
    (without that make's job server, so on one job) while the outer make compiles the blocks'
    library, and when the top's make gets jobs of its own both compile that library at once and
    the link fails on a half-written archive. The top's makefile alone orders them (its archive
    depends on the blocks' libraries)."""
    mode = ["--cc", "--exe", "--main", "--timing"] if design.hier_blocks else ["--binary"]
    cmd = [str(verilator.executable()), *mode, "-O3", "--x-assign", "0", "--x-initial", "0",
           "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", design.top,
           "-Mdir", str(out / "obj_dir"), "-j", str(jobs), "-MAKEFLAGS", f"OPT_FAST={VERILATOR_OPT}",
           "-CFLAGS", VERILATOR_CFLAGS]
    if waves == "fst":
        cmd.append("--trace-fst")
    elif waves == "vcd":
        cmd.append("--trace-vcd")
    if design.hier_blocks:
        vlt = out / "hier.vlt"
        vlt.write_text("`verilator_config\n" + "".join(
            f'hier_block -module "{m}"\n' for m in design.hier_blocks))
        cmd += ["--hierarchical", str(vlt)]
    defines = dict(design.defines)
    if waves:
        defines["WAVES"] = 1
    cmd += [f"-D{k}={v}" for k, v in defines.items()]
    cmds = [cmd + [str(design.testbench), *map(str, rtl)]]
    if design.hier_blocks:
        cmds.append(["make", "-C", str(out / "obj_dir"), "-f", f"V{design.top}.mk", f"-j{jobs}",
                     f"OPT_FAST={VERILATOR_OPT}"])
    return cmds


def _icarus_cmd(design: Design, rtl: Sequence[Path], target: Path) -> list[str]:
    defines = {**design.defines, "WAVES": 1}
    return ["iverilog", "-g2012", "-s", design.top, "-o", str(target),
            *[f"-D{k}={v}" for k, v in defines.items()], str(design.testbench), *map(str, rtl)]


def _target(sim: str, out: Path, top: str) -> Path:
    return out / "obj_dir" / f"V{top}" if sim == "verilator" else out / f"{top}.vvp"


def _sweep(tmp_root: Path) -> None:
    """Remove temporary build directories whose building process is gone."""
    for d in tmp_root.glob("*.tmp"):
        try:
            pid = int(d.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def build(design: Design, sim: str, *, waves: "str | None" = None, jobs: int = 2,
          root: "str | Path | None" = None, announce: "Callable[[str], None] | None" = None,
          ) -> Build:
    """Build ``design`` for ``sim`` unless a build with the same key is cached.

    Parameters
    ----------
    design : Design
    sim : {"verilator", "icarus"}
    waves : {"fst", "vcd"} or None
        Build with tracing on (Verilator: a separate build, ``--trace-fst`` / ``--trace-vcd``;
        Icarus always dumps, the format is chosen at run time).
    jobs : int
        Parallel C++ compile jobs of a Verilator build.
    root : path, optional
        Cache directory (default ``build/harness``).
    announce : callable, optional
        Called with one line before a build that is not cached starts (e.g. a progress
        printer), so that a user waiting for a traced build knows why.

    Raises
    ------
    SimulatorMissing
        If ``sim`` is unknown or not installed.
    HarnessError
        If the build fails (the first line carries the tool's first error).
    """
    missing = simulator_missing(sim)
    if missing:
        raise SimulatorMissing(missing)
    if waves not in (None, "fst", "vcd"):
        raise ValueError(f"waves must be 'fst', 'vcd' or None, not {waves!r}")
    version = verilator.simulator_version(sim) or sim
    waves_key = waves if sim == "verilator" else None
    flags = (VERILATOR_OPT, VERILATOR_CFLAGS) if sim == "verilator" else ()
    key = _key(design, sim, waves_key, flags, version)
    cache = Path(root) if root is not None else BUILD
    tag = f"{design.name}-{sim}{'-' + waves_key if waves_key else ''}-{key}"
    final = cache / tag
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _target(sim, final, design.top).exists():
            return Build(sim, _target(sim, final, design.top), final, 0.0, waves, version)
        _sweep(cache)
        times_file = cache / "build-times.json"
        kind = f"{design.name}-{sim}{'-' + waves_key if waves_key else ''}"
        if announce is not None:
            announce(_announcement(design.name, sim, waves_key, _last_time(times_file, kind)))
        t0 = time.perf_counter()
        cpu0 = _children_cpu()
        tmp = Path(tempfile.mkdtemp(prefix=f"{tag}-{os.getpid()}-", suffix=".tmp", dir=cache))
        try:
            rtl = list(design.emit(tmp))
            target = _target(sim, tmp, design.top)
            if sim == "verilator":
                cmds = _verilator_cmds(design, rtl, tmp, waves_key, jobs)
                env = verilator.environment()
            else:
                cmds = [_icarus_cmd(design, rtl, target)]
                env = None
            log = ""
            for cmd in cmds:
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=env)
                log += " ".join(cmd) + "\n" + proc.stdout + proc.stderr
                if proc.returncode != 0:
                    break
            (tmp / "build.log").write_text(log)
            if proc.returncode != 0 or not target.exists():
                raise HarnessError(f"{sim} build of {design.name} failed (exit {proc.returncode}): "
                                   f"{failure_reason(log)}\n{log[-4000:]}")
            (tmp / "version").write_text(version + "\n")
            cpp = sum(f.stat().st_size for pat in ("*.cpp", "*.h") for f in tmp.rglob(pat))
            (tmp / "build.json").write_text(json.dumps({
                "wall_s": round(time.perf_counter() - t0, 2),
                "cpu_s": round(_children_cpu() - cpu0, 2), "cpp_bytes": cpp,
                "command": cmds[0]}, indent=1))
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        build_s = time.perf_counter() - t0
        _record_time(times_file, kind, build_s)
        return Build(sim, _target(sim, final, design.top), final, build_s, waves, version)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _last_time(path: Path, kind: str) -> "float | None":
    try:
        return float(json.loads(path.read_text())[kind])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _record_time(path: Path, kind: str, seconds: float) -> None:
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    data[kind] = round(seconds, 1)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _announcement(name: str, sim: str, waves: "str | None", last: "float | None") -> str:
    what = f"{sim} build of {name}" + (f" with {waves.upper()} tracing (a separate build from "
                                       "the untraced one)" if waves else "")
    if last is not None:
        return f"{what}: not cached, building (the last such build here took {last:.0f} s)"
    guess = "minutes" if sim == "verilator" else "seconds"
    return f"{what}: not cached, building (takes {guess})"


_REASON = re.compile(r"(%Error|error|Error|ERROR|unable|Unable|cannot|Cannot|not found|"
                     r"No such file|Permission denied|fatal|Fatal|FATAL|Segmentation)")


def failure_reason(output: str) -> str:
    """The line of a tool's ``output`` that says why it failed: the first that names an error,
    else the last non-empty one, else "(no output)"."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        if _REASON.search(ln):
            return ln[:300]
    return lines[-1][:300] if lines else "(no output)"


def run(b: Build, plusargs: Sequence[str], *, cwd: "str | Path", timeout_s: "float | None" = None,
        ) -> tuple[str, float]:
    """Run build ``b`` with ``plusargs`` in ``cwd``; return its output and wall seconds.

    Raises
    ------
    HarnessError
        On a timeout or a non-zero exit status (the first line carries the reason).
    """
    cmd = b.command(plusargs)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{b.sim} run exceeded {timeout_s} s") from None
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise HarnessError(f"{b.sim} run failed (exit {proc.returncode}): "
                           f"{failure_reason(out)}\n{out[-4000:]}")
    return out, time.perf_counter() - t0
