"""fastoptim.torch: drop-in torch.optim optimizers over torch CPU tensors, stepped in place."""

from __future__ import annotations

import copy
import io
import textwrap
import tracemalloc

import numpy as np
import pytest
from child import run_python

from registry import CASES

torch = pytest.importorskip("torch")
fot = pytest.importorskip("fastoptim.torch")
from torch_nets import Net, twins  # noqa: E402

import fastoptim as fo  # noqa: E402

TORCH_CASES = [c for c in CASES if c.torch_name and c.torch_name in fot.__all__]
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-12)}
# torch keeps NAdam's mu_product and ASGD's eta in float32 tensors even for float64 parameters
# (tests/test_torch_parity.py measures what that costs); fastoptim keeps doubles.
LOOSER = {("nadam", torch.float64): dict(rtol=1e-8, atol=1e-9), ("asgd", torch.float64): dict(rtol=1e-7, atol=1e-7)}


def _nets(dtype: torch.dtype, seed: int = 0) -> tuple[Net, Net]:
    return twins(Net, dtype, seed)


def _backward(net: Net, rng: np.random.Generator, dtype: torch.dtype) -> None:
    x = torch.from_numpy(rng.standard_normal((4, 2, 6, 6))).to(dtype)
    net.zero_grad(set_to_none=True)
    net(x).pow(2).mean().backward()


def _copy_grads(source: Net, target: Net, drop: bool) -> None:
    """The same gradients into `target` (the oracle sees what fastoptim saw); `drop` leaves the
    hidden layer's bias without one, as a step that did not reach it."""
    for (name, p), q in zip(source.named_parameters(), target.parameters()):
        if drop and name == "hidden.bias":
            p.grad = None
        q.grad = None if p.grad is None else p.grad.clone(memory_format=torch.preserve_format)


def _assert_same(net: Net, oracle: Net, tol: dict[str, float]) -> None:
    for (name, p), q in zip(net.named_parameters(), oracle.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), **tol, err_msg=name)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.name)
def test_matches_torch_optim_on_a_module(case, dtype, seed):
    rng = np.random.default_rng(seed)
    kwargs = case.random_args(rng)
    net, oracle = _nets(dtype, seed)
    opt = getattr(fot, case.torch_name)(net.parameters(), **kwargs)
    topt = getattr(torch.optim, case.torch_name)(oracle.parameters(), **kwargs)
    pointers = [p.data_ptr() for p in net.parameters()]
    for step in range(20):
        _backward(net, rng, dtype)
        _copy_grads(net, oracle, drop=step % 3 == 1)
        opt.step()
        topt.step()
    tol = LOOSER.get((case.name, dtype), TOLERANCE[dtype])
    _assert_same(net, oracle, tol)
    assert [p.data_ptr() for p in net.parameters()] == pointers
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    ours, theirs = opt.state, topt.state
    for p, q in zip(net.parameters(), oracle.parameters()):
        # never-stepped parameters (frozen, unused) have no state (torch's Adagrad has its step 0;
        # torch's SGD counts no steps, and has an empty entry where momentum is 0)
        assert (p in ours) == (q in theirs and float(theirs[q].get("step", 1)) > 0)
        for slot, value in (ours and theirs.get(q, {}) if p in ours else {}).items():
            mine = ours[p][slot]
            if value is None:
                continue
            if slot == "step":
                assert float(mine) == float(value)
            elif value.ndim == 0:  # a running scalar (mu_product, eta, mu)
                assert float(mine) == pytest.approx(float(value), rel=1e-6), slot
            else:
                assert mine.shape == value.shape and mine.stride() == value.stride(), slot
                np.testing.assert_allclose(mine.numpy(), value.numpy(), **tol, err_msg=slot)


@pytest.mark.parametrize("make_scheduler", [
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20),
    lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7, eta_min=1e-4),
    lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=1),
], ids=["OneCycleLR", "CosineAnnealingLR", "ReduceLROnPlateau"])
@pytest.mark.parametrize("rule", ["AdamW", "SGD"])
def test_torch_schedulers_drive_it(rule, make_scheduler):
    rng = np.random.default_rng(3)
    net, oracle = _nets(torch.float32)
    kwargs = {"lr": 0.01, "momentum": 0.9} if rule == "SGD" else {"lr": 0.01}
    opt = getattr(fot, rule)(net.parameters(), **kwargs)
    topt = getattr(torch.optim, rule)(oracle.parameters(), **kwargs)
    schedulers = [make_scheduler(opt), make_scheduler(topt)]
    lrs = []
    for _ in range(20):
        _backward(net, rng, torch.float32)
        _copy_grads(net, oracle, drop=False)
        opt.step()
        topt.step()
        for s in schedulers:
            if isinstance(s, torch.optim.lr_scheduler.ReduceLROnPlateau):
                s.step(1.0)  # a loss that never improves: the rate halves every other step
            else:
                s.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert opt.param_groups[0]["lr"] == topt.param_groups[0]["lr"]
    assert len(set(lrs)) > 3  # the scheduler moved the rate
    _assert_same(net, oracle, TOLERANCE[torch.float32])


