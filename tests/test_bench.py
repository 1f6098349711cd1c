"""The side-by-side benchmark (fastoptim._bench): its NumPy peer is correct, and a tiny run
writes a complete JSON, a table and a plot."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fastoptim as fo
from fastoptim import _bench, _core, _omp
from fastoptim._per_array import PerArrayOptimizer

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_DEEPSPEED = importlib.util.find_spec("deepspeed") is not None
STAT_FIELDS = {"gels", "median_s", "q1_s", "q3_s", "min_s", "steps"}


# A rule with fastoptim-only options (adamw_bf16_state) shares its NumPy peer with the plain rule,
# which this test covers; its own state is bfloat16, for float32 parameters only.
@pytest.mark.parametrize("rule", [name for name, r in _bench.RULES.items() if not r.options])
def test_numpy_peer_computes_fastoptims_update(rule: str, rng: np.random.Generator) -> None:
    shapes = [(7, 5), (33,), (1,)]
    params = [rng.standard_normal(s) for s in shapes]
    mine = [p.copy() for p in params]
    opt = _bench.RULES[rule].make_fastoptim(params)
    peer = _bench.numpy_optimizer(rule, mine)
    for _ in range(8):  # past RAdam's switch to the rectified update at step 6
        grads = [rng.standard_normal(s) for s in shapes]
        opt.step(grads)
        peer.step(grads)
    for theirs, ours in zip(params, mine):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-13)
    for index, slots in enumerate(peer.state):
        for slot, value in slots.items():
            np.testing.assert_allclose(value, opt.state[index][slot], rtol=1e-10, atol=1e-13, err_msg=slot)


def test_numpy_peer_keeps_float32_and_allocates_nothing_per_step(rng: np.random.Generator) -> None:
    params = [rng.standard_normal(1000, dtype=np.float32)]
    peer = _bench.numpy_optimizer("adam", params)
    grads = [rng.standard_normal(1000, dtype=np.float32)]
    peer.step(grads)
    buffers = [id(peer.tmp[0]), id(peer.state[0]["exp_avg"])]
    peer.step(grads)
    assert params[0].dtype == np.float32 and peer.state[0]["exp_avg"].dtype == np.float32
    assert [id(peer.tmp[0]), id(peer.state[0]["exp_avg"])] == buffers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, str, Path]:
    """One tiny run through the command's entry point: two sizes, two rules, two timed steps."""
    out = tmp_path_factory.mktemp("bench")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = _bench.main(["--rules", "adam,lamb", "--sizes", "1e3,1e4", "--repeats", "2", "--max-repeats", "2",
                            "--min-time", "1e-6", "--warmup", "1", "--threads", "1", "--out", str(out),
                            "--omp-spin", "openmp"])  # this process's spin: no second process
    assert code == 0, stderr.getvalue()
    return json.loads((out / "bench.json").read_text()), stdout.getvalue(), stderr.getvalue(), out


def test_json_names_the_machine(tiny: tuple[dict[str, Any], str, str, Path]) -> None:
    document = tiny[0]
    m = document["machine"]
    assert m["cpu"] and m["cores"] >= 1 and m["date"]
    assert m["fastoptim"] == {**fo.config(), "num_threads": 1}
    assert m["threads"]["fastoptim"] == 1
    assert (m["torch"] is not None) == HAS_TORCH
    assert document["settings"]["rules"] == ["adam", "lamb"] and document["settings"]["sizes"] == ["1e3", "1e4"]


