"""`fastoptim demo` and its pieces: the NumPy MLP, the bundled digits, the CLI, the landscape."""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import fastoptim as fo
from fastoptim.__main__ import main as cli_main
from fastoptim.demo import landscape, run
from fastoptim.demo.data import Split, load_digits, train_test_split
from fastoptim.demo.mlp import MLP
from fastoptim.demo.optimizers import OPTIMIZERS, OptimizerSpec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Steps on the calling thread: the tests stay quick on a busy 2-core machine."""
    threads = fo.get_num_threads()
    fo.set_num_threads(1)
    yield
    fo.set_num_threads(threads)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, "not a PNG file"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that imports this very fastoptim."""
    root = str(Path(fo.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


# ---- the model -------------------------------------------------------------------------------
def test_mlp_gradient_matches_finite_differences(rng: np.random.Generator) -> None:
    model = MLP([5, 7, 6, 3], seed=1, dtype=np.float64)
    for name in model.params:  # nonzero biases, so every term of the gradient is exercised
        model.params[name] += 0.1 * rng.standard_normal(model.params[name].shape)
    x = rng.standard_normal((8, 5))
    y = rng.integers(0, 3, size=8)
    _, grads = model.loss_and_grads(x, y)
    eps = 1e-6
    for name, param in model.params.items():
        numeric = np.zeros_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            up = model.loss(x, y)
            param[index] = saved - eps
            down = model.loss(x, y)
            param[index] = saved
            numeric[index] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


def test_mlp_gradients_fit_the_optimizer() -> None:
    model = MLP([64, 16, 10], seed=0)
    x = np.ones((4, 64), np.float32)
    loss, grads = model.loss_and_grads(x, np.arange(4))
    assert np.isfinite(loss)
    assert list(grads) == list(model.params)
    for name, grad in grads.items():
        assert grad.dtype == np.float32
        assert grad.shape == model.params[name].shape
        assert grad.flags.c_contiguous
    before = {k: v.copy() for k, v in model.params.items()}
    fo.Adam(model.params, lr=0.1).step(grads)
    assert all(not np.array_equal(before[k], model.params[k]) for k in ("W0", "W1", "b1"))


def test_mlp_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="sizes"):
        MLP([64])


# ---- the data --------------------------------------------------------------------------------
def test_digits_ship_with_the_package() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8)
    assert images.dtype == np.uint8
    assert int(images.max()) == 16
    assert np.array_equal(np.bincount(labels), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    assert (Path(run.__file__).parent.parent / "data" / "DIGITS_LICENSE.md").is_file()


def test_split_is_fixed_stratified_and_disjoint() -> None:
    a, b = train_test_split(), train_test_split()
    for left, right in zip(a, b):
        assert np.array_equal(left, right)
    assert len(a.y_train) + len(a.y_test) == 1797
    assert 0.19 < len(a.y_test) / 1797 < 0.21
    assert np.all(np.bincount(a.y_test, minlength=10) >= 34)
    assert a.x_train.dtype == np.float32
    assert a.x_train.shape[1] == 64
    assert 0.0 <= a.x_train.min()
    assert a.x_train.max() <= 1.0


# ---- training ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split() -> Split:
    return train_test_split()


def test_one_epoch_trains_and_is_deterministic(split: Split) -> None:
    adam = OPTIMIZERS["adam"]
    first = run.train(adam, adam.lr, split, epochs=1, seed=3)
    assert first.train_loss[-1] < 0.5 * first.train_loss[0]
    assert first.test_accuracy[-1] > 0.8
    again = run.train(adam, adam.lr, split, epochs=1, seed=3)
    assert again.train_loss == first.train_loss
    assert again.test_accuracy == first.test_accuracy
    other = run.train(adam, adam.lr, split, epochs=1, seed=4)
    assert other.train_loss != first.train_loss
    assert 0 < first.step_seconds < first.train_seconds


def test_demo_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.png"
    argv = ["--epochs", "1", "--optimizers", "sgd,adam", "--threads", "2", "--batch-size", "256", "--out", str(out)]
    assert run.main(argv) == 0
    assert fo.get_num_threads() == 1  # --threads holds for the run only
    stdout = capsys.readouterr().out
    table = stdout[stdout.index("optimizer"):].splitlines()
    assert table[0].split()[:3] == ["optimizer", "lr", "train"]
    assert table[2].startswith("SGD")
    assert table[3].startswith("Adam")
    assert table[0].split()[6:8] == ["grad", "norm"]
    for row in table[2:4]:
        assert row.split()[-5].endswith("%")  # test accuracy
        assert float(row.split()[-4]) > 0  # the median gradient norm of the last epoch
    assert ("wrote" in stdout) == out.exists()


def test_clip_clips_the_global_norm(split: Split, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--clip is every optimizer's max_grad_norm: a limit below the norms clips and changes the
    run; one above them changes no bit of it (the norm is measured either way)."""
    adam = OPTIMIZERS["adam"]
    free = run.train(adam, adam.lr, split, epochs=1, seed=3)
    assert free.clipped == 0 and free.grad_norm > 0
    loose = run.train(adam, adam.lr, split, epochs=1, seed=3, clip=1e6)
    assert loose.train_loss == free.train_loss and loose.clipped == 0
    tight = run.train(adam, adam.lr, split, epochs=1, seed=3, clip=free.grad_norm / 2)
    assert tight.clipped > 0.5 and tight.train_loss != free.train_loss
    assert run.main(["--epochs", "1", "--optimizers", "adam", "--batch-size", "256", "--clip", "0.5", "--out",
                     str(tmp_path / "demo.png")]) == 0
    stdout = capsys.readouterr().out
    assert "gradients clipped to norm 0.5" in stdout and "clipped" in stdout[stdout.index("optimizer"):]


def test_ema_evaluates_the_average_and_leaves_training_alone(split: Split, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--ema keeps an EMA of the weights in the step: training is unchanged to the bit (the
    average is only read out, through swap_ema, at the end), and the EMA's accuracy is its own."""
    adam = OPTIMIZERS["adam"]
    free = run.train(adam, adam.lr, split, epochs=2, seed=4)
    averaged = run.train(adam, adam.lr, split, epochs=2, seed=4, ema=0.9)
    assert averaged.train_loss == free.train_loss and averaged.test_accuracy == free.test_accuracy
    assert free.ema_accuracy is None and averaged.ema_accuracy is not None and 0.5 < averaged.ema_accuracy <= 1
    assert run.main(["--epochs", "1", "--optimizers", "adam,ranger", "--batch-size", "256", "--ema", "0.9",
                     "--out", str(tmp_path / "demo.png")]) == 0
    stdout = capsys.readouterr().out
    assert "EMA of the weights (decay 0.9" in stdout and "EMA acc" in stdout
    with pytest.raises(SystemExit):
        run.main(["--ema", "1.5"])


def test_demo_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo.png"
    assert run.main(["--epochs", "1", "--optimizers", "sgd,adam", "--batch-size", "128", "--out", str(out)]) == 0
    width, height = png_size(out)
    assert (width, height) == (round(run.FIGSIZE[0] * run.DPI), round(run.FIGSIZE[1] * run.DPI))
    assert out.stat().st_size > 20_000


def test_demo_without_matplotlib_prints_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib now fails
    out = tmp_path / "demo.png"
    assert run.main(["--epochs", "1", "--optimizers", "adam", "--batch-size", "256", "--out", str(out)]) == 0
    assert "pip install 'fastoptim[plot]'" in capsys.readouterr().out
    assert not out.exists()


@pytest.mark.parametrize(("argv", "option"), [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--optimizers", "adam,nope"], "--optimizers"),
    (["--optimizers", "adam,adam"], "--optimizers"),
    (["--optimizers", "adam=fast"], "--optimizers"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "x0"], "--lr"),
    (["--threads", "0"], "--threads"),
    (["--seed", "-1"], "--seed"),
    (["--batch-size", "0"], "--batch-size"),
    (["--out", "/no/such/directory/demo.png"], "--out"),
    (["--bogus"], "--bogus"),
])
def test_bad_options_fail_naming_the_option(argv: list[str], option: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run.main(argv)
    assert exit_info.value.code == 2
    assert option in capsys.readouterr().err


def test_bad_option_from_the_command_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "fastoptim", "demo", "--epochs", "0"], capture_output=True,
                          text=True, env=subprocess_env(), timeout=120, check=False)
    assert proc.returncode == 2
    assert "--epochs" in proc.stderr
    assert "must be >= 1" in proc.stderr