def _saved_and_loaded(state_dict):
    """Through torch.save and torch.load(weights_only=True): what a checkpoint file holds."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("direction", ["torch_to_fastoptim", "fastoptim_to_torch"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.name)
def test_state_dicts_cross_both_ways(case, direction):
    rng = np.random.default_rng(5)
    kwargs = case.random_args(rng)
    dtype = torch.float64
    net, oracle = _nets(dtype)
    first = (torch.optim if direction == "torch_to_fastoptim" else fot)
    second = (fot if direction == "torch_to_fastoptim" else torch.optim)
    # the first half on `oracle` with the first library's optimizer, then both continue
    opt_a = getattr(first, case.torch_name)(oracle.parameters(), **kwargs)
    for step in range(6):
        _backward(net, rng, dtype)
        _copy_grads(net, oracle, drop=step == 2)
        opt_a.step()
    with torch.no_grad():
        for p, q in zip(net.parameters(), oracle.parameters()):
            p.copy_(q)
    opt_b = getattr(second, case.torch_name)(net.parameters(), **kwargs)
    opt_b.load_state_dict(_saved_and_loaded(opt_a.state_dict()))
    for step in range(6):
        _backward(net, rng, dtype)
        _copy_grads(net, oracle, drop=step == 4)
        opt_a.step()
        opt_b.step()
    _assert_same(net, oracle, LOOSER.get((case.name, dtype), dict(rtol=1e-10, atol=1e-12)))


def test_a_state_dict_reloads_into_itself_bit_for_bit():
    rng = np.random.default_rng(6)
    net, twin = _nets(torch.float32)
    opt = fot.AdamW(net.parameters(), lr=0.01, amsgrad=True, ema_decay=0.9)
    for _ in range(3):
        _backward(net, rng, torch.float32)
        opt.step()
    saved = _saved_and_loaded(opt.state_dict())
    with torch.no_grad():
        for p, q in zip(net.parameters(), twin.parameters()):
            q.copy_(p)
    resumed = fot.AdamW(twin.parameters(), lr=0.01, amsgrad=True, ema_decay=0.9)
    resumed.load_state_dict(saved)
    for _ in range(3):
        _backward(net, rng, torch.float32)
        _copy_grads(net, twin, drop=False)
        opt.step()
        resumed.step()
    for p, q in zip(net.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    for a, b in zip(opt.ema, resumed.ema):
        assert torch.equal(a, b)


def test_a_bad_state_dict_changes_nothing():
    rng = np.random.default_rng(7)
    net, _ = _nets(torch.float32)
    opt = fot.Adam(net.parameters(), lr=0.01)
    _backward(net, rng, torch.float32)
    opt.step()
    before = opt.state_dict()
    bad = opt.state_dict()
    bad["state"][0]["exp_avg"] = torch.zeros(5)
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)
    wrong_groups = {"state": {}, "param_groups": []}
    with pytest.raises(ValueError, match="param groups"):
        opt.load_state_dict(wrong_groups)
    after = opt.state_dict()
    for key, entry in before["state"].items():
        for slot, value in entry.items():
            assert torch.equal(value, after["state"][key][slot])


def test_bfloat16_parameters_step_as_fastoptim_does_on_ml_dtypes_arrays():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(8)
    values = rng.standard_normal((2, 50, 7)).astype(np.float32)
    tensors = [torch.tensor(v).to(torch.bfloat16) for v in values]
    arrays = [t.view(torch.int16).numpy().copy().view(ml_dtypes.bfloat16) for t in tensors]
    for t in tensors:
        t.requires_grad_()
    opt = fot.AdamW(tensors, lr=1e-2, seed=11)
    reference = fo.AdamW(arrays, lr=1e-2, seed=11)
    for _ in range(5):
        grads = rng.standard_normal((2, 50, 7)).astype(np.float32)
        for t, g in zip(tensors, grads):
            t.grad = torch.tensor(g).to(torch.bfloat16)
        reference.step([t.grad.view(torch.int16).numpy().view(ml_dtypes.bfloat16) for t in tensors])
        opt.step()
    for t, a in zip(tensors, arrays):
        assert np.array_equal(t.detach().view(torch.int16).numpy(), a.view(np.int16))


def test_the_tensors_are_never_copied_and_a_step_keeps_no_allocation():
    rng = np.random.default_rng(9)
    net, _ = _nets(torch.float32)
    opt = fot.AdamW(net.parameters(), lr=1e-3, max_grad_norm=1.0, ema_decay=0.99)
    pointers = [p.data_ptr() for p in net.parameters()]
    _backward(net, rng, torch.float32)
    grad_pointers = [None if p.grad is None else p.grad.data_ptr() for p in net.parameters()]
    opt.step()  # the first step allocates nothing more either, but warms Python's caches
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(5):
            opt.step()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = [s for s in after.compare_to(before, "lineno") if s.size_diff >= 1024]
    assert grown == []
    assert [p.data_ptr() for p in net.parameters()] == pointers
    assert [None if p.grad is None else p.grad.data_ptr() for p in net.parameters()] == grad_pointers


def test_a_large_step_allocates_nothing_in_a_child():
    """Peak memory of a child stepping a 16M-element model: state and EMA are allocated once,
    at construction; five steps add nothing (a copy of the parameters would add 64 MB)."""
    code = textwrap.dedent("""
        import resource, torch, fastoptim.torch as fot
        params = [torch.zeros(4_000_000, requires_grad=True) for _ in range(4)]
        for p in params:
            p.grad = torch.ones_like(p)
        opt = fot.AdamW(params, ema_decay=0.9, max_grad_norm=1.0)
        opt.step()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(5):
            opt.step()
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) < 1024  # KiB: under 1 MiB of growth


