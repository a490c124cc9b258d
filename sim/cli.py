"""The ``mixdit`` command line.

Subcommands live in :mod:`sim.commands`, one module each; :data:`COMMANDS` lists them in the order
``mixdit --help`` shows them.

Exit status (one meaning each, so that a script can trust it):

- 0: done;
- 1: the RTL differs from the golden model (:class:`~sim.errors.CheckFailed`), and only that;
- 2: a user mistake (:class:`~sim.errors.UsageError`, or argparse's own errors): one line on
  stderr naming the file or option and what is wrong;
- 3: an internal error (any other exception): one line saying so; the traceback only with
  ``mixdit --debug`` or ``MIXDIT_DEBUG=1``;
- 130: interrupted (Ctrl-C).
"""

import argparse
import importlib
import os
import sys
import traceback

from .errors import CheckFailed, UsageError

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_MISMATCH", "EXIT_USAGE", "EXIT_INTERNAL", "build_parser",
           "main"]

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

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
    "sim.commands.simulate_model",
)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default only where it says something: not for an unset option
    (None), a flag (False), or where the help already words the default."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixdit",
        formatter_class=_Formatter,
        description=(
            "Open hardware generator for the MixDiT accelerator (precision-flexible MX arithmetic\n"
            "for Diffusion Transformer inference): golden MX model, Verilog generation and\n"
            "bit-exact simulation. Run 'mixdit COMMAND --help' for the options of a command.\n\n"
            "Exit status: 0 ok; 1 the RTL differs from the golden model; 2 a user mistake (one\n"
            "line on stderr); 3 an internal error (the traceback with --debug or MIXDIT_DEBUG=1)."
        ),
    )
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an internal error (also MIXDIT_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub, _Formatter)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("MIXDIT_DEBUG", "") not in ("", "0")
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except UsageError as exc:
        print(f"mixdit {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except CheckFailed as exc:
        print(f"mixdit {args.command}: CHECK FAILED: {_one_line(exc)}", file=sys.stderr)
        return EXIT_MISMATCH
    except KeyboardInterrupt:
        print(f"mixdit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a bug of mixdit, not of the user or the RTL
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run with --debug or MIXDIT_DEBUG=1 for the traceback)"
        print(f"mixdit {args.command}: internal error: {type(exc).__name__}: "
              f"{_one_line(exc)[:300]}{hint}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
