"""Verilog emission of the accelerator's blocks.

:data:`BLOCKS` names every block ``mixdit verilog --block`` knows, with a factory that builds it
at its default parameters. Amaranth emits no Verilog ``parameter``: a different size is a
different Verilog file, so callers that vary parameters build the component themselves and pass it
to :func:`emit`.
"""

import importlib
import re
from pathlib import Path
from typing import Callable

from amaranth.back import verilog
from amaranth.lib import wiring

__all__ = ["BLOCKS", "emit", "emit_block", "build_block", "to_verilog"]

#: Block name -> ``"module:factory"``, the factory called with no arguments.
BLOCKS: dict[str, str] = {
    "fp32_add": "hw.fp32:make_fp32_add",
    "pe": "hw.pe:make_pe",
    "pe_baseline8x8": "hw.pe:make_pe_baseline",
    "mx_convert": "hw.mx_convert:MXConverter",
    "mx9_to_mx6": "hw.mx_convert:MX9ToMX6",
    "reorder": "hw.reorder:make_reorder",
    "top": "hw.top:make_top",
}


def build_block(name: str) -> wiring.Component:
    """Build the block called ``name`` at its default parameters.

    Raises
    ------
    KeyError
        If no block has that name.
    """
    if name not in BLOCKS:
        raise KeyError(f"Unknown block {name!r}; known blocks: {', '.join(sorted(BLOCKS))}")
    module, factory = BLOCKS[name].split(":")
    fn: Callable[[], wiring.Component] = getattr(importlib.import_module(module), factory)
    return fn()


_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +=\s*0;$", re.M)


_ZERO_INIT = re.compile(
    r"^(\s*)initial begin\n"
    r"((?:\s*(\\\S+ |\w+)\[\d+\] = \d+'[dh]0+;\n)+)"
    r"\s*end\n", re.M)


def _zero_init_loops(text: str) -> str:
    """Write a memory's all-zero ``initial`` block (one assignment per word, which Yosys writes
    for every Amaranth memory) as one loop: the same values at time 0, and a 4096-word bank is
    then one line instead of 4096 for Verilator to compile."""
    count = [0]

    def loop(m: re.Match) -> str:
        lines = m[2].strip().splitlines()
        mem = m[3]
        if any(not ln.strip().startswith(f"{mem}[{i}] = ") for i, ln in enumerate(lines)):
            return m[0]
        width = lines[0].split("= ", 1)[1].split("'", 1)[0]
        var = f"mixdit_init_{count[0]}"
        count[0] += 1
        ind = m[1]
        return (f"{ind}integer {var};\n{ind}initial begin\n"
                f"{ind}  for ({var} = 0; {var} < {len(lines)}; {var} = {var} + 1)\n"
                f"{ind}    {mem}[{var}] = {width}'d0;\n{ind}end\n")

    return _ZERO_INIT.sub(loop, text)


def to_verilog(component: wiring.Component, name: str) -> str:
    """The Verilog text of ``component`` as module ``name``, safe for event-driven simulators.

    Yosys writes combinational processes as ``always @*`` blocks, each also reading a trigger
    register declared as ``reg T = 0;`` so that every block runs once at time 0. Icarus Verilog
    applies declaration initialisers before any process waits, so that kick is lost, and a block
    whose inputs never change (a leading-zero count of a sum that stays 0, say) keeps X for the
    whole simulation; Verilator (2-state) and Amaranth's simulator do not show it. Here the
    trigger starts at X and an ``initial`` at the end of its module sets it: processes start in
    source order, so every ``always`` already waits on its event control and the X -> 0 change
    runs each block once. (``write_verilog -sv`` would give ``always_comb`` instead, but Icarus
    11 livelocks on some of those blocks; an ``initial #0`` is an error for Verilator 5.006.)
    """
    text = verilog.convert(component, name=name, emit_src=False)
    out = []
    pos = 0
    for m in _TRIGGER.finditer(text):
        end = text.index("endmodule", m.end())
        out.append(text[pos:m.start()] + f"{m[1]}reg {m[2]} ;" + text[m.end():end]
                   + f"  initial {m[2]} = 0;\n")
        pos = end
    out.append(text[pos:])
    return _zero_init_loops("".join(out))


def emit(component: wiring.Component, name: str, out_dir: "str | Path") -> Path:
    """Write the Verilog of ``component`` as module ``name`` into ``out_dir/name.v``.

    A component with a ``verilog_dependencies`` attribute (``(module name, component)`` pairs,
    e.g. the PE that :class:`hw.sequencer.GemmArray` instantiates 256 times) gets those modules
    written into the same file, after its own.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.v"
    text = to_verilog(component, name)
    for dep_name, dep in getattr(component, "verilog_dependencies", ()):
        text += to_verilog(dep, dep_name)
    path.write_text(text)
    return path


def emit_block(name: str, out_dir: "str | Path") -> Path:
    """Build the block called ``name`` and write its Verilog into ``out_dir``."""
    return emit(build_block(name), name, out_dir)
