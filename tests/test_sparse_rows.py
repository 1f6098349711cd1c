"""Row-sparse gradients (issue 26): fo.RowSparse, fo.SparseAdam against torch.optim.SparseAdam,
row-wise Adagrad against a float64 reference, dense and sparse parameters in one call, the step
options over the rows given, the same bits everywhere, exact resume and bad input refused."""

from __future__ import annotations

import itertools
import pickle
import re

import numpy as np
import pytest

import fastoptim as fo
import fastoptim._rows as rows_module
import reference

torch = pytest.importorskip("torch")

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}
SHAPES = {"emb": (40, 7), "wide": (25, 2, 3), "bias": (9,)}


def _batches(rng, shapes, dtype, steps, rows=12):
    """Per step, per parameter: a RowSparse of `rows` random rows (repeats likely)."""
    out = []
    for _ in range(steps):
        step = {}
        for name, shape in shapes.items():
            idx = rng.integers(0, shape[0], rows)
            step[name] = fo.RowSparse(idx, rng.standard_normal((rows,) + shape[1:]).astype(dtype))
        out.append(step)
    return out


def _torch_grad(g, shape, dtype):
    if g is None:
        return None
    if isinstance(g, fo.RowSparse):
        index = torch.tensor(np.asarray(g.indices, np.int64))[None]
        return torch.sparse_coo_tensor(index, torch.tensor(g.values), shape, check_invariants=True)
    return torch.tensor(g).to_sparse()