def test_hooks_closure_zero_grad_and_add_param_group():
    rng = np.random.default_rng(10)
    net, oracle = _nets(torch.float32)
    opt = fot.SGD(net.parameters(), lr=0.1, momentum=0.5)
    topt = torch.optim.SGD(oracle.parameters(), lr=0.1, momentum=0.5)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append(("pre", o)))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(("post", o)))
    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(lambda o, args, kwargs: calls.append(("global", o)))
    x = torch.from_numpy(rng.standard_normal((4, 2, 6, 6)).astype(np.float32))

    def closure():
        opt.zero_grad()
        loss = net(x).pow(2).mean()
        loss.backward()
        return loss

    try:
        loss = opt.step(closure)
    finally:
        handle.remove()
    assert isinstance(loss, torch.Tensor)
    assert calls == [("pre", opt), ("post", opt), ("global", opt)]
    _copy_grads(net, oracle, drop=False)
    topt.step()
    _assert_same(net, oracle, TOLERANCE[torch.float32])
    # zero_grad(set_to_none=True): a step with no gradients changes nothing
    opt.zero_grad(set_to_none=True)
    kept = [p.detach().clone() for p in net.parameters()]
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(kept, net.parameters()))
    # a group added later steps with its own settings
    extra = torch.zeros(5, requires_grad=True)
    opt.add_param_group({"params": [extra], "lr": 1.0, "momentum": 0.0})
    extra.grad = torch.ones(5)
    opt.step()
    assert torch.equal(extra.detach(), torch.full((5,), -1.0))
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [extra]})
    assert len(opt.param_groups) == 2


def test_fused_step_options_and_last_step_info():
    net, oracle = _nets(torch.float32)
    opt = fot.Adam(net.parameters(), lr=0.01, max_grad_norm=1e-3, skip_nonfinite=True)
    topt = torch.optim.Adam(oracle.parameters(), lr=0.01)
    rng = np.random.default_rng(11)
    _backward(net, rng, torch.float32)
    _copy_grads(net, oracle, drop=False)
    opt.step()
    norm = torch.nn.utils.clip_grad_norm_(list(oracle.parameters()), 1e-3)
    topt.step()
    assert opt.last_step_info.grad_norm == pytest.approx(float(norm), rel=1e-5)
    _assert_same(net, oracle, TOLERANCE[torch.float32])
    net.hidden.weight.grad[0, 0] = float("nan")
    kept = [p.detach().clone() for p in net.parameters()]
    opt.step()
    assert opt.last_step_info.skipped
    assert all(torch.equal(a, b) for a, b in zip(kept, net.parameters()))