def test_json_has_every_peer_and_field(tiny: tuple[dict[str, Any], str, str, Path]) -> None:
    document = tiny[0]
    assert document["peers"] == list(_bench.DEFAULT_PEERS)
    results = document["results"]
    assert [(r["rule"], r["work"]) for r in results] == [("adam", "1e3"), ("adam", "1e4"), ("lamb", "1e3"),
                                                         ("lamb", "1e4")]
    for r in results:
        assert set(r["peers"]) | set(r["skipped"]) == set(_bench.DEFAULT_PEERS), r["rule"]
        assert not set(r["peers"]) & set(r["skipped"])
        assert {"fastoptim", "numpy", "probe"} <= set(r["peers"])
        for stats in r["peers"].values():
            assert STAT_FIELDS <= set(stats)
            assert stats["steps"] == r["repeats"] >= 2
            assert stats["q1_s"] <= stats["median_s"] <= stats["q3_s"]
            assert stats["gels"] == pytest.approx(r["elements"] / stats["median_s"] / 1e9)
        for peer, stats in r["peers"].items():
            if peer not in ("fastoptim", "probe"):  # every peer did fastoptim's update
                assert stats["deviation"] < 1e-3, peer
        assert r["bytes_per_element"] == 4 * sum(a + b for a, b in r["traffic"])
        # every step counted, untimed ones (warm-up, and one before each timed step) too; on one
        # thread the backoff has none to take away
        assert r["peers"]["fastoptim"]["steps_taken"] == r["warmup"] + 2 * r["repeats"]
        assert r["peers"]["fastoptim"]["steps_alone"] == 0
    adam, lamb = results[0], results[2]
    assert adam["traffic"] == [[4, 3]] and lamb["traffic"] == [[4, 2], [3, 1]]
    assert "torch has no" not in " ".join(adam["skipped"].values())
    if HAS_TORCH:
        assert {"torch_forloop", "torch_foreach", "torch_fused"} <= set(adam["peers"])
        assert "torch.optim has no LAMB" in lamb["skipped"]["torch_fused"]
    if not HAS_DEEPSPEED:
        assert "DeepSpeed is not installed" in adam["skipped"]["deepspeed"]
        assert any("DeepSpeed is not installed" in n for n in document["notes"])


def test_ratios_agree_with_the_throughputs(tiny: tuple[dict[str, Any], str, str, Path]) -> None:
    for r in tiny[0]["results"]:
        gels = {p: s["gels"] for p, s in r["peers"].items()}
        for peer, fraction in r["fraction_of_probe"].items():
            assert fraction == pytest.approx(gels[peer] / gels["probe"])
            assert fraction > 0
        assert "probe" not in r["fraction_of_probe"]
        if "torch_fused" in gels:
            assert r["ratio_to_torch_fused"]["torch_fused"] == pytest.approx(1.0)
            for peer, ratio in r["ratio_to_torch_fused"].items():
                assert ratio == pytest.approx(gels[peer] / gels["torch_fused"])
        else:
            assert r["ratio_to_torch_fused"] is None


def test_table_and_progress(tiny: tuple[dict[str, Any], str, str, Path]) -> None:
    document, stdout, stderr, _ = tiny
    lines = stdout.splitlines()
    assert lines[0].split()[:4] == ["rule", "dtype", "work", "fastoptim"]
    assert lines[0].split()[-2:] == ["fo/fused", "fo/probe"]
    rows = [line.split() for line in lines[2:6]]
    assert [row[:3] for row in rows] == [["adam", "float32", "1e3"], ["adam", "float32", "1e4"],
                                         ["lamb", "float32", "1e3"], ["lamb", "float32", "1e4"]]
    first = document["results"][0]
    assert rows[0][3] == f"{first['peers']['fastoptim']['gels']:.3g}"
    assert rows[0][-1] == f"{100 * first['fraction_of_probe']['fastoptim']:.0f}%"
    assert rows[2][-2] == "—"  # LAMB has no torch fused
    assert "[1/4] adam float32 1e3" in stderr and "[4/4] lamb float32 1e4" in stderr


def test_plot_is_written(tiny: tuple[dict[str, Any], str, str, Path]) -> None:
    pytest.importorskip("matplotlib")
    png = tiny[3] / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in tiny[0]["files"]


def test_the_plot_legend_lists_only_what_ran_and_ticks_read_as_sizes() -> None:
    from fastoptim._bench.plot import legend_entries, size_label
    ran = [{"arrays": 1, "peers": {"fastoptim": {}, "probe": {}}}]
    assert legend_entries(ran, ["fastoptim", "torch_fused", "probe"]) == [("fastoptim", "fastoptim"),
                                                                         ("probe", "probe (limit)")]
    with_model = ran + [{"arrays": 100, "peers": {"torch_fused": {}}}]
    assert legend_entries(with_model, ["fastoptim", "torch_fused"])[-1] == (None, "100-array model")
    assert [size_label(x) for x in (100, 1e3, 1e4, 1e6, 5e7, 1e9)] == ["100", "1k", "10k", "1M", "50M", "1G"]