SPARSE_ADAM_CONFIGS = [
    {},
    {"lr": 0.05, "betas": (0.5, 0.9), "eps": 1e-3},
    {"lr": 0.01, "betas": (0.0, 0.99), "maximize": True},
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", SPARSE_ADAM_CONFIGS, ids=str)
def test_sparse_adam_matches_torch(kwargs, dtype):
    rng = np.random.default_rng(1)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    tparams = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = fo.SparseAdam(params, **kwargs)
    topt = torch.optim.SparseAdam(list(tparams.values()), **kwargs)
    batches = _batches(rng, SHAPES, dtype, 6)
    batches[2]["bias"] = None  # left alone: its step does not advance
    batches[3]["emb"] = fo.RowSparse(np.zeros(0, np.int64), np.zeros((0, 7), dtype))  # no row: the step advances
    for grads in batches:
        opt.step(grads)
        for name, t in tparams.items():
            t.grad = _torch_grad(grads[name], SHAPES[name], dtype)
        topt.step()
    for name, t in tparams.items():
        np.testing.assert_allclose(params[name], t.detach().numpy(), **TOL[dtype])
        state = topt.state[t]
        assert opt.state[name]["step"] == state["step"]
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(opt.state[name][key], state[key].numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_dense_gradient_steps_every_row(dtype):
    """Lazy Adam given every row: the same bytes as a RowSparse listing them all."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((30, 5)).astype(dtype)
    b = a.copy()
    opt_a, opt_b = fo.SparseAdam([a], lr=0.1), fo.SparseAdam([b], lr=0.1)
    for _ in range(3):
        g = rng.standard_normal((30, 5)).astype(dtype)
        opt_a.step([g])
        opt_b.step([fo.RowSparse(np.arange(30)[::-1], g[::-1].copy())])
    assert a.tobytes() == b.tobytes()


ROWWISE_CONFIGS = [
    {},
    {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6},
    {"lr": 0.05, "maximize": True, "eps": 0.0, "initial_accumulator_value": 0.1},
]
ROWWISE_DEFAULTS = dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                        maximize=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", ROWWISE_CONFIGS, ids=str)
@pytest.mark.parametrize("dense", [False, True], ids=["sparse", "dense"])
def test_rowwise_adagrad_matches_the_reference(kwargs, dtype, dense):
    rng = np.random.default_rng(3)
    shapes = {**SHAPES, "odd": (6, 33)} | ({"scalar": ()} if dense else {})
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    ref = {k: v.astype(np.float64) for k, v in params.items()}
    states = {k: {} for k in params}
    opt = fo.Adagrad(params, rowwise=True, **kwargs)
    hp = {**ROWWISE_DEFAULTS, **kwargs}
    for t, grads in enumerate(_batches(rng, {k: s for k, s in shapes.items() if s}, dtype, 5), start=1):
        if dense:
            grads = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
        opt.step(grads)
        for name, g in grads.items():
            g = (g.indices, g.values) if isinstance(g, fo.RowSparse) else g
            reference.rowwise_adagrad(ref[name], g, states[name], hp, t)
    for name in params:
        np.testing.assert_allclose(params[name], ref[name], **TOL[dtype])
        np.testing.assert_allclose(opt.state[name]["sum"], states[name]["sum"].reshape(shapes[name][:1]),
                                   **TOL[dtype])
        assert opt.state[name]["step"] == 5


def test_sparse_adam_matches_the_float64_reference():
    rng = np.random.default_rng(4)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    ref = {k: v.copy() for k, v in params.items()}
    states = {k: {} for k in params}
    hp = {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "maximize": False}
    opt = fo.SparseAdam(params, **hp)
    for t, grads in enumerate(_batches(rng, SHAPES, np.float64, 4), start=1):
        opt.step(grads)
        for name, g in grads.items():
            reference.sparse_adam(ref[name], (g.indices, g.values), states[name], hp, t)
    for name in params:
        np.testing.assert_allclose(params[name], ref[name], rtol=1e-12, atol=1e-14)


def test_rows_not_given_are_neither_read_nor_written():
    """NaN in a row no gradient names stays where it is and spreads nowhere; the row keeps its bytes."""
    table = np.ones((10, 4), np.float32)
    table[7] = np.nan
    for opt in (fo.SparseAdam([table], lr=0.1), fo.Adagrad([table], rowwise=True)):
        opt.step([fo.RowSparse([1, 3], np.ones((2, 4), np.float32))])
        assert np.isnan(table[7]).all() and np.isfinite(np.delete(table, 7, axis=0)).all()
        state = opt.state[0]
        for key, array in state.items():
            if key != "step" and array.shape == table.shape:
                assert not np.delete(array, [1, 3], axis=0).any(), key


def test_adagrad_rowwise_flag():
    w = np.zeros((3, 2), np.float32)
    opt = fo.Adagrad({"w": w}, lr=0.5, weight_decay=0.1, rowwise=True)
    assert type(opt) is fo.RowwiseAdagrad and opt.defaults["lr"] == 0.5 and opt.state["w"]["sum"].shape == (3,)
    assert type(fo.Adagrad([np.zeros(3)], rowwise=False)) is fo.Adagrad
    assert type(pickle.loads(pickle.dumps(fo.Adagrad([np.zeros(3)])))) is fo.Adagrad
    with pytest.raises(TypeError, match="rowwise must be True or False"):
        fo.Adagrad([w], rowwise=1)
    with pytest.raises(TypeError, match="state_dtype"):
        fo.Adagrad([w], rowwise=True, state_dtype="bfloat16")


def test_dense_and_sparse_parameters_in_one_native_call(monkeypatch):
    rng = np.random.default_rng(5)
    emb, weight, bias = rng.standard_normal((50, 8)), rng.standard_normal((8, 3)), rng.standard_normal(3)
    alone = [a.copy() for a in (emb, weight, bias)]
    together = fo.SparseAdam({"emb": emb, "weight": weight, "bias": bias}, lr=0.01)
    apart = [fo.SparseAdam([a], lr=0.01) for a in alone]
    calls = []
    real = rows_module.row_step
    monkeypatch.setattr(rows_module, "row_step", lambda *a: (calls.append(len(a[1])), real(*a))[1])
    for _ in range(3):
        g = fo.RowSparse(rng.integers(0, 50, 16), rng.standard_normal((16, 8)))
        gw, gb = rng.standard_normal((8, 3)), rng.standard_normal(3)
        together.step({"emb": g, "weight": gw, "bias": gb})
        for opt, grad in zip(apart, (g, gw, gb)):
            opt.step([grad])
    assert calls == [3, 1, 1, 1] * 3  # one call for the three arrays, then one per optimizer apart
    for a, b in zip((emb, weight, bias), alone):
        assert a.tobytes() == b.tobytes()


def test_clipping_measures_the_rows_given_after_summing_repeats():
    rng = np.random.default_rng(6)
    table, dense = rng.standard_normal((20, 4)), rng.standard_normal(5)
    plain = [table.copy(), dense.copy()]
    idx, values = np.array([3, 9, 3]), rng.standard_normal((3, 4))
    gd = rng.standard_normal(5)
    norm = np.sqrt(np.sum((values[0] + values[2]) ** 2) + np.sum(values[1] ** 2) + np.sum(gd**2))
    clipped = fo.SparseAdam([table, dense], lr=0.1, max_grad_norm=0.5)
    info = clipped.step([fo.RowSparse(idx, values), gd])
    assert info.grad_norm == pytest.approx(norm, rel=1e-12)
    scale = 0.5 / (norm + 1e-6)
    fo.SparseAdam(plain, lr=0.1).step([fo.RowSparse(idx, values * scale), gd * scale])
    np.testing.assert_allclose(table, plain[0], rtol=1e-12)
    np.testing.assert_allclose(dense, plain[1], rtol=1e-12)


@pytest.mark.parametrize("make", [fo.SparseAdam, lambda p, **k: fo.Adagrad(p, rowwise=True, **k)],
                         ids=["sparse_adam", "rowwise_adagrad"])
def test_skip_nonfinite_and_grad_scale(make):
    table = np.ones((6, 3), np.float32)
    opt = make([table], skip_nonfinite=True)
    before = pickle.dumps(opt.state_dict())
    values = np.ones((2, 3), np.float32)
    values[1, 2] = np.inf
    info = opt.step([fo.RowSparse([0, 4], values)])
    assert info.skipped and (table == 1).all() and pickle.dumps(opt.state_dict()) == before
    other = np.ones((6, 3), np.float32)
    scaled = make([other])
    grads = np.arange(18, dtype=np.float32).reshape(6, 3)
    opt.step([fo.RowSparse([1, 2], grads[:2] * 4)], grad_scale=4.0)
    scaled.step([fo.RowSparse([1, 2], grads[:2])])
    assert table.tobytes() == other.tobytes()


ALWAYS, NEVER = 0, 2**62


def _trajectory(make, dtype, target, threads, prefetch_above):
    fo.set_target(target)
    fo.set_num_threads(threads)
    fo.set_prefetch_above(prefetch_above)
    rng = np.random.default_rng(7)
    shapes = {"big": (20_000, 37), "odd": (33, 31), "vector": (1001,)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    opt = make(params)
    for step in range(3):
        grads = {k: fo.RowSparse(rng.integers(0, s[0], 3000), rng.standard_normal((3000,) + s[1:]).astype(dtype))
                 for k, s in shapes.items()}
        if step == 1:
            grads["odd"] = rng.standard_normal(shapes["odd"]).astype(dtype)  # dense beside sparse
        opt.step(grads)
    state = [np.asarray(v).tobytes() for k in sorted(opt.state) for _, v in sorted(opt.state[k].items())]
    return [params[k].tobytes() for k in sorted(params)] + state


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [lambda p: fo.SparseAdam(p, lr=0.01, max_grad_norm=50.0),
                                  lambda p: fo.Adagrad(p, rowwise=True, weight_decay=0.01, maximize=True)],
                         ids=["sparse_adam", "rowwise_adagrad"])
def test_same_bytes_on_every_target_and_thread_count(make, dtype, restore_runtime):
    runs = {(t, n, p): _trajectory(make, dtype, t, n, p)
            for t, (n, p) in itertools.product(fo.available_targets(), [(1, NEVER), (2, ALWAYS)])}
    (first_key, first), *rest = runs.items()
    for key, other in rest:
        assert other == first, f"{key} differs from {first_key}"


@pytest.mark.parametrize("make", [lambda p: fo.SparseAdam(p, lr=0.05), lambda p: fo.Adagrad(p, rowwise=True)],
                         ids=["sparse_adam", "rowwise_adagrad"])
def test_exact_resume_from_a_state_dict_and_a_pickle(make):
    rng = np.random.default_rng(8)
    start = {"emb": rng.standard_normal((30, 6)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32)}
    batches = _batches(rng, {"emb": (30, 6), "b": (4,)}, np.float32, 6)
    straight = {k: v.copy() for k, v in start.items()}
    opt = make(straight)
    for g in batches:
        opt.step(g)
    resumed = {k: v.copy() for k, v in start.items()}
    first = make(resumed)
    for g in batches[:3]:
        first.step(g)
    saved, pickled = first.state_dict(), pickle.dumps(first)
    second = make(resumed)
    second.load_state_dict(saved)
    for g in batches[3:]:
        second.step(g)
    revived = pickle.loads(pickled)
    for g in batches[3:]:
        revived.step(g)
    for name in start:
        assert resumed[name].tobytes() == straight[name].tobytes()
        assert revived.param_groups[0]["params"][list(start).index(name)].tobytes() == straight[name].tobytes()


def test_a_scheduler_drives_the_learning_rate():
    table, by_hand = np.zeros((4, 2)), np.zeros((4, 2))
    opt, manual = fo.SparseAdam([table], lr=1.0), fo.SparseAdam([by_hand], lr=1.0)
    sched = fo.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for step, row in enumerate((0, 1, 0)):
        grad = [fo.RowSparse([row], np.ones((1, 2)))]
        opt.step(grad)
        manual.step(grad)
        sched.step()
        manual.param_groups[0]["lr"] = 0.5 ** (step + 1)
    assert opt.param_groups[0]["lr"] == 0.125 and table.tobytes() == by_hand.tobytes()


# ---- bad input: refused with nothing changed ------------------------------------------------

@pytest.mark.parametrize(("indices", "values", "error", "text"), [
    (np.array([0.0, 1.0]), np.ones((2, 3)), TypeError, "indices must be integers"),
    (np.zeros((2, 1), np.int64), np.ones((2, 3)), ValueError, "indices must be one-dimensional"),
    ([0, 1], [[1.0, 2.0, 3.0]] * 2, TypeError, "values must be a numpy.ndarray"),
    ([0, 1], np.ones((3, 3)), ValueError, "one row per index"),
    ([0, 1], np.ones(()), ValueError, "one row per index"),
])
def test_a_malformed_row_sparse_is_refused(indices, values, error, text):
    with pytest.raises(error, match=re.escape(text)):
        fo.RowSparse(indices, values)


def _spoil(kind, table):
    if kind == "negative":
        g = fo.RowSparse([1, -1], np.ones((2, 3), np.float32))
        return g, ValueError, "holds -1, out of range for a parameter of 8 rows"
    if kind == "past the end":
        return fo.RowSparse([8], np.ones((1, 3), np.float32)), ValueError, "holds 8, out of range"
    if kind == "dtype":
        return fo.RowSparse([1], np.ones((1, 3))), TypeError, "values must be float32"
    if kind == "row shape":
        return fo.RowSparse([1], np.ones((1, 4), np.float32)), ValueError, "must have shape (1, 3)"
    if kind == "strided":
        return fo.RowSparse([1], np.ones((1, 6), np.float32)[:, ::2]), ValueError, "C-contiguous"
    if kind == "aliased":
        return fo.RowSparse([1, 2], table[2:4]), ValueError, "share memory"
    if kind == "edited":
        g = fo.RowSparse([1], np.ones((1, 3), np.float32))
        g.indices = np.array([1.5])
        return g, TypeError, "indices must be a one-dimensional integer array"
    raise AssertionError(kind)


@pytest.mark.parametrize("make", [fo.SparseAdam, lambda p, **k: fo.Adagrad(p, rowwise=True, **k)],
                         ids=["sparse_adam", "rowwise_adagrad"])
@pytest.mark.parametrize("kind", ["negative", "past the end", "dtype", "row shape", "strided", "aliased", "edited"])
def test_a_bad_row_sparse_gradient_changes_nothing(make, kind):
    table, dense = np.ones((8, 3), np.float32), np.ones(5, np.float32)
    opt = make({"table": table, "dense": dense}, lr=0.1)
    opt.step({"table": fo.RowSparse([0], np.ones((1, 3), np.float32)), "dense": np.ones(5, np.float32)})
    before = pickle.dumps((table, dense, opt.state_dict()))
    grad, error, text = _spoil(kind, table)
    with pytest.raises(error, match=re.escape(text)):
        opt.step({"dense": np.ones(5, np.float32), "table": grad})
    assert pickle.dumps((table, dense, opt.state_dict())) == before


def test_what_row_sparse_steps_cannot_carry_is_refused():
    table = np.zeros((4, 2), np.float32)
    for key, value, text in [("state_dtype", "int8", "requantize rows it does not touch"),
                             ("state_dtype", "bfloat16", "bfloat16 rows are not implemented"),
                             ("ema_decay", 0.99, "touches a few"), ("cautious", True, "no cautious variant")]:
        with pytest.raises(TypeError, match=re.escape(text)):
            fo.SparseAdam([table], **{key: value})
    with pytest.raises(TypeError, match="does not accumulate"):
        fo.SparseAdam([table]).accumulate([np.zeros((4, 2), np.float32)])
    with pytest.raises(ValueError, match="0-d: it has no rows"):
        fo.SparseAdam([np.zeros((), np.float32)]).step([fo.RowSparse([0], np.zeros(1, np.float32))])
    with pytest.raises(TypeError, match="RowSparse"):  # the element-wise rules step whole arrays
        fo.Adam([table]).step([fo.RowSparse([0], np.zeros((1, 2), np.float32))])
    with pytest.raises(ValueError, match=re.escape("betas[0] must be < 1.0")):
        fo.SparseAdam([table], betas=(1.0, 0.9))
    assert not table.any()


def test_indices_that_share_memory_with_a_parameter_are_refused():
    table = np.zeros((4, 2))
    indices = table.reshape(-1)[:2].view(np.int64)
    indices[:] = [1, 0]  # valid rows, stored in the table's own first row
    opt = fo.SparseAdam([table])
    before = table.tobytes()
    with pytest.raises(ValueError, match=re.escape("share memory")):
        opt.step([fo.RowSparse(indices, np.ones((2, 2)))])
    assert table.tobytes() == before and opt.state[0]["step"] == 0
    ids = np.array([2, 0])  # one list of ids for two tables: read by both, shared
    tables = {"a": np.zeros((3, 2)), "b": np.zeros((3, 4))}
    fo.SparseAdam(tables, lr=1.0).step({k: fo.RowSparse(ids, np.ones((2, t.shape[1]))) for k, t in tables.items()})
    for t in tables.values():  # the first step moves each given row by lr
        np.testing.assert_allclose(t[[0, 2]], -1.0, rtol=1e-6)
        assert not t[1].any()


def test_a_direct_row_step_whose_rows_live_in_the_parameter_cannot_write_out_of_range():
    """The kernels read their own copy of the rows: rewriting the parameter's first row (where
    the rows are) cannot send a later row out of range."""
    from child import run_python
    result = run_python("""
import numpy as np
from fastoptim import _core
p = np.zeros((2, 1))
p.view(np.int64)[:, 0] = [1, 0]
rows = p.reshape(-1).view(np.int64)
state = [np.zeros((2, 1)), np.zeros((2, 1))]
_core.row_step("sparse_adam", [(p, *state, np.ones((2, 1)), rows, 1.0, (0.1, 0.001, 1e-8, -1.0))])
print("ok")
""")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_an_empty_list_of_rows_is_a_gradient():
    table = np.ones((3, 2), np.float32)
    opt = fo.SparseAdam([table])
    opt.step([fo.RowSparse([], np.zeros((0, 2), np.float32))])
    assert opt.state[0]["step"] == 1 and (table == 1).all()
    with pytest.raises(ValueError, match=re.escape("eps must be > 0.0")):  # torch's bound: a zero row gives 0/0
        fo.SparseAdam([table], eps=0.0)


def test_a_large_table_costs_the_rows_given():
    """A few rows of a table of 1e8 rows (of no elements): the checks hold nothing per table row
    (a bit per row would be 12.5 MB, zeroed at each check), measured as the child's peak memory."""
    from child import run_python
    result = run_python("""
import resource
import numpy as np
import fastoptim as fo
table = np.zeros((10**8, 0), np.float32)
opt = fo.SparseAdam([table])
grad = fo.RowSparse([5, 17, 99_999_999], np.zeros((3, 0), np.float32))
opt.step([grad])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for _ in range(5):
    opt.step([grad])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
""")
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) < 4 << 20  # bytes of peak growth: far below 12.5 MB
