"""The ``mixdit`` command line.

Subcommands live in :mod:`sim.commands`, one module each; :data:`COMMANDS` lists them in the order
``mixdit --help`` shows them. A :class:`~sim.errors.UsageError` becomes a one-line message and exit
status 2, a :class:`~sim.errors.CheckFailed` a one-line message and exit status 1.
"""

import argparse
import importlib
import sys

from .errors import CheckFailed, UsageError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand modules, each with a ``register(subparsers)`` function.
COMMANDS = (
    "sim.commands.demo",
    "sim.commands.quantize",
    "sim.commands.verilog",
    "sim.commands.synth",
    "sim.commands.board",
    "sim.commands.capture",
    "sim.commands.analyze",
    "sim.commands.perf",
    "sim.commands.evaluate",
    "sim.commands.tune",
    "sim.commands.gemm",
    "sim.commands.simulate_layer",
)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixdit",
        formatter_class=_Formatter,
        description=(
            "Open hardware generator for the MixDiT accelerator (precision-flexible MX arithmetic\n"
            "for Diffusion Transformer inference): golden MX model, Verilog generation and\n"
            "bit-exact simulation. Run 'mixdit COMMAND --help' for the options of a command."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub, _Formatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"mixdit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CheckFailed as exc:
        print(f"mixdit {args.command}: CHECK FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mixdit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
