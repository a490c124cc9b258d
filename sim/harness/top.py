"""The file-driven testbench of the accelerator top (hw/top.py) under Verilator or Icarus (spec §3-§6).

:func:`run_top` runs a layer on :class:`hw.top.MixDiTTop`'s emitted Verilog: its commands (one per
GEMM, :class:`TopCommand`), their A and W groups, the consumer layer's order table and MX6/MX9 map
go in as ``$readmemh`` images (``top_tb.sv``); the array's FP32 results and the next layer's
packed A groups come back as ``$writememh`` images from the same netlist, with the cycles the
testbench counted: per command the array's (command to last result row) and the whole command's
(to its last result row or next-layer group), and the layer's from the first command to the end.
Builds are cached like the GEMM harness's (:func:`sim.harness.builder.build`), keyed by the RTL
sources, the testbench, the :class:`hw.top.TopConfig`, the memory depths and the simulator.

Examples
--------
>>> cfg = top_config(ArrayConfig(rows=4, cols=4), max_tokens=32, max_channels=512)
>>> res = run_top([TopCommand(a, w, groups=w.shape[0] // 16)], order, mx9, cfg, sim="icarus")
>>> res.c[0], res.groups, res.cycles, res.array_cycles
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from golden.formats import GROUP_SIZE, MAX_GROUP_BITS, MX6, MX9
from golden.mx import MXTensor, pack_bytes, read_memh, write_memh
from hw.array import row_module_name
from hw.config import ArrayConfig
from hw.emit import emit
from hw.reorder import ReorderConfig
from hw.top import MixDiTTop, TopConfig, command_layout

from . import ROOT, _RTL_SOURCES, _pow2
from . import builder as _build
from .builder import Build, Design, HarnessError, SimulatorMissing, simulator_missing, waves_format

__all__ = ["TopCommand", "TopResult", "top_config", "netlist_name", "build_top", "run_top",
           "simulator_version", "TB"]

TB = Path(__file__).resolve().parent / "top_tb.sv"
#: The top's sources beyond the array's: a change to any of them invalidates cached builds.
_TOP_SOURCES = _RTL_SOURCES + ("hw/top.py", "hw/reorder.py", "hw/mx_convert.py")
#: Memory depths of the Verilator build: A and W words, format lines, C words, next-layer
#: groups, commands (one build serves every layer up to these).
_VERILATOR_DEPTHS = (1 << 20, 1 << 20, 1 << 14, 1 << 21, 1 << 18, 1 << 12)
_TAG_BITS = MAX_GROUP_BITS + 1


@dataclass(frozen=True)
class TopCommand:
    """One GEMM of a layer on the top (:func:`hw.top.command_layout`).

    Attributes
    ----------
    a, w : MXTensor
        ``[M, G]`` and ``[N, G]``: the GEMM ``a @ w.T``.
    store : bool
        Write the results into the output buffer (the next-layer groups read them).
    col : int
        Output-buffer column tile of result column 0 (channel ``col * C``).
    groups : int
        Next-layer groups per token to convert after this GEMM (0: none).
    """

    a: MXTensor
    w: MXTensor
    store: bool = True
    col: int = 0
    groups: int = 0


@dataclass(frozen=True)
class TopResult:
    """What one run of the top returns.

    Attributes
    ----------
    c : list of numpy.ndarray of float32
        Each command's results ``[M, N]``, as they left the top's ``c`` stream.
    groups : list of int
        The next-layer groups in the order they left ``o``: the §1.2 word with the MX9 tag
        above bit 143 (:data:`hw.layouts.TaggedGroup`).
    cycles : int
        The layer's cycles, from the first command's transfer to the last command's end.
    array_cycles : list of int
        Per command, from its transfer to its last result row's.
    command_cycles : list of int
        Per command, from its transfer to its last result row or group, whichever is later.
    netlist : str
        The Verilog module simulated.
    sim, simulator_version : str
    sim_s, build_s : float
        Wall time of the simulation alone and of the build in this call (0 when cached).
    """

    c: list
    groups: list
    cycles: int
    array_cycles: list
    command_cycles: list
    netlist: str
    sim: str
    simulator_version: str
    sim_s: float
    build_s: float


def top_config(array: ArrayConfig = ArrayConfig(), *, max_tokens: int = 32,
               max_channels: int = 512, rounding: str = "trunc") -> TopConfig:
    """The top around ``array`` with a buffer of ``max_tokens`` x ``max_channels`` (one bank per
    column) and one table entry; the defaults hold every layer of the shipped DiT."""
    return TopConfig(array, ReorderConfig(banks=array.cols, max_channels=max_channels,
                                          max_tokens=max_tokens, entries=1, rounding=rounding,
                                          gated=True))


def netlist_name(config: TopConfig) -> str:
    """The Verilog module name of the top for ``config``, e.g. ``mixdit_top_16x16``."""
    r = config.reorder
    return (f"mixdit_top_{config.array.name.replace('-', '_')}_t{r.max_tokens}_k{r.max_channels}"
            f"_{r.rounding}")


def simulator_version(sim: str) -> str:
    """The simulator's version (the one that is part of every build's cache key)."""
    missing = simulator_missing(sim)
    if missing:
        raise SimulatorMissing(missing)
    from sim import verilator

    return verilator.simulator_version(sim) or sim


def _defines(config: TopConfig, depths) -> dict:
    acfg, rcfg = config.array, config.reorder
    return {
        "ROWS": acfg.rows, "COLS": acfg.cols, "M_BITS": acfg.m_bits, "COL_BITS": acfg.col_bits,
        "CMD_W": command_layout(config).size, "CHW": GROUP_SIZE * rcfg.chan_bits,
        "ADDR_W": rcfg.config_layout()["addr"].shape.width, "TOP": netlist_name(config),
        "A_DEPTH": depths[0], "W_DEPTH": depths[1], "F_DEPTH": depths[2], "C_DEPTH": depths[3],
        "O_DEPTH": depths[4], "P_DEPTH": depths[5], "T_DEPTH": rcfg.table_depth,
    }


def top_design(config: TopConfig, depths: "tuple | None" = None) -> Design:
    """The top's harness as a :class:`~sim.harness.builder.Design`: ``top_tb.sv`` around
    :class:`hw.top.MixDiTTop`, a row of its PEs verilated as a hierarchical block (one C++ model for all
    R x C PEs)."""
    depths = tuple(depths or _VERILATOR_DEPTHS)
    name = netlist_name(config)
    pe = f"{name}_pe"

    def emit_top(directory: Path) -> list[Path]:
        return [emit(MixDiTTop(config, pe_module=pe), name, directory)]

    return Design(name=f"top-{name}", testbench=TB, top="top_tb", emit=emit_top,
                  sources=[ROOT / f for f in _TOP_SOURCES], defines=_defines(config, depths),
                  hier_blocks=(row_module_name(pe),), params=repr(config))


def build_top(config: TopConfig, sim: str = "verilator", *, waves: "str | None" = None,
              depths: "tuple | None" = None, jobs: int = 2, announce=None) -> Build:
    """Build the top's testbench for ``config`` under ``sim`` unless a matching build is cached
    (:func:`sim.harness.builder.build`)."""
    return _build.build(top_design(config, depths), sim, waves=waves, jobs=jobs,
                        announce=announce)


def _check(commands, order, mx9, config: TopConfig) -> None:
    acfg, rcfg = config.array, config.reorder
    if not commands:
        raise ValueError("A layer needs at least one command")
    for i, cmd in enumerate(commands):
        (m, kg), n = cmd.a.shape, cmd.w.shape[0]
        if cmd.a.exp.ndim != 2 or cmd.w.exp.ndim != 2 or cmd.w.groups != kg:
            raise ValueError(f"command {i}: operands must be [M, G] and [N, G] with one G, got "
                             f"{cmd.a.shape} and {cmd.w.shape}")
        for name, t in (("A", cmd.a), ("W", cmd.w)):
            if set(np.unique(t.fmt).tolist()) - {MX6.code, MX9.code}:
                raise ValueError(f"command {i}: {name} has groups the PE does not compute")
        if m > rcfg.max_tokens or m > acfg.max_m or n > acfg.max_n or kg > acfg.max_groups:
            raise ValueError(f"command {i}: {m}x{16 * kg}x{n} exceeds the top (tokens "
                             f"{rcfg.max_tokens}, max_n {acfg.max_n}, max_groups "
                             f"{acfg.max_groups})")
        if cmd.store and (cmd.col * acfg.cols + n > rcfg.max_channels):
            raise ValueError(f"command {i}: columns {cmd.col * acfg.cols}..{cmd.col * acfg.cols + n}"
                             f" exceed the buffer's {rcfg.max_channels} channels")
        if cmd.groups * GROUP_SIZE > rcfg.max_channels:
            raise ValueError(f"command {i}: {cmd.groups} groups exceed the table's "
                             f"{rcfg.max_groups}")
    groups = len(mx9)
    if len(order) != groups * GROUP_SIZE or sorted(int(x) for x in order) != list(
            range(len(order))):
        raise ValueError(f"The order must be a permutation of {groups} x 16 channels")
    if any(c.groups not in (0, groups) for c in commands):
        raise ValueError(f"A converting command must convert the table's {groups} groups")


def _depths(sim: str, commands, nrows: int) -> tuple:
    if sim == "verilator":
        return _VERILATOR_DEPTHS
    na = sum(c.a.shape[0] * c.a.groups for c in commands)
    nw = sum(c.w.shape[0] * c.w.groups for c in commands)
    nf = sum(c.a.groups for c in commands)
    nc = sum(c.a.shape[0] * c.w.shape[0] for c in commands)
    no = sum(c.a.shape[0] * c.groups for c in commands)
    # Icarus: memories sized to the layer, with floors that hold every layer of the shipped DiT
    # so that its layers share one build (a top build takes Icarus tens of seconds).
    return (_pow2(na, 1 << 14), _pow2(nw, 1 << 14), _pow2(nf, 1 << 10), _pow2(nc, 1 << 16),
            _pow2(no, 1 << 13), _pow2(len(commands), 64))


def write_images(commands, order, mx9, config: TopConfig, directory: "str | Path") -> dict:
    """Write the testbench's input images (``P``, ``A``, ``W``, ``F``, ``T``, ``X``) into
    ``directory``; returns their paths and the counts the testbench needs."""
    d = Path(directory)
    lay = command_layout(config)
    nbytes = MAX_GROUP_BITS // 8
    prog, a_rows, w_rows, f_rows = [], [], [], []
    ao = wo = fo = co = no = 0
    for cmd in commands:
        (m, kg), n = cmd.a.shape, cmd.w.shape[0]
        payload = lay.const({"gemm": {"m": m, "n": n, "kg": kg}, "entry": 0, "col": cmd.col,
                             "store": int(cmd.store), "groups": cmd.groups}).as_value().value
        fields = [m, n, kg, cmd.groups, ao, wo, fo, co]
        prog.append(sum(v << (32 * i) for i, v in enumerate(fields)) | (payload << 256))
        a_rows.append(pack_bytes(cmd.a, MAX_GROUP_BITS).reshape(-1, nbytes))
        w_rows.append(pack_bytes(cmd.w, MAX_GROUP_BITS).reshape(-1, nbytes))
        f_rows.append((cmd.a.fmt == MX9.code).astype(np.uint8)
                      | ((cmd.w.fmt == MX9.code).astype(np.uint8) << 1))
        ao, wo, fo = ao + m * kg, wo + n * kg, fo + kg
        co, no = co + m * n, no + m * cmd.groups
    paths = {k: d / f"{k}.hex" for k in "PAWFTX"}
    write_memh(paths["P"], np.array(prog, dtype=object), 256 + lay.size)
    write_memh(paths["A"], np.concatenate(a_rows))
    write_memh(paths["W"], np.concatenate(w_rows))
    paths["F"].write_text("".join(f"{int(x):x}\n" for x in np.concatenate(f_rows)))
    bits = config.reorder.chan_bits
    rows = [sum(int(ch) << (bits * lane) for lane, ch in enumerate(order[g * GROUP_SIZE:
                                                                       (g + 1) * GROUP_SIZE]))
            for g in range(len(mx9))]
    write_memh(paths["T"], np.array(rows or [0], dtype=object), GROUP_SIZE * bits)
    paths["X"].write_text("".join(f"{int(bool(f))}\n" for f in mx9) or "0\n")
    return {"paths": paths, "commands": len(commands), "rows": len(mx9), "c_words": co,
            "groups": no}


def run_top(commands, order, mx9, config: TopConfig, *, sim: str = "verilator",
            stall: int = 0, seed: int = 1, vcd: "str | Path | None" = None,
            timeout_s: "float | None" = None, workdir: "str | Path | None" = None) -> TopResult:
    """Run a layer's commands on the top's Verilog (module docstring).

    Parameters
    ----------
    commands : list of TopCommand
    order : array of int, shape ``[16 * G]``
        The consumer layer's channel order (the table), G = the converting command's groups.
    mx9 : array of bool, shape ``[G]``
        The consumer's MX6/MX9 map, one flag per group.
    config : hw.top.TopConfig
    sim : {"verilator", "icarus"}
    stall : int
        Percent of cycles the ``c`` and ``o`` streams are not ready (random, from ``seed``).
    vcd : path, optional
        Waves (Verilator: a separate ``--trace`` build).
    timeout_s : float, optional
    workdir : path, optional
        Where the images go (kept); by default a temporary directory.

    Raises
    ------
    ValueError
        For commands the top cannot run, or an order that is not a permutation.
    SimulatorMissing, HarnessError
    """
    order = np.asarray(order, dtype=np.int64)
    mx9 = np.asarray(mx9, dtype=bool)
    _check(commands, order, mx9, config)
    if not isinstance(stall, int) or not 0 <= stall <= 90:
        raise ValueError(f"stall must be an integer percentage in [0, 90], not {stall!r}")
    missing = simulator_missing(sim)
    if missing:
        raise SimulatorMissing(missing)
    depths = _depths(sim, commands, len(mx9))
    fmt = None if vcd is None else waves_format(vcd)
    b = build_top(config, sim, waves=fmt, depths=depths)
    build_s = b.build_s
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mixdit-top-")
        workdir = tmp.name
    d = Path(workdir)
    d.mkdir(parents=True, exist_ok=True)
    try:
        img = write_images(commands, order, mx9, config, d)
        paths = img["paths"]
        c_path, o_path = d / "C.hex", d / "O.hex"
        c_path.unlink(missing_ok=True)
        o_path.unlink(missing_ok=True)
        plus = [f"+NCMD={img['commands']}", f"+NROWS={img['rows']}", f"+NO={img['groups']}",
                f"+NC={img['c_words']}", *[f"+{k}={p}" for k, p in paths.items()],
                f"+C={c_path}", f"+O={o_path}", f"+STALL={stall}", f"+SEED={seed}"]
        if vcd is not None:
            plus.append(f"+VCD={Path(vcd).resolve()}")
        out, sim_s = _build.run(b, plus, cwd=d, timeout_s=timeout_s)
        total = re.search(r"TOP cycles=(\d+)", out)
        per = [(int(a), int(c)) for a, c in re.findall(r"TOP cmd=\d+ array_cycles=(\d+) "
                                                         r"cycles=(\d+)", out)]
        if (total is None or len(per) != len(commands)
                or not c_path.is_file() or (img["groups"] and not o_path.is_file())):
            raise HarnessError(f"{sim} run of the top failed: "
                               f"{_build.failure_reason(out)}\n{out[-4000:]}")
        words = read_memh(c_path, 32)
        if words.shape[0] != img["c_words"]:
            raise HarnessError(f"{sim} wrote {words.shape[0]} results, expected "
                               f"{img['c_words']}")
        flat = words.view("<u4").reshape(-1).view(np.float32)
        cs, pos = [], 0
        for c in commands:
            m, n = c.a.shape[0], c.w.shape[0]
            cs.append(flat[pos:pos + m * n].reshape(m, n).copy())
            pos += m * n
        groups = []
        if img["groups"]:
            raw = read_memh(o_path, _TAG_BITS)
            groups = [int.from_bytes(row.tobytes(), "little") for row in raw]
        return TopResult(cs, groups, int(total.group(1)), [a for a, _ in per],
                         [c for _, c in per], netlist_name(config), sim,
                         b.version, sim_s, build_s)
    finally:
        if tmp is not None:
            tmp.cleanup()


def linear_commands(a: MXTensor, w: MXTensor, groups: int) -> list:
    """The single command of a linear layer: results stored from channel 0, ``groups`` next-layer
    groups per token converted after it."""
    return [TopCommand(a, w, True, 0, groups)]


__all__ += ["linear_commands", "write_images"]
