"""One module per ``mixdit`` subcommand.

Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit status. Heavy imports (torch, amaranth, cocotb)
belong inside the callable, so that ``mixdit --help`` stays fast.
"""
