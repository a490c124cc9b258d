"""``mixdit verilog``: write the Verilog of the accelerator's blocks."""

from ..errors import UsageError


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "verilog", formatter_class=formatter_class,
        help="write the Verilog of the accelerator's blocks",
        description="Emit the Verilog of each block (or only those named with --block) into DIR,\n"
                    "one file per block named after it. 'make lint' lints them with Verilator.")
    p.add_argument("--block", action="append", metavar="NAME",
                   help="emit only this block (repeatable); default: every block")
    p.add_argument("-o", "--out", default="build/rtl", metavar="DIR", help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from hw.emit import BLOCKS, emit_block

    from ..inputs import output_dir

    output_dir(args.out, "--out")
    names = args.block or sorted(BLOCKS)
    unknown = [n for n in names if n not in BLOCKS]
    if unknown:
        raise UsageError(f"unknown block {unknown[0]!r}; valid blocks: {', '.join(sorted(BLOCKS))}")
    for name in names:
        path = emit_block(name, args.out)
        print(f"wrote {path}")
    return 0