def test_the_ema_and_swapping_it_in():
    net, _ = _nets(torch.float32)
    opt = fot.SGD(net.parameters(), lr=0.1, ema_decay=0.5)
    rng = np.random.default_rng(12)
    start = [p.detach().clone() for p in net.parameters()]
    _backward(net, rng, torch.float32)
    opt.step()
    for average, p, p0 in zip(opt.ema, net.parameters(), start):
        torch.testing.assert_close(average, 0.5 * p0 + 0.5 * p.detach())
        assert average.shape == p.shape and average.stride() == p.stride()
    trained = [p.detach().clone() for p in net.parameters()]
    with opt.swap_ema():
        for average, p in zip(opt.ema, net.parameters()):
            assert torch.equal(p.detach(), average)
        with pytest.raises(RuntimeError, match="swap_ema"):
            opt.step()
    assert all(torch.equal(a, b.detach()) for a, b in zip(trained, net.parameters()))


@pytest.mark.parametrize("option", ["foreach", "fused"])
@pytest.mark.parametrize("value", [None, False, True])
def test_foreach_and_fused_are_accepted_and_ignored(option, value):
    net, oracle = _nets(torch.float32)
    opt = fot.AdamW(net.parameters(), lr=0.01, **{option: value})
    topt = torch.optim.AdamW(oracle.parameters(), lr=0.01)
    _backward(net, np.random.default_rng(0), torch.float32)
    _copy_grads(net, oracle, drop=False)
    opt.step()
    topt.step()
    _assert_same(net, oracle, TOLERANCE[torch.float32])
    assert opt.param_groups[0][option] is value


@pytest.mark.parametrize(("option", "advice"), [("capturable", "CUDA"), ("differentiable", "differentiable=True")])
def test_capturable_and_differentiable_are_refused_with_what_to_use(option, advice):
    with pytest.raises(TypeError, match=advice):
        fot.Adam([torch.zeros(3, requires_grad=True)], **{option: True})


def test_tensors_it_cannot_step_are_refused():
    with pytest.raises(TypeError, match="meta"):
        fot.Adam([torch.zeros(3, device="meta", requires_grad=True)])
    with pytest.raises(TypeError, match="dtype torch.int32"):
        fot.Adam([torch.zeros(3, dtype=torch.int32)])
    base = torch.zeros(4, 6, requires_grad=True)
    with pytest.raises(ValueError, match="not dense"):
        fot.Adam([base.detach()[:, ::2]])
    with pytest.raises(ValueError, match="share memory|overlap"):
        fot.Adam([base.detach()[:2], base.detach()[1:3]])
    with pytest.raises(TypeError, match="rowwise"):
        fot.Adagrad([torch.zeros(3, 2, requires_grad=True)], rowwise=True)
    # a Parameter given twice: torch's own check
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="more than one"):
        fot.Adam([{"params": [p]}, {"params": [p]}])


def test_bad_gradients_are_refused_with_nothing_changed():
    p = torch.zeros(4, 6, requires_grad=True)
    q = torch.zeros(5, requires_grad=True)
    opt = fot.Adam([p, q], lr=0.1)
    q.grad = torch.ones(5)
    for grad, error, text in [
        (torch.ones(6, 4).t(), ValueError, "strides"),
        (torch.ones(4, 7)[:, :6], ValueError, "not dense"),
        (torch.ones(4, 6).to_sparse(), TypeError, "SparseAdam"),
    ]:
        p.grad = grad
        with pytest.raises(error, match=text):
            opt.step()
        assert torch.count_nonzero(p) == 0 and torch.count_nonzero(q) == 0
        assert opt.state == {}


def test_memory_moved_under_a_parameter_is_refused_with_nothing_changed():
    p = torch.zeros(1000, requires_grad=True)
    opt = fot.SGD([p], lr=0.1)
    p.grad = torch.ones(1000)
    opt.step()
    old = p.detach()
    p.data = torch.zeros(1000)
    with pytest.raises(ValueError, match="memory moved"):
        opt.step()
    assert torch.count_nonzero(p) == 0  # neither the tensor p now is
    assert torch.equal(old, torch.full((1000,), -0.1))  # nor the memory the optimizer viewed changed
    assert opt.state_dict()["state"][0]["step"] == 1


