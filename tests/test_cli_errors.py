"""Exit status of ``mixdit`` (issue 12): 0 ok, 1 RTL != golden, 2 user mistake, 3 internal error.

Every bad input below must give exit status 2 and exactly one line on stderr naming the file or
option, never a traceback, and none may start a simulation (``run_gemm`` is replaced by a function
that fails the test). Output paths are checked before anything runs; ``--json`` is strict JSON.
"""

import json
import math

import numpy as np
import pytest

import sim.harness
from golden import gemm
from golden.dit.capture import FIXTURE_PATH
from golden.dit.checkpoint import CHECKPOINT_PATH
from sim import cli, report
from sim.errors import CheckFailed
from sim.harness import HarnessResult

SMALL = ["--rows", "4", "--cols", "4", "--sim", "icarus"]


@pytest.fixture(autouse=True)
def no_simulation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a simulation started although the input was bad")

    monkeypatch.setattr(sim.harness, "run_gemm", refuse)
    monkeypatch.setattr(sim.harness, "simulator_missing", lambda name: None)
    monkeypatch.delenv("MIXDIT_DEBUG", raising=False)


def run(capsys, *args):
    rc = cli.main(list(args))
    return rc, capsys.readouterr().err


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if not ln.startswith("... ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(12)
    np.save(d / "x.npy", rng.standard_normal((4, 32)).astype(np.float32))
    np.savez(d / "z.npz", a=np.ones(3))
    raw = (d / "z.npz").read_bytes()
    (d / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    big = np.ones((4, 32))
    big[1, 3] = 1e39
    np.save(d / "big.npy", big)
    np.save(d / "inf.npy", np.full((4, 32), np.inf, np.float32))
    np.save(d / "nan.npy", np.full((4, 32), np.nan, np.float32))
    np.save(d / "mixed.npy", np.where(np.arange(128).reshape(4, 32) % 2, np.inf, np.nan))
    with np.load(FIXTURE_PATH) as f:
        cap = {k: f[k] for k in f.files}
    key = "blocks.5.mlp.fc1/t480"
    variants = {
        "int": lambda c: c.update({key: c[key].astype(np.int32)}),
        "complex": lambda c: c.update({key: c[key].astype(np.complex64)}),
        "empty": lambda c: c.update({key: np.zeros((2, 0, 128), np.float32)}),
        "wrongk": lambda c: c.update({key: c[key][..., :96]}),
        "lacking": lambda c: c.pop("blocks.5.mlp.fc2/t480"),
        "nonfinite": lambda c: c[key].__setitem__((0, 0, 0), np.inf),
        "wronghead": lambda c: c.update({"blocks.5.attn.q/t480": c["blocks.5.attn.q/t480"][:, :3]}),
    }
    for name, change in variants.items():
        c = {k: v.copy() for k, v in cap.items()}
        change(c)
        np.savez(d / f"cap_{name}.npz", **c)
    (d / "garbage.safetensors").write_text("not a safetensors file")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(CHECKPOINT_PATH), "pt") as f:
        meta = f.metadata()
    state = load_file(str(CHECKPOINT_PATH))
    del state["blocks.0.attn.proj.weight"]
    save_file(state, str(d / "lacking.safetensors"), metadata=meta)
    return d


LAYER = ["simulate-layer", "--layer", "blocks.5.mlp.fc1", "--timestep", "480", *SMALL]


@pytest.mark.parametrize("argv, needle", [
    (["quantize", "--in", "{d}/trunc.npz", "--fmt", "mx6"], "not a readable .npy"),
    (["quantize", "--in", "{d}/z.npz", "--fmt", "mx6"], ".npz archive"),
    (["quantize", "--in", "{d}/big.npy", "--fmt", "mx6"], "beyond the FP32 range"),
    (["quantize", "--in", "{d}/inf.npy", "--fmt", "mx6"], "NaN or Inf"),
    (["quantize", "--in", "{d}/x.npy", "--fmt", "mx6", "--p1", "0.1"], "--p1 applies only"),
    (["quantize", "--in", "{d}/x.npy", "--fmt", "mx6", "--out", "{d}"], "is a directory"),
    (["quantize", "--in", "{d}/x.npy", "--fmt", "mx6", "--out", "{d}/no/q.npz"],
     "does not exist"),
    (["gemm", "--a", "{d}/trunc.npz", "--w", "{d}/x.npy", "--out", "{d}/c.npy", *SMALL],
     "A file"),
    (["gemm", "--a", "{d}/x.npy", "--w", "{d}/trunc.npz", "--out", "{d}/c.npy", *SMALL],
     "W file"),
    (["gemm", "--a", "{d}/big.npy", "--w", "{d}/x.npy", "--out", "{d}/c.npy", *SMALL],
     "beyond the FP32 range"),
    (["gemm", "--a", "{d}/nan.npy", "--w", "{d}/x.npy", "--out", "{d}/c.npy", *SMALL],
     "no finite value"),
    (["gemm", "--a", "{d}/inf.npy", "--w", "{d}/x.npy", "--out", "{d}/c.npy", *SMALL],
     "no finite value"),
    (["gemm", "--a", "{d}/x.npy", "--w", "{d}/mixed.npy", "--out", "{d}/c.npy", *SMALL],
     "no finite value"),
    (["gemm", "--a", "{d}/x.npy", "--w", "{d}/x.npy", "--out", "{d}", *SMALL], "--out"),
    (["gemm", "--a", "{d}/x.npy", "--w", "{d}/x.npy", "--out", "{d}/no/c.npy", *SMALL],
     "--out"),
    (["gemm", "--a", "{d}/x.npy", "--w", "{d}/x.npy", "--out", "{d}/c.npy", "--vcd", "{d}",
      *SMALL], "--waves"),
    ([*LAYER, "--activations", "{d}/trunc.npz"], "cannot read capture"),
    ([*LAYER, "--activations", "{d}/x.npy"], "single .npy array"),
    ([*LAYER, "--activations", "{d}/cap_int.npz"], "int32"),
    ([*LAYER, "--activations", "{d}/cap_complex.npz"], "complex64"),
    ([*LAYER, "--activations", "{d}/cap_empty.npz"], "empty"),
    ([*LAYER, "--activations", "{d}/cap_wrongk.npz"], "K = 128"),
    ([*LAYER, "--activations", "{d}/cap_lacking.npz"], "lacks 'blocks.5.mlp.fc2/t480'"),
    ([*LAYER, "--activations", "{d}/cap_nonfinite.npz"], "NaN or Inf"),
    ([*LAYER, "--activations", "{d}/cap_wronghead.npz"], "4 heads"),
    ([*LAYER, "--checkpoint", "{d}/garbage.safetensors"], "SafetensorError"),
    ([*LAYER, "--checkpoint", "{d}/lacking.safetensors"], "blocks.0.attn.proj.weight"),
    ([*LAYER, "--activations", str(FIXTURE_PATH), "--json", "{d}"], "--json"),
    ([*LAYER, "--activations", str(FIXTURE_PATH), "--vcd", "{d}/no/w.vcd"], "--vcd"),
    ([*LAYER, "--activations", str(FIXTURE_PATH), "--tokens", "100000"], "--tokens 100000"),
    ([*LAYER[:2], "blocks.5.attn", *LAYER[3:], "--activations", str(FIXTURE_PATH),
      "--images", "9"], "--images 9 exceeds the 2 images"),
    ([*LAYER, "--activations", str(FIXTURE_PATH), "--images", "1"], "--images applies"),
    (["simulate-layer", "--block", "5", "--vcd", "{d}/w.vcd", *SMALL], "--layer only"),
    (["analyze", "{d}/x.npy"], "single .npy array"),
    (["analyze", "{d}/trunc.npz"], "cannot read capture"),
    (["analyze", str(FIXTURE_PATH), "--plots", "{d}/x.npy"], "--plots"),
    (["capture", "--checkpoint", "{d}/garbage.safetensors", "--out", "{d}/c.npz"],
     "SafetensorError"),
    (["capture", "--checkpoint", "{d}/x.npy", "--out", "{d}/c.npz"], "--checkpoint"),
    (["capture", "--out", "{d}/no/c.npz"], "--out"),
    (["perf", "--json", "{d}/no/p.json"], "--json"),
    (["perf", "--plot-dir", "{d}/x.npy"], "--plot-dir"),
    (["evaluate", "--json", "{d}/no/e.json"], "--json"),
    (["synth", "--json", "{d}/no/s.json"], "--json"),
])
def test_bad_input_is_exit_2_with_one_line(files, capsys, argv, needle):
    rc, err = run(capsys, *(a.replace("{d}", str(files)) for a in argv))
    line = one_line(err)
    assert rc == 2, err
    assert needle in line, line


@pytest.mark.parametrize("env, value, needle", [
    ("MIXDIT_TEST_FLIP_RTL", "abc", "4 non-negative integers"),
    ("MIXDIT_TEST_FLIP_RTL", "0,1,2", "4 non-negative integers"),
    ("MIXDIT_TEST_FLIP_RTL", "0,-1,2,3", "4 non-negative integers"),
    ("MIXDIT_TEST_FLIP_GROUP", "3", "2 non-negative integers"),
    ("MIXDIT_TEST_FLIP_GROUP", "x,y", "2 non-negative integers"),
])
def test_garbage_test_hook_is_exit_2_before_any_run(capsys, monkeypatch, env, value, needle):
    monkeypatch.setenv(env, value)
    rc, err = run(capsys, *LAYER, "--activations", str(FIXTURE_PATH))
    assert rc == 2 and needle in one_line(err) and env in err


def test_out_of_range_test_hooks_are_errors(capsys, monkeypatch):
    # A GEMM index past the layer's GEMMs is refused before any simulation starts.
    monkeypatch.setenv("MIXDIT_TEST_FLIP_RTL", "7,0,0,1")
    rc, err = run(capsys, *LAYER, "--activations", str(FIXTURE_PATH))
    assert rc == 2 and "never ran" in err.splitlines()[-1], err
    monkeypatch.delenv("MIXDIT_TEST_FLIP_RTL")

    # Row, column, word index or bit out of range: refused after the run, never ignored.
    from types import SimpleNamespace

    import sim.harness.top as top
    from hw.config import ArrayConfig
    from sim.errors import UsageError
    from sim.layer import LayerProgram, run_on_top

    fake = lambda *a, **k: SimpleNamespace(c=[np.zeros((2, 3), np.float32)], groups=[0, 0])
    monkeypatch.setattr(top, "run_top", fake)
    rec = SimpleNamespace(name="x", a=SimpleNamespace(shape=(2, 16)),
                          w=SimpleNamespace(shape=(3, 16)), c=np.zeros((2, 3), np.float32))
    prog = LayerProgram("x", [rec], np.zeros((2, 3), np.float32), None)
    monkeypatch.setattr("sim.layer._program", lambda *a: ([rec], np.zeros((2, 3), np.float32)))
    for env, value in (("MIXDIT_TEST_FLIP_RTL", "0,2,0,1"), ("MIXDIT_TEST_FLIP_RTL", "0,0,0,32"),
                       ("MIXDIT_TEST_FLIP_GROUP", "2,0"), ("MIXDIT_TEST_FLIP_GROUP", "0,145")):
        monkeypatch.setenv(env, value)
        with pytest.raises(UsageError, match="out of range"):
            run_on_top(prog, ArrayConfig(rows=4, cols=4), sim="icarus", rounding="trunc",
                       top=object())
        monkeypatch.delenv(env)


def _register_boom(monkeypatch, exc):
    import sim.commands.verilog as verilog

    def boom(args):
        raise exc

    orig = verilog.register

    def register(sub, fmt):
        orig(sub, fmt)
        sub.choices["verilog"].set_defaults(func=boom)

    monkeypatch.setattr(verilog, "register", register)


def test_internal_error_is_exit_3_without_traceback(capsys, monkeypatch):
    _register_boom(monkeypatch, ZeroDivisionError("a bug"))
    rc, err = run(capsys, "verilog")
    assert rc == 3
    line = one_line(err)
    assert "internal error" in line and "ZeroDivisionError" in line and "--debug" in line


@pytest.mark.parametrize("how", ["flag", "env"])
def test_internal_error_traceback_on_request(capsys, monkeypatch, how):
    _register_boom(monkeypatch, KeyError("k"))
    if how == "env":
        monkeypatch.setenv("MIXDIT_DEBUG", "1")
        rc, err = run(capsys, "verilog")
    else:
        rc, err = run(capsys, "--debug", "verilog")
    assert rc == 3 and "Traceback" in err and "internal error: KeyError" in err


def test_check_failed_is_exit_1(capsys, monkeypatch):
    _register_boom(monkeypatch, CheckFailed("RTL 0x1 golden 0x2"))
    rc, err = run(capsys, "verilog")
    assert rc == 1 and "CHECK FAILED" in one_line(err)


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def test_json_writer_is_strict(tmp_path):
    rep = {"sqnr_db": math.inf, "rel_err": np.float32("nan"), "ok": 1.5,
           "errors": {"mx6": {"sqnr_db": -math.inf, "cycles": np.int64(7)}},
           "list": [1.0, math.nan, np.float64(2.0)], "arr": np.array([np.inf, 0.0])}
    path = report.write_json(tmp_path / "r.json", rep)
    got = json.loads(path.read_text(), parse_constant=_refuse_constant)
    assert got["sqnr_db"] is None and got["sqnr_db_reason"] == "+Inf"
    assert got["rel_err"] is None and got["rel_err_reason"] == "NaN"
    assert got["ok"] == 1.5
    assert got["errors"]["mx6"] == {"sqnr_db": None, "sqnr_db_reason": "-Inf", "cycles": 7}
    assert got["list"] == [1.0, None, 2.0] and got["list_reason"] == "[1] NaN"
    assert got["arr"] == [None, 0.0] and got["arr_reason"] == "[0] +Inf"


def test_perf_json_is_strict_and_wrote_names_the_file(tmp_path, capsys):
    out = tmp_path / "p.json"
    rc = cli.main(["perf", "--plot-dir", "", "--json", str(out)])
    assert rc == 0
    assert f"wrote    {out}" in capsys.readouterr().out
    got = json.loads(out.read_text(), parse_constant=_refuse_constant)
    assert "workloads" in got


def test_wrote_names_the_real_file(files, capsys):
    rc = cli.main(["quantize", "--in", str(files / "x.npy"), "--fmt", "mx6", "--out",
                   str(files / "fields")])
    assert rc == 0
    assert f"wrote    {files / 'fields.npz'}" in capsys.readouterr().out
    assert (files / "fields.npz").is_file() and not (files / "fields").exists()


def _fake_harness(monkeypatch, flip: bool):
    """``run_gemm`` replaced by the golden GEMM (one bit flipped with ``flip``): the command's
    own logic, without a simulator."""
    from hw.cycles import gemm_cycles

    def fake(a, w, config, sim, waves=None, announce=None):
        c = gemm.mx_matmul(a, w).copy()
        if flip:
            c.view(np.uint32)[0, 0] ^= np.uint32(1)
        cyc = gemm_cycles(a.shape[0], 16 * a.groups, w.shape[0], list(a.formats),
                          list(w.formats), config)
        return HarnessResult(c, cyc, "icarus", 0.5, 7.0, "test")

    monkeypatch.setattr(sim.harness, "run_gemm", fake)


def test_gemm_wrote_names_the_real_file_and_rate_counts_simulation_only(files, capsys,
                                                                          monkeypatch):
    _fake_harness(monkeypatch, flip=False)
    out = files / "C.result"
    rc = cli.main(["gemm", "--a", str(files / "x.npy"), "--w", str(files / "x.npy"), "--out",
                   str(out), *SMALL])
    text = capsys.readouterr().out
    assert rc == 0
    assert f"wrote    {out}.npy" in text and (files / "C.result.npy").is_file()
    # The rate divides the cycles by the simulation's 0.5 s, not by the 7 s build.
    cycles = int(text.split("cycles   ")[1].split()[0].replace(",", ""))
    assert f"{cycles / 0.5:,.0f} simulated cycles per second of simulation" in text


def test_gemm_mismatch_is_exit_1(files, capsys, monkeypatch):
    _fake_harness(monkeypatch, flip=True)
    rc, err = run(capsys, "gemm", "--a", str(files / "x.npy"), "--w", str(files / "x.npy"),
                  "--out", str(files / "C2.npy"), *SMALL)
    assert rc == 1 and "CHECK FAILED" in one_line(err) and "C[0, 0]" in err
    assert not (files / "C2.npy").exists()


def test_unwritable_output_is_exit_2_at_once(files, capsys, monkeypatch):
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(files) else
                        real(p, mode))
    rc, err = run(capsys, "gemm", "--a", str(files / "x.npy"), "--w", str(files / "x.npy"),
                  "--out", str(files / "C3.npy"), *SMALL)
    assert rc == 2 and "not writable" in one_line(err)