def test_lr_multiplier_and_override() -> None:
    assert run.parse_lr("x0.5")(0.01) == pytest.approx(0.005)
    assert run.parse_lr("2x")(0.01) == pytest.approx(0.02)
    assert run.parse_lr("0.1")(0.01) == 0.1
    assert run.parse_optimizers("SGD, adam=0.01") == [("sgd", None), ("adam", 0.01)]


def test_missing_optimizers_are_skipped_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    ghost = OptimizerSpec("ghost", "NoSuchOptimizerInFastoptim", "Ghost", 1e-3)
    monkeypatch.setitem(OPTIMIZERS, "ghost", ghost)
    parser = run.build_parser()
    note = io.StringIO()
    chosen = run._chosen(parser, argparse.Namespace(optimizers=None), note)
    assert ghost not in [spec for spec, _ in chosen]
    assert [spec for spec, _ in chosen] == [s for s in OPTIMIZERS.values() if s.available]
    assert "skipping ghost" in note.getvalue()
    assert len(note.getvalue().splitlines()) == len(OPTIMIZERS) - len(chosen)
    with pytest.raises(SystemExit):
        run._chosen(parser, argparse.Namespace(optimizers=[("ghost", None)]), note)


# ---- Muon: MuonWithAdamW in the default list, without what it cannot do ---------------------------
def test_muon_trains_the_matrices_and_adamw_the_biases(split: Split) -> None:
    """The default list's "muon": Muon on the weight matrices, AdamW on the biases at the AdamW
    row's settings, its rate following Muon's (--lr x0.5 or muon=LR move both); one epoch learns."""
    muon, adamw = OPTIMIZERS["muon"], OPTIMIZERS["adamw"]
    assert muon.class_name == "MuonWithAdamW" and muon.available
    model = MLP([64, 16, 10], seed=0)
    for lr in (muon.lr, muon.lr / 2):
        opt = muon.build(model.params, lr)
        assert sorted(opt.muon.state) == ["W0", "W1"] and sorted(opt.adamw.state) == ["b0", "b1"]
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr, adamw.lr * lr / muon.lr])
        assert opt.param_groups[1]["weight_decay"] == adamw.kwargs["weight_decay"]
    result = run.train(muon, muon.lr, split, epochs=1, seed=3)
    assert result.train_loss[-1] < 0.5 * result.train_loss[0]
    assert result.test_accuracy[-1] > 0.8 and result.grad_norm > 0


