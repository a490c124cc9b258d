"""``mixdit simulate-model`` and its cluster machinery (sim/shard.py, sim/cluster.py,
sim/model.py): a whole sampling run of the shipped DiT on the RTL, sharded on Dask.

Quick cases: a 4 x 4 array under Verilator, a ``LocalCluster`` of 2 workers, 2 DDIM steps of the
shipped digits DiT for one class (2 images with the CFG batch). The run is killed once and
started again (it must reuse the finished tasks and end with the same bits), and one worker
process is killed during the second run (a retry, never a wrong or missing result). The final
RTL image is compared bit for bit with a golden run made here, by the sampler with the golden
GEMM, independently of the command. The full 25-step run on the default 16 x 16 array is slow.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from golden import gemm, mx
from golden.dit.checkpoint import CHECKPOINT_PATH, load_model
from sim.cli import main
from sim.harness import simulator_missing
from sim.layer import array_config
from sim.shard import (ShardResult, assemble, cached, column_ranges, shards, store,
                       task_key)

ROOT = Path(__file__).resolve().parent.parent
needs_verilator = pytest.mark.skipif(simulator_missing("verilator") is not None,
                                     reason="no Verilator (scripts/install-tools.sh, make venv)")
QUICK = ["--steps", "2", "--rows", "4", "--cols", "4", "--classes", "3", "--seeds", "0",
         "--calib-samples", "4"]


def _random_mx(rng, shape, fmt="mx6"):
    return mx.quantize(rng.standard_normal(shape).astype(np.float32), fmt)


@pytest.mark.parametrize("n,cols,parts", [(1, 4, 1), (16, 4, 2), (17, 4, 2), (384, 16, 3),
                                           (40, 16, 8), (100, 4, 7), (5, 16, 4)])
def test_column_ranges_cover_whole_tiles(n, cols, parts):
    ranges = column_ranges(n, cols, parts)
    tiles = -(-n // cols)
    assert len(ranges) == min(parts, tiles)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    for (a0, a1), (b0, _) in zip(ranges, ranges[1:]):
        assert a1 == b0 and a1 % cols == 0
    widths = [-(-(b - a) // cols) for a, b in ranges]
    assert max(widths) - min(widths) <= 1


def test_column_ranges_reject_nonsense():
    for bad in ((0, 4, 1), (4, 0, 1), (4, 4, 0)):
        with pytest.raises(ValueError):
            column_ranges(*bad)


def test_task_key_follows_every_operand_bit_and_the_build():
    seed = 11
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    a, w = _random_mx(rng, (8, 32)), _random_mx(rng, (12, 32))
    key = task_key(a, w, "b1")
    assert task_key(a, w, "b1") == key
    assert task_key(a, w, "b2") != key
    a2 = mx.MXTensor(a.exp, a.micro, a.sign, a.mant.copy(), a.fmt, a.length)
    a2.mant[3, 1, 5] ^= 1
    assert task_key(a2, w, "b1") != key
    assert task_key(a, mx.quantize(np.zeros((12, 32), np.float32), "mx9"), "b1") != key


def test_cache_round_trip_and_a_torn_entry_is_a_miss(tmp_path):
    c = np.arange(12, dtype=np.float32).reshape(3, 4)
    store("ab" * 12, ShardResult(c, 77, 0.5, False, "h"), tmp_path)
    hit = cached("ab" * 12, tmp_path)
    assert hit.cached and hit.cycles == 77
    assert np.array_equal(hit.c.view(np.uint32), c.view(np.uint32))
    (tmp_path / "cd" / f"{'cd' * 12}.npz").parent.mkdir()
    (tmp_path / "cd" / f"{'cd' * 12}.npz").write_bytes(b"PK\x03\x04 torn")
    assert cached("cd" * 12, tmp_path) is None
    assert cached("ef" * 12, tmp_path) is None
    assert not list(tmp_path.rglob(".*")), "a temporary file was left behind"


def test_top_results_round_trip_with_145_bit_words(tmp_path):
    from sim.shard import TopShardResult

    cs = [np.float32([[1.5, -0.0]]), np.float32([[np.inf], [2.0]])]
    words = [(1 << 144) | 0xABC, (1 << 143) | 1, 0]     # tag set, top word bit set, zero
    store("t" + "ab" * 11 + "a", TopShardResult(cs, words, 91, 0.5, False, "h"), tmp_path)
    hit = cached("t" + "ab" * 11 + "a", tmp_path)
    assert isinstance(hit, TopShardResult) and hit.cached and hit.cycles == 91
    assert hit.words == words
    assert [c.view(np.uint32).tolist() for c in hit.c] == [c.view(np.uint32).tolist()
                                                            for c in cs]


def test_assemble_puts_every_column_back_and_refuses_gaps():
    rng = np.random.default_rng(3)
    a, w = _random_mx(rng, (4, 16)), _random_mx(rng, (10, 16))
    cfg = array_config(4, 4)
    parts = shards(a, w, cfg, 3, "b")
    assert [(s.n0, s.n1) for s in parts] == [(0, 4), (4, 8), (8, 10)]
    ref = gemm.mx_matmul(a, w)
    got = assemble([(s, ShardResult(gemm.mx_matmul(a, s.w), 0, 0, False, "h")) for s in parts],
                   4, 10)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    with pytest.raises(ValueError, match="no shard"):
        assemble([(s, ShardResult(gemm.mx_matmul(a, s.w), 0, 0, False, "h"))
                  for s in parts[:2]], 4, 10)


@needs_verilator
def test_shard_runner_survives_a_killed_worker(tmp_path):
    """A worker killed while it holds a task costs a retry; every result stays exact."""
    from sim import harness
    from sim.cluster import Progress, ShardRunner, connect

    seed = int(os.environ.get("MIXDIT_TEST_SEED", "5"))
    print(f"seed {seed} (MIXDIT_TEST_SEED replays it)")
    rng = np.random.default_rng(seed)
    cfg = array_config(4, 4)
    build_id = harness.build(cfg, "verilator").directory.name
    a, w = _random_mx(rng, (8, 64)), _random_mx(rng, (32, 64), "mx9")
    parts = shards(a, w, cfg, 8, build_id)
    with connect(2) as client:
        runner = ShardRunner(client, cfg, "verilator", Progress(len(parts), every_s=1e9),
                             cache=tmp_path, hold_s=1.0)
        before = client.run(os.getpid)
        out: dict = {}
        thread = threading.Thread(target=lambda: out.setdefault(
            "res", runner.run([[s] for s in parts], "random GEMM")))
        thread.start()
        victim = None
        for _ in range(200):
            busy = [addr for addr, keys in client.processing().items() if keys]
            if busy:
                victim = busy[0]
                break
            time.sleep(0.05)
        assert victim is not None, "no worker took a task"
        os.kill(before[victim], signal.SIGKILL)
        thread.join(timeout=120)
        assert not thread.is_alive()
        after = client.run(os.getpid)
    assert before[victim] not in after.values(), "the killed worker is still there"
    got = assemble([(s, r[0]) for s, r in zip(parts, out["res"])], 8, 32)
    ref = gemm.mx_matmul(a, w)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def _golden_image(classes, seeds, steps, calib_path):
    """The sampler with the golden GEMM: what the RTL image must equal."""
    from golden.quality.sampling import Calibration, mixdit_scheme, sample

    model = load_model(CHECKPOINT_PATH)
    calib = Calibration.load(calib_path)
    labels = [c for c in classes for _ in seeds]
    return sample(model, mixdit_scheme(0.05, 0.2), labels, [s for _ in classes for s in seeds],
                  calib, 2.0, steps, emulation="exact")


def _start(tmp_path, tasks, name):
    cmd = [sys.executable, "-m", "sim.cli", "simulate-model", *QUICK, "--workers", "2",
           "--tasks-dir", str(tasks), "--cache-dir", str(tmp_path / "calib"),
           "--out", str(tmp_path / name), "--json", str(tmp_path / f"{name}.json")]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _entries(tasks: Path) -> int:
    return len(list(tasks.glob("*/*.npz")))


def _wait_for(pred, proc, timeout=120.0):
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early (rc {proc.returncode}): "
                                 f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.1)


def _worker_processes(pid: int) -> list:
    """The Dask worker processes of the run ``pid`` (a LocalCluster's nannies live in the
    run's own process and spawn one child process per worker)."""
    import psutil

    return [p for p in psutil.Process(pid).children()
            if "spawn_main" in " ".join(p.cmdline())]


@needs_verilator
def test_model_run_killed_rerun_and_worker_killed(tmp_path):
    tasks = tmp_path / "tasks"
    # Run 1: killed (the whole process group, SIGKILL) once it has finished 40 GEMM runs.
    first = _start(tmp_path, tasks, "first")
    try:
        _wait_for(lambda: _entries(tasks) >= 40, first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    done_before = _entries(tasks)
    assert not (tmp_path / "first.json").exists()

    # Run 2: starts again; one worker process is killed once new tasks run.
    second = _start(tmp_path, tasks, "second")
    try:
        _wait_for(lambda: _entries(tasks) >= done_before + 10, second)
        victims = _worker_processes(second.pid)
        assert victims, "found no worker process to kill"
        victims[0].send_signal(signal.SIGKILL)
        out, err = second.communicate(timeout=240)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    assert second.returncode == 0, err[-3000:]
    rep = json.loads((tmp_path / "second.json").read_text())
    assert rep["bit_exact"] is True and rep["image_bit_exact"] is True
    assert rep["workers"] == 2 and rep["steps"] == 2
    # 6 blocks x 2 steps x (qkv, proj, fc1, fc2 and 4 heads x 2 products)
    assert rep["gemms"] == 6 * 2 * (4 + 8)
    assert rep["tasks_cached"] >= done_before
    assert rep["cycles"] > rep["model_cycles"] > 0
    # Next-layer groups, one per token and 16 consumer channels, from the DiT's shapes (hidden
    # 128, 4 heads of 32, MLP 512; 32 tokens: 16 per image, CFG pair): each block's qkv ->
    # Q, K, V heads (384), attention -> proj (128), proj -> fc1 (128), fc1 -> fc2 (512),
    # fc2 -> the next block's qkv (128), except the last block's fc2 (the host's final layer).
    per_step = 32 * (6 * (384 + 128 + 128 + 512 + 128) - 128) // 16
    assert rep["next_layer_groups"] == {"count": 2 * per_step, "source": "rtl",
                                        "bit_exact": True}
    assert rep["netlist"].startswith("mixdit_top_4x4_")
    assert "harness runs" in err
    calib = next((tmp_path / "calib").glob("calib-*.npz"))
    want = _golden_image([3], [0], 2, calib)
    got = np.load(tmp_path / "second" / "images.npz")
    assert np.array_equal(got["rtl"].view(np.uint32), want.view(np.uint32))
    assert np.array_equal(got["golden"].view(np.uint32), want.view(np.uint32))
    assert not np.array_equal(got["fp32"].view(np.uint32), want.view(np.uint32))
    for name in ("rtl", "golden", "fp32"):
        assert (tmp_path / "second" / f"{name}.png").stat().st_size > 0


def _failed_line(tmp_path, capsys, needle: str) -> list:
    """Run one step of block 0 on a 4 x 4 top (a test hook set) and return its one CHECK FAILED
    line, which must contain ``needle``; exit status 1."""
    rc = main(["simulate-model", "--steps", "1", "--rows", "4", "--cols", "4", "--blocks", "0",
               "--calib-samples", "2", "--workers", "1", "--tasks-dir", str(tmp_path / "t"),
               "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1, err
    line = [x for x in err.splitlines() if "CHECK FAILED" in x]
    assert len(line) == 1 and needle in line[0], err
    return line


@needs_verilator
@pytest.mark.parametrize("index,needle", [(0, "step 0, blocks.0.attn.qkv: "),
                                          (1, "step 0, blocks.0.attn.head")])
def test_one_flipped_bit_is_exit_1_naming_step_gemm_and_element(tmp_path, capsys, monkeypatch,
                                                               index, needle):
    monkeypatch.setenv("MIXDIT_TEST_FLIP_RTL", f"{index},1,2,7")
    line = _failed_line(tmp_path, capsys, needle)
    assert "differ in 1 of" in line[0]
    element = "C[1, 2]:" if index == 0 else "(image 0): "
    assert element in line[0] or ("(image 0)" in line[0] and "C[0, 1, 2]:" in line[0]), line[0]


@needs_verilator
@pytest.mark.parametrize("index,needle", [
    # word 5 of the run: blocks.0.attn.qkv's groups (24 per token), token 0, group 5.
    (5, "step 0, next-layer groups for blocks.0.attn.qkv: word 5 (token 0, group 5"),
    # 768 qkv words, then the attention layer's groups of image 0 (8 per token).
    (768 + 9, "step 0, next-layer groups for blocks.0.attn (image 0): word 9 (token 1, group 1"),
])
def test_one_flipped_group_bit_is_exit_1_naming_step_layer_and_word(tmp_path, capsys,
                                                                     monkeypatch, index,
                                                                     needle):
    monkeypatch.setenv("MIXDIT_TEST_FLIP_GROUP", f"{index},3")
    _failed_line(tmp_path, capsys, needle)
    assert not (tmp_path / "o" / "rtl.png").exists()


def test_consumer_of_each_layer_follows_the_block_order_and_the_step():
    """The consumer of each layer, from a calibration written by hand: at step 2 every layer's
    channel means fall with the channel index (so its order is the reversed one), at step 0 they
    are equal (so the order keeps channel order); head 1 has the largest score."""
    from golden.formats import GROUP_SIZE
    from golden.quality.sampling import Calibration
    from sim.model import consumer

    ks = {"attn.qkv": 128, "attn.proj": 128, "mlp.fc1": 128, "mlp.fc2": 512}
    channels = {}
    for b in range(6):
        for kind, k in ks.items():
            means = np.ones((3, k))
            means[2] = np.arange(k, 0, -1)
            channels[f"blocks.{b}.{kind}"] = means
    heads = {f"blocks.{b}.attn": np.tile([1.0, 5.0, 2.0, 3.0], (3, 1)) for b in range(6)}
    calib = Calibration(channels, heads)

    # attn.qkv -> the Q, K and V heads in channel order, 2 groups per head of 32, head 1 in MX9
    # (p2 = 0.2 of 4 heads: one head).
    name, perm, fmts = consumer("blocks.1.attn.qkv", 2, calib, 0.05, 0.2, 6, 32)
    assert np.array_equal(perm, np.arange(384))
    assert fmts == (("mx6",) * 2 + ("mx9",) * 2 + ("mx6",) * 4) * 3
    for layer, k in (("blocks.1.attn", 128), ("blocks.1.attn.proj", 128),
                     ("blocks.1.mlp.fc1", 512), ("blocks.1.mlp.fc2", 128)):
        for step, order in ((2, np.arange(k)[::-1]), (0, np.arange(k))):
            name, perm, fmts = consumer(layer, step, calib, 0.05, 0.2, 6, 32)
            assert np.array_equal(perm, order), (layer, step)
            # p1 = 0.05: the last ceil(0.05 x K / 16) groups in MX9.
            n9 = math.ceil(0.05 * (k // GROUP_SIZE))
            assert fmts == ("mx6",) * (k // GROUP_SIZE - n9) + ("mx9",) * n9, layer
    assert consumer("blocks.5.mlp.fc2", 0, calib, 0.05, 0.2, 6, 32) is None


@pytest.mark.parametrize("argv,needle", [
    (["--workers", "0"], "--workers must be a positive integer"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--shards", "-1"], "--shards must be a positive integer"),
    (["--blocks", "0,99"], "the model has blocks 0..5"),
    (["--classes", "12"], "the model has classes 0..9"),
    (["--classes", "a,b"], "--classes takes comma-separated integers"),
    (["--p1", "1.5"], "--p1 must lie in [0, 1]"),
    (["--sim", "ghdl"], "unknown simulator 'ghdl'"),
    (["--json", "/nonexistent/r.json"], "does not exist"),
])
def test_bad_options_are_exit_2_with_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    import sim.cluster

    def refuse(*a, **k):
        raise AssertionError("a cluster started although the input was bad")

    monkeypatch.setattr(sim.cluster, "connect", refuse)
    rc = main(["simulate-model", *argv, "--cache-dir", str(tmp_path / "c"),
               "--tasks-dir", str(tmp_path / "t"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err


def test_workers_and_scheduler_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate-model", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
@needs_verilator
def test_full_25_step_run_on_the_16x16_array(tmp_path):
    """The default: 25 DDIM steps, every block, the 16 x 16 array, a local cluster."""
    t0 = time.perf_counter()
    rc = main(["simulate-model", "--tasks-dir", str(tmp_path / "t"), "--cache-dir",
               str(tmp_path / "c"), "--out", str(tmp_path / "o"),
               "--json", str(tmp_path / "r.json")])
    assert rc == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    print(f"25-step 16x16 run: {time.perf_counter() - t0:.0f} s wall, {rep['cycles']:,} cycles")
    assert rep["bit_exact"] and rep["image_bit_exact"] and rep["gemms"] == 6 * 25 * 12
    calib = next((tmp_path / "c").glob("calib-*.npz"))
    want = _golden_image([3], [0], 25, calib)
    got = np.load(tmp_path / "o" / "images.npz")["rtl"]
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@needs_verilator
def test_gemm_with_workers_is_the_golden_gemm_and_counts_each_shards_cycles(tmp_path, capsys):
    from hw.cycles import gemm_cycles

    seed = 21
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((24, 80)).astype(np.float32)
    y = rng.standard_normal((37, 80)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "w.npy", y)
    rc = main(["gemm", "--a", str(tmp_path / "a.npy"), "--w", str(tmp_path / "w.npy"),
               "--out", str(tmp_path / "c.npy"), "--rows", "4", "--cols", "4",
               "--a-mx9-groups", "2", "--workers", "2", "--shards", "3",
               "--tasks-dir", str(tmp_path / "t")])
    out = capsys.readouterr().out
    assert rc == 0, out
    a = mx.quantize(x, ["mx6"] * 3 + ["mx9"] * 2)
    w = mx.quantize(y, "mx6")
    got = np.load(tmp_path / "c.npy")
    assert np.array_equal(got.view(np.uint32), gemm.mx_matmul(a, w).view(np.uint32))
    cfg = array_config(4, 4)
    # Shards of 3, 3 and 4 column tiles: 12, 12 and 13 columns; each pays its own fill/drain.
    want = sum(gemm_cycles(24, 80, n, list(a.formats), "mx6", cfg) for n in (12, 12, 13))
    assert f"cycles   {want:,} (model {want:,})" in out
    assert "3 column shards on 2 worker(s), 0 from the task cache" in out


@pytest.mark.parametrize("argv,needle", [
    (["--shards", "2"], "--shards applies with --workers or --scheduler"),
    (["--workers", "2", "--waves", "x.vcd"], "--waves needs one harness run"),
    (["--workers", "0"], "--workers must be a positive integer"),
])
def test_gemm_cluster_options_are_checked(tmp_path, capsys, monkeypatch, argv, needle):
    np.save(tmp_path / "a.npy", np.ones((4, 16), np.float32))
    monkeypatch.chdir(tmp_path)
    rc = main(["gemm", "--a", "a.npy", "--w", "a.npy", "--out", "c.npy", "--rows", "4",
               "--cols", "4", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err


@needs_verilator
def test_gemm_on_an_existing_scheduler(tmp_path, capsys):
    """--scheduler: the cluster is someone else's (here a LocalCluster started by the test)."""
    from distributed import LocalCluster

    rng = np.random.default_rng(8)
    x = rng.standard_normal((8, 32)).astype(np.float32)
    np.save(tmp_path / "a.npy", x)
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        rc = main(["gemm", "--a", str(tmp_path / "a.npy"), "--w", str(tmp_path / "a.npy"),
                   "--out", str(tmp_path / "c.npy"), "--rows", "4", "--cols", "4",
                   "--scheduler", cluster.scheduler_address, "--tasks-dir",
                   str(tmp_path / "t")])
        assert rc == 0, capsys.readouterr().err
    a = mx.quantize(x, "mx6")
    got = np.load(tmp_path / "c.npy")
    assert np.array_equal(got.view(np.uint32), gemm.mx_matmul(a, a).view(np.uint32))
    assert "on 1 worker(s)" in capsys.readouterr().out


def test_an_unreachable_scheduler_is_exit_2(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((4, 16), np.float32))
    rc = main(["gemm", "--a", str(tmp_path / "a.npy"), "--w", str(tmp_path / "a.npy"),
               "--out", str(tmp_path / "c.npy"), "--rows", "4", "--cols", "4",
               "--scheduler", "tcp://127.0.0.1:9", "--tasks-dir", str(tmp_path / "t")])
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("...")]
    assert rc == 2 and len(err) == 1 and "cannot reach the Dask scheduler" in err[0], err


def test_shard_program_cuts_whole_row_tiles_and_whole_images():
    from golden.layer import GemmRecord
    from sim.layer import LayerProgram, shard_program

    rng = np.random.default_rng(4)
    cfg = array_config(4, 4)
    a, w = _random_mx(rng, (30, 32)), _random_mx(rng, (8, 32))
    rec = GemmRecord("blocks.0.mlp.fc1", a, w, gemm.mx_matmul(a, w), {})
    parts = shard_program(LayerProgram("blocks.0.mlp.fc1", [rec], None, None), cfg, 3)
    rows = [p.records[0].a.shape[0] for p in parts]
    assert rows == [12, 8, 10] and all(r % 4 == 0 for r in rows[:-1])
    got = np.concatenate([p.records[0].c for p in parts])
    assert np.array_equal(got.view(np.uint32), rec.c.view(np.uint32))
    assert all(p.records[0].a == a[sum(rows[:i]):sum(rows[:i + 1])] for i, p in enumerate(parts))
    att = [GemmRecord(f"blocks.0.attn.img{i}.head{h}.{x}", a, w, rec.c, {})
           for i in range(3) for h in range(2) for x in ("qk", "pv")]
    parts = shard_program(LayerProgram("blocks.0.attn", att, None, None), cfg, 2)
    names = [[r.name for r in p.records] for p in parts]
    assert sum(names, []) == [r.name for r in att]
    imgs = [sorted({int(n.split(".")[3][3:]) for n in g}) for g in names]
    assert sorted(len(g) for g in imgs) == [1, 2]          # as even as 3 images allow
    assert imgs[0] + imgs[1] == [0, 1, 2]                 # whole images, in order
    assert all(len(g) == 4 * len(i) for g, i in zip(names, imgs))   # every head, both products


LAYER = ["simulate-layer", "--activations", "golden/dit/data/fixture_capture.npz",
         "--timestep", "480", "--rows", "4", "--cols", "4"]


@needs_verilator
@pytest.mark.parametrize("layer", ["blocks.5.mlp.fc1", "blocks.5.attn"])
def test_simulate_layer_on_two_workers_checks_everything_the_single_run_does(
        tmp_path, capsys, monkeypatch, layer):
    monkeypatch.chdir(ROOT)
    reps = {}
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        rc = main([*LAYER, "--layer", layer, *extra, "--json", str(tmp_path / f"{name}.json")])
        assert rc == 0, capsys.readouterr().err
        reps[name] = json.loads((tmp_path / f"{name}.json").read_text())
    one, two = reps["one"], reps["two"]
    assert two["shards"] == 2 and "shards" not in one
    for key in ("gemms", "results_checked", "model_cycles"):
        assert two[key] == one[key]
    assert two["next_layer_groups"]["count"] == one["next_layer_groups"]["count"] > 0
    assert two["next_layer_groups"]["bit_exact"] is True
    # Each shard pays its own fill and drain (linear), or saves one command gap (attention).
    assert two["array_cycles"] >= one["array_cycles"] - 1


@needs_verilator
def test_simulate_layer_on_workers_names_the_shard_of_a_flipped_bit(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MIXDIT_TEST_FLIP_RTL", "0,3,5,9")
    rc = main([*LAYER, "--layer", "blocks.5.mlp.fc1", "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "CHECK FAILED: shard " in err and "of 2: blocks.5.mlp.fc1: RTL and golden differ" in err
