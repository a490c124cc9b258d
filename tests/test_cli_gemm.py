"""``mixdit gemm``: RTL result written and checked bit for bit; bad input gives exit status 2."""

import numpy as np
import pytest

from golden import gemm, mx
from sim.cli import main
from sim.harness import simulator_missing

SMALL = ["--rows", "4", "--cols", "4", "--sim", "icarus"]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 40)).astype(np.float32)
    w = rng.standard_normal((5, 40)).astype(np.float32)
    np.save(tmp_path / "A.npy", a)
    np.save(tmp_path / "W.npy", w)
    return tmp_path, a, w


def test_gemm_writes_the_golden_bits(files, capsys):
    if simulator_missing("icarus"):
        pytest.skip(simulator_missing("icarus"))
    d, a, w = files
    rc = main(["gemm", "--a", str(d / "A.npy"), "--w", str(d / "W.npy"), "--out",
               str(d / "C.npy"), "--a-mx9-groups", "1", *SMALL])
    assert rc == 0
    ref = gemm.mx_matmul(mx.quantize(a, ["mx6", "mx6", "mx9"]), mx.quantize(w, "mx6"))
    np.testing.assert_array_equal(np.load(d / "C.npy").view(np.uint32), ref.view(np.uint32))
    out = capsys.readouterr().out
    assert "bit for bit" in out and "cycles" in out and "util" in out


@pytest.mark.parametrize("case, message", [
    ("shape", "K differs"),
    ("k0", "empty"),
    ("nan", "only NaN"),
    ("sim", "unknown simulator"),
    ("groups", "--a-mx9-groups"),
])
def test_gemm_bad_input(files, capsys, case, message):
    d, a, w = files
    args = ["gemm", "--a", str(d / "A.npy"), "--w", str(d / "W.npy"), "--out", str(d / "C.npy"),
            *SMALL]
    if case == "shape":
        np.save(d / "W.npy", w[:, :30])
    elif case == "k0":
        np.save(d / "A.npy", np.zeros((6, 0), np.float32))
    elif case == "nan":
        np.save(d / "A.npy", np.full_like(a, np.nan))
    elif case == "sim":
        args[-1] = "modelsim"
    else:
        args += ["--a-mx9-groups", "9"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