def test_a_new_gradient_tensor_each_step_is_viewed_anew():
    """zero_grad(set_to_none=True) gives a new .grad each backward; a .grad whose memory moved
    (grad.data = ...) is viewed again rather than refused."""
    p = torch.zeros(10, requires_grad=True)
    opt = fot.SGD([p], lr=1.0)
    for value in (1.0, 2.0):
        p.grad = torch.full((10,), value)
        opt.step()
    p.grad.data = torch.full((10,), 4.0)
    opt.step()
    assert torch.equal(p.detach(), torch.full((10,), -7.0))


@pytest.mark.parametrize("attack", [
    "p.data = torch.zeros(1)",
    "p.untyped_storage().resize_(0)",
    "p.grad.untyped_storage().resize_(0)",
    "p.set_(torch.zeros(3))",
    "p.data.resize_(3_000_000)",
    "p.grad.resize_(3_000_000)",
    "p.grad.set_(torch.zeros(3))",
    "p.share_memory_()",
])
def test_freed_memory_is_never_written_in_a_child(attack):
    """Each way Python code can free or move a tensor's memory after the optimizer bound it:
    the next step refuses, in a fresh process, so that a crash fails the test."""
    code = textwrap.dedent(f"""
        import torch, fastoptim.torch as fot
        p = torch.zeros(1_000_000, requires_grad=True)
        p.grad = torch.ones(1_000_000)
        opt = fot.SGD([p], lr=0.1, momentum=0.9)
        opt.step()
        try:
            with torch.no_grad():
                {attack}
        except RuntimeError as error:  # torch keeps some storages from being resized
            print("torch refused:", error)
        for _ in range(3):
            junk = [torch.ones(1_000_000) for _ in range(4)]  # reuse the freed memory
            try:
                opt.step()
            except (ValueError, TypeError) as error:
                print("refused:", error)
            else:
                print("stepped")
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    if lines[0].startswith("torch refused:"):  # nothing moved: the steps go on
        assert lines[1:] == ["stepped"] * 3, lines
    else:
        assert len(lines) == 3 and all(line.startswith("refused:") for line in lines), lines


def test_pickling_is_refused_with_what_to_do():
    import pickle

    opt = fot.Adam([torch.zeros(3, requires_grad=True)])
    with pytest.raises(TypeError, match="state_dict"):
        pickle.dumps(opt)
    with pytest.raises(TypeError, match="state_dict"):
        copy.deepcopy(opt)


def test_the_signature_and_docstring_are_the_rules():
    import inspect

    assert inspect.signature(fot.AdamW) == inspect.signature(fo.AdamW)
    assert "torch.optim.AdamW" in fot.AdamW.__doc__
    assert issubclass(fot.AdamW, torch.optim.Optimizer)


class Tables(torch.nn.Module):
    """Two embedding tables with sparse gradients; the second is used on some steps only."""

    def __init__(self) -> None:
        super().__init__()
        self.words = torch.nn.Embedding(50, 6, sparse=True)
        self.tags = torch.nn.Embedding(9, 6, sparse=True)

    def forward(self, words: torch.Tensor, tags: torch.Tensor | None) -> torch.Tensor:
        h = self.words(words)
        return (h if tags is None else h + self.tags(tags)).pow(2).sum()


def _sparse_batches(seed: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 50, (12,), generator=g),  # repeats: summed by coalescing
             None if step % 3 == 1 else torch.randint(0, 9, (12,), generator=g)) for step in range(steps)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sparse_adam_matches_torch_on_embedding_gradients(dtype):
    torch.manual_seed(1)
    tables = Tables().to(dtype)
    oracle = copy.deepcopy(tables)
    opt = fot.SparseAdam(tables.parameters(), lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    topt = torch.optim.SparseAdam(oracle.parameters(), lr=0.05, betas=(0.8, 0.99), eps=1e-6)
    for words, tags in _sparse_batches(0, 12):
        for model, o in ((tables, opt), (oracle, topt)):
            o.zero_grad()
            model(words, tags).backward()
            o.step()
    for p, q in zip(tables.parameters(), oracle.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), **TOLERANCE[dtype])
    ours, theirs = opt.state_dict()["state"], topt.state_dict()["state"]
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert float(ours[key]["step"]) == float(theirs[key]["step"])
        for slot in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(ours[key][slot].numpy(), theirs[key][slot].numpy(), **TOLERANCE[dtype])


@pytest.mark.parametrize("direction", ["torch_to_fastoptim", "fastoptim_to_torch"])
def test_sparse_adam_state_dicts_cross_both_ways(direction):
    torch.manual_seed(2)
    tables = Tables().double()
    oracle = copy.deepcopy(tables)
    first = torch.optim if direction == "torch_to_fastoptim" else fot
    second = fot if direction == "torch_to_fastoptim" else torch.optim
    opt_a = first.SparseAdam(oracle.parameters(), lr=0.05)
    batches = _sparse_batches(1, 8)
    for words, _ in batches[:4]:  # the tags table never steps: torch saves no state for it
        opt_a.zero_grad()
        oracle(words, None).backward()
        opt_a.step()
    tables.load_state_dict(oracle.state_dict())
    opt_b = second.SparseAdam(tables.parameters(), lr=0.05)
    opt_b.load_state_dict(_saved_and_loaded(opt_a.state_dict()))
    for words, tags in batches[4:]:
        for model, o in ((tables, opt_b), (oracle, opt_a)):
            o.zero_grad()
            model(words, tags).backward()
            o.step()
    for p, q in zip(tables.parameters(), oracle.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_sparse_adam_takes_dense_gradients_beside_sparse_ones():
    """Unlike torch's, it steps a dense parameter too (as every row) in the same native call."""
    table = torch.nn.Embedding(20, 4, sparse=True)
    dense = torch.nn.Linear(4, 1)
    opt = fot.SparseAdam([*table.parameters(), *dense.parameters()], lr=0.1)
    reference = fo.SparseAdam([p.detach().numpy().copy() for p in (table.weight, dense.weight, dense.bias)], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        dense(table(torch.tensor([1, 5, 5, 7]))).sum().backward()
        grads = table.weight.grad.coalesce()
        reference.step([fo.RowSparse(grads.indices()[0].numpy(), grads.values().numpy()),
                        dense.weight.grad.numpy(), dense.bias.grad.numpy()])
        opt.step()
    for p, q in zip((table.weight, dense.weight, dense.bias), reference.param_groups[0]["params"]):
        assert np.array_equal(p.detach().numpy(), q)


def test_sparse_gradients_sparse_in_two_dimensions_are_refused():
    p = torch.zeros(4, 3, requires_grad=True)
    opt = fot.SparseAdam([p])
    p.grad = torch.ones(4, 3).to_sparse(2)
    with pytest.raises(ValueError, match="sparse in 2 dimensions"):
        opt.step()
    assert torch.count_nonzero(p) == 0


def test_tensor_subclasses_that_override_torch_function_are_refused():
    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            return super().__torch_function__(func, types, args, kwargs or {})

    p = torch.zeros(3).as_subclass(Logged).requires_grad_()
    with pytest.raises(TypeError, match="overrides __torch_function__"):
        fot.Adam([p])


def test_the_native_guard_checks_an_unpinned_storage_span():
    """A storage torch has not pinned (no NumPy view of it) is asked whether it still holds the
    view: a guard whose span runs past its end refuses the step, as one whose tensor moved."""
    params = [np.zeros(4, np.float32)]
    opt = fo.SGD(params, lr=1.0)
    t = torch.zeros(8)
    storage = t.untyped_storage()
    assert storage.resizable()
    plan = opt._built_plan()
    plan.set_guards([("fits", t, storage, t.data_ptr(), 32)])
    opt.step([np.ones(4, np.float32)])
    assert params[0][0] == -1.0
    for guard in [("past the end", t, storage, t.data_ptr(), 36), ("before the start", t, storage, t.data_ptr() - 4, 4),
                  ("moved", t, None, t.data_ptr() + 4, 4)]:
        plan.set_guards([guard])
        with pytest.raises(ValueError, match=f"{guard[0]}: its memory moved"):
            opt.step([np.ones(4, np.float32)])
        assert params[0][0] == -1.0
    with pytest.raises(TypeError, match="guard"):
        plan.set_guards([("short", t)])


# ---- from a hostile review (each failed before its mend) -------------------------------------
def test_python_code_run_inside_the_native_step_cannot_free_what_it_writes():
    """A finalizer that the garbage collector runs inside the step (pinning the gradients makes
    objects) moves the parameter's memory: the guard, checked after it, refuses; in a child."""
    code = textwrap.dedent("""
        import gc, torch, fastoptim.torch as fot
        p = torch.nn.Parameter(torch.zeros(64, 64, 64, 64).to(memory_format=torch.channels_last))
        opt = fot.SGD([p], lr=0.1)
        plan = opt._engine._plan
        fired = []
        class Bomb:
            def __init__(self): self.cycle = self
            def __del__(self):
                if plan.busy and not fired:
                    fired.append(1); p.share_memory_()  # torch frees the old buffer
                elif not fired:
                    Bomb()
        Bomb()
        gc.set_threshold(1)
        for _ in range(3):
            p.grad = torch.ones_like(p)
            try:
                opt.step()
            except ValueError as error:
                print("refused:", error)
        print("fired", fired)
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fired [1]" in done.stdout and "refused:" in done.stdout


def test_a_step_bumps_autograd_version_counters_as_torch_optim_does():
    w = torch.nn.Parameter(torch.ones(3))
    frozen = torch.nn.Parameter(torch.ones(3))
    x = torch.ones(3, requires_grad=True)
    opt = fot.SGD([w, frozen], lr=1.0)
    loss = (w * x).sum()
    kept = (frozen * x).sum()  # a graph over a parameter the step leaves alone stays usable
    w.grad = torch.ones(3)
    opt.step()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()
    kept.backward()


def test_a_tensor_lr_filled_by_a_scheduler_and_betas_edited_in_place():
    results = {}
    for name, mod in (("torch.optim", torch.optim), ("fastoptim.torch", fot)):
        p = torch.nn.Parameter(torch.ones(4))
        opt = mod.Adam([{"params": [p], "betas": [0.9, 0.999]}], lr=torch.tensor(0.1))
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # group["lr"].fill_(...)
        g = torch.Generator().manual_seed(0)
        for step in range(5):
            if step == 2:
                opt.param_groups[0]["betas"][0] = 0.0
            p.grad = torch.randn(4, generator=g)
            opt.step()
            sched.step()
        results[name] = p.detach().clone()
    torch.testing.assert_close(results["fastoptim.torch"], results["torch.optim"])


def test_a_torch_checkpoint_with_a_tensor_lr_loads():
    p = torch.nn.Parameter(torch.ones(2))
    t = torch.optim.Adam([p], lr=torch.tensor(1e-3))
    p.grad = torch.ones(2)
    t.step()
    opt = fot.Adam([torch.nn.Parameter(torch.ones(2))])
    opt.load_state_dict(_saved_and_loaded(t.state_dict()))
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(1e-3)


def test_8_bit_state_reaches_torch_optim_decoded():
    p = torch.nn.Parameter(torch.randn(8192))
    opt = fot.Adam([p], lr=0.01, state_dtype="int8")
    p.grad = torch.randn(8192)
    opt.step()
    saved = opt.state_dict()
    assert saved["state"][0]["exp_avg"].dtype == torch.float32 and "exp_avg_absmax" not in saved["state"][0]
    decoded = fo.dequantize_blockwise(opt._engine.state[0]["exp_avg"], opt._engine.state[0]["exp_avg_absmax"], True)
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"].numpy(), decoded)
    q = torch.nn.Parameter(p.detach().clone())
    torch_opt = torch.optim.Adam([q], lr=0.01)
    torch_opt.load_state_dict(_saved_and_loaded(saved))
    torch.testing.assert_close(torch_opt.state[q]["exp_avg"], saved["state"][0]["exp_avg"])
    again = fot.Adam([torch.nn.Parameter(p.detach().clone())], lr=0.01, state_dtype="int8")
    again.load_state_dict(_saved_and_loaded(saved))  # requantized: the codes come back
    np.testing.assert_array_equal(again._engine.state[0]["exp_avg"], opt._engine.state[0]["exp_avg"])


def test_zero_grad_set_to_none_lets_the_viewed_gradients_go():
    import weakref

    p = torch.nn.Parameter(torch.zeros(1000))
    opt = fot.Adam([p])
    p.grad = torch.ones(1000)
    opt.step()
    ref = weakref.ref(p.grad)
    opt.zero_grad(set_to_none=True)
    assert ref() is None


def test_gradients_whose_strides_differ_on_axes_of_size_1_are_taken():
    """Autograd's layout contract leaves the strides of size-1 axes free: a (1, C, 1, 1) scale in a
    channels_last model gets a gradient strided unlike it."""
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.scale = torch.nn.Parameter(torch.ones(1, 8, 1, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * self.scale

    torch.manual_seed(0)
    net = Scaled().to(memory_format=torch.channels_last)
    oracle = copy.deepcopy(net)
    opt = fot.AdamW(net.parameters(), lr=1e-2)
    topt = torch.optim.AdamW(oracle.parameters(), lr=1e-2)
    x = torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)
    for _ in range(3):
        for model, o in ((net, opt), (oracle, topt)):
            o.zero_grad()
            model(x).pow(2).mean().backward()
            o.step()
    assert net.scale.stride() != net.scale.grad.stride()
    for p, q in zip(net.parameters(), oracle.parameters()):
        torch.testing.assert_close(p, q)


def test_add_param_group_beside_steps_in_other_threads():
    import sys
    import threading

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        params = [torch.nn.Parameter(torch.zeros(1000)) for _ in range(4)]
        opt = fot.SGD(params, lr=0.001)
        errors = []

        def stepper() -> None:
            for _ in range(300):
                for p in params:
                    p.grad = torch.ones(1000)
                try:
                    opt.step()
                except Exception as error:  # noqa: BLE001  (any is a failure, reported below)
                    errors.append(error)

        def adder() -> None:
            for _ in range(30):
                opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(10))]})

        threads = [threading.Thread(target=stepper), threading.Thread(target=adder)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(opt.param_groups) == 31
    torch.testing.assert_close(params[0].detach(), torch.full((1000,), -0.3))


def test_a_step_after_zero_grad_bumps_no_version():
    w = torch.nn.Parameter(torch.ones(3))
    opt = fot.SGD([w], lr=1.0)
    w.grad = torch.ones(3)
    opt.step()
    opt.zero_grad()
    x = torch.ones(3, requires_grad=True)
    loss = (w * x).sum()
    opt.step()  # no gradient: nothing written, no version bumped
    loss.backward()
    assert torch.equal(x.grad, torch.zeros(3))


def test_a_refused_gradient_leaves_the_others_guarded_in_a_child():
    """A step refused at its second gradient has viewed the first: the guards cover it, so the
    gradient's memory moving later (share_memory_() frees the old buffer) is seen, not read."""
    code = textwrap.dedent("""
        import torch, fastoptim.torch as fot
        p0 = torch.zeros(1_000_000, requires_grad=True); p1 = torch.zeros(4, 6, requires_grad=True)
        opt = fot.SGD([p0, p1], lr=1.0)
        p0.grad = torch.ones(1_000_000); p1.grad = torch.ones(6, 4).t()
        try:
            opt.step()
        except ValueError as error:
            print("refused:", error)
        p1.grad = None
        opt.step()
        p0.grad.share_memory_()
        junk = [torch.full((1_000_000,), 7.0) for _ in range(4)]
        opt.step()
        print("p0[0]", p0[0].item())
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused:" in done.stdout and "p0[0] -2.0" in done.stdout


def test_a_refused_gradient_that_is_then_dropped_leaves_no_stale_guard():
    p = torch.zeros(10, requires_grad=True)
    opt = fot.SGD([p], lr=1.0)
    p.grad = torch.ones(10)
    opt.step()
    with torch.no_grad():
        p.grad.set_(torch.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        opt.step()
    p.grad = None
    opt.step()  # nothing to step, and no guard left over from the refused gradient
    p.grad = torch.ones(10)
    opt.step()
    assert torch.equal(p.detach(), torch.full((10,), -2.0))


def test_a_load_refuses_parameters_whose_memory_moved_in_a_child():
    """Loading a state dict without an EMA restarts it from the parameters, read through their
    views: one whose memory moved (share_memory_()) is refused first, with nothing changed."""
    code = textwrap.dedent("""
        import torch, fastoptim.torch as fot
        p = torch.nn.Parameter(torch.ones(4_000_000))
        opt = fot.AdamW([p], lr=0.1, ema_decay=0.9)
        q = torch.nn.Parameter(torch.ones(4_000_000)); t = torch.optim.AdamW([q], lr=0.1)
        q.grad = torch.ones_like(q); t.step()
        p.share_memory_()
        junk = [torch.full((4_000_000,), 7.0) for _ in range(4)]
        try:
            opt.load_state_dict(t.state_dict())
        except ValueError as error:
            print("refused:", error)
    """)
    done = run_python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: params[0]: its memory moved" in done.stdout


def test_a_gradient_moved_by_share_memory_is_viewed_anew():
    p = torch.zeros(10, requires_grad=True)
    opt = fot.SGD([p], lr=1.0)
    p.grad = torch.ones(10)
    opt.step()
    p.grad.share_memory_()
    opt.step()
    assert torch.equal(p.detach(), torch.full((10,), -2.0))
