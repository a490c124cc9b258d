"""``mixdit demo``: the project's main job, end to end.

Emits the Verilog of every block (the accelerator top included) into ``build/rtl/``, then runs a
linear layer (``blocks.5.mlp.fc1``) and the attention layer (``blocks.5.attn``) of the shipped DiT
at the middle timestep (t = 480) on the RTL through ``mixdit simulate-layer``: the layer on the
Verilog of the 16 x 16 accelerator top under Verilator, every GEMM result checked bit for bit
against the golden model, and the layer's output turned into the next layer's packed MX groups by
the top's reordering controller and MX converter in the same netlist, checked word for word. It
prints each report: the layer's cycles through the top beside the array's, PE utilization, the
share of MX9 groups, and the error of MixDiT beside MX6-only and MX9-only against FP32.

The activations are the shipped fixture capture (golden/dit/data/fixture_capture.npz). The first
run builds the top's Verilator testbench (cached under build/harness/, about a minute on two
cores); later runs take well under a minute.
"""


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "demo", formatter_class=formatter_class,
        help="emit the Verilog, then run a linear and an attention layer of the shipped DiT on "
             "the RTL, bit-exact",
        description=__doc__)
    p.add_argument("--out", default="build/rtl", metavar="DIR", help="where the Verilog goes")
    p.add_argument("--sim", default="verilator", metavar="{verilator,icarus}",
                   help="simulator of the top's testbench")
    p.add_argument("--rows", type=int, default=16, help="array rows R")
    p.add_argument("--cols", type=int, default=16, help="array columns C")
    p.set_defaults(func=run)


def demo_layers() -> tuple:
    """The layers the demo runs."""
    return ("blocks.5.mlp.fc1", "blocks.5.attn")


def simulate_layer_argv(layer: str, sim: str, rows: int, cols: int) -> list:
    """The ``mixdit simulate-layer`` command line the demo runs for ``layer``."""
    from golden.dit.capture import FIXTURE_PATH

    return ["simulate-layer", "--activations", str(FIXTURE_PATH), "--layer", layer,
            "--timestep", "480", "--p1", "0.05", "--p2", "0.2", "--rounding", "trunc",
            "--sim", sim, "--rows", str(rows), "--cols", str(cols)]


def run(args) -> int:
    import time

    from golden.dit.capture import FIXTURE_PATH
    from hw.emit import BLOCKS, emit_block

    from ..cli import build_parser
    from . import simulate_layer
    from ..inputs import output_dir
    from ..layer import progress

    output_dir(args.out, "--out")

    t0 = time.perf_counter()
    progress(f"emitting the Verilog of {len(BLOCKS)} blocks into {args.out}")
    for name in sorted(BLOCKS):
        print(f"wrote {emit_block(name, args.out)}")
    print(f"({time.perf_counter() - t0:.1f} s)\n")
    for layer in demo_layers():
        # simulate-layer's own parser and checks, so that the demo runs what a user would type.
        argv = simulate_layer_argv(layer, args.sim, args.rows, args.cols)
        ns = build_parser().parse_args(argv)
        print(f"$ mixdit simulate-layer --activations {FIXTURE_PATH.name} --layer {layer} "
              "--timestep 480")
        simulate_layer.run(ns)
        print()
    print(f"demo done in {time.perf_counter() - t0:.1f} s")
    return 0
