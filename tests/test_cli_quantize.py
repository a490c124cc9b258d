"""``mixdit quantize`` as a user runs it: output, files, errors (the demo: test_simulate_layer.py)."""

import subprocess
import sys

import numpy as np
import pytest

from golden import mx
from golden.synthetic import outlier_activations


def mixdit(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture
def act(tmp_path):
    x, _ = outlier_activations(32, 128, seed=4)
    p = tmp_path / "x.npy"
    np.save(p, x)
    return p, x


def sqnr_from(out: str) -> float:
    row = out.strip().splitlines()[-1] if "wrote" not in out else out.strip().splitlines()[-2]
    return float(row.split()[3])


def test_quantize_reports_and_writes_fields(act, tmp_path):
    path, x = act
    res = mixdit("quantize", "--in", str(path), "--fmt", "mixdit", "--p1", "0.1",
                 "--out", str(tmp_path / "q.npz"))
    assert res.returncode == 0, res.stderr
    assert "sqnr_db" in res.stdout and "1/8" in res.stdout
    f = np.load(tmp_path / "q.npz")
    perm = f["perm"]
    t = mx.quantize(x[:, perm], ["mx6"] * 7 + ["mx9"])
    assert np.array_equal(f["mant"], t.mant) and np.array_equal(f["exp"], t.exp)
    deq = np.empty_like(x)
    deq[:, perm] = t.dequantize()
    assert np.array_equal(f["dequantized"], deq)


def test_mixdit_beats_mx6_from_the_command_line(act):
    path, _ = act
    s6 = sqnr_from(mixdit("quantize", "--in", str(path), "--fmt", "mx6").stdout)
    smix = sqnr_from(mixdit("quantize", "--in", str(path), "--fmt", "mixdit").stdout)
    assert smix > s6


@pytest.mark.parametrize("make,args,msg", [
    (None, ["--in", "missing.npy", "--fmt", "mx6"], "does not exist"),
    (lambda p: np.save(p, np.arange(16)), ["--fmt", "mx6"], "floating-point"),
    (lambda p: np.save(p, np.float32(1.0)), ["--fmt", "mx6"], "shape"),
    (lambda p: np.save(p, np.array([1.0, np.nan], np.float32)), ["--fmt", "mx6"], "NaN or Inf"),
    (lambda p: p.write_text("not numpy"), ["--fmt", "mx6"], "not a readable .npy"),
    (lambda p: np.save(p, np.ones(16, np.float32)), ["--fmt", "mixdit", "--p1", "1.5"], "[0, 1]"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, args, msg):
    p = tmp_path / "bad.npy"
    if make is not None:
        make(p)
        args = ["--in", str(p)] + args
    res = mixdit("quantize", *args, cwd=tmp_path)
    assert res.returncode == 2
    assert msg in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_unknown_format_is_rejected_by_the_parser(act):
    res = mixdit("quantize", "--in", str(act[0]), "--fmt", "mx8")
    assert res.returncode == 2 and "invalid choice" in res.stderr