def test_muon_runs_without_ema_and_state_dtype(split: Split, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """MuonWithAdamW has no EMA (no swap_ema) and no state_dtype (its AdamW half would take them
    for the biases alone): train() refuses them, the command runs Muon without them and says so."""
    muon = OPTIMIZERS["muon"]
    with pytest.raises(ValueError, match="muon cannot train with --ema"):
        run.train(muon, muon.lr, split, epochs=1, ema=0.9)
    with pytest.raises(ValueError, match="muon cannot train with --state-dtype"):
        run.train(muon, muon.lr, split, epochs=1, state_dtype="bfloat16")
    out = str(tmp_path / "demo.png")
    assert run.main(["--epochs", "1", "--optimizers", "adam,muon", "--batch-size", "256", "--ema", "0.9",
                     "--out", out]) == 0
    captured = capsys.readouterr()
    assert "note: muon runs without --ema" in captured.err
    rows = captured.out[captured.out.index("optimizer"):].splitlines()
    assert rows[0].split()[6:8] == ["EMA", "acc"]
    assert rows[2].startswith("Adam") and rows[2].split()[-5].endswith("%")  # EMA acc
    assert rows[3].startswith("Muon") and rows[3].split()[-5] == "n/a"
    assert run.main(["--epochs", "1", "--optimizers", "muon", "--batch-size", "256", "--state-dtype", "int8",
                     "--out", out]) == 0
    assert "note: muon runs without --state-dtype" in capsys.readouterr().err


def test_muon_is_skipped_or_refused_where_it_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    """bfloat16 weights (Muon steps float32 and float64 ones) and the landscape (a point is a
    2-vector, no matrix): the default list skips Muon with a note, naming it is refused."""
    parser = run.build_parser()
    for argv, option in ((["--params-dtype", "bfloat16"], "--params-dtype bfloat16"),
                         (["--landscape"], "--landscape")):
        note = io.StringIO()
        chosen = [spec.key for spec, _ in run._chosen(parser, parser.parse_args(argv), note)]
        assert "muon" not in chosen and "adam" in chosen
        assert f"skipping muon with {option}" in note.getvalue()
        with pytest.raises(SystemExit) as exit_info:
            run._chosen(parser, parser.parse_args([*argv, "--optimizers", "adam,muon"]), note)
        assert exit_info.value.code == 2
        assert f"'muon' cannot run with {option}" in capsys.readouterr().err
    assert "muon" in [spec.key for spec, _ in run._chosen(parser, parser.parse_args([]), io.StringIO())]


def test_landscape_default_list_runs_what_has_rates(capsys: pytest.CaptureFixture[str]) -> None:
    """The landscape's default list holds the optimizers with a rate on every surface: Muon never,
    and one without rates (Schedule-Free AdamW) only when given a rate."""
    parser = run.build_parser()
    chosen = [spec.key for spec, _ in run._chosen(parser, parser.parse_args(["--landscape"]), io.StringIO())]
    assert chosen and all(landscape.has_rates(key) for key in chosen)
    assert not landscape.has_rates("muon") and not landscape.has_rates("sfadamw")
    given = run._chosen(parser, parser.parse_args(["--landscape", "--optimizers", "sfadamw=0.05"]), io.StringIO())
    assert [(spec.key, lr) for spec, lr in given] == [("sfadamw", 0.05)]
    assert "sfadamw" in [spec.key for spec, _ in
                         run._chosen(parser, parser.parse_args(["--landscape", "--lr", "0.01"]), io.StringIO())]


# ---- the landscape ------------------------------------------------------------------------------
@pytest.mark.parametrize("surface", landscape.FUNCTIONS, ids=lambda s: s.name)
def test_landscape_gradients_and_adam_reaches_the_minimum(surface: landscape.Surface) -> None:
    x, y, eps = 0.3, -0.7, 1e-6
    gx, gy = surface.gradient(x, y)
    assert gx == pytest.approx((surface.value(x + eps, y) - surface.value(x - eps, y)) / (2 * eps), rel=1e-6)
    assert gy == pytest.approx((surface.value(x, y + eps) - surface.value(x, y - eps)) / (2 * eps), rel=1e-6)
    path = landscape.descend(surface, lambda p: fo.Adam(p, lr=surface.lrs["adam"]), 500)
    assert path.shape == (501, 2)
    assert path.dtype == np.float64
    assert np.array_equal(path[0], surface.start)
    assert surface.distance_to_minimum(path[-1]) < 0.1


def test_landscape_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "landscape.png"
    assert run.main(["--landscape", "--steps", "50", "--optimizers", "sgd,adam", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    for name in ("Rosenbrock", "Beale", "saddle"):
        assert f"{name} " in stdout
    if importlib.util.find_spec("matplotlib") is not None:
        assert png_size(out) == (round(landscape.FIGSIZE[0] * landscape.DPI),
                                 round(landscape.FIGSIZE[1] * landscape.DPI))


# ---- the fastoptim command ---------------------------------------------------------------------
def test_info_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["info"]) == 0
    assert "target" in capsys.readouterr().out
    assert cli_main([]) == 2
    assert "usage: fastoptim" in capsys.readouterr().err
    assert cli_main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_bench_without_the_bench_module(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    assert cli_main(["bench"]) == 2
    assert "fastoptim._bench" in capsys.readouterr().err


def test_state_dtype_trains_with_bfloat16_state(split: Split, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """--state-dtype bfloat16 gives every optimizer bfloat16 state: training differs from
    float32 state's, and still learns."""
    adam = OPTIMIZERS["adam"]
    full = run.train(adam, adam.lr, split, epochs=2, seed=4)
    half = run.train(adam, adam.lr, split, epochs=2, seed=4, state_dtype="bfloat16")
    assert half.train_loss != full.train_loss
    assert half.test_accuracy[-1] > 0.8
    assert run.main(["--epochs", "1", "--optimizers", "adam,lion", "--batch-size", "256", "--state-dtype", "bfloat16",
                     "--out", str(tmp_path / "demo.png")]) == 0
    assert "optimizer state in bfloat16" in capsys.readouterr().out


def test_params_dtype_bfloat16_trains_bfloat16_weights(split: Split, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--params-dtype bfloat16 keeps the MLP's weights in bfloat16 (updated in place, with
    bfloat16 gradients): training differs from float32 weights' and still learns."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    adam = OPTIMIZERS["adam"]
    full = run.train(adam, adam.lr, split, epochs=2, seed=4)
    half = run.train(adam, adam.lr, split, epochs=2, seed=4, params_dtype="bfloat16")
    assert half.train_loss != full.train_loss
    assert half.test_accuracy[-1] > 0.8
    model = MLP([64, 8, 10], seed=0, dtype=ml_dtypes.bfloat16)
    _, grads = model.loss_and_grads(split.x_train[:4], split.y_train[:4])
    assert all(g.dtype == ml_dtypes.bfloat16 for g in grads.values())
    assert run.main(["--epochs", "1", "--optimizers", "adam,lion", "--batch-size", "256", "--params-dtype", "bfloat16",
                     "--out", str(tmp_path / "demo.png")]) == 0
    assert "bfloat16 parameters" in capsys.readouterr().out


def test_params_dtype_bfloat16_without_ml_dtypes_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # import ml_dtypes now raises ImportError
    with pytest.raises(SystemExit, match=r'ml_dtypes: pip install "fastoptim\[bf16\]"'):
        run.main(["--epochs", "1", "--params-dtype", "bfloat16"])