def test_without_matplotlib_the_run_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("matplotlib")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib now fails
    settings = _bench.Settings(rules=["sgd"], works=[_bench.parse_work("100")], dtypes=["float64"],
                               peers=["fastoptim", "numpy", "probe"], threads=1, repeats=2, max_repeats=2,
                               min_time=1e-6, warmup=1, out=tmp_path, progress=False)
    document = _bench.run(settings, stream=io.StringIO())
    assert _bench.PLOT_HINT in document["notes"]
    assert not (tmp_path / "bench.png").exists()
    assert json.loads((tmp_path / "bench.json").read_text())["results"][0]["peers"]["numpy"]["deviation"] < 1e-12


def test_bfloat16_states_probe_sweeps_its_own_bytes(tmp_path: Path) -> None:
    """adamw_bf16_state's probe sweeps what its step moves (p, g read and p written at 4 bytes,
    m and v read and written at 2: 20 bytes, not float32 state's 28), so its share of the probe
    is its share of the limit; float64 (which keeps float32 state's layout) is unchanged."""
    rule = _bench.RULES["adamw_bf16_state"]
    assert rule.probe_sweeps("float32") == ((2, 1, 2),) and rule.bytes_per_element("float32") == 20
    assert rule.probe_sweeps("float64") == ((4, 3, 0),) and rule.bytes_per_element("float64") == 56
    assert _bench.RULES["adamw"].bytes_per_element("float32") == 28
    settings = _bench.Settings(rules=["adamw_bf16_state"], works=[_bench.parse_work("1000")], dtypes=["float32"],
                               peers=["fastoptim", "probe"], threads=1, repeats=2, max_repeats=2,
                               min_time=1e-6, warmup=1, out=tmp_path, progress=False)
    (record,) = _bench.run(settings, stream=io.StringIO())["results"]
    assert record["bytes_per_element"] == 20 and not record["skipped"]
    assert record["fraction_of_probe"]["fastoptim"] == pytest.approx(
        record["peers"]["fastoptim"]["gels"] / record["peers"]["probe"]["gels"])


def test_json_names_the_openmp_wait(tiny: tuple[dict[str, Any], str, str, Path]) -> None:
    wait = tiny[0]["machine"]["openmp_wait"]
    assert wait == _omp.wait_settings()
    assert "OpenMP wait for every peer: " in tiny[1]


@pytest.mark.parametrize(("environment", "spin", "expected"), [
    ({}, "openmp", None),  # GNU OpenMP's own, as import fastoptim leaves it
    ({}, "short", _omp.SHORT_SPIN),  # run again with it
    ({"GOMP_SPINCOUNT": "5"}, "openmp", "5"),  # the user's setting is kept, and said so
])
def test_every_peer_runs_under_the_chosen_openmp_spin(environment: dict[str, str], spin: str, expected: str | None,
                                                      tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    command = [sys.executable, "-m", "fastoptim", "bench", "--sizes", "1e3", "--peers", "fastoptim,probe",
               "--repeats", "1", "--max-repeats", "1", "--warmup", "1", "--no-plot", "--quiet",
               "--out", str(tmp_path), "--omp-spin", spin]
    run = subprocess.run(command, capture_output=True, text=True, env={**env, **environment}, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr
    wait = json.loads((tmp_path / "bench.json").read_text())["machine"]["openmp_wait"]
    assert wait["GOMP_SPINCOUNT"] == expected
    assert wait["set_by"] == ("environment" if environment else None if spin == "openmp" else
                              "fastoptim bench --omp-spin short")
    shown = "its defaults" if expected is None else f"GOMP_SPINCOUNT={expected}"
    assert f"OpenMP wait for every peer: {shown}" in run.stdout
    assert ("not applied" in run.stdout) == bool(environment)


def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench.main(["--rules", "adam,nope"]) == 2
    assert "unknown rule nope" in capsys.readouterr().err
    assert _bench.main(["--sizes", "1e4,huge"]) == 2
    assert _bench.main(["--sizes", "100x0"]) == 2
    assert _bench.main(["--peers", "fastoptim,tensorflow"]) == 2
    assert _bench.main(["--repeats", "0"]) == 2
    assert _bench.main(["--help"]) == 0
    assert "--min-time" in capsys.readouterr().out


def test_sizes_and_model() -> None:
    assert [w.label for w in _bench._sizes(_bench.DEFAULT_SIZES)] == ["1e4", "1e5", "1e6", "1e7", "5e7", "model"]
    model = _bench.parse_work("model")
    assert len(model.shapes) == 100 and model.elements == 8 * (256 * 256 + 256) + 42 * (64 * 64 + 64)
    assert _bench.parse_work("5e7").elements == 50_000_000 and _bench.parse_work("1234").label == "1234"
    assert _bench.parse_work("7000x7000") == _bench.Work("7000x7000", ((7000, 7000),))
    assert _bench.parse_work("1e3x2e2").shapes == ((1000, 200),)
    # a rule that steps matrices (Adafactor) takes a size as a near-square matrix, other works as they are
    assert _bench.parse_work("1e6").as_matrix().shapes == ((1000, 1000),)
    assert _bench.parse_work("5e7").as_matrix().shapes == ((6250, 8000),)
    assert _bench.parse_work("10007").as_matrix().shapes == ((1, 10007),)  # a prime
    assert _bench.parse_work("model").as_matrix() == model
    assert _bench.RULES["adafactor"].matrices and _bench.RULES["adafactor"].bytes_per_element("float32") == 24


def test_alternation_gives_every_peer_the_same_steps() -> None:
    order: list[str] = []
    steps = {name: (lambda name=name: order.append(name)) for name in "abc"}
    times = _bench.alternate(steps, warmup=2, repeats=4, min_time=1e-9, max_repeats=4, max_time=60,
                             warm_cache=False)
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}
    timed = order[6:]  # after two warm-up rounds, each round starts one peer later
    assert [timed[i:i + 3] for i in range(0, 12, 3)] == [list("abc"), list("bca"), list("cab"), list("abc")]


def test_with_a_warm_cache_each_timed_step_follows_one_of_the_same_peer() -> None:
    order: list[str] = []
    steps = {name: (lambda name=name: order.append(name)) for name in "ab"}
    times = _bench.alternate(steps, warmup=1, repeats=2, min_time=1e-9, max_repeats=2, max_time=60)
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
    assert order[2:] == list("aabbbbaa")  # rounds rotate the first peer; each step is doubled


def test_memory_guard_splits_peers_and_keeps_the_references() -> None:
    rule, peers = _bench.RULES["adam"], list(_bench.PEERS)
    assert _bench.plan_groups(peers, 1000, rule, None) == [peers]
    assert _bench.plan_groups(peers, 1000, rule, 10**9) == [peers]
    groups = _bench.plan_groups(peers, 1000, rule, 20_000)
    assert len(groups) > 1
    assert all({"fastoptim", "probe"} <= set(g) for g in groups)
    others = [p for g in groups for p in g if p not in ("fastoptim", "probe")]
    assert sorted(others) == sorted(set(peers) - {"fastoptim", "probe"})


def test_every_rule_has_a_probe_traffic_and_a_fastoptim_class() -> None:
    for name, rule in _bench.RULES.items():
        opt = rule.make_fastoptim([np.zeros(2, np.float32)])
        # a PerArrayOptimizer (Adafactor) has no schema: its Rule states its traffic
        assert isinstance(opt, fo.Optimizer) or (isinstance(opt, PerArrayOptimizer) and rule.traffic), name
        # What the probe sweeps comes from the schema (tests/test_schema.py checks it against
        # each rule's formula): every benchmarked rule moves p and g at least.
        assert rule.bytes_per_element("float32") >= 4 * 3, name


def test_adafactor_is_timed_on_matrices_beside_its_peers(tmp_path: Path) -> None:
    """A PerArrayOptimizer through the whole run: sizes stepped as matrices, its own traffic for
    the probe, every peer checked against it; `torch` stands for torch's three variants."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = _bench.main(["--rules", "adafactor", "--sizes", "1e3,20x30", "--peers", "fastoptim,probe,numpy,torch",
                            "--repeats", "2", "--max-repeats", "2", "--min-time", "1e-6", "--warmup", "1",
                            "--threads", "1", "--no-plot", "--out", str(tmp_path), "--omp-spin", "openmp"])
    assert code == 0
    document = json.loads((tmp_path / "bench.json").read_text())
    assert document["peers"] == ["fastoptim", "probe", "numpy", "torch_forloop", "torch_foreach", "torch_fused"]
    results = document["results"]
    assert [(r["work"], r["shape"]) for r in results] == [("1e3", [25, 40]), ("20x30", [20, 30])]
    for r in results:
        assert r["traffic"] == [[2, 0], [1, 0], [2, 1]] and r["bytes_per_element"] == 24
        assert {"fastoptim", "probe", "numpy"} <= set(r["peers"])
        assert "steps_taken" not in r["peers"]["fastoptim"]  # no plan counts a PerArrayOptimizer's steps
        for peer, stats in r["peers"].items():
            if peer not in ("fastoptim", "probe"):
                assert stats["deviation"] < 1e-3, peer
        if HAS_TORCH:
            assert {"torch_forloop", "torch_foreach"} <= set(r["peers"])


def test_the_prefetch_ab_script_prints_a_row_per_size() -> None:
    """bench/prefetch_ab.py, behind the figures for the prefetch line: both settings timed."""
    script = Path(__file__).resolve().parent.parent / "bench" / "prefetch_ab.py"
    run = subprocess.run([sys.executable, str(script), "--sizes", "1e3,model", "--rounds", "2"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if line.split()[:1] in (["1e3"], ["model"])]
    assert [r[0] for r in rows] == ["1e3", "model"]
    assert all(float(x) > 0 for r in rows for x in r[2:8]), rows
    assert [r[8] for r in rows] == ["off", "on" if 16 * 701_056 > fo.get_prefetch_above() else "off"]
    assert "default line" in run.stdout


def test_the_prefetch_ab_script_times_each_rule_asked_for() -> None:
    """--rules: each rule's rows under its name, its probe over its own sweeps' bytes (LAMB: two)."""
    script = Path(__file__).resolve().parent.parent / "bench" / "prefetch_ab.py"
    run = subprocess.run([sys.executable, str(script), "--rules", "adam,lamb", "--sizes", "1e3", "--rounds", "2"],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    lines = [line.split() for line in run.stdout.splitlines()]
    assert [line[:2] for line in lines if line[:1] in (["rule"], ["1e3"])] == [
        ["rule", "adam"], ["1e3", "0"], ["rule", "lamb"], ["1e3", "0"]]
    assert "adam,lamb, float32" in run.stdout
    refused = subprocess.run([sys.executable, str(script), "--rules", "adafactor", "--sizes", "1e3", "--rounds", "2"],
                             capture_output=True, text=True, timeout=300, check=False)
    assert refused.returncode == 2 and "'adafactor' is not one of" in refused.stderr  # factored: not element-wise


def test_the_training_loop_script_prints_a_row_per_setting_between_and_size(tmp_path: Path) -> None:
    """bench/training_loop.py, behind the README's figures for steps inside a loop: one child per
    setting, each timing N threads and one after each kind of work between steps."""
    script = Path(__file__).resolve().parent.parent / "bench" / "training_loop.py"
    out = tmp_path / "loop.json"
    run = subprocess.run([sys.executable, str(script), "--sizes", "1e3,model", "--rounds", "2", "--ms", "0.2",
                          "--settings", "default,OMP_PROC_BIND=false", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())
    assert [(r["setting"], r["between"], r["work"]) for r in rows] == [
        (s, b, w) for s in ("default", "OMP_PROC_BIND=false") for b in ("none", "sleep", "blas")
        for w in ("1e3", "model")]
    assert all(r["n_threads"] > 0 and r["one_thread"] > 0 and r["threads"] == fo.get_num_threads() for r in rows)
    settings = (["default"], ["OMP_PROC_BIND=false"])
    printed = [line.split() for line in run.stdout.splitlines() if line.split()[:1] in settings]
    assert len(printed) == len(rows)
    assert "NumPy's BLAS" in run.stdout


def test_the_muon_newton_schulz_script_times_every_variant_per_shape_and_thread_count(tmp_path: Path) -> None:
    """bench/muon_newton_schulz.py: the bare products, the iteration, fastoptim's step and torch's
    (where importable), alternated, for each shape (wide and tall) and thread count."""
    script = Path(__file__).resolve().parent.parent / "bench" / "muon_newton_schulz.py"
    out = tmp_path / "ns.json"
    run = subprocess.run([sys.executable, str(script), "--shapes", "16x40,40x16", "--threads", "1,2", "--rounds", "2",
                          "--min-rounds", "2", "--out", str(out)], capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 0, run.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [(r["shape"], r["threads"]) for r in rows] == [([16, 40], 1), ([16, 40], 2), ([40, 16], 1), ([40, 16], 2)]
    expected = {"matmuls", "ns", "step"} | ({"torch"} if HAS_TORCH else set())
    for r in rows:
        assert set(r["variants"]) == expected and r["rounds"] == 2
        assert r["best_ratio"]["ns/matmuls"] == pytest.approx(r["variants"]["ns"]["best_ms"]
                                                              / r["variants"]["matmuls"]["best_ms"])
    assert sum(line.split()[:1] in (["16x40"], ["40x16"]) for line in run.stdout.splitlines()) == 4


def test_the_sparse_rows_script_times_every_step_beside_the_dense_one(tmp_path: Path) -> None:
    """bench/sparse_rows.py: the dense Adam step, its probe, SparseAdam and row-wise Adagrad on
    distinct rows and on lookups (and torch's SparseAdam where importable), each as a share of
    the dense step."""
    script = Path(__file__).resolve().parent.parent / "bench" / "sparse_rows.py"
    out = tmp_path / "rows.json"
    run = subprocess.run([sys.executable, str(script), "--rows", "3000", "--cols", "8", "--rounds", "2",
                          "--json", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    expected = {"adam dense", "probe (adam's bytes)", "sparse_adam distinct", "sparse_adam lookups",
                "rowwise_adagrad distinct", "rowwise_adagrad lookups"} | ({"torch SparseAdam distinct"} if HAS_TORCH
                                                                         else set())
    assert set(record["best_seconds"]) == expected and record["touched"] == 30
    for name, share in record["share_of_dense_adam"].items():
        assert share == pytest.approx(record["best_seconds"][name] / record["best_seconds"]["adam dense"])
    assert sum("of the dense Adam step" in line for line in run.stdout.splitlines()) == len(expected)


def test_the_lbfgs_script_times_an_iteration_beside_the_probe_over_its_arrays(tmp_path: Path) -> None:
    """bench/lbfgs_algebra.py: per size, one iteration's vector algebra and the probe over the same
    sweeps, with the bytes they move."""
    script = Path(__file__).resolve().parent.parent / "bench" / "lbfgs_algebra.py"
    out = tmp_path / "lbfgs.json"
    run = subprocess.run([sys.executable, str(script), "--sizes", "1000,20000", "--history", "3", "--rounds", "2",
                          "--json", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["n"] for r in results] == [1000, 20000]
    for r in results:  # five sweeps of (2 reads, 1 write), 2·3 − 1 of (3, 1), one of (1, 1); float32
        assert r["bytes_per_iteration"] == (5 * 3 + 5 * 4 + 2) * r["n"] * 4
        assert r["share_of_probe"] == pytest.approx(r["best_seconds"]["probe"] / r["best_seconds"]["iteration"])
    assert sum("of the probe" in line for line in run.stdout.splitlines()) == 2


def test_pipeline_times_every_variant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--pipeline: the plain step, the option sets, the NumPy baselines, accumulate and its probe,
    one row per size, their ratios to the plain step; the NumPy baselines clip and average as
    fastoptim does."""
    from fastoptim._bench import pipeline

    code = _bench.main(["--pipeline", "--sizes", "1e3,model", "--repeats", "2", "--max-repeats", "2",
                        "--min-time", "0.001", "--warmup", "1", "--out", str(tmp_path)])
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "work" and [row.split()[0] for row in table[2:4]] == ["1e3", "model"]
    results = json.loads((tmp_path / "pipeline.json").read_text())["results"]
    for record in results:
        assert set(record["variants"]) == set(pipeline.VARIANTS)
        for figures in record["variants"].values():
            assert figures["best_ms"] > 0 and figures["steps"] >= 2
        assert record["variants"]["step"]["best_vs_step"] == 1.0
    # the baseline: the same clipping as max_grad_norm, written around the plain step in NumPy
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(50).astype(np.float32) for _ in range(2)]
    grads = [rng.standard_normal(50).astype(np.float32) * 3 for _ in range(2)]
    fused_params = [p.copy() for p in params]
    fused = fo.AdamW(fused_params, max_grad_norm=1.0)
    info = fused.step(grads)
    pipeline.numpy_clip_then_step(fo.AdamW(params), [g.copy() for g in grads], 1.0)
    assert info.grad_norm > 1.0
    for a, b in zip(params, fused_params):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # and its EMA is the one ema_decay keeps
    with_ema = fo.AdamW([p.copy() for p in params], ema_decay=0.9)
    ema = [p.copy() for p in params]
    for _ in range(3):
        with_ema.step(grads)
        pipeline.numpy_ema(ema, with_ema.param_groups[0]["params"], 0.9)
    for name, e in enumerate(ema):
        np.testing.assert_allclose(with_ema.ema[name], e, rtol=1e-6, atol=1e-7)


def test_state_dtype_times_both_layouts_and_their_probes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--state-dtype bfloat16: float32 state, bfloat16 state (both roundings) and the probes of
    both layouts' bytes, one row per size, with the speed-ups and fractions of probe."""
    from fastoptim._bench import state_dtype

    code = _bench.main(["--state-dtype", "bfloat16", "--sizes", "1e3,1e4", "--repeats", "2", "--max-repeats", "2",
                        "--min-time", "0.001", "--warmup", "1", "--out", str(tmp_path)])
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "work" and [row.split()[0] for row in table[2:4]] == ["1e3", "1e4"]
    saved = json.loads((tmp_path / "state_dtype.json").read_text())
    assert saved["state_dtype"] == "bfloat16"
    for record in saved["results"]:
        assert set(record["variants"]) == set(state_dtype.BFLOAT16_VARIANTS)
        for figures in record["variants"].values():
            assert figures["best_ms"] > 0 and figures["steps"] >= 2
        bf16 = record["variants"]["bfloat16 state"]
        assert bf16["speedup_best"] == pytest.approx(record["variants"]["float32 state"]["best_ms"] / bf16["best_ms"])


def test_int8_state_times_its_layout_its_probe_and_bitsandbytes_where_installed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--state-dtype int8: float32 state, 8-bit state, both probes, and bitsandbytes' Adam8bit
    when it imports; the speed-ups and the ratio to bitsandbytes."""
    from fastoptim._bench import state_dtype

    code = _bench.main(["--state-dtype", "int8", "--sizes", "1e4", "--repeats", "2", "--max-repeats", "2",
                        "--min-time", "0.001", "--warmup", "1", "--out", str(tmp_path)])
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "work" and table[2].split()[0] == "1e4"
    (record,) = json.loads((tmp_path / "state_dtype.json").read_text())["results"]
    variants = record["variants"]
    try:
        import bitsandbytes  # noqa: F401
        import torch  # noqa: F401
        expected = set(state_dtype.INT8_VARIANTS) | {state_dtype.BNB}
    except ImportError:
        expected = set(state_dtype.INT8_VARIANTS)
    assert set(variants) == expected
    q = variants["int8 state"]
    assert q["speedup_best"] == pytest.approx(variants["float32 state"]["best_ms"] / q["best_ms"])
    assert q["of_probe"] == pytest.approx(variants["int8 probe"]["best_ms"] / q["best_ms"])
    if state_dtype.BNB in variants:
        bnb = variants[state_dtype.BNB]
        assert bnb["int8_over_this"] == pytest.approx(bnb["best_ms"] / q["best_ms"])


def test_the_probe_sweeps_bfloat16_bytes_beside_float32_ones() -> None:
    """Trailing uint16 arrays are read and written beside the float32 ones; anything else is refused."""
    n = 40_000
    floats = [np.full(n, 1.0, np.float32) for _ in range(2)]
    halves = [np.full(n, 0x3F80, np.uint16) for _ in range(2)]
    _core.probe(floats + halves, 1, 2)
    assert (halves[0] != 0x3F80).all() and (floats[1] == 1.0).all()  # written; read only
    with pytest.raises(TypeError):
        _core.probe(halves + floats, 1, 1)  # uint16 first
    with pytest.raises(TypeError):
        _core.probe([np.zeros(n)] + halves, 1, 1)  # beside float64
    with pytest.raises(ValueError, match="writes counts the float arrays"):
        _core.probe(floats[:1] + halves, 2, 1)


def test_params_dtype_times_bfloat16_weights_beside_float32_torch_and_the_probes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--params-dtype bfloat16: AdamW on float32 weights, on bfloat16 weights (three layouts),
    torch's fused AdamW on bfloat16 tensors where torch imports, and both probes."""
    pytest.importorskip("ml_dtypes")
    from fastoptim._bench import params_dtype

    code = _bench.main(["--params-dtype", "bfloat16", "--sizes", "1e3,1e4", "--repeats", "2", "--max-repeats", "2",
                        "--min-time", "0.001", "--warmup", "1", "--out", str(tmp_path)])
    assert code == 0
    rows = [row.split() for row in capsys.readouterr().out.splitlines()]
    assert rows[0][:2] == ["work", "variant"] and {r[0] for r in rows[2:12] if r} == {"1e3", "1e4"}
    saved = json.loads((tmp_path / "params_dtype.json").read_text())
    for record in saved["results"]:
        variants = record["variants"]
        expected = set(params_dtype.STEPS) | {params_dtype.PROBE32, params_dtype.PROBE16}
        if importlib.util.find_spec("torch") is None:
            expected.discard(params_dtype.TORCH)
        assert set(variants) == expected
        bf16 = variants[params_dtype.BF16]
        assert bf16["speedup_best"] == pytest.approx(variants[params_dtype.FLOAT32]["best_ms"] / bf16["best_ms"])
        assert bf16["bytes_per_element"] == 14 and variants[params_dtype.FLOAT32]["bytes_per_element"] == 28
        assert "of_probe" in bf16 and "of_probe" not in variants[params_dtype.F32_STATE]


def test_params_dtype_runs_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench.main(["--params-dtype", "bfloat16", "--state-dtype", "int8"]) == 2
    assert "--params-dtype runs alone" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_TORCH, reason="the fastoptim_torch peer steps torch tensors")
def test_the_fastoptim_torch_peer_steps_as_fastoptim_does(tmp_path: Path) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = _bench.main(["--rules", "adamw,lion", "--sizes", "1e3", "--repeats", "2", "--max-repeats", "2",
                            "--min-time", "1e-6", "--warmup", "1", "--threads", "1", "--out", str(tmp_path),
                            "--peers", "fastoptim,fastoptim_torch,torch_fused,probe", "--omp-spin", "openmp"])
    assert code == 0, stderr.getvalue()
    document = json.loads((tmp_path / "bench.json").read_text())
    for result in document["results"]:
        peer = result["peers"]["fastoptim_torch"]
        assert peer["gels"] > 0 and peer["deviation"] == 0.0  # the same bits as fastoptim's step
    assert stdout.getvalue().splitlines()[0].split()[-2:] == ["fo.torch/fused", "fo.torch/probe"]
